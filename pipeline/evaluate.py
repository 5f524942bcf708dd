"""evaluate stage: honest out-of-fold metrics from cross-validation grouped by document.

Inputs:  `paths.embeddings` (rows id, doc, kind, text + vectors), `paths.labels_dir`; the previous
         `paths.metrics` (committed at git `evaluate.compare_to`, else the file on disk) for the change.
Outputs, all under `paths.reports_dir`:
         `paths.metrics` (f_avg, macro_f1, accuracy, paragraphs, per_class P/R/F1/AP, confusion_matrix,
         ece, by_kind, baselines), `predictions.csv` (out-of-fold prediction of every labelled
         paragraph), `learning_curve.json`, `evaluation.md` (the report a person reads in CI) and
         `plots/*.png` (confusion matrix, precision-recall curves, reliability diagram, learning curve).
Params:  `seed`, `train.*` (the same model selection as the train stage), `labels.priority`,
         `evaluate.compare_to`, `evaluate.calibration_bins`, `evaluate.mistakes`,
         `evaluate.learning_curve`, `evaluate.tfidf`, `evaluate.baselines`.

Every number comes from nested cross-validation: an outer StratifiedGroupKFold (`train.cv_folds`,
seeded by `seed`) holds out whole documents; on each outer training part the train stage's grouped
grid search picks the hyper-parameters; the held-out documents are then predicted. Nothing is scored
on data it was trained or tuned on. The baselines (majority class, TF-IDF + logistic regression on
the paragraph text, every classifier in `evaluate.baselines`) and the learning curve use the very
same outer folds.
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.files import atomic_path, write_json_atomic, write_text_atomic
from pipeline.features import take
from pipeline.train import (build_classifier, f_avg, fit_classifiers, grid_for_pipeline, grouped_folds, n_jobs,
                            naming_part, scorer, training_set)

DEFAULT_TFIDF = {"ngram_range": [1, 2], "min_df": 2, "grid": {"C": [1.0, 10.0, 100.0]},
                 "classifier_params": {"class_weight": "balanced", "solver": "newton-cg", "tol": 1e-6, "max_iter": 5000}}
BUILT_IN = ("majority class", "TF-IDF + logistic regression", "shipped model")
BASELINE_KEYS = {"name", "classifier", "classifier_params", "grid", "calibration", "features", "feature_params"}
PLOTS = {"confusion_matrix": "confusion_matrix.png", "precision_recall": "precision_recall.png",
         "reliability": "reliability.png", "learning_curve": "learning_curve.png"}

# (parts, names) -> one fitted estimator per part; a part is the (X, y, groups) of one outer training
# part, its name ("outer fold 2 of 5") starts the message of an error that concerns that part only.
Fitter = Callable[[list[tuple], list[str]], list]


# ---------------------------------------------------------------- cross-validation

def outer_folds(y: np.ndarray, groups: np.ndarray, train_params: dict,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer document-grouped folds every evaluated model shares."""
    return grouped_folds(y, groups, int(train_params.get("cv_folds", 5)), seed)


def cross_val_probabilities(fit: Fitter, X, y: np.ndarray, groups: np.ndarray, folds, labels: tuple[str, ...] = LABELS,
                            subset: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order).

    `fit` trains on every outer training part at once (restricted to the row indices in `subset`
    if given); each part's model predicts its whole held-out part.
    """
    probabilities = np.zeros((len(y), len(labels)))
    present = set(y.tolist()) if subset is None else set(y[subset].tolist())
    parts, names = [], []
    for number, (train_idx, test_idx) in enumerate(folds, start=1):
        if subset is not None:
            train_idx = train_idx[np.isin(train_idx, subset)]
        where = f"outer fold {number} of {len(folds)}"
        if len(test_idx) == 0:
            raise StanceError(f"{where} holds out no paragraphs: label more documents or lower train.cv_folds")
        missing = sorted(present - set(y[train_idx].tolist()))
        if missing:
            raise StanceError(f"{where}: no {', '.join(map(repr, missing))} paragraphs left to train on (all of "
                              f"them sit in the held-out documents): label more documents or lower train.cv_folds")
        parts.append((take(X, train_idx), y[train_idx], groups[train_idx]))
        names.append(where)
    for (_, test_idx), estimator in zip(folds, fit(parts, names)):
        fold_probs = estimator.predict_proba(take(X, test_idx))
        for j, label in enumerate(estimator.classes_):
            probabilities[test_idx, labels.index(label)] = fold_probs[:, j]
    return probabilities


def _inner(train_params: dict, groups: np.ndarray) -> dict:
    """Train params for an outer training part: no more inner folds than it has documents."""
    inner = dict(train_params)
    inner["cv_folds"] = min(int(train_params.get("cv_folds", 5)), len(set(groups.tolist())))
    return inner


def _where(exc: ValueError, names: list[str]) -> str:
    """"inside <outer fold>: " when sklearn's error came from one part's fits (a ProblemError), else ""."""
    from pipeline.search import ProblemError

    return f"inside {names[exc.problem]}: " if isinstance(exc, ProblemError) and exc.problem < len(names) else ""


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _unfittable(exc: ValueError, names: list[str], what: str) -> StanceError:
    """sklearn's verdict on parameters that do not suit the data, as one line naming the outer fold."""
    return StanceError(f"{_where(exc, names)}{what} cannot be fitted ({_first_line(exc)})")


