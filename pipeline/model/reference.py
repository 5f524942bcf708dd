"""The reference set: the labelled training paragraphs and their embeddings, the evidence behind
`stance score --explain` and the yardstick for out-of-domain paragraphs.

Inputs:  the train stage's labelled rows (id, doc, text), their embeddings, labels and the
         embedding model identity.
Outputs: `reference.npz` beside the model (`paths.reference`, default: the directory of
         `paths.model`), written atomically by the train stage; its sha256 goes into the model
         metadata (`reference.sha256`) and is checked before every load. The file holds plain
         arrays (loaded with `allow_pickle=False`):
           ids, docs, labels        one entry per labelled training paragraph
           text_bytes, text_ends    the paragraph texts, UTF-8, concatenated (ends = offsets)
           vectors                  the embeddings, L2-normalised, float32
           held_out_similarity      per paragraph, the cosine similarity of its nearest neighbour in
                                    *another* document: how close a paragraph of an unseen document
                                    typically comes to the training set
           ood_percentile, ood_threshold, identity
Params:  `score.out_of_domain_percentile`, `score.explain_neighbours` (read at score time).

Out of domain: a scored paragraph is out of domain when its nearest reference paragraph is less
similar than the `score.out_of_domain_percentile`-th percentile of `held_out_similarity` (the
threshold stored at training time used DEFAULT_PERCENTILE; another percentile is recomputed from
the stored calibration sample). With the default 2, about 2% of genuine op-ed paragraphs from
unseen documents fall below the line (mostly one-line generalities); paragraphs about football,
cooking or gadgets fall far below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import StanceError
from pipeline.files import atomic_path, sha256_file

DEFAULT_PERCENTILE = 2.0
FILE_NAME = "reference.npz"
_CHUNK = 2048  # rows per similarity block (keeps memory flat for large training sets)


def reference_path(paths: dict) -> Path:
    """Where the reference set lives: `paths.reference`, else beside the model file."""
    if paths.get("reference"):
        return Path(paths["reference"])
    return Path(paths["model"]).parent / FILE_NAME


def normalise_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def held_out_similarity(vectors: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """For each row, the cosine similarity of its nearest neighbour from a different document
    (rows of a corpus with a single document fall back to their nearest other row; a lone row gets -1)."""
    vectors = normalise_rows(vectors)
    docs = np.asarray(docs)
    single_doc = len(set(docs.tolist())) < 2
    out = np.full(len(vectors), -1.0, dtype=np.float32)
    for start in range(0, len(vectors), _CHUNK):
        block = vectors[start:start + _CHUNK] @ vectors.T
        rows = np.arange(start, start + len(block))
        if single_doc:
            block[np.arange(len(block)), rows] = -np.inf
        else:
            block[docs[rows][:, None] == docs[None, :]] = -np.inf
        best = block.max(axis=1) if block.shape[1] else np.full(len(block), -np.inf)
        out[start:start + len(block)] = np.where(np.isfinite(best), best, -1.0)
    return out


@dataclass
class Reference:
    ids: list[str]
    docs: list[str]
    labels: list[str]
    texts: list[str]
    vectors: np.ndarray                 # (n, dim), L2-normalised
    held_out_similarity: np.ndarray     # (n,)
    identity: str
    ood_percentile: float = DEFAULT_PERCENTILE
    ood_threshold: float = -1.0

    def __len__(self) -> int:
        return len(self.ids)

    def threshold(self, percentile: float | None = None) -> float:
        """The out-of-domain similarity threshold at `percentile` (None: the stored one)."""
        if percentile is None or float(percentile) == self.ood_percentile:
            return self.ood_threshold
        return calibrate(self.held_out_similarity, float(percentile))

    def similarities(self, X: np.ndarray) -> np.ndarray:
        """Cosine similarity of each row of X to every reference paragraph, (len(X), len(self))."""
        return normalise_rows(X) @ self.vectors.T

    def nearest(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities) of the k most similar reference paragraphs per row, best first."""
        sims = self.similarities(X)
        k = max(0, min(k, sims.shape[1]))
        if k == 0:
            return np.zeros((len(sims), 0), dtype=int), np.zeros((len(sims), 0), dtype=np.float32)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(sims, top, axis=1)


def calibrate(held_out: np.ndarray, percentile: float) -> float:
    if not 0 <= percentile <= 100:
        raise StanceError(f"params.yaml: score.out_of_domain_percentile must be within 0-100, got {percentile}")
    if len(held_out) == 0:
        return -1.0
    return float(np.percentile(held_out, percentile))


def build_reference(rows: list[dict], X: np.ndarray, y, identity: str,
                    percentile: float = DEFAULT_PERCENTILE) -> Reference:
    """The reference set of a training run (rows need id, doc and text)."""
    if len(rows) != len(X) or len(rows) != len(y):
        raise ValueError("rows, embeddings and labels differ in length")
    docs = [str(r["doc"]) for r in rows]
    vectors = normalise_rows(X)
    held_out = held_out_similarity(vectors, np.array(docs))
    return Reference(ids=[str(r["id"]) for r in rows], docs=docs, labels=[str(label) for label in y],
                     texts=[str(r.get("text", "")) for r in rows], vectors=vectors, held_out_similarity=held_out,
                     identity=identity, ood_percentile=float(percentile),
                     ood_threshold=calibrate(held_out, float(percentile)))


def save_reference(reference: Reference, path: str | Path) -> dict:
    """Write the reference set atomically; returns its summary for the model metadata."""
    encoded = [t.encode("utf-8") for t in reference.texts]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, ids=np.array(reference.ids, dtype=str), docs=np.array(reference.docs, dtype=str),
                labels=np.array(reference.labels, dtype=str),
                text_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
                text_ends=np.cumsum([len(e) for e in encoded], dtype=np.int64),
                vectors=reference.vectors.astype(np.float32), held_out_similarity=reference.held_out_similarity,
                identity=np.array(reference.identity), ood_percentile=np.array(reference.ood_percentile),
                ood_threshold=np.array(reference.ood_threshold))
        digest = sha256_file(tmp)
    return {"file": Path(path).name, "sha256": digest, "paragraphs": len(reference),
            "out_of_domain": {"percentile": reference.ood_percentile,
                              "threshold": round(reference.ood_threshold, 4)}}


def load_reference(path: str | Path, sha256: str | None = None) -> Reference:
    """The reference set at `path`, after checking it against the sha256 in the model metadata."""
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: no reference set (the model predates it; run `dvc repro` to retrain)")
    if sha256 and sha256_file(path) != sha256:
        raise StanceError(f"{path}: does not belong to the trained model (sha256 mismatch); run `dvc repro`")
    try:
        with np.load(path, allow_pickle=False) as data:
            ends = data["text_ends"].tolist()
            blob = data["text_bytes"].tobytes()
            starts = [0, *ends[:-1]]
            return Reference(
                ids=data["ids"].tolist(), docs=data["docs"].tolist(), labels=data["labels"].tolist(),
                texts=[blob[s:e].decode("utf-8") for s, e in zip(starts, ends)],
                vectors=data["vectors"].astype(np.float32), held_out_similarity=data["held_out_similarity"],
                identity=str(data["identity"]), ood_percentile=float(data["ood_percentile"]),
                ood_threshold=float(data["ood_threshold"]))
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise StanceError(f"{path}: unreadable reference set ({type(exc).__name__}); run `dvc repro`") from None
