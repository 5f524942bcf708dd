"""The learning curve: nested stratified subsamples, points on the same held-out data, clear skips."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.evaluation import evaluate
from pipeline.evaluation.learning_curve import learning_curve, subsample_order
from test_evaluate import make_project

Y = np.array(["favor"] * 40 + ["against"] * 40 + ["none"] * 20)


def test_subsample_order_is_seeded_and_a_permutation():
    order = subsample_order(Y, seed=7)
    assert sorted(order.tolist()) == list(range(len(Y)))
    assert order.tolist() == subsample_order(Y, seed=7).tolist()
    assert order.tolist() != subsample_order(Y, seed=8).tolist()


@pytest.mark.parametrize("n", [10, 20, 50])
def test_every_prefix_keeps_the_label_shares(n):
    counts = Counter(Y[subsample_order(Y, seed=7)[:n]].tolist())
    assert counts["favor"] == pytest.approx(0.4 * n, abs=1)
    assert counts["against"] == pytest.approx(0.4 * n, abs=1)
    assert counts["none"] == pytest.approx(0.2 * n, abs=1)


def perfect(y):
    return np.eye(3)[[LABELS.index(label) for label in y]]


def test_points_use_nested_subsamples_and_end_with_all():
    subsets = []

    def probabilities_for(subset):
        subsets.append(set(subset.tolist()))
        return perfect(Y)

    points = learning_curve(Y, [50, 10, 20, 10], seed=1, probabilities_for=probabilities_for)
    assert [p["paragraphs"] for p in points] == [10, 20, 50, 100]
    assert [len(s) for s in subsets] == [10, 20, 50, 100]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3]
    assert points[-1]["all"] is True and points[-1]["f_avg"] == 1.0


def test_sizes_too_large_or_unworkable_are_skipped_with_a_reason():
    def probabilities_for(subset):
        if len(subset) < 15:
            raise StanceError("label 'none' has 2 paragraphs in 2 documents: too few")
        return perfect(Y)

    full = perfect(Y)
    points = learning_curve(Y, [10, 20, 100, 500], seed=1, probabilities_for=probabilities_for,
                            full_probabilities=full, groups=np.arange(len(Y)) // 4)
    assert points[0] == {"paragraphs": 10, "skipped": "label 'none' has 2 paragraphs in 2 documents: too few"}
    assert points[1]["f_avg"] == 1.0 and points[1]["documents"] <= 20
    assert points[2] == {"paragraphs": 100, "skipped": "not fewer than the 100 labelled paragraphs"}
    assert points[3] == {"paragraphs": 500, "skipped": "not fewer than the 100 labelled paragraphs"}
    assert points[4]["paragraphs"] == 100 and points[4]["documents"] == 25


def test_in_the_stage_the_last_point_is_the_headline(tmp_path, fake_embedder):
    params = make_project(tmp_path, fake_embedder, n_docs=16, learning_curve=[6, 24])
    metrics = evaluate.run(params)
    reports = Path(params["paths"]["reports_dir"])
    points = json.loads((reports / "learning_curve.json").read_text())
    assert [p["paragraphs"] for p in points] == [24, 48]  # the DVC plot data holds only computed points
    assert points[-1] == {"paragraphs": 48, "documents": 16, "f_avg": metrics["f_avg"],
                          "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"]}
    report = (reports / "evaluation.md").read_text()
    assert f"| 48 (all) | 16 | {metrics['f_avg']:.4f} |" in report
    assert re.search(r"- 6 paragraphs: skipped \((inside )?outer fold \d of 3: ", report)  # too few to train on
