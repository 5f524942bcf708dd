"""How far a frozen encoder goes on real writing when it is trained on real writing itself.

    python studies/ceiling.py            # needs the hydrated real set (`stance hydrate`)

The shipped model learns from team-written text only. This study measures what the same kind of
model (the shipped features and classifier on frozen encoder embeddings) reaches when real pages
are its training data: page-grouped 5-fold cross-validation over the real development set, each
fold trained on the other four fifths of the pages (alone, or with the labelled corpus added at a
sample weight) and scored on its held-out pages as `stance score` reads them (blended with the
strongest sentence). In-domain labels are the best training data a model of this kind can have, so
these figures bound what more team-written text can give it. The shipped model (corpus only) is
scored on the same paragraphs for comparison. Intervals: 95%, resampling pages. Nothing here is
shipped: the model `stance train` makes never sees the real set. Writes `reports/ceiling.md` and
`.json` (figures only, never the pages' text).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))

from pipeline.numerics import pin  # noqa: E402

NUMERICS = pin()  # before numpy loads: the embed stage's code paths, so its cached embeddings are reused

import numpy as np  # noqa: E402

from model_selection import ENCODERS, embeddings, labelled_corpus, read_as_scored  # noqa: E402
from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.evaluation.external_eval import bootstrap_interval  # noqa: E402
from pipeline.files import load_params, write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.model.features import model_inputs  # noqa: E402
from pipeline.model.train import build_classifier, f_avg  # noqa: E402
from pipeline.scoring.sentences import sentence_rows  # noqa: E402

FOLDS = 5
CORPUS_WEIGHTS = [0.0, 0.3, 1.0]  # sample weight of the corpus paragraphs beside the real ones (0 = real pages alone)
FEATURES = [("embedding", None), ("text+embedding", {"embedding_weight": 1.0, "min_df": 2})]
CORPUS_ONLY = "corpus only (as shipped)"
C_VALUES = [1.0, 10.0, 100.0]  # each row keeps the best in hindsight: an optimistic ceiling, never a tuned figure


def page_folds(pages: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each paragraph: pages shuffled with `seed`, dealt round-robin."""
    unique = sorted(set(pages.tolist()))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of[p] for p in pages])


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    paths, seed = params["paths"], int(params["seed"])
    weight = float(params["score"]["sentence_weight"])
    corpus, y = labelled_corpus(params)
    real = load_hydrated(ROOT / paths["real_dir"], ROOT / paths["real_manifest"])
    gold = np.array([r["label"] for r in real])
    pages = np.array([r["url"] for r in real])
    corpus_texts, real_texts = [r["text"] for r in corpus], [r["text"] for r in real]
    owner, sentence_texts = sentence_rows(real_texts)
    owner = np.asarray(owner)
    fold = page_folds(pages, FOLDS, seed)

    rows = []
    for encoder, spec in ENCODERS.items():
        X, R, S = (embeddings(params, spec, texts) for texts in (corpus_texts, real_texts, sentence_texts))
        for (features, feature_params), C in itertools.product(FEATURES, C_VALUES):
            classifier_params = {**params["train"]["classifier_params"], "C": C}
            shipped = build_classifier("logistic_regression", classifier_params, seed, features, feature_params)
            shipped.fit(model_inputs(corpus_texts, X), y)
            runs = {CORPUS_ONLY: read_as_scored(shipped, real_texts, R, sentence_texts, S, owner, weight)[1]}
            for corpus_weight in CORPUS_WEIGHTS:
                predicted = np.empty(len(real), dtype=object)
                for k in range(FOLDS):
                    train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                    texts = [real_texts[i] for i in train] + (corpus_texts if corpus_weight else [])
                    E = np.vstack([R[train], X]) if corpus_weight else R[train]
                    target = np.concatenate([gold[train], y]) if corpus_weight else gold[train]
                    sample_weight = np.concatenate([np.ones(len(train)), np.full(len(y), corpus_weight)]) \
                        if corpus_weight else np.ones(len(train))
                    classifier = build_classifier("logistic_regression", classifier_params, seed, features, feature_params)
                    classifier.fit(model_inputs(texts, E), target, classifier__sample_weight=sample_weight)
                    mine = np.isin(owner, test)
                    row_of = {int(i): n for n, i in enumerate(test)}
                    predicted[test] = read_as_scored(classifier, [real_texts[i] for i in test], R[test],
                                                     [t for t, m in zip(sentence_texts, mine) if m], S[mine],
                                                     np.array([row_of[int(o)] for o in owner[mine]], dtype=int), weight)[1]
                name = "real pages" + (f" + corpus at weight {corpus_weight}" if corpus_weight else " alone")
                runs[name] = predicted.astype(str)
            for name, predicted in runs.items():
                rows.append({"encoder": encoder, "features": features, "training": name, "C": C,
                             "f_avg": round(f_avg(gold, predicted), 4),
                             "interval": bootstrap_interval(
                                 pages, lambda i, p=predicted: f_avg(gold[i], p[i]), 1000, seed)})
                print(json.dumps(rows[-1]), flush=True)

    results = {"rows": rows, "folds": FOLDS, "C_values": C_VALUES, "sentence_weight": weight,
               "real_set": {"paragraphs": len(real), "pages": len(set(pages.tolist()))},
               "corpus_paragraphs": len(corpus)}
    write_json_atomic(ROOT / "reports" / "ceiling.json", results)
    write_text_atomic(ROOT / "reports" / "ceiling.md", render(results))


def best_rows(rows: list[dict]) -> list[dict]:
    """Per encoder, features and training data, the row of the C that scored best (in hindsight)."""
    best: dict[tuple, dict] = {}
    for row in rows:
        key = (row["encoder"], row["features"], row["training"])
        if key not in best or row["f_avg"] > best[key]["f_avg"]:
            best[key] = row
    return list(best.values())


def render(results: dict) -> str:
    real = results["real_set"]
    rows = best_rows(results["rows"])
    top = max((r for r in rows if r["training"] != CORPUS_ONLY), key=lambda r: r["f_avg"])
    low, high = top["interval"]
    lines = ["# The in-domain ceiling: the shipped kind of model trained on real writing", "",
             f"Page-grouped {results['folds']}-fold cross-validation over the real development set ({real['paragraphs']} "
             f"paragraphs, {real['pages']} pages): each fold is trained on the other pages' paragraphs (with the "
             f"{results['corpus_paragraphs']:,} corpus paragraphs at the weight shown, or without them) and scored on "
             "its own pages, each paragraph blended with its strongest sentence at weight "
             f"{results['sentence_weight']} as `stance score` reads it. Logistic regression; each row shows the C of "
             f"{', '.join(f'{c:g}' for c in results['C_values'])} that scored best on these very paragraphs, so every "
             f"figure is optimistic. `{CORPUS_ONLY}` is the shipped recipe (no real page in training), on the same "
             "paragraphs. Intervals: 95%, resampling pages. Made by `python studies/ceiling.py`; nothing here is shipped.",
             "", f"Best with real pages in training: **{top['f_avg']:.3f}** ({low:.2f}–{high:.2f}; {top['encoder']}, "
             f"{top['features']}, {top['training']}, C={top['C']:g}).",
             "", "| encoder | features | training | C | f_avg (95% CI) |", "|---|---|---|---|---|"]
    for row in rows:
        low, high = row["interval"]
        lines.append(f"| {row['encoder']} | {row['features']} | {row['training']} | {row['C']:g} | "
                     f"{row['f_avg']:.3f} ({low:.2f}–{high:.2f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
