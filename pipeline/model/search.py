"""Grid search that fits the feature step once per fold, not once per candidate, for one training
set or for several at once (the outer folds of a nested cross-validation), and never fits the same
rows twice.

Inputs:  an unfitted sklearn Pipeline `[("features", ...), ("classifier", ...)]` (from
         `pipeline.model.train.build_classifier`), a grid of `classifier__*` parameters, and one or more
         problems: a model input table, its labels and its document-grouped folds.
Outputs: one `SearchResult` per problem: the winner refitted on all its rows, its parameters,
         every candidate's mean fold score and (when asked) the winner's out-of-fold decision values.
Params:  none of its own; `pipeline.model.train.fit_classifiers` passes `train.grid`,
         `train.selection_metric`, `train.n_jobs` and `paths.fit_cache`.

It computes what `GridSearchCV(pipeline, grid, cv=folds, refit=True)` followed by
`cross_val_predict(winner, cv=folds, method="decision_function")` compute, fit for fit: the same
clones, the same folds, the same scorer, the first best mean score wins; only the TF-IDF vocabulary
of each fold is built once for all the candidates instead of once per candidate, and the winner's
out-of-fold decision values come from the fits already made. Both are deterministic, so the
result (and the saved model) is the same; `tests/test_search.py` holds it to GridSearchCV.

Folds are keyed by the content of their training rows (`pipeline.model.fit_cache`): folds of
different problems that train on the same rows are fitted once (in a nested cross-validation whose
inner folds are the other outer folds, every pair of outer folds), and with a cache directory a
fit made by an earlier call or stage is loaded instead of refitted. Every distinct fit and every
refit is one task of a single pool of worker processes, so two cores stay busy through a nested
cross-validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.model.features import take
from pipeline.model.fit_cache import FitCache, fit_key, load_fit, pipeline_signature, row_digests, store_fit


@dataclass
class SearchResult:
    best_estimator: object
    best_params: dict
    best_score: float
    candidates: list[dict]
    mean_scores: list[float]
    decisions: np.ndarray | None = field(default=None, repr=False)  # out-of-fold, winner's, if asked


class ProblemError(ValueError):
    """sklearn refused the data of problem number `problem` (0-based) of a `grouped_searches` call."""

    def __init__(self, problem: int, message: str):
        super().__init__(problem, message)

    @property
    def problem(self) -> int:
        return self.args[0]

    def __str__(self) -> str:
        return self.args[1]


def shares_features(grid: dict) -> bool:
    """Whether every searched parameter belongs to the classifier step (else the features change
    between candidates and cannot be shared)."""
    return all(key.startswith("classifier__") for key in grid)


def _fit(pipeline, candidates: list[dict], X, y: np.ndarray):
    """The feature step fitted once, then every candidate's classifier on its output."""
    from sklearn.base import clone

    features = clone(pipeline.named_steps["features"])
    train_features = features.fit_transform(X, y)
    classifiers = [clone(pipeline.named_steps["classifier"]).set_params(
        **{key.removeprefix("classifier__"): value for key, value in params.items()}).fit(train_features, y)
        for params in candidates]
    return features, classifiers


def _fit_and_score(pipeline, candidates: list[dict], X, y: np.ndarray, tests: list[tuple], scoring,
                   decisions: bool, cache_file: str | None, keep: bool):
    """One training part: its fit (from the cache when there), then each candidate's score (and
    decision values) on each held-out part in `tests`; the fit itself too when `keep`."""
    fitted = load_fit(cache_file)
    if fitted is None:
        fitted = _fit(pipeline, candidates, X, y)
        store_fit(cache_file, fitted)
    features, classifiers = fitted
    results = []
    for test_X, test_y in tests:
        test_features = features.transform(test_X)
        scores = [float(scoring(classifier, test_features, test_y)) for classifier in classifiers]
        values = [classifier.decision_function(test_features) for classifier in classifiers] if decisions else []
        results.append((scores, values))
    return (fitted if keep else None), results


def _refit(pipeline, params: dict, X, y: np.ndarray):
    from sklearn.base import clone

    return clone(pipeline).set_params(**params).fit(X, y)


def _as_problem_error(problem: int, work, *args):
    """Run `work(*args)`; a ValueError names the problem it came from."""
    try:
        return work(*args)
    except ProblemError:
        raise
    except ValueError as exc:
        raise ProblemError(problem, str(exc) or type(exc).__name__) from None


def _assembled(pipeline, fitted, shared: bool = False):
    """A fitted Pipeline from a fitted feature step and classifier, copied when several problems
    share the fit (calibration scales a classifier in place)."""
    import copy

    from sklearn.pipeline import Pipeline

    features, (classifier,) = copy.deepcopy(fitted) if shared else fitted
    return Pipeline([("features", features), ("classifier", classifier)])


