"""Saving and loading the trained classifier with its metadata, verified by sha256.

Inputs/outputs: `paths.model` (joblib) and `paths.model_meta` (JSON metadata with the joblib
file's sha256). Params: none (the paths are passed in).

The joblib file is the model of record: its sha256 is written to the metadata and checked
before every load, so a damaged or swapped file is refused before anything is unpickled.
For a linear classifier (the default logistic regression) the metadata also carries the
fitted coefficients (`linear`: float64, base64; with `train.features: text+embedding` also the
TF-IDF vocabulary and idf, and the weight of the document context if the model reads it) with a sha256 binding them to that joblib file's sha256, written only after they reproduce the estimator's `predict_proba` on probe
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
    """A fitted linear classifier as plain numpy: what `predict_proba` of the saved estimator does.

    `words` = (vocabulary, idf, embedding_weight) when the model reads the paragraph's words too
    (`train.features: text+embedding`): its features are then the TF-IDF of the words followed by
    the embedding times `embedding_weight`, as `pipeline.model.features` builds them with sklearn, and,
    with a `context_weight`, the document context times `context_weight`.
    """

    def __init__(self, kind: str, classes, coef: np.ndarray, intercept: np.ndarray, words=None,
                 context_weight: float | None = None):
        if kind not in LINEAR_KINDS:
            raise ValueError(f"unknown linear kind {kind!r}")
        self.kind = kind
        self.classes_ = np.asarray(classes)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.words = words
        self.context_weight = context_weight
        self.n_features_in_ = self.coef_.shape[1]

    def decision_function(self, texts, X, context=None) -> np.ndarray:
        """The linear scores of each paragraph (its text, embedding and, for a model that reads it,
        document context). The word part is summed over each paragraph's words alone (the TF-IDF
        row is sparse), never as a dense row as wide as the vocabulary."""
        X = np.asarray(X, dtype=np.float64)
        if self.words is None:
            return X @ self.coef_.T + self.intercept_
        from pipeline.model.features import tfidf_entries

        vocabulary, idf, weight = self.words
        width = len(idf)
        expected = width + X.shape[1] * (1 if self.context_weight is None else 2)
        if expected != self.n_features_in_:
            raise ValueError(f"embeddings of width {X.shape[1]} do not fit this model ({self.n_features_in_} features, "
                             f"{width} of them words)")
        scores = weight * X @ self.coef_[:, width:width + X.shape[1]].T + self.intercept_
        rows, columns, values = tfidf_entries(list(texts), vocabulary, idf)
        for k, coef in enumerate(self.coef_[:, :width]):
            scores[:, k] += np.bincount(rows, weights=values * coef[columns], minlength=len(X))
        if self.context_weight is not None:
            if context is None:
                raise ValueError("this model reads the document context: pass the context of each paragraph")
            scores += self.context_weight * np.asarray(context, dtype=np.float64) @ self.coef_[:, width + X.shape[1]:].T
        return scores

    def probabilities(self, texts, X, context=None) -> np.ndarray:
        """Class probabilities (columns in `classes_` order) from paragraph texts, embeddings and
        (for a model that reads it) document context."""
        scores = self.decision_function(texts, X, context)
        if self.kind == "softmax":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            return scores / scores.sum(axis=1, keepdims=True)
        positive = 1.0 / (1.0 + np.exp(-scores))
        if self.kind == "logistic":
            return np.hstack([1.0 - positive, positive])
        return positive / positive.sum(axis=1, keepdims=True)

    def predict_proba(self, inputs) -> np.ndarray:
        """Like the estimator: `inputs` is a `pipeline.model.features.model_inputs` table (or, for an
        embedding-only model, a plain embedding matrix)."""
        from pipeline.model.features import context_part, embedding_part

        texts = inputs["text"].tolist() if hasattr(inputs, "columns") else [""] * len(inputs)
        if self.words is not None and not hasattr(inputs, "columns"):
            raise ValueError("this model reads paragraph texts: pass a model_inputs table")
        return self.probabilities(texts, embedding_part(inputs), context_part(inputs))

    def predict(self, inputs) -> np.ndarray:
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii")


def _decode(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f8").reshape(shape)


def _linear_digest(payload: dict, model_sha256: str) -> str:
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256((model_sha256 + json.dumps(body, sort_keys=True)).encode()).hexdigest()


def _feature_parts(estimator):
    """(classifier, words, context_weight) of a `pipeline.model.train.build_classifier` Pipeline (or a
    bare linear classifier); words = (vocabulary, idf, embedding_weight) or None; context_weight a
    float or None; None if not of that shape."""
    steps = getattr(estimator, "named_steps", None)
    if steps is None:
        return estimator, None, None
    if set(steps) != {"features", "classifier"}:
        return None
    step = steps["features"]
    if type(step).__name__ == "FunctionTransformer":
        from pipeline.model.features import embedding_part

        return (steps["classifier"], None, None) if step.func is embedding_part else None
    transformers = getattr(step, "transformers_", None)
    if type(step).__name__ != "ColumnTransformer" or not transformers or transformers[0][0] != "words":
        return None
    names = [name for name, part, _ in transformers if not (name == "remainder" and part == "drop")]
    if names not in (["words", "embedding"], ["words", "embedding", "context"]):
        return None
    words = transformers[0][1]
    weights = step.transformer_weights or {}
    if weights.get("words", 1.0) != 1.0 or not hasattr(words, "idf_"):
        return None
    context_weight = float(weights.get("context", 1.0)) if "context" in names else None
    return steps["classifier"], (dict(words.vocabulary_), np.asarray(words.idf_, dtype=np.float64),
                                 float(weights.get("embedding", 1.0))), context_weight


def _probe(words, width: int, seed: int):
    """Probe texts (vocabulary terms, repeated and mixed), embeddings and contexts for the verification."""
    rng = np.random.default_rng(seed)
    terms = sorted(words[0]) if words else []
    texts = [" ".join(rng.choice(terms, size=int(rng.integers(1, 40)))) if terms else "" for _ in range(64)]
    texts[0] = ""  # a paragraph with no known word
    X = rng.normal(size=(64, width)) / np.sqrt(max(width, 1))
    context = rng.normal(size=(64, width)) / np.sqrt(max(width, 1))
    return texts, X, context


def linear_payload(estimator, model_sha256: str, seed: int = 0, width: int | None = None) -> dict | None:
    """The estimator's coefficients (and TF-IDF vocabulary) for metadata, or None when it is not a
    linear classifier whose probabilities the numpy form reproduces (to 1e-9 on probe inputs)."""
    parts = _feature_parts(estimator)
    if parts is None:
        return None
    classifier, words, context_weight = parts
    coef, intercept = getattr(classifier, "coef_", None), getattr(classifier, "intercept_", None)
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
    width = coef.shape[1] - (len(words[1]) if words else 0)
    if context_weight is not None:
        width //= 2  # the embedding, then a context of the same width
    texts, X, context = _probe(words, width, seed)
    try:
        if words is None and getattr(estimator, "named_steps", None) is None:
            expected = estimator.predict_proba(X)
        else:
            from pipeline.model.features import model_inputs

            expected = estimator.predict_proba(model_inputs(texts, X, context if context_weight is not None else None))
        expected = np.asarray(expected, dtype=np.float64)
    except Exception:  # noqa: BLE001 - anything the estimator cannot do rules the shortcut out
        return None
    for kind in LINEAR_KINDS:
        if (kind == "logistic") != (coef.shape[0] == 1):
            continue
        model = LinearModel(kind, classes, coef, intercept, words, context_weight)
        got = model.probabilities(texts, X, context)
        if got.shape == expected.shape and np.allclose(got, expected, rtol=0, atol=1e-9):
            payload = {"format": LINEAR_FORMAT, "kind": kind, "classes": classes, "shape": list(coef.shape),
                       "coef": _encode(coef), "intercept": _encode(intercept)}
            if words is not None:
                vocabulary, idf, weight = words
                payload["words"] = {"terms": sorted(vocabulary, key=vocabulary.get), "idf": _encode(idf),
                                    "embedding_weight": weight}
                if context_weight is not None:
                    payload["words"]["context_weight"] = context_weight
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
        words, context_weight = None, None
        if payload.get("words") is not None:
            terms = payload["words"]["terms"]
            words = ({term: i for i, term in enumerate(terms)}, _decode(payload["words"]["idf"], (len(terms),)),
                     float(payload["words"]["embedding_weight"]))
            if payload["words"].get("context_weight") is not None:
                context_weight = float(payload["words"]["context_weight"])
        return LinearModel(payload["kind"], payload["classes"], _decode(payload["coef"], shape),
                           _decode(payload["intercept"], (shape[0],)), words, context_weight)
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
