"""train stage: embeddings + labels -> classifier, selected by grouped cross-validation.

Inputs:  `paths.embeddings` (from embed), `paths.labels_dir`, `paths.paragraphs` (ids for validation).
Outputs: `paths.model` (joblib) and `paths.model_meta` (JSON: labels, embedding model, params,
         training-data hash, CV metrics, library versions, sha256 of the model file).
Params:  `seed`, `train.*`, `labels.priority`.

Hyper-parameters in `train.grid` are chosen by cross-validation grouped by source document
(StratifiedGroupKFold: paragraphs of one article never sit on both sides of a split), scored
with `train.selection_metric`; the winner is refitted on all labelled paragraphs.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError

CLASSIFIERS = {
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "svc": "sklearn.svm.SVC",
    "knn": "sklearn.neighbors.KNeighborsClassifier",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "mlp": "sklearn.neural_network.MLPClassifier",
}


def f_avg(y_true, y_pred) -> float:
    """SemEval-2016 stance score: mean of F1(favor) and F1(against)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=["favor", "against"], average="macro", zero_division=0))


def scorer(metric: str):
    from sklearn.metrics import make_scorer

    if metric == "f_avg":
        return make_scorer(f_avg)
    return metric  # any sklearn scorer name, e.g. "f1_macro", "accuracy"


def build_classifier(name: str, params: dict | None, seed: int):
    """An unfitted sklearn estimator by registry name (or dotted path) with its params and seed."""
    target = CLASSIFIERS.get(name, name)
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise StanceError(f"params.yaml: unknown classifier {name!r} (known: {', '.join(CLASSIFIERS)})") from None
    params = dict(params or {})
    if "random_state" in cls().get_params():
        params.setdefault("random_state", seed)
    if name == "svc":
        params.setdefault("probability", True)
    try:
        return cls(**params)
    except TypeError as exc:
        raise StanceError(f"params.yaml: bad parameters for {name}: {exc}") from None


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that keep each document on one side; clear errors when impossible."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise StanceError(f"grouped cross-validation needs labelled paragraphs from at least 2 documents, got {n_groups}")
    if n_splits < 2:
        raise StanceError(f"params.yaml: train.cv_folds must be at least 2, got {n_splits}")
    if n_groups < n_splits:
        raise StanceError(f"only {n_groups} labelled documents for {n_splits} folds: lower train.cv_folds in params.yaml")
    counts = Counter(y.tolist())
    for label, count in sorted(counts.items()):
        docs = len(set(groups[y == label].tolist()))
        if count < n_splits or docs < 2:
            raise StanceError(f"label {label!r} has {count} paragraphs in {docs} documents: too few for "
                              f"{n_splits}-fold grouped cross-validation (label more, or lower train.cv_folds)")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def fit_classifier(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int):
    """Grid search with grouped CV, refit on all rows. Returns (estimator, cv summary).

    With `train.calibration` sigmoid or isotonic, the winner is wrapped in CalibratedClassifierCV
    whose calibration folds are the same document-grouped folds (default none: no recalibration).
    """
    from sklearn.model_selection import GridSearchCV

    calibration = str(train_params.get("calibration") or "none").lower()
    if calibration not in ("none", "sigmoid", "isotonic"):
        raise StanceError(f"params.yaml: unknown train.calibration {calibration!r} "
                          "(expected none, sigmoid or isotonic)")
    estimator = build_classifier(train_params.get("classifier", "logistic_regression"),
                                 train_params.get("classifier_params"), seed)
    folds = grouped_folds(y, groups, int(train_params.get("cv_folds", 5)), seed)
    grid = {k: list(v) for k, v in (train_params.get("grid") or {}).items()}
    metric = train_params.get("selection_metric", "f_avg")
    search = GridSearchCV(estimator, grid or {}, scoring=scorer(metric), cv=folds, refit=True, n_jobs=1,
                          error_score="raise")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # many small fits: BLAS threads only contend (10x slower on a busy CPU)
        search.fit(X, y)
    summary = {
        "selection_metric": metric,
        "best_params": {k: _plain(v) for k, v in search.best_params_.items()},
        "best_score": round(float(search.best_score_), 4),
        "folds": len(folds),
        "candidates": [{"params": {k: _plain(v) for k, v in p.items()}, "mean_score": round(float(s), 4)}
                       for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])],
        "calibration": calibration,
    }
    if calibration == "none":
        return search.best_estimator_, summary
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV

    calibrated = CalibratedClassifierCV(clone(search.best_estimator_), method=calibration, cv=folds)
    with threadpool_limits(limits=1):
        calibrated.fit(X, y)
    return calibrated, summary


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def training_set(params: dict):
    """(rows, X, y, groups, embedding identity) of the labelled paragraphs."""
    from pipeline.embed import load_embeddings
    from pipeline.labels import load_labels, resolve_labels

    rows, matrix, identity = load_embeddings(params["paths"]["embeddings"])
    ids = [r["id"] for r in rows]
    labels = resolve_labels(load_labels(params["paths"]["labels_dir"], set(ids)),
                            params.get("labels", {}).get("priority"))
    keep = [i for i, pid in enumerate(ids) if pid in labels]
    if not keep:
        raise StanceError(f"{params['paths']['labels_dir']}: no labelled paragraphs in the corpus")
    rows = [rows[i] for i in keep]
    y = np.array([labels[r["id"]] for r in rows])
    groups = np.array([r["doc"] for r in rows])
    return rows, matrix[keep], y, groups, identity


def data_hash(rows: list[dict], y: np.ndarray, identity: str) -> str:
    digest = hashlib.sha256(identity.encode())
    for row, label in sorted(zip((r["id"] for r in rows), y.tolist())):
        digest.update(f"{row}\t{label}\n".encode())
    return digest.hexdigest()


def run(params: dict) -> dict:
    from pipeline.model_store import save_model

    rows, X, y, groups, identity = training_set(params)
    seed = int(params["seed"])
    estimator, summary = fit_classifier(X, y, groups, params["train"], seed)
    meta = {
        "labels": [label for label in LABELS if label in set(y.tolist())],
        "embedding_model": identity,
        "embedding_params": params.get("embedding", {}),
        "train_params": params["train"],
        "seed": seed,
        "training_data": {"sha256": data_hash(rows, y, identity), "paragraphs": len(y),
                          "documents": len(set(groups.tolist())),
                          "label_counts": dict(sorted(Counter(y.tolist()).items()))},
        "cv": summary,
    }
    # The labelled paragraphs with their embeddings: evidence for `stance score --explain` and the
    # calibration of out-of-domain detection (see pipeline.reference). Written first, so the model
    # metadata can record its sha256.
    from pipeline.reference import build_reference, reference_path, save_reference

    meta["reference"] = save_reference(build_reference(rows, X, y, identity), reference_path(params["paths"]))
    save_model(estimator, meta, params["paths"]["model"], params["paths"]["model_meta"])
    return meta
