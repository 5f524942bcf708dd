"""Model selection on real writing: which encoder, features and C the shipped model uses, and why.

    python studies/model_selection.py            # needs the hydrated real set (`stance hydrate`)

Every candidate is trained on the whole labelled corpus (team-written text, as `stance train` does)
and scored on the real development set, each paragraph read as `stance score` reads it: blended
with its strongest sentence (`score.sentence_weight`; the probabilities uncalibrated, where the
shipped model's temperature, near 1, would move them slightly). Candidates are ranked by f_avg
on the `select` half of the real pages only; the winner (and the best MiniLM candidate, the fast
option) is then reported on the `report` half, which no choice has seen, with a 95% interval that
resamples pages. A learning curve on the real set shows what the corpus's realistic-genre
documents (kind `authored-realstyle`) add. Writes `reports/model_selection.md` and `.json`:
figures only, never the pages' text. Timings are not recorded here (see benchmarks/).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.numerics import pin  # noqa: E402

NUMERICS = pin()  # before numpy loads: the embed stage's code paths, so its cached embeddings are reused

import numpy as np  # noqa: E402

from pipeline import LABELS  # noqa: E402
from pipeline.corpus.labels import load_labels, resolve_labels  # noqa: E402
from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.encoder.embed import cache_for, embed_texts, make_embedder  # noqa: E402
from pipeline.evaluation.external_eval import bootstrap_interval  # noqa: E402
from pipeline.files import load_params, read_jsonl, write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.model.features import model_inputs  # noqa: E402
from pipeline.model.train import build_classifier, f_avg  # noqa: E402
from pipeline.scoring.sentences import blend_strongest_sentence, sentence_rows  # noqa: E402

ENCODERS = {"all-MiniLM-L6-v2": "default", "all-mpnet-base-v2": "all-mpnet-base-v2"}
FEATURES = [("embedding", None), ("text+embedding", {"embedding_weight": 0.5, "min_df": 2}),
            ("text+embedding", {"embedding_weight": 1.0, "min_df": 2})]
C_VALUES = [0.3, 1.0, 3.0, 10.0]
CURVE_SHARES = [0.0, 0.25, 0.5, 1.0]  # share of the authored-realstyle documents added to the rest
REALSTYLE = "authored-realstyle"


def embeddings(params: dict, model: str, texts: list[str]) -> np.ndarray:
    """fp32 embeddings, as the embed stage computes them (cached like it)."""
    embedder = make_embedder(params, model=model, precision="fp32")
    return embed_texts(texts, embedder, cache_for(embedder, ROOT / params["paths"]["embedding_cache"]))


def labelled_corpus(params: dict) -> tuple[list[dict], np.ndarray]:
    """The prepared corpus paragraphs that have a resolved label, and those labels."""
    paths = params["paths"]
    corpus = read_jsonl(ROOT / paths["paragraphs"])
    labels = resolve_labels(load_labels(ROOT / paths["labels_dir"], {r["id"] for r in corpus}),
                            params["labels"]["priority"])
    corpus = [r for r in corpus if r["id"] in labels]
    return corpus, np.array([labels[r["id"]] for r in corpus])


def read_as_scored(classifier, texts, R, sentence_texts, S, owner, weight) -> tuple[np.ndarray, np.ndarray]:
    """Labels of `texts` read alone, and as `stance score` reads them: blended with their strongest
    sentence at `weight` (pipeline/scoring/sentences.py); `owner[j]` is the row of sentence j."""
    order = [list(classifier.classes_).index(label) for label in LABELS]
    alone = classifier.predict_proba(model_inputs(texts, R))[:, order]
    if not len(owner):
        return np.array(LABELS)[alone.argmax(1)], np.array(LABELS)[alone.argmax(1)]
    sentences = classifier.predict_proba(model_inputs(sentence_texts, S))[:, order]
    blended = blend_strongest_sentence(alone, sentences, owner, LABELS.index("none"), weight)
    return np.array(LABELS)[alone.argmax(1)], np.array(LABELS)[blended.argmax(1)]


def fit_predict(params, features, feature_params, C, train_texts, X, y, real, R) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the real paragraphs read alone, and as `stance score` reads them (`read_as_scored`)."""
    classifier = build_classifier("logistic_regression", {**params["train"]["classifier_params"], "C": C},
                                  int(params["seed"]), features, feature_params)
    classifier.fit(model_inputs(train_texts, X), y)
    real_texts, sentence_texts, owner, S = real
    return read_as_scored(classifier, real_texts, R, sentence_texts, S, owner,
                          float(params["score"]["sentence_weight"]))


