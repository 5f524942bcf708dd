"""What `stance label` offers next: which paragraphs, in what order, and the model's guess for each.

Inputs:  `paths.paragraphs` (from prepare), `paths.sources` (document titles), `paths.labels_dir`
         (who labelled what; unreadable label files are passed over here), the trained model
         (`paths.model`, `paths.model_meta`, `paths.embeddings`; paragraphs the embed stage has not
         seen are embedded on the fly through `pipeline.encoder.embed`, cached in `paths.embedding_cache`)
         and `<paths.reports_dir>/predictions.csv` (the evaluate stage's out-of-fold predictions).
Params:  `seed` (random order), `labels.priority` (who the adjudicator is, see
         `pipeline.labelling.agreement.adjudicator_name`), `embedding.*` (only for paragraphs missing from
         the embeddings).

Guesses are never from a model that trained on the paragraph. A paragraph nobody has labelled
gets the trained model's prediction (out-of-sample: the model never saw its label). A labelled
paragraph gets its out-of-fold prediction from `predictions.csv` (made by models that did not
see its document), or no guess at all when that file is missing or lacks it. Each guess records
which it is ("model" or "out-of-fold").

Order, in three tiers: paragraphs nobody has labelled; then paragraphs on which annotators
disagree (two or more labels, not yet settled by the adjudicator); then paragraphs only others
labelled. Within a tier, "margin" (default) and "entropy" put first the paragraphs the guesses
are least sure of (smallest gap between the two most likely labels / largest entropy), those
without a guess after them in seeded random order; "random" is a shuffle seeded from `seed`.
"document" follows the corpus, without tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError

ORDERS = ("margin", "entropy", "random", "document")
MODEL, OUT_OF_FOLD = "model", "out-of-fold"


def read_paragraphs(params: dict) -> list[dict]:
    from pipeline.files import read_jsonl

    path = Path(params["paths"]["paragraphs"])
    if not path.exists():
        raise StanceError(f"{path}: not found (run `stance prepare` first)")
    return read_jsonl(path)


def document_titles(params: dict) -> dict[str, str]:
    """slug -> title from the sources table; empty when the table is missing or unreadable."""
    from pipeline.corpus.prepare import read_sources

    try:
        return {s["slug"]: s["title"] for s in read_sources(params["paths"]["sources"])}
    except StanceError:
        return {}


def label_table(labels_dir: str | Path) -> dict[str, dict[str, str]]:
    """{annotator: {paragraph id: label}} over the readable label files."""
    from pipeline.corpus.labels import read_label_file
    from pipeline.labelling.agreement import by_annotator

    rows = []
    for path in sorted(Path(labels_dir).glob("*.csv")):
        try:
            rows += read_label_file(path)
        except StanceError:
            continue
    return by_annotator(rows)


def labelled_by_others(labels_dir: str | Path, annotator: str) -> set[str]:
    """Ids labelled by any other annotator."""
    return {pid for who, labels in label_table(labels_dir).items() if who != annotator for pid in labels}


# --- the guesses --------------------------------------------------------------------------------

@dataclass
class Guesses:
    """Probabilities in LABELS order by paragraph id, where each came from, and a one-line status."""
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # id -> MODEL | OUT_OF_FOLD
    status: str = ""


def predictions_path(params: dict) -> Path:
    return Path(params["paths"]["reports_dir"]) / "predictions.csv"


def out_of_fold_probabilities(path: str | Path) -> dict[str, np.ndarray]:
    """id -> probabilities in LABELS order from the evaluate stage's predictions.csv."""
    import csv

    path = Path(path)
    columns = [f"p_{label}" for label in LABELS]
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ["id", *columns] if c not in (reader.fieldnames or [])]
            if missing:
                raise StanceError(f"{path}: missing columns {', '.join(missing)}")
            return {row["id"]: np.array([float(row[c]) for c in columns]) for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
        raise StanceError(f"{path}: unreadable ({type(exc).__name__})") from None


def load_guesses(params: dict, records: list[dict], embed: bool = True, embedder=None,
                 log: Callable[[str], None] = lambda message: None) -> Guesses:
    """Out-of-sample guesses for `records` (see the module docstring). Missing files or a model
    that does not fit mean fewer guesses and a status saying why, never an error."""
    labelled = {pid for labels in label_table(params["paths"]["labels_dir"]).values() for pid in labels}
    fresh = [r for r in records if r["id"] not in labelled]
    known = [r["id"] for r in records if r["id"] in labelled]
    model, status = model_probabilities(params, fresh, embed, embedder, log) if fresh else ({}, _no_model(params))
    guesses = Guesses(dict(model), {pid: MODEL for pid in model})
    notes = [status] if status else []
    if known:
        path = predictions_path(params)
        try:
            oof = out_of_fold_probabilities(path) if path.exists() else {}
            reason = "" if path.exists() else f"{path} is missing: run `dvc repro`"
        except StanceError as exc:
            oof, reason = {}, str(exc)
        found = [pid for pid in known if pid in oof]
        guesses.probabilities.update((pid, oof[pid]) for pid in found)
        guesses.sources.update((pid, OUT_OF_FOLD) for pid in found)
        notes.append(f"out-of-fold guesses for {len(found)} of {len(known)} labelled paragraphs"
                     + (f" ({reason})" if reason else f" from {path}" if found else ""))
    guesses.status = "; ".join(notes)
    return guesses


def model_guesses(params: dict, records: list[dict], embed: bool = True, embedder=None,
                  log: Callable[[str], None] = lambda message: None) -> tuple[dict[str, np.ndarray], str]:
    """(probabilities by paragraph id, status): `load_guesses` without the sources."""
    guesses = load_guesses(params, records, embed, embedder, log)
    return guesses.probabilities, guesses.status


def model_probabilities(params: dict, records: list[dict], embed: bool = True, embedder=None,
                        log: Callable[[str], None] = lambda message: None) -> tuple[dict[str, np.ndarray], str]:
    """(probabilities in LABELS order by paragraph id, a one-line status) from the trained model,
    for any paragraph, including those it trained on: `load_guesses` keeps only the others.

    Embeddings come from the embed stage's output; paragraphs missing there are embedded with
    `embedder` (default: the configured model via `pipeline.encoder.embed`) unless `embed` is False, in
    which case they simply get no guess. No model, or a model that does not match the
    embeddings, means no guesses (and a status saying why), never an error.
    """
    paths = params["paths"]
    if _no_model(params):
        return {}, _no_model(params)
    from pipeline.encoder.embed import load_embeddings
    from pipeline.model.model_store import load_model

    log(f"loading the model from {paths['model']} ...")
    try:
        estimator, meta = load_model(paths["model"], paths["model_meta"])
    except StanceError as exc:
        return {}, f"model not used: {exc}"
    trained = meta.get("embedding_model", "").split("/")[0]
    vectors: dict[str, np.ndarray] = {}
    document_of = {r["id"]: r.get("doc", r["id"]) for r in records}
    stale = ""
    if Path(paths["embeddings"]).exists():
        rows, matrix, identity = load_embeddings(paths["embeddings"])
        if not identity or identity.split("/")[0] == trained:
            vectors = {row["id"]: matrix[i] for i, row in enumerate(rows)}
            document_of = {**{row["id"]: row["doc"] for row in rows}, **document_of}
        else:
            stale = f"; {paths['embeddings']} is from {identity.split('/')[0]}, the model from {trained}"
    missing = [r for r in records if r["id"] not in vectors]
    if missing and (embed or embedder is not None):
        from pipeline.encoder.embed import EmbeddingCache, embed_texts, make_embedder

        try:
            embedder = embedder or make_embedder(params, scoring=True)  # new text: the fast scoring path
            if embedder.identity.split("/")[0] == trained:
                log(f"embedding {len(missing)} paragraphs the embed stage has not seen ...")
                cache = EmbeddingCache(paths["embedding_cache"], embedder.identity)
                new = embed_texts([r["text"] for r in missing], embedder, cache)
                vectors.update(zip((r["id"] for r in missing), new))
        except StanceError as exc:  # no guess for those paragraphs is better than no session
            stale += f"; new paragraphs not embedded ({exc})"
    ids = [r["id"] for r in records if r["id"] in vectors]
    if not ids:
        return {}, f"no model guesses: no embeddings match the model (run `dvc repro`){stale}"
    from pipeline.model.features import document_context, model_inputs

    known = list(vectors)  # each paragraph's document context comes from all of its document's paragraphs
    context = dict(zip(known, document_context(np.stack([vectors[i] for i in known]),
                                               [document_of.get(i, i) for i in known])))
    text_of = {r["id"]: r["text"] for r in records}
    raw = estimator.predict_proba(model_inputs([text_of[i] for i in ids], np.stack([vectors[i] for i in ids]),
                                               np.stack([context[i] for i in ids])))
    probabilities = np.zeros((len(ids), len(LABELS)))
    for j, label in enumerate(estimator.classes_):
        probabilities[:, LABELS.index(label)] = raw[:, j]
    without = len(records) - len(ids)
    status = (f"model guesses for {len(ids)} unlabelled paragraphs from {paths['model']}"
              + (f" ({without} without embeddings get none)" if without else ""))
    return dict(zip(ids, probabilities)), status + stale


def _no_model(params: dict) -> str:
    paths = params["paths"]
    if Path(paths["model"]).exists() and Path(paths["model_meta"]).exists():
        return ""
    return "no trained model yet, so no model guesses (train with `dvc repro` once there are labels)"


# --- the order ----------------------------------------------------------------------------------

def uncertainty(probabilities: np.ndarray, method: str) -> np.ndarray:
    """Higher means the model is less sure. margin: 1 - (top - second); entropy: Shannon entropy."""
    if method == "margin":
        top = np.sort(probabilities, axis=1)
        return 1.0 - (top[:, -1] - top[:, -2])
    if method == "entropy":
        return -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=1)
    raise StanceError(f"unknown uncertainty {method!r} (expected margin or entropy)")


