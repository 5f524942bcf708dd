"""`stance evaluate --check`: the CI quality gate really passes a good model and fails a bad one, and
prints a summary of the metrics that fits the terminal (80 columns, or its width, at least 60)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import StanceError
from pipeline.evaluation import evaluate
from pipeline.evaluation.quality_gate import check_gate, gate_failure, parse_metrics, summary
from test_evaluate import make_project, save_params, shuffle_labels

runner = CliRunner()


def check(params: dict, columns: int = 80):
    return runner.invoke(app, ["evaluate", "--check", "--params", str(save_params(params))],
                         env={"COLUMNS": str(columns)})


@pytest.fixture
def good(tmp_path, fake_embedder) -> dict:
    return make_project(tmp_path, fake_embedder)


def test_the_gate_passes_a_good_model_and_prints_a_summary(good):
    evaluate.run(good)
    result = check(good)
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0].startswith("Stance model evaluation")
    assert out[1].startswith("f_avg 1.0000  macro-F1 ")
    assert any(line.startswith("class ") for line in out) and any(line.startswith("favor ") for line in out)
    assert any(line.startswith("document kind ") for line in out)
    assert f"gate passed: f_avg 1.0000 >= {good['evaluate']['f_avg_floor']:.4f} (evaluate.f_avg_floor)" in out
    assert out[-1].startswith("full report: ") and out[-1].endswith("evaluation.md")
    assert "| " not in result.stdout  # no Markdown table rows any more
    assert all(len(line) <= 80 for line in out)
    assert result.stderr == (f"quality gate passed: f_avg 1.0000 >= floor {good['evaluate']['f_avg_floor']:.4f} "
                             "(evaluate.f_avg_floor)\n")


def test_the_gate_fails_a_model_trained_on_shuffled_labels(good):
    shuffle_labels(good)
    metrics = evaluate.run(good)
    assert metrics["f_avg"] < good["evaluate"]["f_avg_floor"]
    result = check(good)
    assert result.exit_code == 1
    assert result.stdout.startswith("Stance model evaluation")  # the summary reaches the CI log either way
    assert f"gate FAILED: f_avg {metrics['f_avg']:.4f} < {good['evaluate']['f_avg_floor']:.4f}" in result.stdout
    assert (f"error: quality gate failed: f_avg {metrics['f_avg']:.4f} < floor {good['evaluate']['f_avg_floor']:.4f} "
            "(evaluate.f_avg_floor)") in result.stderr
    assert "Traceback" not in result.output


def test_the_floor_decides(good):
    metrics = evaluate.run(good)
    good["evaluate"]["f_avg_floor"] = 1.0
    assert check(good).exit_code == 0  # equal to the floor passes
    assert gate_failure(metrics["f_avg"] - 0.0001, 1.0).startswith("quality gate failed")


def test_missing_report_is_noted_but_the_gate_still_decides(good):
    evaluate.run(good)
    (Path(good["paths"]["reports_dir"]) / "evaluation.md").unlink()
    result = check(good)
    assert result.exit_code == 0
    assert "evaluation.md not found (run `dvc repro` to write the report)" in result.stderr
    assert "full report" not in result.stdout and "gate passed" in result.stdout


def test_no_metrics_yet(good):
    result = check(good)
    assert result.exit_code == 1
    assert "metrics.json: no metrics (run `dvc repro` first)" in result.stderr


@pytest.mark.parametrize("content, message", [
    (b"{truncated", "corrupt metrics file (not JSON); re-run `dvc repro`"),
    (b'{"accuracy": 0.9}', "metrics file has no f_avg between 0 and 1"),
    (b'{"f_avg": null}', "metrics file has no f_avg between 0 and 1"),
    (b"\xff\xfe\x00garbage", "corrupt metrics file (not UTF-8 text)"),
])
def test_corrupt_metrics_are_a_clear_error(good, content, message):
    path = Path(good["paths"]["metrics"])
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = check(good)
    assert result.exit_code == 1
    assert f"{path}: {message}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("floor", [None, "high", 1.5, True])
def test_the_floor_must_be_a_number_between_0_and_1(good, floor):
    evaluate.run(good)
    good["evaluate"]["f_avg_floor"] = floor
    with pytest.raises(StanceError, match=r"evaluate\.f_avg_floor must be a number between 0 and 1"):
        check_gate(good)


def test_parse_metrics_keeps_every_key():
    metrics = parse_metrics(json.dumps({"f_avg": 0.7, "per_class": {}}), "x.json")
    assert metrics == {"f_avg": 0.7, "per_class": {}}


LONG = "shipped model (logistic_regression on text+embedding+document-context, temperature calibration, C=30)"


def long_metrics() -> dict:
    per_class = {label: {"precision": 0.8655, "recall": 0.8584, "f1": 0.8619, "support": 1229}
                 for label in ("favor", "against", "none")}
    kind = {"documents": 264, "paragraphs": 2320, "f_avg": 0.8967, "macro_f1": 0.9, "accuracy": 0.9}
    return {"f_avg": 0.8493, "macro_f1": 0.8644, "accuracy": 0.8657, "ece": 0.0042, "paragraphs": 3850,
            "per_class": per_class, "by_kind": {"authored-realstyle-with-a-very-long-kind-name-indeed": kind},
            "baselines": {"majority class": {"f_avg": 0.0, "macro_f1": 0.1775, "accuracy": 0.3629, "ece": 0.0},
                          LONG: {"f_avg": 0.8493, "macro_f1": 0.8644, "accuracy": 0.8657, "ece": 0.0042}}}


@pytest.mark.parametrize("width", [60, 80, 132])
def test_the_summary_fits_the_width_with_long_names(tmp_path, width):
    report = tmp_path / ("a-very-long-folder-name-" * 4) / "reports" / "evaluation.md"
    out = summary(long_metrics(), 0.83, report, width).splitlines()
    assert all(len(line) <= width for line in out), "\n".join(line for line in out if len(line) > width)
    row = next(line for line in out if line.startswith("shipped model ("))
    assert row.split()[-3:] == ["0.8493", "0.8644", "0.8657"]  # the figures are never cut
    assert ("…" in row) == (len(LONG) + 28 > width)  # the name is, with an ellipsis, only when it must
    assert any(line.startswith("authored-realstyle") and line.endswith("0.8967") for line in out)
    assert "f_avg 0.8493" in out[1] and "ECE 0.0042" in "\n".join(out[1:3]) and "paragraphs 3850" in "\n".join(out)
    assert out[-2] == "gate passed: f_avg 0.8493 >= 0.8300 (evaluate.f_avg_floor)"
    assert out[-1].startswith("full report: ") and out[-1].endswith("reports/evaluation.md")


def test_the_summary_takes_the_terminal_width_and_survives_missing_figures(good):
    Path(good["paths"]["metrics"]).parent.mkdir(parents=True)
    Path(good["paths"]["metrics"]).write_text(json.dumps(long_metrics()))
    wide = check(good, columns=200)
    assert wide.exit_code == 0 and any(LONG in line for line in wide.stdout.splitlines())
    narrow = check(good, columns=40)  # never narrower than 60
    assert narrow.exit_code == 0 and max(len(line) for line in narrow.stdout.splitlines()) == 60
    Path(good["paths"]["metrics"]).write_text(json.dumps({"f_avg": 0.5, "baselines": {"x": {"f_avg": None}}}))
    result = check(good)
    assert result.exit_code == 1 and "macro-F1 –" in result.stdout
    assert "error: quality gate failed: f_avg 0.5000 < floor" in result.stderr