def classifier_fitter(train_params: dict, seed: int) -> Fitter:
    """The train stage's model selection (grouped grid search, optional calibration) on embeddings,
    all outer training parts at once (`pipeline.train.fit_classifiers`)."""
    def fit(parts, names):
        by_folds: dict[int, list[int]] = {}  # parts with fewer documents get fewer inner folds
        for number, (_, _, groups) in enumerate(parts):
            by_folds.setdefault(_inner(train_params, groups)["cv_folds"], []).append(number)
        fitted = [None] * len(parts)
        for cv_folds, numbers in by_folds.items():
            try:
                results = fit_classifiers([parts[n] for n in numbers], {**train_params, "cv_folds": cv_folds}, seed,
                                          [names[n] for n in numbers])
            except ValueError as exc:
                raise _unfittable(exc, [names[n] for n in numbers],
                                  str(train_params.get("classifier", "logistic_regression"))) from None
            for n, (estimator, _) in zip(numbers, results):
                fitted[n] = estimator
        return fitted

    return fit


def majority_fitter() -> Fitter:
    """Always predicts the most frequent training label, with the training label shares as probabilities."""
    from sklearn.dummy import DummyClassifier

    return lambda parts, names: [DummyClassifier(strategy="prior").fit(np.zeros((len(y), 1)), y) for _, y, _ in parts]


def tfidf_fitter(settings: dict, train_params: dict, seed: int) -> Fitter:
    """TF-IDF of the paragraph text + logistic regression, C chosen by the same grouped inner search.

    The vectoriser (vocabulary and IDF: no labels) is fitted once per outer training part, which
    halves the cost; the held-out documents of the outer fold never reach it. The searches of all
    outer parts share one worker pool (`pipeline.search.grouped_searches`, which is GridSearchCV
    fit for fit).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from pipeline.search import grouped_searches

    settings = {**DEFAULT_TFIDF, **(settings or {})}
    unknown = sorted(set(settings) - set(DEFAULT_TFIDF))
    if unknown:
        raise StanceError(f"params.yaml: evaluate.tfidf has unknown keys {', '.join(unknown)} "
                          f"(allowed: {', '.join(DEFAULT_TFIDF)})")
    try:
        ngram_range = tuple(int(n) for n in settings["ngram_range"])
        grid = grid_for_pipeline({key: list(values) for key, values in (settings["grid"] or {}).items()})
    except (TypeError, ValueError, AttributeError):
        raise StanceError("params.yaml: evaluate.tfidf.ngram_range must be two whole numbers and "
                          "evaluate.tfidf.grid a mapping of lists") from None
    try:
        classifier = LogisticRegression(**{"random_state": seed, **dict(settings["classifier_params"] or {})})
    except (TypeError, ValueError) as exc:
        raise StanceError(f"params.yaml: evaluate.tfidf.classifier_params: {_first_line(exc)}") from None
    metric = train_params.get("selection_metric", "f_avg")

    def failed(exc: ValueError, where: str) -> StanceError:
        return StanceError(f"{where}TF-IDF baseline: {_first_line(exc)} (check evaluate.tfidf in params.yaml)")

    def fit(parts, names):
        vectorizers, problems = [], []
        for number, ((texts, y, groups), where) in enumerate(zip(parts, names)):
            try:
                vectorizer = TfidfVectorizer(ngram_range=ngram_range, min_df=settings["min_df"], sublinear_tf=True,
                                             strip_accents="unicode").fit(texts)
                with naming_part(names, number):
                    folds = grouped_folds(y, groups, _inner(train_params, groups)["cv_folds"], seed)
            except ValueError as exc:
                raise failed(exc, f"inside {where}: ") from None
            vectorizers.append(vectorizer)
            problems.append((vectorizer.transform(texts), y, folds))
        search = Pipeline([("features", FunctionTransformer()),  # the features are already TF-IDF
                           ("classifier", classifier)])
        try:
            found = grouped_searches(search, grid, problems, scorer(metric), n_jobs(train_params))
        except ValueError as exc:
            raise failed(exc, _where(exc, names)) from None
        return [make_pipeline(vectorizer, result.best_estimator.named_steps["classifier"])
                for vectorizer, result in zip(vectorizers, found)]

    return fit


def baseline_specs(params: dict) -> list[dict]:
    """The configured extra classifiers (`evaluate.baselines`), validated."""
    specs = (params.get("evaluate") or {}).get("baselines") or []
    if not isinstance(specs, list):
        raise StanceError("params.yaml: evaluate.baselines must be a list of {name, classifier, ...}")
    names = set()
    for number, spec in enumerate(specs, start=1):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("classifier"):
            raise StanceError(f"params.yaml: evaluate.baselines entry {number} needs a name and a classifier")
        unknown = sorted(set(spec) - BASELINE_KEYS)
        if unknown:
            raise StanceError(f"params.yaml: evaluate.baselines entry {spec['name']!r} has unknown keys "
                              f"{', '.join(unknown)} (allowed: {', '.join(sorted(BASELINE_KEYS))})")
        if spec["name"] in names or str(spec["name"]).startswith(BUILT_IN):
            raise StanceError(f"params.yaml: evaluate.baselines name {spec['name']!r} is used twice (or by a "
                              f"built-in row: {', '.join(BUILT_IN)})")
        names.add(spec["name"])
        try:  # a misspelt classifier or parameter is a settings error, not a data problem
            build_classifier(spec["classifier"], spec.get("classifier_params"), 0, spec.get("features", "embedding"),
                             spec.get("feature_params"))
        except StanceError as exc:
            raise StanceError(f"evaluate.baselines {spec['name']!r}: {exc}") from None
    return specs


def oof_probabilities(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int,
                      labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order) of the configured model, nested grouped CV."""
    folds = outer_folds(y, groups, train_params, seed)
    return cross_val_probabilities(classifier_fitter(train_params, seed), X, y, groups, folds, labels)