def order_paragraphs(ids: list[str], probabilities: dict[str, np.ndarray], order: str, seed: int,
                     labelled_elsewhere: Iterable[str] = (), disputed: Iterable[str] = ()) -> list[str]:
    """The session's order of paragraph ids: unlabelled, then `disputed`, then `labelled_elsewhere`
    (see the module docstring)."""
    if order not in ORDERS:
        raise StanceError(f"unknown --order {order!r} (expected one of {', '.join(ORDERS)})")
    if order == "document":
        return list(ids)
    rng = np.random.default_rng(seed)
    known = [i for i in ids if i in probabilities] if order in ("margin", "entropy") else []
    unknown = [i for i in ids if i not in probabilities] if known else list(ids)
    ranked = []
    if known:
        scores = uncertainty(np.stack([probabilities[i] for i in known]), order)
        ranked = [known[k] for k in np.argsort(-scores, kind="stable")]
    ranked += [unknown[k] for k in rng.permutation(len(unknown))]
    disputed, elsewhere = set(disputed), set(labelled_elsewhere)
    return sorted(ranked, key=lambda i: 1 if i in disputed else 2 if i in elsewhere else 0)  # stable


def session_queue(params: dict, records: list[dict], annotator: str, order: str,
                  guesses: Guesses) -> tuple[list[str], str]:
    """(the ids in session order, the order's name as the header shows it)."""
    from pipeline.labelling.agreement import adjudicator_name, unsettled_disagreements

    effective = order if guesses.probabilities or order in ("random", "document") else "random"
    table = label_table(params["paths"]["labels_dir"])
    elsewhere = {pid for who, labels in table.items() if who != annotator for pid in labels}
    disputed = unsettled_disagreements(table, adjudicator_name(params.get("labels", {}).get("priority")))
    ids = order_paragraphs([r["id"] for r in records], guesses.probabilities, effective, int(params["seed"]),
                           elsewhere, disputed)
    return ids, effective if effective == order else f"{effective} (no guesses for {order})"
