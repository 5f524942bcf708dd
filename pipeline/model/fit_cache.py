"""Fitted models kept by what they were fitted on, so that a stage refits only what changed.

Inputs:  an unfitted sklearn Pipeline and its candidate parameters, the rows of a training part
         (their content and labels), the library versions and the numerics in use.
Outputs: a key naming exactly that fit, and the fitted feature step and classifiers stored under
         it in `paths.fit_cache` (git-ignored, like the embedding cache).
Params:  `paths.fit_cache` (the train and evaluate stages pass it; unset = no disk cache).

A key is the sha256 of everything the fit depends on: the pipeline and its parameters, the
candidates, every training row's content (text and embedding columns) and label in order, the
versions of scikit-learn, numpy and scipy, the source of `pipeline.model.features` (the analyzer
and the column selectors the pipeline calls) and the numerics in use (`pipeline.numerics`). A fit
is deterministic given those, and a model loaded from its pickle predicts the same bits as the one
that was stored, so what a stage computes from a cached fit is what it would compute from a fresh
one: the tests hold a cached run's outputs to an uncached run's, byte for byte.

Who shares what: the evaluate stage's nested cross-validation fits each pair of outer folds' rows
once (outer fold i, inner fold j and outer fold j, inner fold i train on the same rows), and its
outer fits are the train stage's cross-validation fits, which ran just before. The cache keeps the
most recently used entries up to `LIMIT_BYTES`; a damaged entry is refitted and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

LIMIT_BYTES = 512 * 1024 * 1024  # about 25 evaluate runs of the shipped model's fits
ENTRY_LIMIT_BYTES = 16 * 1024 * 1024  # larger fits (a k-NN keeps its training rows) are not worth the disk


@functools.lru_cache(maxsize=1)
def code_signature() -> str:
    """What a fit depends on besides its inputs: library versions, the feature code, the numerics
    (fixed for a process: the numerics are pinned before numpy loads)."""
    import scipy
    import sklearn

    from pipeline import numerics
    from pipeline.model import features

    source = Path(features.__file__).read_bytes()
    return "\n".join([f"sklearn {sklearn.__version__}", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
                      "features " + hashlib.sha256(source).hexdigest(), numerics.signature()])


def pipeline_signature(pipeline, candidates: list[dict]) -> str:
    """The unfitted pipeline, its candidates and `code_signature()`, as one digest."""
    import joblib

    return hashlib.sha256(f"{joblib.hash(pipeline)}\n{candidates!r}\n{code_signature()}".encode()).hexdigest()


def row_digests(X, y: np.ndarray) -> np.ndarray:
    """One 16-byte digest per row of a model input (table, matrix or texts) and its label."""
    from scipy import sparse

    layout = hashlib.sha256()  # the fastest here: processors have SHA instructions
    if sparse.issparse(X):
        X = X.tocsr()
        layout.update(f"sparse {X.shape[1]} {X.dtype}".encode())
        rows = [(X.data[X.indptr[i]:X.indptr[i + 1]].tobytes(), X.indices[X.indptr[i]:X.indptr[i + 1]].tobytes())
                for i in range(X.shape[0])]
    elif hasattr(X, "columns"):
        numeric = [name for name, dtype in X.dtypes.items() if np.issubdtype(dtype, np.number)]
        numeric_names = set(numeric)
        others = [name for name in X.columns if name not in numeric_names]
        layout.update(repr((list(map(str, X.columns)), numeric)).encode())
        numbers = np.ascontiguousarray(X[numeric].to_numpy(dtype=np.float64)).view(np.uint8).reshape(len(X), -1)
        texts = [X[name].astype(str).tolist() for name in others]
        rows = [(memoryview(numbers[i]), "\x1f".join(column[i] for column in texts).encode()) for i in range(len(X))]
    else:
        array = np.asarray(X)
        layout.update(f"array {array.dtype} {array.shape[1:]}".encode())
        if array.dtype == object or array.ndim == 1:
            rows = [(repr(row).encode(), b"") for row in array.tolist()]
        else:
            array = np.ascontiguousarray(array).reshape(len(array), -1).view(np.uint8)
            rows = [(memoryview(row), b"") for row in array]
    digests = np.zeros((len(rows), 16), dtype=np.uint8)
    for i, ((first, second), label) in enumerate(zip(rows, np.asarray(y).tolist())):
        digest = layout.copy()
        digest.update(first)
        digest.update(b"\x00" + second + b"\x00" + str(label).encode())
        digests[i] = np.frombuffer(digest.digest()[:16], dtype=np.uint8)
    return digests


def fit_key(signature: str, digests: np.ndarray) -> str:
    """The key of fitting the pipeline behind `signature` on the rows with these digests, in order."""
    return hashlib.sha256(signature.encode() + np.ascontiguousarray(digests).tobytes()).hexdigest()


class FitCache:
    """A directory of pickled fits named by `fit_key`; None as the directory keeps nothing."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None

    def path(self, key: str) -> str | None:
        return str(self.directory / key[:2] / f"{key}.pkl") if self.directory else None

    def prune(self, limit: int = LIMIT_BYTES) -> int:
        """Delete the least recently used entries beyond `limit` bytes; how many went."""
        if not self.directory or not self.directory.is_dir():
            return 0
        entries = []
        for path in self.directory.glob("*/*.pkl"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        entries.sort(reverse=True)
        total, removed = 0, 0
        for _, size, path in entries:
            total += size
            if total > limit:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def load_fit(path: str | None):
    """The fit stored at `path`, or None (absent, or damaged: then it is deleted to be refitted)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as handle:
            fitted = pickle.load(handle)
        os.utime(path)  # recently used: kept longest by `FitCache.prune`
        return fitted
    except Exception:  # a truncated or foreign file is only a missed cache entry
        Path(path).unlink(missing_ok=True)
        return None


def store_fit(path: str | None, fitted) -> None:
    """Store `fitted` at `path` atomically (several workers may write the same key: the last wins)."""
    if path is None:
        return
    from pipeline.files import atomic_path

    data = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > ENTRY_LIMIT_BYTES:
        return
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError:  # a read-only or full disk costs speed, never the stage
        pass
