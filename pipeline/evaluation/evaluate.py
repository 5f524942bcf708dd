"""evaluate stage: honest out-of-fold metrics from cross-validation grouped by document.

Inputs:  `paths.embeddings` (rows id, doc, kind, text + vectors), `paths.labels_dir`; the previous
         `paths.metrics` (committed at git `evaluate.compare_to`, else the file on disk) for the change.
Outputs, all under `paths.reports_dir`:
         `paths.metrics` (f_avg, macro_f1, accuracy, paragraphs, per_class P/R/F1/AP, confusion_matrix,
         ece, by_kind, baselines), `predictions.csv` (out-of-fold prediction of every labelled
         paragraph), `learning_curve.json`, `evaluation.md` (the report a person reads in CI) and
         `plots/*.png` (confusion matrix, precision-recall curves, reliability diagram, learning curve).
Params:  `seed`, `train.*` (the same model selection as the train stage), `labels.priority`, `paths.fit_cache`,
         `evaluate.compare_to`, `evaluate.calibration_bins`, `evaluate.mistakes`,
         `evaluate.learning_curve`, `evaluate.tfidf`, `evaluate.baselines`.

Every number comes from nested cross-validation: outer folds grouped by document (`train.cv_folds`,
the train stage's folds, stable as documents are added) hold out whole documents; on each outer
training part the train stage's grid search over the other folds picks the hyper-parameters; the
held-out documents are then predicted. Fits are shared with the train stage and earlier runs
through `paths.fit_cache` (`pipeline.model.fit_cache`), which changes no number. Nothing is scored
on data it was trained or tuned on (`pipeline.model.out_of_fold`). The baselines (majority class,
TF-IDF + logistic regression on the paragraph text, every classifier in `evaluate.baselines`:
`pipeline.evaluation.baselines`) and the learning curve use the very same outer folds; the numbers
themselves are computed in `pipeline.evaluation.metrics`.
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.evaluation.baselines import BUILT_IN, baseline_specs, majority_fitter, tfidf_fitter
from pipeline.evaluation.metrics import (average_precisions, compute_metrics, confident_mistakes, ece_if_calibrated,
                                         expected_calibration_error, headline, labels_by_genre, metrics_by_kind,
                                         predicted_labels, reliability_table)
from pipeline.files import atomic_path, write_json_atomic, write_text_atomic
from pipeline.model.out_of_fold import classifier_fitter, cross_val_probabilities, outer_folds
from pipeline.model.train import training_set

PLOTS = {"confusion_matrix": "confusion_matrix.png", "precision_recall": "precision_recall.png",
         "reliability": "reliability.png", "learning_curve": "learning_curve.png"}


# ---------------------------------------------------------------- comparison with a previous run

def _git(directory: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              encoding="utf-8", errors="replace", timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def previous_metrics(metrics_path: str | Path, compare_to: str | None = "HEAD") -> dict:
    """The metrics to compare with: {"source", "metrics"} or {"note"} when there are none.

    Inside a git work tree: `metrics_path` as committed at `compare_to`. Without git: the file left
    on disk by the previous run (read before it is overwritten). A corrupt file is a StanceError.
    """
    from pipeline.evaluation.quality_gate import parse_metrics

    path = Path(metrics_path)
    if compare_to is None or str(compare_to).strip().lower() in ("", "none", "false"):
        return {"note": "comparison disabled (evaluate.compare_to: none)"}
    compare_to = str(compare_to).strip()
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    inside = _git(directory, "rev-parse", "--is-inside-work-tree")
    if inside is not None and inside.returncode == 0 and inside.stdout.strip() == "true":
        prefix = _git(directory, "rev-parse", "--show-prefix")
        name = (prefix.stdout.strip() if prefix is not None and prefix.returncode == 0 else "") + path.name
        shown = _git(directory, "show", f"{compare_to}:./{path.name}")
        if shown is None or shown.returncode != 0:
            return {"note": f"no {name} committed at git {compare_to}: no comparison"}
        commit = _git(directory, "rev-parse", "--short", f"{compare_to}^{{commit}}")
        found = commit is not None and commit.returncode == 0
        # The report names the ref, not the commit: naming the commit would rewrite the committed
        # report after every commit, though nothing it measures changed.
        source = f"{name} at git {compare_to}"
        where = source + (f" ({commit.stdout.strip()})" if found else "")
        hint = f"commit a valid {name}, or set evaluate.compare_to: none in params.yaml"
        return {"source": source, "metrics": parse_metrics(shown.stdout, where, hint)}
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        hint = f"delete {path} (or set evaluate.compare_to: none in params.yaml) and re-run"
        return {"source": f"{path} (previous run)", "metrics": parse_metrics(text, f"{path} (previous run)", hint)}
    return {"note": "no previous metrics (not a git work tree and no earlier run): no comparison"}


def changes(current: dict, previous: dict) -> dict:
    """Differences current - previous for the headline numbers both have."""
    return {key: round(float(current[key]) - float(previous[key]), 4)
            for key in ("f_avg", "macro_f1", "accuracy")
            if isinstance(previous.get(key), (int, float)) and not isinstance(previous.get(key), bool)}


# ---------------------------------------------------------------- the stage

def _settings(params: dict) -> dict:
    evaluate = params.get("evaluate") or {}
    try:
        bins = int(evaluate.get("calibration_bins", 10))
        mistakes = int(evaluate.get("mistakes", 10))
        sizes = [int(n) for n in (evaluate.get("learning_curve") or [])]
    except (TypeError, ValueError):
        raise StanceError("params.yaml: evaluate.calibration_bins, evaluate.mistakes and evaluate.learning_curve "
                          "must be whole numbers") from None
    if bins < 2 or mistakes < 0 or any(n < 1 for n in sizes):
        raise StanceError("params.yaml: evaluate.calibration_bins must be >= 2, evaluate.mistakes >= 0 and "
                          "evaluate.learning_curve sizes >= 1")
    return {"bins": bins, "mistakes": mistakes, "sizes": sizes, "tfidf": evaluate.get("tfidf") or {},
            "compare_to": evaluate.get("compare_to", "HEAD")}


def check_labels(y: np.ndarray, source: str) -> None:
    missing = [label for label in LABELS if label not in set(y.tolist())]
    if missing:
        raise StanceError(f"{source}: no paragraph is labelled {', '.join(map(repr, missing))}; the evaluation "
                          f"needs examples of every label ({', '.join(LABELS)})")


def evaluate(rows: list[dict], X: np.ndarray, y: np.ndarray, groups: np.ndarray, params: dict,
             embedding: str = "") -> dict:
    """Everything the reports show, computed in memory (no files written).

    `rows` are the labelled paragraphs (id, doc, kind, text), `X` their embeddings, `y` the labels,
    `groups` the documents; `embedding` names the embedding model (for the report only).
    """
    from pipeline.evaluation.learning_curve import learning_curve

    seed = int(params["seed"])
    train_params = params["train"]
    settings = _settings(params)
    specs = baseline_specs(params)
    check_labels(y, params["paths"]["labels_dir"])
    folds = outer_folds(y, groups, train_params, seed)
    cache = params["paths"].get("fit_cache")  # fits shared with the train stage and with earlier runs

    main_fit = classifier_fitter(train_params, seed, cache)
    probabilities = cross_val_probabilities(main_fit, X, y, groups, folds)
    predicted = predicted_labels(probabilities)
    metrics = compute_metrics(y, predicted)
    for label, ap in average_precisions(y, probabilities).items():
        metrics["per_class"][label]["average_precision"] = ap
    metrics["ece"] = round(expected_calibration_error(y, probabilities, settings["bins"]), 4)
    metrics["by_kind"] = metrics_by_kind(rows, y, predicted)

    texts = np.array([r.get("text", "") for r in rows], dtype=object)
    features = train_params.get("features", "embedding")
    if features == "text+embedding" and (train_params.get("feature_params") or {}).get("context_weight"):
        features += "+document context"
    model_name = f"{BUILT_IN[2]} ({train_params.get('classifier', 'logistic_regression')} on {features}"
    calibration = str(train_params.get("calibration") or "none")
    model_name += f", {calibration} calibration)" if calibration != "none" else ")"
    compared = [(BUILT_IN[0], majority_fitter(), X),
                (BUILT_IN[1], tfidf_fitter(settings["tfidf"], train_params, seed, cache), texts)]
    baselines = {name: headline(y, cross_val_probabilities(fit, data, y, groups, folds), settings["bins"])
                 for name, fit, data in compared}
    # Keyed by the short name: `dvc metrics diff` prints every key path, which must stay readable
    # (under 60 characters); the report shows the full description.
    baselines[BUILT_IN[2]] = {key: metrics[key] for key in ("f_avg", "macro_f1", "accuracy", "ece")}
    notes = {}
    for spec in specs:
        spec_params = {**train_params, "classifier_params": {}, "grid": {}, "calibration": "none",
                       "features": "embedding", "feature_params": {},
                       **{k: v for k, v in spec.items() if k != "name"}}
        fit = classifier_fitter(spec_params, seed, cache)
        try:
            baselines[spec["name"]] = headline(y, cross_val_probabilities(fit, X, y, groups, folds), settings["bins"])
        except StanceError as exc:  # an extra comparison that does not suit this data is reported, not fatal
            notes[spec["name"]] = str(exc)
    metrics["baselines"] = baselines

    # The curve reports only argmax metrics, which temperature scaling never changes: skip fitting it.
    # Nor, with one candidate, the inner folds that would only score it.
    curve_fit = classifier_fitter({**train_params, "calibration": "none"} if calibration.lower() == "temperature"
                                  else train_params, seed, cache, score_lone_candidate=False)
    curve = learning_curve(
        y, settings["sizes"], seed,
        lambda subset: cross_val_probabilities(curve_fit, X, y, groups, folds, subset=subset),
        full_probabilities=probabilities, groups=groups)
    return {
        "metrics": metrics,
        "probabilities": probabilities,
        "model": BUILT_IN[2],
        "model_description": model_name,
        "baseline_notes": notes,
        "calibration": {"method": calibration, "bins": settings["bins"], "ece": metrics["ece"],
                        "ece_if_calibrated": round(ece_if_calibrated(probabilities, settings["bins"], seed), 4),
                        "table": reliability_table(y, probabilities, settings["bins"])},
        "mistakes": confident_mistakes(rows, y, probabilities, settings["mistakes"]),
        "learning_curve": curve,
        "setup": {"paragraphs": len(y), "documents": len(set(groups.tolist())), "folds": len(folds), "seed": seed,
                  "label_counts": {label: int(n) for label, n in sorted(Counter(y.tolist()).items())},
                  "selection_metric": train_params.get("selection_metric", "f_avg"), "embedding": embedding},
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


def write_reports(results: dict, rows: list[dict], y: np.ndarray, params: dict, previous: dict) -> None:
    """metrics.json, predictions.csv, learning_curve.json, the PNG plots and evaluation.md."""
    from pipeline.evaluation import plots
    from pipeline.evaluation.report import render_report

    paths = params["paths"]
    reports = Path(paths["reports_dir"])
    plot_dir = reports / "plots"
    probabilities = results["probabilities"]
    write_predictions(reports / "predictions.csv", rows, y, probabilities)
    # numbers only: `dvc plots` cannot read the boolean "all" marker
    points = [{key: p[key] for key in ("paragraphs", "documents", "f_avg", "macro_f1", "accuracy") if key in p}
              for p in results["learning_curve"] if "f_avg" in p]
    write_json_atomic(reports / "learning_curve.json", points)
    matrix = np.array([[results["metrics"]["confusion_matrix"][t][p] for p in LABELS] for t in LABELS])
    figures = {"confusion_matrix": plots.confusion_matrix_figure(matrix, LABELS),
               "precision_recall": plots.precision_recall_figure(y, probabilities, LABELS),
               "reliability": plots.reliability_figure(y, probabilities, results["calibration"]["bins"], LABELS),
               "learning_curve": plots.learning_curve_figure(points)}
    for key, figure in figures.items():
        plots.save_figure(figure, plot_dir / PLOTS[key])
    plot_links = {key: f"plots/{name}" for key, name in PLOTS.items()}
    write_text_atomic(reports / "evaluation.md", render_report(results, previous, plot_links))
    write_json_atomic(paths["metrics"], results["metrics"])


def run(params: dict) -> dict:
    from threadpoolctl import threadpool_limits

    from pipeline.corpus.prepare import read_sources

    rows, X, y, groups, identity = training_set(params)
    sources = params["paths"].get("sources")
    genres = {s["slug"]: s["genre"] for s in read_sources(sources)} if sources and Path(sources).exists() else {}
    settings = _settings(params)
    previous = previous_metrics(params["paths"]["metrics"], settings["compare_to"])
    with threadpool_limits(limits=1):  # hundreds of small fits: BLAS threads only contend for the CPU
        results = evaluate(rows, X, y, groups, params, identity)
    results["by_genre"] = labels_by_genre(rows, y, predicted_labels(results["probabilities"]), genres)
    if "metrics" in previous:
        previous = {**previous, "changes": changes(results["metrics"], previous["metrics"])}
    write_reports(results, rows, y, params, previous)
    return results["metrics"]
