"""Saving and loading the trained classifier with its metadata, verified by sha256.

Inputs/outputs: `paths.model` (joblib) and `paths.model_meta` (JSON metadata with the joblib
file's sha256). Params: none (the paths are passed in).

The joblib file is the model of record: its sha256 is written to the metadata and checked
before every load, so a damaged or swapped file is refused before anything is unpickled.
For a linear classifier (the default logistic regression) the metadata also carries the
fitted coefficients (`linear`: float64, base64) with a sha256 binding them to that joblib
file's sha256, written only after they reproduce the estimator's `predict_proba` on probe
inputs. Loading then needs neither joblib nor scikit-learn (about 2 s of imports), which is
what keeps a cold `stance score` under a second; the joblib file's sha256 is still verified.
`load_model(..., sklearn=True)` always returns the unpickled estimator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from pipeline.errors import StanceError
from pipeline.files import atomic_path, sha256_file, write_json_atomic

VERSIONED = ("numpy", "scikit-learn", "joblib", "sentence-transformers", "torch", "transformers", "openvino",
             "tokenizers")
LINEAR_FORMAT = 1
LINEAR_KINDS = ("softmax", "ovr", "logistic")  # how decision values become probabilities


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


class LinearModel:
    """A fitted linear classifier as plain numpy: what `predict_proba` of the saved estimator does."""

    def __init__(self, kind: str, classes, coef: np.ndarray, intercept: np.ndarray):
        if kind not in LINEAR_KINDS:
            raise ValueError(f"unknown linear kind {kind!r}")
        self.kind = kind
        self.classes_ = np.asarray(classes)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.n_features_in_ = self.coef_.shape[1]

    def decision_function(self, X) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        if self.kind == "softmax":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            return scores / scores.sum(axis=1, keepdims=True)
        positive = 1.0 / (1.0 + np.exp(-scores))
        if self.kind == "logistic":
            return np.hstack([1.0 - positive, positive])
        return positive / positive.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii")


def _decode(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f8").reshape(shape)


def _linear_digest(payload: dict, model_sha256: str) -> str:
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256((model_sha256 + json.dumps(body, sort_keys=True)).encode()).hexdigest()


def linear_payload(estimator, model_sha256: str, seed: int = 0) -> dict | None:
    """The estimator's coefficients for metadata, or None when it is not a plain linear classifier
    whose probabilities the numpy form reproduces (to 1e-9 on random probe inputs)."""
    coef, intercept = getattr(estimator, "coef_", None), getattr(estimator, "intercept_", None)
    classes = getattr(estimator, "classes_", None)
    if coef is None or intercept is None or classes is None or not hasattr(estimator, "predict_proba"):
        return None
    try:
        coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        intercept = np.broadcast_to(np.asarray(intercept, dtype=np.float64), (coef.shape[0],)).copy()
    except (TypeError, ValueError):
        return None
    classes = list(classes)
    if not all(isinstance(c, str) for c in classes) or coef.shape[0] not in (1, len(classes)):
        return None
    probe = np.random.default_rng(seed).normal(size=(64, coef.shape[1])) / np.sqrt(coef.shape[1])
    try:
        expected = np.asarray(estimator.predict_proba(probe), dtype=np.float64)
    except Exception:  # noqa: BLE001 - anything the estimator cannot do rules the shortcut out
        return None
    for kind in LINEAR_KINDS:
        if (kind == "logistic") != (coef.shape[0] == 1):
            continue
        model = LinearModel(kind, classes, coef, intercept)
        if model.predict_proba(probe).shape == expected.shape and np.allclose(model.predict_proba(probe), expected,
                                                                               rtol=0, atol=1e-9):
            payload = {"format": LINEAR_FORMAT, "kind": kind, "classes": classes, "shape": list(coef.shape),
                       "coef": _encode(coef), "intercept": _encode(intercept)}
            payload["sha256"] = _linear_digest(payload, model_sha256)
            return payload
    return None


def linear_model(meta: dict, meta_path: str | Path = "model.json") -> LinearModel | None:
    """The LinearModel in the metadata, verified against the joblib file's recorded sha256; None
    when the metadata has none. A payload that does not verify is an error, not a fallback."""
    payload = meta.get("linear")
    if payload is None:
        return None
    problem = f"{meta_path}: the linear coefficients do not match model_sha256; refusing to load (run `dvc repro` to retrain)"
    if not isinstance(payload, dict) or payload.get("format") != LINEAR_FORMAT:
        raise StanceError(problem)
    if payload.get("sha256") != _linear_digest(payload, meta["model_sha256"]):
        raise StanceError(problem)
    try:
        shape = tuple(int(n) for n in payload["shape"])
        return LinearModel(payload["kind"], payload["classes"], _decode(payload["coef"], shape),
                           _decode(payload["intercept"], (shape[0],)))
    except (KeyError, TypeError, ValueError):
        raise StanceError(problem) from None


def save_model(estimator, meta: dict, model_path: str | Path, meta_path: str | Path) -> dict:
    """Write the joblib model and its metadata JSON (with the model's sha256), each atomically."""
    import joblib

    with atomic_path(model_path) as tmp:
        joblib.dump(estimator, tmp)
        digest = sha256_file(tmp)
    meta = {**meta, "model_file": Path(model_path).name, "model_sha256": digest, "versions": library_versions()}
    meta.pop("linear", None)
    payload = linear_payload(estimator, digest)
    if payload is not None:
        meta["linear"] = payload
    write_json_atomic(meta_path, meta)
    return meta


def load_meta(meta_path: str | Path) -> dict:
    meta_path = Path(meta_path)
    if not meta_path.exists():
        raise StanceError(f"{meta_path}: no trained model (run `dvc repro` first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StanceError(f"{meta_path}: corrupt model metadata (run `dvc repro` to retrain)") from None
    if not isinstance(meta, dict) or "model_sha256" not in meta:
        raise StanceError(f"{meta_path}: model metadata without model_sha256 (run `dvc repro` to retrain)")
    return meta


def load_model(model_path: str | Path, meta_path: str | Path, sklearn: bool = False):
    """(estimator, metadata); the model file's sha256 is checked before anything is unpickled.

    The estimator is the verified numpy `LinearModel` when the metadata carries one (no sklearn
    import), else, or with `sklearn=True`, the unpickled joblib estimator.
    """
    model_path = Path(model_path)
    meta = load_meta(meta_path)
    if not model_path.exists():
        raise StanceError(f"{model_path}: no trained model (run `dvc repro` first)")
    actual = sha256_file(model_path)
    if actual != meta["model_sha256"]:
        raise StanceError(f"{model_path}: sha256 {actual[:12]}… does not match {meta_path} "
                          f"({meta['model_sha256'][:12]}…); refusing to load (run `dvc repro` to retrain)")
    if not sklearn:
        linear = linear_model(meta, meta_path)
        if linear is not None:
            return linear, meta
    import joblib

    return joblib.load(model_path), meta