def halves_figures(gold, predicted, pages, halves, seed) -> dict:
    out = {}
    for half in ("select", "report"):
        mask = halves == half
        out[half] = {"f_avg": round(f_avg(gold[mask], predicted[mask]), 4),
                     "interval": bootstrap_interval(pages[mask], lambda i, g=gold[mask], p=predicted[mask]:
                                                    f_avg(g[i], p[i]), 1000, seed)}
    out["all"] = {"f_avg": round(f_avg(gold, predicted), 4)}
    return out


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    paths = params["paths"]
    seed = int(params["seed"])
    corpus, y = labelled_corpus(params)
    real = load_hydrated(ROOT / paths["real_dir"], ROOT / paths["real_manifest"])
    gold = np.array([r["label"] for r in real])
    pages = np.array([r["url"] for r in real])
    halves = np.array([r["half"] for r in real])
    select = halves == "select"
    train_texts, real_texts = [r["text"] for r in corpus], [r["text"] for r in real]
    owner, sentence_texts = sentence_rows(real_texts)
    vectors = {name: (embeddings(params, spec, train_texts), embeddings(params, spec, real_texts),
                      embeddings(params, spec, sentence_texts)) for name, spec in ENCODERS.items()}

    candidates = []
    for (encoder, (X, R, S)), (features, feature_params), C in itertools.product(vectors.items(), FEATURES, C_VALUES):
        alone, predicted = fit_predict(params, features, feature_params, C, train_texts, X, y,
                                       (real_texts, sentence_texts, owner, S), R)
        candidates.append({"encoder": encoder, "features": features, "feature_params": feature_params, "C": C,
                           "select_f_avg": round(f_avg(gold[select], predicted[select]), 4),
                           "select_f_avg_alone": round(f_avg(gold[select], alone[select]), 4), "_predicted": predicted})
        print(json.dumps({k: v for k, v in candidates[-1].items() if k != "_predicted"}), flush=True)

    def best(pool):
        return max(pool, key=lambda c: c["select_f_avg"])

    winner = best(candidates)
    fast = best([c for c in candidates if c["encoder"] == "all-MiniLM-L6-v2"])
    chosen = {name: {**{k: v for k, v in c.items() if k != "_predicted"},
                     **halves_figures(gold, c["_predicted"], pages, halves, seed)}
              for name, c in (("default", winner), ("fast", fast))}

    kinds = np.array([r["kind"] for r in corpus])
    docs = sorted({r["doc"] for r in corpus if r["kind"] == REALSTYLE})
    order = np.random.default_rng(seed).permutation(len(docs))
    X, R, S = vectors[winner["encoder"]]
    curve = []
    for share in CURVE_SHARES:
        taken = {docs[i] for i in order[:round(share * len(docs))]}
        mask = np.array([k != REALSTYLE or r["doc"] in taken for k, r in zip(kinds, corpus)])
        _, predicted = fit_predict(params, winner["features"], winner["feature_params"], winner["C"],
                                   [t for t, m in zip(train_texts, mask) if m], X[mask], y[mask],
                                   (real_texts, sentence_texts, owner, S), R)
        curve.append({"realstyle_documents": len(taken), "training_paragraphs": int(mask.sum()),
                      **halves_figures(gold, predicted, pages, halves, seed)})
        print(json.dumps(curve[-1]), flush=True)

    results = {"candidates": [{k: v for k, v in c.items() if k != "_predicted"} for c in candidates],
               "chosen": chosen, "learning_curve": curve,
               "real_set": {"paragraphs": len(real), "pages": len(set(pages.tolist())),
                            "select_pages": len(set(pages[select].tolist())),
                            "report_pages": len(set(pages[~select].tolist()))},
               "corpus_paragraphs": len(corpus), "sentence_weight": float(params["score"]["sentence_weight"])}
    write_json_atomic(ROOT / "reports" / "model_selection.json", results)
    write_text_atomic(ROOT / "reports" / "model_selection.md", render(results))


def render(results: dict) -> str:
    real = results["real_set"]
    lines = ["# Model selection on real writing", "",
             f"Trained on the {results['corpus_paragraphs']} labelled corpus paragraphs; scored on the real "
             f"development set ({real['paragraphs']} paragraphs, {real['pages']} pages). Candidates are ranked by "
             f"f_avg on the select half ({real['select_pages']} pages); the report half ({real['report_pages']} pages) "
             "is untouched by the choice. Each real paragraph is read as `stance score` reads it: blended with its "
             f"strongest sentence at weight {results['sentence_weight']} (`score.sentence_weight`); the last column "
             "of the candidates' table reads paragraphs alone. Intervals: 95%, resampling pages. Made by "
             "`python studies/model_selection.py`.",
             "", "| choice | encoder | features | C | select f_avg | report f_avg (95% CI) |", "|---|---|---|---|---|---|"]
    for name, c in results["chosen"].items():
        low, high = c["report"]["interval"]
        weight = f" (embedding weight {c['feature_params']['embedding_weight']})" if c["feature_params"] else ""
        lines.append(f"| {name} | {c['encoder']} | {c['features']}{weight} | {c['C']} | {c['select']['f_avg']:.3f} | "
                     f"**{c['report']['f_avg']:.3f}** ({low:.2f}–{high:.2f}) |")
    lines += ["", "All candidates (select half only):", "", "| encoder | features | C | select f_avg | paragraphs alone |",
              "|---|---|---|---|---|"]
    for c in sorted(results["candidates"], key=lambda c: -c["select_f_avg"]):
        weight = f" ({c['feature_params']['embedding_weight']})" if c["feature_params"] else ""
        lines.append(f"| {c['encoder']} | {c['features']}{weight} | {c['C']} | {c['select_f_avg']:.3f} | "
                     f"{c['select_f_avg_alone']:.3f} |")
    lines += ["", "Learning curve on the real set (the chosen model, adding the realistic-genre corpus documents):", "",
              "| realstyle documents | training paragraphs | select f_avg | report f_avg (95% CI) |", "|---|---|---|---|"]
    for p in results["learning_curve"]:
        low, high = p["report"]["interval"]
        lines.append(f"| {p['realstyle_documents']} | {p['training_paragraphs']} | {p['select']['f_avg']:.3f} | "
                     f"{p['report']['f_avg']:.3f} ({low:.2f}–{high:.2f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
