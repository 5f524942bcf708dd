"""Grid search that fits the feature step once per fold, not once per candidate, for one training
set or for several at once (the outer folds of a nested cross-validation).

Inputs:  an unfitted sklearn Pipeline `[("features", ...), ("classifier", ...)]` (from
         `pipeline.model.train.build_classifier`), a grid of `classifier__*` parameters, and one or more
         problems: a model input table, its labels and its document-grouped folds.
Outputs: one `SearchResult` per problem: the winner refitted on all its rows, its parameters,
         every candidate's mean fold score and (when asked) the winner's out-of-fold decision values.
Params:  none of its own; `pipeline.model.train.fit_classifiers` passes `train.grid`,
         `train.selection_metric` and `train.n_jobs`.

It computes what `GridSearchCV(pipeline, grid, cv=folds, refit=True)` followed by
`cross_val_predict(winner, cv=folds, method="decision_function")` compute, fit for fit: the same
clones, the same folds, the same scorer, the first best mean score wins; only the TF-IDF vocabulary
of each fold is built once for all the candidates instead of once per candidate, and the winner's
out-of-fold decision values come from the fits already made. Both are deterministic, so the
result (and the saved model) is the same; `tests/test_search.py` holds it to GridSearchCV.

Several problems share one pool of worker processes: every (problem, fold) pair is one task and
every refit another, so two cores stay busy through a nested cross-validation instead of waiting
at the end of each outer fold for its slowest inner fold and then for its refit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.model.features import take


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


def _fold(pipeline, candidates: list[dict], X, y: np.ndarray, train_idx, test_idx, scoring, decisions: bool):
    """One fold: fit the features on its training part, then every candidate's classifier."""
    from sklearn.base import clone

    features = clone(pipeline.named_steps["features"])
    train_features = features.fit_transform(take(X, train_idx), y[train_idx])
    test_features = features.transform(take(X, test_idx))
    scores, values = [], []
    for params in candidates:
        classifier = clone(pipeline.named_steps["classifier"]).set_params(
            **{key.removeprefix("classifier__"): value for key, value in params.items()})
        classifier.fit(train_features, y[train_idx])
        scores.append(float(scoring(classifier, test_features, y[test_idx])))
        if decisions:
            values.append(classifier.decision_function(test_features))
    return scores, values


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


def grouped_searches(pipeline, grid: dict, problems: list[tuple], scoring, n_jobs: int | None = None,
                     decisions: bool = False) -> list[SearchResult]:
    """`grouped_search` on each `(X, y, folds)` problem, all folds and refits in one worker pool.

    A ValueError from sklearn is raised as a `ProblemError` naming the problem.
    """
    from joblib import Parallel, delayed
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import ParameterGrid

    if not shares_features(grid):
        raise ValueError(f"grid keys must all start with 'classifier__', got {sorted(grid)}")
    candidates = list(ParameterGrid(grid))
    scoring = check_scoring(pipeline.named_steps["classifier"], scoring=scoring)
    tasks = [(number, train_idx, test_idx) for number, (_, _, folds) in enumerate(problems)
             for train_idx, test_idx in folds]
    with Parallel(n_jobs=n_jobs) as parallel:
        per_fold = parallel(
            delayed(_as_problem_error)(number, _fold, pipeline, candidates, problems[number][0], problems[number][1],
                                       train_idx, test_idx, scoring, decisions)
            for number, train_idx, test_idx in tasks)
        by_problem = [[result for (owner, _, _), result in zip(tasks, per_fold) if owner == number]
                      for number in range(len(problems))]
        winners = []
        for fold_results in by_problem:
            mean_scores = [float(np.mean([scores[i] for scores, _ in fold_results])) for i in range(len(candidates))]
            winners.append((int(np.argmax(mean_scores)), mean_scores))  # the first of equal scores wins, as in GridSearchCV
        refits = [delayed(_as_problem_error)(number, _refit, pipeline, candidates[best], X, y)
                  for number, ((X, y, _), (best, _)) in enumerate(zip(problems, winners))]
        # One refit (the train stage) stays in this process: a model that went through a worker
        # predicts the same but pickles to other bytes, and the saved model is held byte-identical
        # to GridSearchCV's for any `n_jobs`.
        refitted = [work(*args, **kwargs) for work, args, kwargs in refits] if len(refits) == 1 else parallel(refits)
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
    return results


def grouped_search(pipeline, grid: dict, X, y: np.ndarray, folds, scoring, n_jobs: int | None = None,
                   decisions: bool = False) -> SearchResult:
    """Pick the `grid` candidate with the best mean `scoring` over `folds`; refit it on all rows.

    `grid` keys must all name classifier parameters (`shares_features`). With `decisions`, also the
    winner's out-of-fold `decision_function` values (rows in X's order).
    """
    return grouped_searches(pipeline, grid, [(X, y, folds)], scoring, n_jobs, decisions)[0]
