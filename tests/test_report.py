"""The Markdown report, rendered from hand-made results."""

from __future__ import annotations

import pytest

from pipeline.evaluation.report import escape, render_report


def results(**overrides) -> dict:
    per_class = {label: {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 10, "average_precision": 0.7}
                 for label in ("favor", "against", "none")}
    metrics = {
        "f_avg": 0.61234, "macro_f1": 0.6, "accuracy": 0.65, "paragraphs": 30, "ece": 0.05, "per_class": per_class,
        "confusion_matrix": {t: {p: (6 if t == p else 2) for p in per_class} for t in per_class},
        "by_kind": {"authored": {"documents": 8, "paragraphs": 24, "f_avg": 0.6, "macro_f1": 0.6, "accuracy": 0.6},
                    "seed": {"documents": 2, "paragraphs": 6, "f_avg": 0.5, "macro_f1": 0.5, "accuracy": 0.5}},
        "baselines": {"majority class": {"f_avg": 0.0, "macro_f1": 0.17, "accuracy": 0.34, "ece": 0.0},
                      "embedding classifier (logistic_regression)": {"f_avg": 0.61234, "macro_f1": 0.6,
                                                                     "accuracy": 0.65, "ece": 0.05}},
    }
    base = {
        "metrics": metrics, "model": "embedding classifier (logistic_regression)", "baseline_notes": {},
        "calibration": {"method": "none", "bins": 10, "ece": 0.05, "ece_if_calibrated": 0.08,
                        "table": [{"low": 0.5, "high": 0.6, "count": 30, "confidence": 0.55, "accuracy": 0.6},
                                  {"low": 0.6, "high": 0.7, "count": 0, "confidence": None, "accuracy": None}]},
        "mistakes": [{"id": "p1", "doc": "doc-a", "kind": "seed", "label": "favor", "predicted": "against",
                      "confidence": 0.91, "text": "A *bold* claim | with a pipe\n\nand two lines."}],
        "learning_curve": [{"paragraphs": 10, "skipped": "too few"},
                           {"paragraphs": 20, "documents": 7, "f_avg": 0.5, "macro_f1": 0.5, "accuracy": 0.5},
                           {"paragraphs": 30, "documents": 10, "f_avg": 0.61234, "macro_f1": 0.6, "accuracy": 0.65,
                            "all": True}],
        "setup": {"paragraphs": 30, "documents": 10, "folds": 5, "seed": 7, "selection_metric": "f_avg",
                  "label_counts": {"favor": 10, "against": 10, "none": 10}, "embedding": "fake@1"},
    }
    base.update(overrides)
    return base


def test_headline_and_sections():
    text = render_report(results(), {"note": "comparison disabled"}, {"reliability": "plots/reliability.png"})
    assert text.startswith("# Stance model evaluation\n\n**f_avg 0.6123** · macro-F1 0.6000 · accuracy 0.6500")
    assert "on fake@1 embeddings. 30 labelled paragraphs (favor 10, against 10, none 10) from 10 documents" in text
    assert "5-fold cross-validation grouped by document (seed 7)" in text
    assert "Change in f_avg: comparison disabled." in text
    assert "| **embedding classifier (logistic_regression)** | **0.6123** |" in text
    assert "| majority class | 0.0000 | 0.1700 | 0.3400 | 0.0000 |" in text
    assert "| favor | 0.5000 | 0.6000 | 0.5500 | 0.7000 | 10 |" in text
    assert "| **favor** | 6 | 2 | 2 |" in text
    assert "| seed | 2 | 6 | 0.5000 | 0.5000 | 0.5000 |" in text
    assert "| 0.5–0.6 | 30 | 0.550 | 0.600 |" in text and "0.6–0.7" not in text  # empty bins left out
    assert "within what sampling noise gives a perfectly calibrated model" in text
    assert "![Reliability diagram](plots/reliability.png)" in text
    assert "![Confusion matrix]" not in text  # only the plots that were written are linked
    assert "| 30 (all) | 10 | 0.6123 |" in text and "- 10 paragraphs: skipped (too few)." in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_mistakes_show_text_and_document_escaped():
    text = render_report(results(), {"note": "x"})
    assert "## The 1 most confident mistakes" in text
    assert ("1. labelled **favor**, predicted **against** (0.91) — document `doc-a` (seed), paragraph `p1`"
            in text)
    assert "    > A \\*bold\\* claim \\| with a pipe and two lines." in text


def test_no_mistakes():
    assert "No out-of-fold mistakes." in render_report(results(mistakes=[]), {"note": "x"})


@pytest.mark.parametrize("before, change", [(0.5, "+0.1123"), (0.7, "-0.0877")])
def test_change_versus_previous(before, change):
    previous = {"source": "reports/metrics.json at git HEAD (abc1234)", "metrics": {"f_avg": before},
                "changes": {"f_avg": round(0.61234 - before, 4)}}
    text = render_report(results(), previous)
    assert f"Change versus reports/metrics.json at git HEAD (abc1234): **f_avg {change}** (was {before:.4f})." in text


def test_calibration_advice_when_the_error_is_too_large():
    bad = results()
    bad["calibration"] = {**bad["calibration"], "ece": 0.2, "method": "sigmoid"}
    text = render_report(bad, {"note": "x"})
    assert "recalibrated with sigmoid scaling on document-grouped folds" in text
    assert "above what sampling noise alone explains" in text


def test_baseline_notes():
    text = render_report(results(baseline_notes={"knn": "n_neighbors too large"}), {"note": "x"})
    assert "- knn: not evaluated (n_neighbors too large)." in text


@pytest.mark.parametrize("raw, markdown", [
    ("plain words", "plain words"),
    ("# not a heading", "\\# not a heading"),
    ("- not a list", "\\- not a list"),
    ("a_b <tag> [link] `code`", "a\\_b \\<tag\\> \\[link\\] \\`code\\`"),
    ("", ""),
])
def test_escape(raw, markdown):
    assert escape(raw) == markdown
