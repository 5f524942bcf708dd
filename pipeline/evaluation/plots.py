"""Figures for the evaluation report and the exploration notebook (matplotlib, Agg backend).

Inputs:  in-memory results (labels, out-of-fold probabilities, confusion matrix, learning-curve
         points, 2-D coordinates). Outputs: matplotlib Figures; `save_figure` writes a PNG atomically,
         `figure_png` returns PNG bytes (for notebooks). No params.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so nothing depends on a GUI or
on global state; PNGs carry no version or time metadata, so identical inputs give identical bytes.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.files import atomic_path

COLORS = {"favor": "#1b9e77", "against": "#d95f02", "none": "#7570b3"}


def _figure(width: float = 6.0, height: float = 4.5):
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(figure, path: str | Path) -> Path:
    """Write `figure` as a PNG (atomically, without metadata that would change between runs)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    return path


def figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def confusion_matrix_figure(matrix: np.ndarray, labels: tuple[str, ...] = LABELS):
    """Counts, rows = true label, columns = predicted label."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure = _figure(5.0, 4.3)
    ax = figure.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(ax=ax, cmap="Blues", colorbar=False,
                                                                                 values_format="d")
    ax.set_title("Out-of-fold confusion matrix")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    return figure


def precision_recall_figure(y: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...] = LABELS):
    """One-vs-rest precision-recall curve of each label, with its average precision."""
    from sklearn.metrics import PrecisionRecallDisplay

    figure = _figure()
    ax = figure.add_subplot()
    for j, label in enumerate(labels):
        truth = np.asarray(y) == label
        if not truth.any():
            continue
        display = PrecisionRecallDisplay.from_predictions(truth, probabilities[:, j], name=label, ax=ax)
        display.line_.set_color(COLORS.get(label))
        ax.axhline(truth.mean(), color=COLORS.get(label), linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall per label (dotted: share of the label)")
    ax.legend(loc="lower left")
    return figure


def reliability_figure(y: np.ndarray, probabilities: np.ndarray, bins: int = 10, labels: tuple[str, ...] = LABELS):
    """Left: accuracy against top-label confidence per bin (the ECE's view). Right: per-label curves."""
    from sklearn.calibration import calibration_curve

    from pipeline.evaluation.metrics import expected_calibration_error, reliability_table

    figure = _figure(10.0, 4.5)
    top, per_label = figure.subplots(1, 2)
    table = [row for row in reliability_table(y, probabilities, bins, labels) if row["count"]]
    centres = [(row["low"] + row["high"]) / 2 for row in table]
    top.bar(centres, [row["accuracy"] for row in table], width=1 / bins, edgecolor="black", color="#9ecae1",
            label="accuracy in bin")
    top.plot([row["confidence"] for row in table], [row["accuracy"] for row in table], "o", color="#08519c",
             label="(mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for centre, row in zip(centres, table):
        top.annotate(str(row["count"]), (centre, min(row["accuracy"] + 0.02, 0.97)), ha="center", fontsize=7)
    ece = expected_calibration_error(np.asarray(y), probabilities, bins, labels)
    top.set_title(f"Top-label reliability (ECE {ece:.3f}; numbers = paragraphs)")
    top.set_xlabel("confidence (highest probability)")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    for j, label in enumerate(labels):
        truth = np.asarray(y) == label
        if not truth.any() or truth.all():
            continue
        observed, predicted = calibration_curve(truth, probabilities[:, j], n_bins=bins, strategy="uniform")
        per_label.plot(predicted, observed, "o-", color=COLORS.get(label), label=label)
    per_label.plot([0, 1], [0, 1], "--", color="grey")
    per_label.set_title("One-vs-rest reliability per label")
    per_label.set_xlabel("predicted probability")
    per_label.set_ylabel("observed share")
    per_label.set_xlim(0, 1)
    per_label.set_ylim(0, 1)
    per_label.legend(loc="upper left", fontsize=8)
    return figure


def learning_curve_figure(points: list[dict]):
    """Grouped-CV f_avg (and macro-F1) against the number of labelled paragraphs."""
    figure = _figure()
    ax = figure.add_subplot()
    points = [p for p in points if "f_avg" in p]
    x = [p["paragraphs"] for p in points]
    ax.plot(x, [p["f_avg"] for p in points], "o-", label="f_avg", color="#08519c")
    ax.plot(x, [p["macro_f1"] for p in points], "s--", label="macro-F1", color="#6baed6")
    for p in points:
        ax.annotate(f"{p['f_avg']:.3f}", (p["paragraphs"], p["f_avg"]), textcoords="offset points", xytext=(0, -13),
                    ha="center", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("labelled paragraphs available for training")
    ax.set_ylabel("out-of-fold score")
    ax.set_title("Learning curve (grouped cross-validation)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def label_distribution_figure(counts: dict[str, dict[str, int]], labels: tuple[str, ...] = LABELS):
    """Stacked bars: paragraphs per label, split by a category such as document kind ({category: {label: n}})."""
    figure = _figure(6.0, 4.0)
    ax = figure.add_subplot()
    bottom = np.zeros(len(labels))
    for category, by_label in sorted(counts.items()):
        heights = np.array([by_label.get(label, 0) for label in labels], dtype=float)
        ax.bar(list(labels), heights, bottom=bottom, label=str(category))
        bottom += heights
    for i, total in enumerate(bottom):
        ax.annotate(str(int(total)), (i, total), textcoords="offset points", xytext=(0, 3), ha="center")
    ax.set_ylabel("paragraphs")
    ax.set_title("Labelled paragraphs per label")
    ax.legend(title="kind")
    return figure


def projection_figure(coordinates: np.ndarray, y: np.ndarray, title: str = "2-D projection of the embeddings",
                      labels: tuple[str, ...] = LABELS):
    """Scatter of 2-D coordinates, one colour per label."""
    figure = _figure(6.5, 5.0)
    ax = figure.add_subplot()
    for label in labels:
        mask = np.asarray(y) == label
        ax.scatter(coordinates[mask, 0], coordinates[mask, 1], s=12, alpha=0.7, color=COLORS.get(label), label=label)
    ax.set_title(title)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.legend()
    return figure
