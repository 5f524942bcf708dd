"""evaluate stage: honest out-of-fold metrics from cross-validation grouped by document.

Inputs:  `paths.embeddings`, `paths.labels_dir`.
Outputs: `paths.metrics` (f_avg, macro-F1, accuracy, per-class P/R/F1, confusion matrix) and
         `<reports_dir>/predictions.csv` (the out-of-fold prediction of every labelled paragraph).
Params:  `seed`, `train.*` (the same model selection as the train stage), `labels.priority`.

Every number comes from nested cross-validation: an outer StratifiedGroupKFold holds out whole
documents; on each outer training part the train stage's grid search (itself grouped) picks the
hyper-parameters; the held-out documents are then predicted. Nothing is scored on data it was
trained or tuned on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.files import atomic_path, write_json_atomic
from pipeline.train import f_avg, fit_classifier, grouped_folds, training_set


def oof_probabilities(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int,
                      labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order) from nested grouped CV."""
    n_splits = int(train_params.get("cv_folds", 5))
    probabilities = np.zeros((len(y), len(labels)))
    for train_idx, test_idx in grouped_folds(y, groups, n_splits, seed):
        inner = dict(train_params)
        inner["cv_folds"] = min(n_splits, len(set(groups[train_idx].tolist())))
        try:
            estimator, _ = fit_classifier(X[train_idx], y[train_idx], groups[train_idx], inner, seed)
        except StanceError as exc:
            raise StanceError(f"inside an outer fold: {exc}") from None
        fold_probs = estimator.predict_proba(X[test_idx])
        for j, label in enumerate(estimator.classes_):
            probabilities[test_idx, labels.index(label)] = fold_probs[:, j]
    return probabilities


def compute_metrics(y_true, y_pred, labels: tuple[str, ...] = LABELS) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=list(labels))
    return {
        "f_avg": round(f_avg(y_true, y_pred), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "paragraphs": int(len(y_true)),
        "per_class": {label: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                              "f1": round(float(f), 4), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support)},
        # rows: true label, columns: predicted label
        "confusion_matrix": {t: {p: int(matrix[i, j]) for j, p in enumerate(labels)} for i, t in enumerate(labels)},
    }


def write_predictions(path: str | Path, rows: list[dict], y: np.ndarray, probabilities: np.ndarray,
                      labels: tuple[str, ...] = LABELS) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "doc", "kind", "label", "predicted", *[f"p_{label}" for label in labels]])
            for row, label, probs in zip(rows, y, probabilities):
                writer.writerow([row["id"], row["doc"], row.get("kind", ""), label, labels[int(np.argmax(probs))],
                                 *[f"{p:.6f}" for p in probs]])


def run(params: dict) -> dict:
    rows, X, y, groups, _ = training_set(params)
    seed = int(params["seed"])
    probabilities = oof_probabilities(X, y, groups, params["train"], seed)
    predicted = np.array(LABELS)[probabilities.argmax(axis=1)]
    metrics = compute_metrics(y, predicted)
    paths = params["paths"]
    write_predictions(Path(paths["reports_dir"]) / "predictions.csv", rows, y, probabilities)
    write_json_atomic(paths["metrics"], metrics)
    return metrics