def grouped_searches(pipeline, grid: dict, problems: list[tuple], scoring, n_jobs: int | None = None,
                     decisions: bool = False, cache_dir: str | None = None,
                     score_lone_candidate: bool = True) -> list[SearchResult]:
    """`grouped_search` on each `(X, y, folds)` problem, all folds and refits in one worker pool.

    Folds whose training rows are the same (by content, in the same order) are fitted once, also
    across problems: the outer parts of a nested cross-validation whose inner folds are the other
    outer folds (`pipeline.model.out_of_fold`) share each pair's fit. With `cache_dir`, fits are kept
    on disk by `pipeline.model.fit_cache` and reused by later calls; the one refit of a single
    problem (the train stage's model) is always fitted afresh in this process. Without
    `score_lone_candidate`, a grid of one candidate skips the folds when no decisions are asked
    (its mean score is then NaN). A ValueError from sklearn is raised as a `ProblemError` naming
    the problem.
    """
    from concurrent.futures import ThreadPoolExecutor

    from joblib import Parallel, delayed
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import ParameterGrid

    if not shares_features(grid):
        raise ValueError(f"grid keys must all start with 'classifier__', got {sorted(grid)}")
    candidates = list(ParameterGrid(grid))
    scoring = check_scoring(pipeline.named_steps["classifier"], scoring=scoring)
    cache = FitCache(cache_dir)
    skip_folds = len(candidates) == 1 and not decisions and not score_lone_candidate
    digests = [row_digests(X, y) for X, y, _ in problems]
    signature = pipeline_signature(pipeline, candidates)
    jobs: dict[str, dict] = {}  # training rows (by content) -> where to take them from, what to score
    for number, (_, _, folds) in enumerate([] if skip_folds else problems):
        for fold, (train_idx, test_idx) in enumerate(folds):
            job = jobs.setdefault(fit_key(signature, digests[number][train_idx]),
                                  {"problem": number, "train": train_idx, "tests": []})
            job["tests"].append((number, fold, test_idx))

    def task(key: str, job: dict, chosen: list[dict], keep: bool):
        X, y, _ = problems[job["problem"]]
        tests = [(take(problems[n][0], idx), problems[n][1][idx]) for n, _, idx in job["tests"]]
        return delayed(_as_problem_error)(job["problem"], _fit_and_score, pipeline, chosen, take(X, job["train"]),
                                          y[job["train"]], tests, scoring, decisions, cache.path(key), keep)

    with Parallel(n_jobs=n_jobs) as parallel, ThreadPoolExecutor(max_workers=1) as thread:
        # A lone problem with a lone candidate knows its winner already: its refit runs in a thread of
        # this process while the workers fit the folds, instead of after them.
        early = (thread.submit(_as_problem_error, 0, _refit, pipeline, candidates[0], *problems[0][:2])
                 if len(problems) == 1 and len(candidates) == 1 else None)
        outputs = parallel(task(key, job, candidates, False) for key, job in jobs.items())
        per_fold: dict[tuple[int, int], tuple] = {}
        for job, (_, results) in zip(jobs.values(), outputs):
            for (number, fold, _), result in zip(job["tests"], results):
                per_fold[(number, fold)] = result
        by_problem = [[per_fold[(number, fold)] for fold in range(len(folds))] if not skip_folds else []
                      for number, (_, _, folds) in enumerate(problems)]
        winners = []
        for fold_results in by_problem:
            mean_scores = ([float(np.mean([scores[i] for scores, _ in fold_results])) for i in range(len(candidates))]
                           if fold_results else [float("nan")] * len(candidates))
            winners.append((int(np.argmax(mean_scores)) if fold_results else 0, mean_scores))  # first best wins
        if len(problems) == 1:
            # The train stage's model is fitted here, afresh: a model that went through a worker or
            # the cache predicts the same but pickles to other bytes, and the saved model is held
            # byte-identical to GridSearchCV's for any `n_jobs`.
            (X, y, _), (best, _) = problems[0], winners[0]
            refitted = [early.result() if early else _as_problem_error(0, _refit, pipeline, candidates[best], X, y)]
        else:
            keys = [fit_key(pipeline_signature(pipeline, [candidates[best]]), digests[number])
                    for number, (best, _) in enumerate(winners)]
            refit_jobs: dict[str, tuple] = {}  # problems with the same rows and winner share one refit
            for number, (key, (best, _)) in enumerate(zip(keys, winners)):
                refit_jobs.setdefault(key, ({"problem": number, "train": np.arange(len(problems[number][1])),
                                             "tests": []}, [candidates[best]]))
            fitted = dict(zip(refit_jobs, parallel(task(key, job, chosen, True)
                                                   for key, (job, chosen) in refit_jobs.items())))
            refitted = [_assembled(pipeline, fitted[key][0], shared=keys.count(key) > 1) for key in keys]
    results = []
    for (X, y, folds), fold_results, (best, mean_scores), estimator in zip(problems, by_problem, winners, refitted):
        out_of_fold = None
        shapes = {values[best].shape[1:] for _, values in fold_results} if decisions else set()
        if len(shapes) == 1:  # not when a fold's training part lacked a class (fewer decision columns)
            out_of_fold = np.zeros((len(y), *shapes.pop()))
            for (_, test_idx), (_, values) in zip(folds, fold_results):
                out_of_fold[test_idx] = values[best]
        results.append(SearchResult(estimator, candidates[best], mean_scores[best], candidates, mean_scores,
                                    out_of_fold))
    cache.prune()
    return results


def grouped_search(pipeline, grid: dict, X, y: np.ndarray, folds, scoring, n_jobs: int | None = None,
                   decisions: bool = False, cache_dir: str | None = None,
                   score_lone_candidate: bool = True) -> SearchResult:
    """Pick the `grid` candidate with the best mean `scoring` over `folds`; refit it on all rows.

    `grid` keys must all name classifier parameters (`shares_features`). With `decisions`, also the
    winner's out-of-fold `decision_function` values (rows in X's order).
    """
    return grouped_searches(pipeline, grid, [(X, y, folds)], scoring, n_jobs, decisions, cache_dir,
                            score_lone_candidate)[0]
