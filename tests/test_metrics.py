"""The evaluation's numbers computed by hand: calibration error, its reference, mistakes, genres."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import metrics


def test_expected_calibration_error_by_hand():
    y = np.array(["favor", "favor", "against", "none"])
    probabilities = np.array([[0.9, 0.05, 0.05],   # right, confidence 0.9
                              [0.15, 0.8, 0.05],   # wrong, confidence 0.8
                              [0.1, 0.85, 0.05],   # right, confidence 0.85
                              [0.3, 0.3, 0.4]])    # right, confidence 0.4
    # bins are (b/10, (b+1)/10]: (0.7, 0.8] holds the mistake at 0.8; (0.8, 0.9] holds 0.9 and 0.85,
    # both right; (0.3, 0.4] holds 0.4, right
    expected = (1 * abs(0 - 0.8) + 2 * abs(1 - 0.875) + 1 * abs(1 - 0.4)) / 4
    assert metrics.expected_calibration_error(y, probabilities, bins=10) == pytest.approx(expected)


def test_calibration_reference_grows_with_fewer_paragraphs():
    confident = np.tile([[0.7, 0.2, 0.1]], (400, 1))
    assert metrics.ece_if_calibrated(confident[:20], 10, seed=1) > metrics.ece_if_calibrated(confident, 10, seed=1)
    assert metrics.ece_if_calibrated(confident, 10, seed=1) == metrics.ece_if_calibrated(confident, 10, seed=1)


def test_confident_mistakes_come_first_with_text():
    rows = [{"id": f"p{i}", "doc": f"d{i}", "kind": "authored", "text": f"text {i}"} for i in range(4)]
    y = np.array(["favor", "against", "none", "favor"])
    probabilities = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    mistakes = metrics.confident_mistakes(rows, y, probabilities, limit=2)
    assert [m["id"] for m in mistakes] == ["p2", "p3"]
    assert mistakes[0] == {"id": "p2", "doc": "d2", "kind": "authored", "label": "none", "predicted": "against",
                           "confidence": 0.9, "text": "text 2"}


def test_labels_by_genre_counts_each_label_and_scores_each_genre():
    rows = [{"doc": d} for d in ("a", "a", "b", "b", "c")]
    y = np.array(["favor", "none", "against", "against", "none"])
    predicted = np.array(["favor", "none", "against", "favor", "none"])
    table = metrics.labels_by_genre(rows, y, predicted, {"a": "news-report", "b": "op-ed"})
    assert table["news-report"] == {"documents": 1, "paragraphs": 2, "favor": 1, "against": 0, "none": 1, "f_avg": 0.5}
    assert table["op-ed"]["against"] == 2 and table["unknown"]["paragraphs"] == 1