# ---------------------------------------------------------------- metrics

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
    from pipeline.quality_gate import parse_metrics

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
        source = f"{name} at git {compare_to}" + (f" ({commit.stdout.strip()})" if found else "")
        hint = f"commit a valid {name}, or set evaluate.compare_to: none in params.yaml"
        return {"source": source, "metrics": parse_metrics(shown.stdout, source, hint)}
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
    from pipeline.learning_curve import learning_curve

    seed = int(params["seed"])
    train_params = params["train"]
    settings = _settings(params)
    specs = baseline_specs(params)
    check_labels(y, params["paths"]["labels_dir"])
    folds = outer_folds(y, groups, train_params, seed)

    main_fit = classifier_fitter(train_params, seed)
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
                (BUILT_IN[1], tfidf_fitter(settings["tfidf"], train_params, seed), texts)]
    baselines = {name: headline(y, cross_val_probabilities(fit, data, y, groups, folds), settings["bins"])
                 for name, fit, data in compared}
    baselines[model_name] = {key: metrics[key] for key in ("f_avg", "macro_f1", "accuracy", "ece")}
    notes = {}
    for spec in specs:
        spec_params = {**train_params, "classifier_params": {}, "grid": {}, "calibration": "none",
                       "features": "embedding", "feature_params": {},
                       **{k: v for k, v in spec.items() if k != "name"}}
        fit = classifier_fitter(spec_params, seed)
        try:
            baselines[spec["name"]] = headline(y, cross_val_probabilities(fit, X, y, groups, folds), settings["bins"])
        except StanceError as exc:  # an extra comparison that does not suit this data is reported, not fatal
            notes[spec["name"]] = str(exc)
    metrics["baselines"] = baselines

    # The curve reports only argmax metrics, which temperature scaling never changes: skip fitting it.
    curve_fit = (classifier_fitter({**train_params, "calibration": "none"}, seed)
                 if calibration.lower() == "temperature" else main_fit)
    curve = learning_curve(
        y, settings["sizes"], seed,
        lambda subset: cross_val_probabilities(curve_fit, X, y, groups, folds, subset=subset),
        full_probabilities=probabilities, groups=groups)
    return {
        "metrics": metrics,
        "probabilities": probabilities,
        "model": model_name,
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
    from pipeline import plots
    from pipeline.report import render_report

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

    from pipeline.prepare import read_sources

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
