"""The baselines the evaluation compares the shipped model with, on the very same outer folds.

Inputs:  the `evaluate.tfidf` and `evaluate.baselines` params, the `train` params and the seed.
Outputs: `Fitter`s (see `pipeline.model.out_of_fold`) for the majority class, TF-IDF + logistic
         regression on the paragraph text, and every classifier listed in `evaluate.baselines`
         (validated here, so a misspelt one is a settings error before any fitting).
Params:  `evaluate.tfidf`, `evaluate.baselines`, `train.*`.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import StanceError
from pipeline.model.out_of_fold import Fitter, first_line, fold_prefix, part_folds
from pipeline.model.train import build_classifier, grid_for_pipeline, n_jobs, naming_part, scorer

DEFAULT_TFIDF = {"ngram_range": [1, 2], "min_df": 2, "grid": {"C": [1.0, 10.0, 100.0]},
                 "classifier_params": {"class_weight": "balanced", "solver": "newton-cg", "tol": 1e-6, "max_iter": 5000}}
BUILT_IN = ("majority class", "TF-IDF + logistic regression", "shipped model")
BASELINE_KEYS = {"name", "classifier", "classifier_params", "grid", "calibration", "features", "feature_params"}


def majority_fitter() -> Fitter:
    """Always predicts the most frequent training label, with the training label shares as probabilities."""
    from sklearn.dummy import DummyClassifier

    return lambda parts, names: [DummyClassifier(strategy="prior").fit(np.zeros((len(part[1]), 1)), part[1])
                                 for part in parts]


def tfidf_fitter(settings: dict, train_params: dict, seed: int, cache_dir: str | None = None) -> Fitter:
    """TF-IDF of the paragraph text + logistic regression, C chosen by the same grouped inner search.

    The vectoriser is the pipeline's feature step, fitted once per training part for all the
    candidates (`pipeline.model.search.grouped_searches`, which is GridSearchCV fit for fit), so the
    held-out documents never reach it and pairs of outer folds share their inner fits.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from pipeline.model.search import grouped_searches

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
        raise StanceError(f"params.yaml: evaluate.tfidf.classifier_params: {first_line(exc)}") from None
    search = Pipeline([("features", TfidfVectorizer(ngram_range=ngram_range, min_df=settings["min_df"],
                                                    sublinear_tf=True, strip_accents="unicode")),
                       ("classifier", classifier)])
    metric = train_params.get("selection_metric", "f_avg")

    def failed(exc: ValueError, where: str) -> StanceError:
        return StanceError(f"{where}TF-IDF baseline: {first_line(exc)} (check evaluate.tfidf in params.yaml)")

    def fit(parts, names):
        problems = []
        for number, (part, where) in enumerate(zip(parts, names)):
            try:
                with naming_part(names, number):
                    problems.append((part[0], part[1], part_folds(part, train_params, seed)))
            except ValueError as exc:
                raise failed(exc, f"inside {where}: ") from None
        try:
            found = grouped_searches(search, grid, problems, scorer(metric), n_jobs(train_params), cache_dir=cache_dir)
        except ValueError as exc:
            raise failed(exc, fold_prefix(exc, names)) from None
        return [result.best_estimator for result in found]

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
