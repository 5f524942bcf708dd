"""`stance evaluate --check`: the CI quality gate really passes a good model and fails a bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import StanceError
from pipeline.evaluation import evaluate
from pipeline.evaluation.quality_gate import check_gate, gate_failure, parse_metrics
from test_evaluate import make_project, save_params, shuffle_labels

runner = CliRunner()


def check(params: dict):
    return runner.invoke(app, ["evaluate", "--check", "--params", str(save_params(params))])


@pytest.fixture
def good(tmp_path, fake_embedder) -> dict:
    return make_project(tmp_path, fake_embedder)


def test_the_gate_passes_a_good_model_and_prints_the_report(good):
    evaluate.run(good)
    result = check(good)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Stance model evaluation\n")
    assert "## Baselines on the same folds" in result.stdout
    assert f"quality gate passed: f_avg 1.0000 >= floor {good['evaluate']['f_avg_floor']:.4f}" in result.stderr


def test_the_gate_fails_a_model_trained_on_shuffled_labels(good):
    shuffle_labels(good)
    metrics = evaluate.run(good)
    assert metrics["f_avg"] < good["evaluate"]["f_avg_floor"]
    result = check(good)
    assert result.exit_code == 1
    assert "# Stance model evaluation" in result.stdout  # the report reaches the CI log either way
    assert (f"error: quality gate failed: f_avg {metrics['f_avg']:.4f} is below the floor {good['evaluate']['f_avg_floor']:.4f} "
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
