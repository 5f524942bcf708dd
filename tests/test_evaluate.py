"""The evaluate stage: out-of-fold metrics, baselines, reports, plots, comparison, bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_project
from pipeline import LABELS
from pipeline.corpus import prepare
from pipeline.encoder import embed
from pipeline.errors import StanceError
from pipeline.evaluation import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ["metrics.json", "predictions.csv", "learning_curve.json", "evaluation.md", "plots/confusion_matrix.png",
           "plots/precision_recall.png", "plots/reliability.png", "plots/learning_curve.png"]


def save_params(params: dict) -> Path:
    path = Path(params["paths"]["reports_dir"]).parent / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def make_project(root: Path, embedder, n_docs: int = 12, **evaluate_settings) -> dict:
    """A prepared and embedded project (fake embedder) whose evaluation is quick."""
    params = write_project(root, n_docs=n_docs)
    params["evaluate"].update({"baselines": [], "learning_curve": [18, 30]}, **evaluate_settings)
    save_params(params)
    prepare.run(params)
    embed.run(params, embedder=embedder)
    return params


def rewrite_labels(params: dict, change) -> None:
    """Apply `change(rows)` to the rows of the primary label file."""
    path = Path(params["paths"]["labels_dir"]) / "primary.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows = change(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["paragraph_id", "label", "annotator", "note"])
        writer.writeheader()
        writer.writerows(rows)


def shuffle_labels(params: dict, seed: int = 3) -> None:
    def change(rows):
        labels = np.random.default_rng(seed).permutation([r["label"] for r in rows])
        return [{**r, "label": str(label)} for r, label in zip(rows, labels)]

    rewrite_labels(params, change)


@pytest.fixture
def good(tmp_path, fake_embedder) -> dict:
    return make_project(tmp_path, fake_embedder)


def test_writes_every_report_with_the_existing_metric_keys(good):
    metrics = evaluate.run(good)
    reports = Path(good["paths"]["reports_dir"])
    for name in OUTPUTS:
        assert (reports / name).exists(), name
    for name in OUTPUTS:
        if name.endswith(".png"):
            assert (reports / name).read_bytes().startswith(PNG_SIGNATURE)
    on_disk = json.loads((reports / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("f_avg", "macro_f1", "accuracy", "per_class", "confusion_matrix", "paragraphs", "ece", "by_kind",
                "baselines"):
        assert key in metrics
    assert metrics["paragraphs"] == 36
    assert set(metrics["per_class"]) == set(LABELS)
    assert sum(sum(row.values()) for row in metrics["confusion_matrix"].values()) == 36
    assert metrics["f_avg"] > 0.9  # the 12-document toy corpus is easy
    assert set(metrics["by_kind"]) == {"seed", "authored"}
    assert metrics["by_kind"]["seed"]["paragraphs"] == 6 and metrics["by_kind"]["seed"]["documents"] == 2


SHIPPED = "shipped model"
SHIPPED_DESCRIPTION = "shipped model (logistic_regression on text+embedding, temperature calibration)"


def test_report_has_every_section(good):
    evaluate.run(good)
    report = (Path(good["paths"]["reports_dir"]) / "evaluation.md").read_text()
    for heading in ("# Stance model evaluation", "## Baselines on the same folds", "## Per class",
                    "## By document kind", "## Calibration", "## Learning curve", "most confident mistakes"):
        assert heading in report
    for baseline in ("majority class", "TF-IDF + logistic regression",
                     f"**{SHIPPED_DESCRIPTION}**"):
        assert baseline in report
    assert "| seed | 2 | 6 |" in report
    assert "Expected calibration error" in report
    for plot in ("plots/confusion_matrix.png", "plots/precision_recall.png", "plots/reliability.png",
                 "plots/learning_curve.png"):
        assert f"]({plot})" in report
    assert "Change in f_avg: no previous metrics" in report


def test_two_runs_give_identical_files(good, tmp_path):
    good["evaluate"]["compare_to"] = "none"  # the comparison line would differ: run 2 sees run 1's metrics
    evaluate.run(good)
    reports = Path(good["paths"]["reports_dir"])
    first = {name: (reports / name).read_bytes() for name in OUTPUTS}
    shutil.rmtree(reports)
    evaluate.run(good)
    for name in OUTPUTS:
        assert (reports / name).read_bytes() == first[name], name


def test_baselines_share_the_outer_folds(good, monkeypatch):
    seen = []
    real = evaluate.cross_val_probabilities

    def spy(fit, X, y, groups, folds, *args, **kwargs):
        seen.append([tuple(test.tolist()) for _, test in folds])
        return real(fit, X, y, groups, folds, *args, **kwargs)

    monkeypatch.setattr(evaluate, "cross_val_probabilities", spy)
    good["evaluate"]["baselines"] = [{"name": "nearest", "classifier": "knn", "classifier_params": {"metric": "cosine"},
                                      "grid": {"n_neighbors": [1, 3]}}]
    metrics = evaluate.run(good)
    assert len(seen) == 4 + 2  # main, majority, TF-IDF, knn + two learning-curve sizes
    assert all(folds == seen[0] for folds in seen)
    assert list(metrics["baselines"]) == ["majority class", "TF-IDF + logistic regression",
                                          SHIPPED, "nearest"]
    model = metrics["baselines"][SHIPPED]
    assert model == {key: metrics[key] for key in ("f_avg", "macro_f1", "accuracy", "ece")}
    assert metrics["baselines"]["majority class"]["accuracy"] == pytest.approx(1 / 3, abs=1e-3)


def test_a_baseline_that_does_not_fit_the_data_is_reported_not_fatal(good):
    good["evaluate"]["baselines"] = [{"name": "too many neighbours", "classifier": "knn",
                                      "classifier_params": {"n_neighbors": 500}}]
    metrics = evaluate.run(good)
    assert "too many neighbours" not in metrics["baselines"]
    report = (Path(good["paths"]["reports_dir"]) / "evaluation.md").read_text()
    assert "- too many neighbours: not evaluated (" in report and "n_neighbors" in report
    assert re.search(r"not evaluated \(inside outer fold \d of \d: knn cannot be fitted \(", report)


@pytest.mark.parametrize("baselines, message", [
    ({"name": "x"}, "must be a list"),
    ([{"name": "x"}], "entry 1 needs a name and a classifier"),
    ([{"name": "x", "classifier": "knn", "colour": "red"}], "unknown keys colour"),
    ([{"name": "x", "classifier": "knn"}, {"name": "x", "classifier": "svc"}], "used twice"),
    ([{"name": "majority class", "classifier": "knn"}], "used twice \\(or by a built-in row"),
    ([{"name": "x", "classifier": "no_such_model"}], "unknown classifier 'no_such_model'"),
])
def test_bad_baseline_settings_are_clear_errors(good, baselines, message):
    good["evaluate"]["baselines"] = baselines
    with pytest.raises(StanceError, match=message):
        evaluate.run(good)


def test_a_label_with_too_few_examples_for_the_folds(tmp_path, fake_embedder):
    params = make_project(tmp_path, fake_embedder, n_docs=8)
    params["train"]["cv_folds"] = 5

    def keep_three_favor(rows):
        favor = [r for r in rows if r["label"] == "favor"]
        return [r for r in rows if r["label"] != "favor" or r in favor[:3]]

    rewrite_labels(params, keep_three_favor)
    with pytest.raises(StanceError, match=r"label 'favor' has 3 paragraphs in 3 documents: too few for 5-fold"):
        evaluate.run(params)


def test_a_label_nobody_used_is_refused(good):
    rewrite_labels(good, lambda rows: [r for r in rows if r["label"] != "none"])
    with pytest.raises(StanceError, match=r"no paragraph is labelled 'none'"):
        evaluate.run(good)


def test_a_single_document_corpus_is_refused(good):
    rewrite_labels(good, lambda rows: rows[:3])  # the three paragraphs of doc-0
    with pytest.raises(StanceError, match="needs labelled paragraphs from at least 2 documents, got 1"):
        evaluate.run(good)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"f_avg": "high"}', '{"f_avg": 7}'])
def test_a_corrupt_previous_metrics_file_is_a_clear_error(good, content):
    metrics_path = Path(good["paths"]["metrics"])
    metrics_path.parent.mkdir(parents=True)
    metrics_path.write_text(content)
    with pytest.raises(StanceError, match=r"metrics\.json \(previous run\): (corrupt metrics file|metrics file has no "
                                          r"f_avg).*delete .*metrics\.json"):
        evaluate.run(good)
    assert metrics_path.read_text() == content  # nothing half-written


def test_the_previous_run_on_disk_gives_the_change(good):
    metrics_path = Path(good["paths"]["metrics"])
    metrics_path.parent.mkdir(parents=True)
    metrics_path.write_text(json.dumps({"f_avg": 0.25, "macro_f1": 0.5}))
    metrics = evaluate.run(good)
    report = (metrics_path.parent / "evaluation.md").read_text()
    change = metrics["f_avg"] - 0.25
    assert f"(previous run): **f_avg {change:+.4f}** (was 0.2500); macro-F1 {metrics['macro_f1'] - 0.5:+.4f}." in report


def test_comparison_can_be_switched_off(good):
    good["evaluate"]["compare_to"] = "none"
    Path(good["paths"]["metrics"]).parent.mkdir(parents=True)
    Path(good["paths"]["metrics"]).write_text("{corrupt")
    evaluate.run(good)
    report = (Path(good["paths"]["reports_dir"]) / "evaluation.md").read_text()
    assert "comparison disabled (evaluate.compare_to: none)" in report


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=Test", "-c", "user.email=test@example.invalid",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_change_is_measured_against_the_committed_metrics(good, tmp_path):
    metrics_path = Path(good["paths"]["metrics"])
    metrics_path.parent.mkdir(parents=True)
    git(tmp_path, "init", "-q")
    metrics_path.write_text(json.dumps({"f_avg": 0.5}))
    git(tmp_path, "add", str(metrics_path))
    git(tmp_path, "commit", "-q", "-m", "previous model")
    metrics_path.write_text("{an uncommitted, corrupt working copy is not what we compare with")
    metrics = evaluate.run(good)
    report = (metrics_path.parent / "evaluation.md").read_text()
    assert "Change versus reports/metrics.json at git HEAD: " in report
    assert f"**f_avg {metrics['f_avg'] - 0.5:+.4f}** (was 0.5000)" in report


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_corrupt_committed_metrics_are_a_clear_error(good, tmp_path):
    metrics_path = Path(good["paths"]["metrics"])
    metrics_path.parent.mkdir(parents=True)
    git(tmp_path, "init", "-q")
    metrics_path.write_bytes(b"<<<<<<< merge conflict \xff\xfe")
    git(tmp_path, "add", str(metrics_path))
    git(tmp_path, "commit", "-q", "-m", "broken")
    with pytest.raises(StanceError, match=r"reports/metrics\.json at git HEAD \(\w+\): corrupt metrics file "
                                          r"\(not JSON\); commit a valid reports/metrics\.json, or set "
                                          r"evaluate\.compare_to: none"):
        evaluate.run(good)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_uncommitted_metrics_in_a_git_repository_are_noted(good, tmp_path):
    git(tmp_path, "init", "-q")
    evaluate.run(good)
    report = (Path(good["paths"]["reports_dir"]) / "evaluation.md").read_text()
    assert "Change in f_avg: no reports/metrics.json committed at git HEAD: no comparison." in report


def test_calibration_setting_wraps_the_model_with_grouped_folds(good):
    from sklearn.calibration import CalibratedClassifierCV

    from pipeline.model.train import fit_classifier, training_set

    _, X, y, groups, _ = training_set(good)
    estimator, summary = fit_classifier(X, y, groups, {**good["train"], "calibration": "sigmoid"}, 1)
    assert isinstance(estimator, CalibratedClassifierCV) and summary["calibration"] == "sigmoid"
    assert len(estimator.calibrated_classifiers_) == good["train"]["cv_folds"]
    assert estimator.predict_proba(X).sum(axis=1) == pytest.approx(np.ones(len(y)))
    good["train"]["calibration"] = "isotonic"
    metrics = evaluate.run(good)
    assert "shipped model" in metrics["baselines"]
    report = (Path(good["paths"]["reports_dir"]) / "evaluation.md").read_text()
    assert "shipped model (logistic_regression on text+embedding, isotonic calibration)" in report
    good["train"]["calibration"] = "platt"
    with pytest.raises(StanceError, match="unknown train.calibration 'platt'"):
        evaluate.run(good)


def test_cli_evaluate_writes_the_report(good):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--params", str(save_params(good))])
    assert result.exit_code == 0, result.output
    assert "f_avg 1.0" in result.output and "evaluation.md" in result.output
    assert (Path(good["paths"]["reports_dir"]) / "evaluation.md").exists()


def test_dvc_declares_the_reports_and_plots():
    root = Path(__file__).parent.parent
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in dvc["stages"]["evaluate"]["outs"]]
    for name in OUTPUTS:
        if name != "metrics.json":
            assert f"reports/{name}" in outs, name
    plotted = [next(iter(p)) if isinstance(p, dict) else p for p in dvc["plots"]]
    for name in OUTPUTS:
        if name.endswith(".png"):
            assert f"reports/{name}" in plotted
    data_plots = {next(iter(p)): next(iter(p.values())) for p in dvc["plots"] if isinstance(p, dict)}
    assert "reports/learning_curve.json" in data_plots["learning_curve"]["y"]
    assert "reports/predictions.csv" in data_plots["confusion"]["y"]


@pytest.mark.parametrize("tfidf, message", [
    ({"max_features": 10}, "evaluate.tfidf has unknown keys max_features"),
    ({"ngram_range": "one"}, "evaluate.tfidf.ngram_range must be two whole numbers"),
    ({"min_df": 10_000}, r"inside outer fold 1 of 3: TF-IDF baseline: .*check evaluate.tfidf in params.yaml"),
    ({"classifier_params": {"no_such": 1}}, r"evaluate.tfidf.classifier_params: .*no_such"),
])
def test_bad_tfidf_settings_are_clear_errors(good, tfidf, message):
    good["evaluate"]["tfidf"] = tfidf
    with pytest.raises(StanceError, match=message):
        evaluate.run(good)


def test_cli_bad_input_is_one_line_without_traceback(good):
    from typer.testing import CliRunner

    from pipeline.cli import app

    rewrite_labels(good, lambda rows: rows[:3])
    result = CliRunner().invoke(app, ["evaluate", "--params", str(save_params(good))])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: grouped cross-validation needs labelled paragraphs from at least "
                                     "2 documents, got 1")
    assert "Traceback" not in result.output


def test_metric_keys_stay_short_enough_for_dvc_metrics_diff(good):
    def paths(tree, prefix=""):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else key
            yield from paths(value, path) if isinstance(value, dict) else [path]

    long = [path for path in paths(evaluate.run(good)) if len(path) >= 60]
    assert long == []


NEW_DOCUMENT = {"favor": "Washington and Beijing agreed to draft the new resolution together this spring.",
                "against": "Trusting Beijing on the North has failed every time and will fail again.",
                "none": "The ministers posed for photographs before the lunch in the old hotel."}


def test_cached_fits_give_the_files_an_uncached_run_gives_after_a_document_is_added(tmp_path, fake_embedder,
                                                                                   monkeypatch):
    """Retraining after new labels refits only the folds the new document reached, and the reports
    and model come out byte for byte as from a run without any cached fit."""
    from pipeline.corpus.prepare import paragraph_id
    from pipeline.model import search, train

    fits = []
    real_fit = search._fit
    monkeypatch.setattr(search, "_fit", lambda *args: fits.append(1) or real_fit(*args))
    params = make_project(tmp_path / "project", fake_embedder, n_docs=33, compare_to="none")
    params["train"]["n_jobs"] = 1  # fits in this process, where they are counted
    train.run(params)
    evaluate.run(params)
    cache = Path(params["paths"]["fit_cache"])
    assert list(cache.glob("*/*.pkl"))
    raw = Path(params["paths"]["raw_dir"])
    (raw / "doc-new.txt").write_text("Headline\n\n" + "\n\n".join(NEW_DOCUMENT.values()), encoding="utf-8")
    with open(raw / "sources.csv", "a", encoding="utf-8", newline="") as handle:
        handle.write("doc-new,Headline,Jane Reporter,Test,2021-01-01,2021,authored,op-ed,test\n")
    prepare.run(params)
    embed.run(params, embedder=fake_embedder)
    rewrite_labels(params, lambda rows: rows + [
        {"paragraph_id": paragraph_id(text), "label": label, "annotator": "primary", "note": ""}
        for label, text in NEW_DOCUMENT.items()])
    fits.clear()
    train.run(params)
    metrics = evaluate.run(params)
    assert metrics["paragraphs"] == 33 * 3 + 3
    incremental = len(fits)
    reports = Path(params["paths"]["reports_dir"])
    cached = {name: (reports / name).read_bytes() for name in OUTPUTS}
    model = Path(params["paths"]["model"]).read_bytes()
    shutil.rmtree(cache)
    shutil.rmtree(reports)
    fits.clear()
    train.run(params)
    evaluate.run(params)
    assert incremental < 0.8 * len(fits)  # the folds the new document did not reach came from the cache
    for name in OUTPUTS:
        assert (reports / name).read_bytes() == cached[name], name
    assert Path(params["paths"]["model"]).read_bytes() == model
