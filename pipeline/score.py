"""score: label the paragraphs of new documents with the trained model.

Inputs:  documents (see `pipeline.documents`), `paths.model`, `paths.model_meta`.
Outputs: per paragraph a label, the three probabilities and an `uncertain` flag; per document a
         verdict, the share of paragraphs per label and the most decisive paragraphs.
Params:  `embedding.*`, `score.uncertain_below`, `score.document_min_share`.

Document verdict rule: each paragraph weighs by its length in words; the verdict is favor or
against, whichever has the larger length-weighted probability mass, provided that mass is at
least `score.document_min_share` of the document; otherwise the verdict is none. The decisive
paragraphs are the (up to) three with the largest length-weighted probability of the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline import LABELS
from pipeline.documents import Document
from pipeline.embed import Embedder, EmbeddingCache, embed_texts
from pipeline.errors import StanceError

CHUNK_PARAGRAPHS = 1024  # paragraphs per encoder call across documents


@dataclass
class Scorer:
    estimator: object
    embedder: Embedder
    meta: dict
    uncertain_below: float = 0.5
    document_min_share: float = 0.25
    cache: EmbeddingCache | None = None

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Probabilities in LABELS order for each text."""
        X = embed_texts(texts, self.embedder, self.cache)
        raw = self.estimator.predict_proba(X)
        out = np.zeros((len(texts), len(LABELS)))
        for j, label in enumerate(self.estimator.classes_):
            out[:, LABELS.index(label)] = raw[:, j]
        return out


def check_embedding_identity(meta: dict, identity: str, meta_path: str = "models/model.json") -> None:
    trained = meta.get("embedding_model", "")
    if trained.split("/")[0] != identity.split("/")[0]:
        raise StanceError(f"{meta_path}: model was trained on embeddings from {trained!r} but the configured "
                          f"embedding model is {identity!r}; run `dvc repro` to retrain")


def load_scorer(params: dict, embedder: Embedder | None = None, **overrides) -> Scorer:
    """The trained model and a matching embedder; refuses an embedding-model mismatch."""
    import warnings

    from pipeline.embed import make_embedder
    from pipeline.model_store import load_model

    paths = params["paths"]
    estimator, meta = load_model(paths["model"], paths["model_meta"])
    embedder = embedder or make_embedder(params, **overrides)
    check_embedding_identity(meta, embedder.identity, paths["model_meta"])
    trained_precision = meta.get("embedding_model", "").partition("/")[2]
    current_precision = embedder.identity.partition("/")[2]
    if trained_precision and current_precision and trained_precision != current_precision:
        warnings.warn(f"model trained on {trained_precision} embeddings, scoring with {current_precision}", stacklevel=2)
    settings = params.get("score", {})
    return Scorer(estimator, embedder, meta, float(settings.get("uncertain_below", 0.5)),
                  float(settings.get("document_min_share", 0.25)))


def document_verdict(paragraphs: list[str], probabilities: np.ndarray, min_share: float) -> dict:
    weights = np.array([max(len(p.split()), 1) for p in paragraphs], dtype=float)
    mass = weights @ probabilities / weights.sum()
    stance_mass = {label: float(mass[LABELS.index(label)]) for label in ("favor", "against")}
    leader = max(stance_mass, key=stance_mass.get)
    verdict = leader if stance_mass[leader] >= min_share else "none"
    strength = weights * probabilities[:, LABELS.index(verdict)]
    decisive = [int(i) for i in np.argsort(-strength, kind="stable")[:3]]
    labels = [LABELS[i] for i in probabilities.argmax(axis=1)]
    return {
        "verdict": verdict,
        "mass": {label: round(float(m), 4) for label, m in zip(LABELS, mass)},
        "shares": {label: round(labels.count(label) / len(labels), 4) for label in LABELS},
        "decisive": decisive,
    }


def score_documents(documents: list[Document], scorer: Scorer, progress=None) -> list[dict]:
    """Results for each document; paragraphs of all documents go through the encoder in chunks."""
    flat = [(d, i, text) for d, doc in enumerate(documents) for i, text in enumerate(doc.paragraphs)]
    if not flat:
        raise StanceError("no paragraphs to score")
    probabilities = np.zeros((len(flat), len(LABELS)))
    for start in range(0, len(flat), CHUNK_PARAGRAPHS):
        chunk = flat[start:start + CHUNK_PARAGRAPHS]
        probabilities[start:start + len(chunk)] = scorer.probabilities([text for _, _, text in chunk])
        if progress is not None:
            progress(len(chunk))
    results, offset = [], 0
    for doc in documents:
        probs = probabilities[offset:offset + len(doc.paragraphs)]
        offset += len(doc.paragraphs)
        paragraphs = []
        for i, (text, pid, p) in enumerate(zip(doc.paragraphs, doc.ids, probs)):
            record = {"index": i, "label": LABELS[int(p.argmax())],
                      "probabilities": {label: round(float(v), 4) for label, v in zip(LABELS, p)},
                      "uncertain": bool(p.max() < scorer.uncertain_below), "text": text}
            if pid is not None:
                record = {"id": pid, **record}
            paragraphs.append(record)
        results.append({"document": doc.name, **document_verdict(doc.paragraphs, probs, scorer.document_min_share),
                        "paragraphs": paragraphs})
    return results
