"""`stance evaluate --external`: the shipped model on real writing nobody on the team wrote.

Inputs:  the hydrated real development set (`paths.real_dir`/paragraphs.jsonl, made by
         `stance hydrate` from `paths.real_manifest`), the trained model.
Outputs: `reports/external.md` and `reports/external.json` (committed). They hold figures, and
         mistakes by url and paragraph index only: never the pages' text, never per-paragraph
         probabilities or features.
Params:  `seed`, `paths.*`, `score.*` (each page is scored as `stance score` scores a document),
         `evaluate.external.bootstrap` (resamples of pages for the 95% intervals).

Figures: paragraph f_avg (mean F1 of favor and against), macro-F1, accuracy, the confusion matrix,
by genre and by origin; page-level verdict accuracy against the manifest's page verdicts. The
intervals resample whole pages (paragraphs of a page are not independent). Every figure is given
for all pages and for each fixed half (`pipeline.corpus.real_set.half_of`): model choices are made on
the `select` half, so the `report` half is the unbiased one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.files import write_json_atomic, write_text_atomic
from pipeline.model.train import f_avg

DEFAULT_BOOTSTRAP = 1000


def _paragraph_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict:
    from pipeline.evaluation.metrics import compute_metrics

    return compute_metrics(gold, predicted)


def bootstrap_interval(pages: np.ndarray, values, draws: int, seed: int) -> list[float]:
    """95% interval of `values(indices)` over resamples of whole pages (a page's rows move together)."""
    rng = np.random.default_rng(seed)
    unique = np.unique(pages)
    rows_of = {page: np.flatnonzero(pages == page) for page in unique}
    stats = []
    for _ in range(draws):
        chosen = rng.choice(unique, size=len(unique), replace=True)
        stats.append(values(np.concatenate([rows_of[p] for p in chosen])))
    low, high = np.percentile(stats, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def summarise(records: list[dict], predicted: list[str], page_predictions: dict[str, str],
              draws: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """All figures for one set of paragraph predictions and page verdicts."""
    gold = np.array([r["label"] for r in records])
    predicted = np.array(predicted)
    pages = np.array([r["url"] for r in records])
    metrics = _paragraph_metrics(gold, predicted)
    metrics["pages"] = int(len(np.unique(pages)))
    metrics["f_avg_interval"] = bootstrap_interval(pages, lambda i: f_avg(gold[i], predicted[i]), draws, seed)
    page_gold = {r["url"]: r["page_verdict"] for r in records}
    urls = sorted(page_gold)
    right = np.array([page_predictions[u] == page_gold[u] for u in urls], dtype=float)
    metrics["page_accuracy"] = round(float(right.mean()), 4) if urls else 0.0
    metrics["page_accuracy_interval"] = bootstrap_interval(np.array(urls), lambda i: right[i].mean(), draws, seed)
    metrics["page_confusion"] = {t: {p: sum(1 for u in urls if page_gold[u] == t and page_predictions[u] == p)
                                     for p in LABELS} for t in LABELS}
    return metrics


def _groups(records: list[dict], predicted: list[str], key: str) -> dict:
    out = {}
    for value in sorted({r[key] for r in records}):
        rows = [i for i, r in enumerate(records) if r[key] == value]
        gold = np.array([records[i]["label"] for i in rows])
        pred = np.array([predicted[i] for i in rows])
        out[value] = {"paragraphs": len(rows), "pages": len({records[i]["url"] for i in rows}),
                      "f_avg": round(f_avg(gold, pred), 4), "accuracy": round(float((gold == pred).mean()), 4),
                      "labels": dict(Counter(gold.tolist()))}
    return out


def external_results(records: list[dict], predicted: list[str], page_predictions: dict[str, str],
                     draws: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    results = {"all": summarise(records, predicted, page_predictions, draws, seed)}
    for half in ("select", "report"):
        rows = [i for i, r in enumerate(records) if r["half"] == half]
        if rows:
            results[half] = summarise([records[i] for i in rows], [predicted[i] for i in rows],
                                      page_predictions, draws, seed)
    results["by_genre"] = _groups(records, predicted, "genre")
    results["by_origin"] = _groups(records, predicted, "origin")
    results["mistakes"] = [{"url": r["url"], "paragraph_index": r["paragraph_index"], "label": r["label"],
                            "predicted": p, "genre": r["genre"]}
                           for r, p in zip(records, predicted) if r["label"] != p]
    return results


def score_pages(records: list[dict], scorer) -> tuple[list[str], dict[str, str]]:
    """Paragraph labels and page verdicts, each page scored as one `stance score` document."""
    from pipeline.corpus.documents import Document
    from pipeline.scoring.score import score_documents

    order: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        order.setdefault(record["url"], []).append(i)
    documents = [Document(url, [records[i]["text"] for i in rows]) for url, rows in order.items()]
    results = score_documents(documents, scorer)
    predicted = [""] * len(records)
    verdicts = {}
    for (url, rows), result in zip(order.items(), results):
        verdicts[url] = result["verdict"]
        for i, paragraph in zip(rows, result["paragraphs"]):
            predicted[i] = paragraph["label"]
    return predicted, verdicts


def _line(name: str, m: dict) -> str:
    low, high = m["f_avg_interval"]
    plow, phigh = m["page_accuracy_interval"]
    return (f"| {name} | {m['pages']} | {m['paragraphs']} | **{m['f_avg']:.3f}** ({low:.2f}–{high:.2f}) | "
            f"{m['macro_f1']:.3f} | {m['accuracy']:.3f} | {m['page_accuracy']:.3f} ({plow:.2f}–{phigh:.2f}) |")


def markdown_report(results: dict, meta: dict) -> str:
    lines = ["# External evaluation: the shipped model on real writing", "",
             f"Model: `{meta.get('embedding_model', '?')}` embeddings, features `{meta.get('features') or (meta.get('train_params') or {}).get('features', '?')}`"
             f" (`models/model.json`). Set: the real development set of `data/real/manifest.csv` "
             "(public pages, labelled with the guide; text never in the repository). Each page is scored as "
             "`stance score` scores a document. Intervals: 95%, resampling whole pages.", "",
             "| pages | n pages | paragraphs | f_avg (95% CI) | macro-F1 | accuracy | page verdict accuracy (95% CI) |",
             "|---|---|---|---|---|---|---|"]
    for name in ("all", "select", "report"):
        if name in results:
            lines.append(_line({"all": "all", "select": "select half (choices made here)",
                                "report": "report half (untouched by choices)"}[name], results[name]))
    agreement = results.get("agreement") or {}
    if agreement.get("paragraphs"):
        lines += ["", f"Labels: a blind second pass over {agreement['paragraphs']} paragraphs of {agreement['pages']} pages "
                  f"agrees with the manifest on {agreement['paragraph_agreement']:.1%} of paragraphs (Cohen's kappa "
                  f"{agreement['paragraph_kappa']:.2f}) and {agreement['page_agreement']:.1%} of page verdicts "
                  f"(kappa {agreement['page_kappa']:.2f})."]
    confusion = results["all"]["confusion_matrix"]
    lines += ["", "Paragraphs, all pages (rows: label; columns: predicted):", "",
              "| | " + " | ".join(LABELS) + " |", "|---" * (len(LABELS) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(str(confusion[t][p]) for p in LABELS) + " |" for t in LABELS]
    pages = results["all"]["page_confusion"]
    lines += ["", "Page verdicts, all pages (rows: manifest verdict; columns: `stance score` verdict):", "",
              "| | " + " | ".join(LABELS) + " |", "|---" * (len(LABELS) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(str(pages[t][p]) for p in LABELS) + " |" for t in LABELS]
    for key, title in (("by_genre", "genre"), ("by_origin", "origin")):
        lines += ["", f"By {title}:", "", f"| {title} | pages | paragraphs | favor/against/none | f_avg | accuracy |",
                  "|---|---|---|---|---|---|"]
        for value, m in results[key].items():
            counts = "/".join(str(m["labels"].get(label, 0)) for label in LABELS)
            lines.append(f"| {value} | {m['pages']} | {m['paragraphs']} | {counts} | {m['f_avg']:.3f} | {m['accuracy']:.3f} |")
    lines += ["", f"{len(results['mistakes'])} paragraph mistakes are listed in `reports/external.json` by url and "
              "paragraph index (`stance hydrate` recovers their text locally)."]
    return "\n".join(lines) + "\n"


def run_external(params: dict) -> dict:
    from pathlib import Path

    from pipeline.corpus.real_set import load_hydrated
    from pipeline.scoring.score import load_scorer

    paths = params["paths"]
    records = load_hydrated(paths["real_dir"], paths["real_manifest"])
    # The precision the model was trained with (fp32), not score.precision: the committed figures
    # must not depend on which processor ran them.
    scorer = load_scorer(params, precision=(params.get("embedding") or {}).get("precision") or "fp32")
    predicted, verdicts = score_pages(records, scorer)
    settings = (params.get("evaluate") or {}).get("external") or {}
    draws = int(settings.get("bootstrap", DEFAULT_BOOTSTRAP))
    if draws < 100:
        raise StanceError(f"params.yaml: evaluate.external.bootstrap must be at least 100, got {draws}")
    results = external_results(records, predicted, verdicts, draws, int(params.get("seed", 0)))
    from pipeline.corpus.real_set import second_pass_agreement

    results["agreement"] = second_pass_agreement(paths["real_manifest"], paths.get("real_second_pass", "data/real/second_pass"))
    results["model"] = {"embedding_model": scorer.meta.get("embedding_model"),
                        "features": scorer.meta.get("features") or (scorer.meta.get("train_params") or {}).get("features"),
                        "model_sha256": scorer.meta.get("model_sha256")}
    reports = Path(paths["reports_dir"])
    write_json_atomic(reports / "external.json", results)
    write_text_atomic(reports / "external.md", markdown_report(results, scorer.meta))
    return results
