"""The evaluation's numbers from labels and probabilities: F1s, calibration, by kind and genre, mistakes.

Inputs:  true labels, out-of-fold probabilities (columns in LABELS order) or predicted labels, and
         the labelled rows (id, doc, kind, text) where a number is broken down by document.
Outputs: plain dicts and lists (JSON-ready): f_avg, macro-F1, accuracy, per-class precision /
         recall / F1, the confusion matrix, average precisions, the reliability table, the expected
         calibration error (and the ECE a calibrated model would show by chance), metrics by kind
         and by genre, and the most confident mistakes. No params; nothing written.
"""

from __future__ import annotations

import numpy as np

from pipeline import LABELS
from pipeline.model.train import f_avg


def predicted_labels(probabilities: np.ndarray, labels: tuple[str, ...] = LABELS) -> np.ndarray:
    return np.array(labels)[probabilities.argmax(axis=1)]


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


def headline(y: np.ndarray, probabilities: np.ndarray, bins: int, labels: tuple[str, ...] = LABELS) -> dict:
    """f_avg, macro-F1, accuracy and expected calibration error of one set of probabilities."""
    metrics = compute_metrics(y, predicted_labels(probabilities, labels), labels)
    return {key: metrics[key] for key in ("f_avg", "macro_f1", "accuracy")} | {
        "ece": round(expected_calibration_error(y, probabilities, bins, labels), 4)}


def average_precisions(y: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...] = LABELS) -> dict:
    """Area under each class's one-vs-rest precision-recall curve (None for a class with no examples)."""
    from sklearn.metrics import average_precision_score

    return {label: (round(float(average_precision_score(y == label, probabilities[:, j])), 4)
                    if (y == label).any() else None)
            for j, label in enumerate(labels)}


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over (0, 1]: bin b holds confidences in (b/bins, (b+1)/bins]."""
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def reliability_table(y: np.ndarray, probabilities: np.ndarray, bins: int,
                      labels: tuple[str, ...] = LABELS) -> list[dict]:
    """Per confidence bin (top-label confidence): count, mean confidence, accuracy."""
    confidence = probabilities.max(axis=1)
    correct = predicted_labels(probabilities, labels) == y
    index = _bin_index(confidence, bins)
    table = []
    for b in range(bins):
        mask = index == b
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": int(mask.sum()),
                      "confidence": float(confidence[mask].mean()) if mask.any() else None,
                      "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return table


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = 10,
                               labels: tuple[str, ...] = LABELS) -> float:
    """Top-label ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(y) == 0:
        return 0.0
    table = reliability_table(y, probabilities, bins, labels)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"])
                 / len(y))


def ece_if_calibrated(probabilities: np.ndarray, bins: int, seed: int, draws: int = 1000) -> float:
    """95th percentile of the ECE a perfectly calibrated model with these confidences would show.

    Consistency resampling: each paragraph is "correct" with probability equal to its confidence.
    An observed ECE below this value is what sampling noise alone produces.
    """
    confidence = probabilities.max(axis=1)
    if len(confidence) == 0:
        return 0.0
    one_hot = np.eye(bins)[_bin_index(confidence, bins)]  # paragraphs x bins
    counts = one_hot.sum(axis=0)
    rng = np.random.default_rng(seed)
    correct = (rng.random((draws, len(confidence))) < confidence).astype(float)
    gaps = np.abs(correct @ one_hot - confidence @ one_hot)  # draws x bins: |hits - summed confidence|
    ece = gaps[:, counts > 0].sum(axis=1) / len(confidence)
    return float(np.quantile(ece, 0.95))


def metrics_by_kind(rows: list[dict], y: np.ndarray, predicted: np.ndarray) -> dict:
    """Headline metrics for each document kind (seed / authored / ...)."""
    from sklearn.metrics import accuracy_score, f1_score

    kinds = np.array([str(r.get("kind") or "unknown") for r in rows])
    out = {}
    for kind in sorted(set(kinds.tolist())):
        mask = kinds == kind
        out[kind] = {
            "documents": len({rows[i]["doc"] for i in np.flatnonzero(mask)}),
            "paragraphs": int(mask.sum()),
            "f_avg": round(f_avg(y[mask], predicted[mask]), 4),
            "macro_f1": round(float(f1_score(y[mask], predicted[mask], labels=list(LABELS), average="macro",
                                             zero_division=0)), 4),
            "accuracy": round(float(accuracy_score(y[mask], predicted[mask])), 4),
        }
    return out


def labels_by_genre(rows: list[dict], y: np.ndarray, predicted: np.ndarray, genres: dict[str, str]) -> dict:
    """Per genre of document (`sources.csv`): how many paragraphs carry each label, and the
    out-of-fold f_avg there. A genre whose paragraphs nearly all carry one label teaches genre, not stance."""
    names = np.array([genres.get(r["doc"], "unknown") or "unknown" for r in rows])
    out = {}
    for genre in sorted(set(names.tolist())):
        mask = names == genre
        out[genre] = {"documents": len({rows[i]["doc"] for i in np.flatnonzero(mask)}), "paragraphs": int(mask.sum()),
                      **{label: int((y[mask] == label).sum()) for label in LABELS},
                      "f_avg": round(f_avg(y[mask], predicted[mask]), 4)}
    return out


def confident_mistakes(rows: list[dict], y: np.ndarray, probabilities: np.ndarray, limit: int = 10,
                       labels: tuple[str, ...] = LABELS) -> list[dict]:
    """The wrongly predicted paragraphs the model was surest about (ties broken by paragraph id)."""
    predicted = predicted_labels(probabilities, labels)
    confidence = probabilities.max(axis=1)
    wrong = [i for i in range(len(y)) if predicted[i] != y[i]]
    wrong.sort(key=lambda i: (-round(float(confidence[i]), 6), rows[i]["id"]))
    return [{"id": rows[i]["id"], "doc": rows[i]["doc"], "kind": rows[i].get("kind", ""), "label": str(y[i]),
             "predicted": str(predicted[i]), "confidence": round(float(confidence[i]), 4),
             "text": rows[i].get("text", "")} for i in wrong[:limit]]
