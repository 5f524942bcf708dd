"""Grid search that fits the feature step once per fold, not once per candidate.

Inputs:  an unfitted sklearn Pipeline `[("features", ...), ("classifier", ...)]` (from
         `pipeline.train.build_classifier`), a grid of `classifier__*` parameters, the model input
         table, labels and the document-grouped folds.
Outputs: a `SearchResult`: the winner refitted on all rows, its parameters, every candidate's mean
         fold score and (when asked) the winner's out-of-fold decision values.
Params:  none of its own; `pipeline.train.fit_classifier` passes `train.grid`,
         `train.selection_metric` and `train.n_jobs`.

It computes what `GridSearchCV(pipeline, grid, cv=folds, refit=True)` followed by
`cross_val_predict(winner, cv=folds, method="decision_function")` compute, fit for fit: the same
clones, the same folds, the same scorer, the first best mean score wins; only the TF-IDF vocabulary
of each fold is built once for all the candidates instead of once per candidate, and the winner's
out-of-fold decision values come from the fits already made. Both are deterministic, so the
result (and the saved model) is the same; `tests/test_search.py` holds it to GridSearchCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.features import take


@dataclass
class SearchResult:
    best_estimator: object
    best_params: dict
    best_score: float
    candidates: list[dict]
    mean_scores: list[float]
    decisions: np.ndarray | None = field(default=None, repr=False)  # out-of-fold, winner's, if asked


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


def grouped_search(pipeline, grid: dict, X, y: np.ndarray, folds, scoring, n_jobs: int | None = None,
                   decisions: bool = False) -> SearchResult:
    """Pick the `grid` candidate with the best mean `scoring` over `folds`; refit it on all rows.

    `grid` keys must all name classifier parameters (`shares_features`). With `decisions`, also the
    winner's out-of-fold `decision_function` values (rows in X's order).
    """
    from joblib import Parallel, delayed
    from sklearn.base import clone
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import ParameterGrid

    if not shares_features(grid):
        raise ValueError(f"grid keys must all start with 'classifier__', got {sorted(grid)}")
    candidates = list(ParameterGrid(grid))
    scoring = check_scoring(pipeline.named_steps["classifier"], scoring=scoring)
    per_fold = Parallel(n_jobs=n_jobs)(
        delayed(_fold)(pipeline, candidates, X, y, train_idx, test_idx, scoring, decisions)
        for train_idx, test_idx in folds)
    mean_scores = [float(np.mean([scores[i] for scores, _ in per_fold])) for i in range(len(candidates))]
    best = int(np.argmax(mean_scores))  # the first of equal scores, as GridSearchCV ranks them
    best_estimator = clone(pipeline).set_params(**candidates[best]).fit(X, y)
    out_of_fold = None
    shapes = {values[best].shape[1:] for _, values in per_fold} if decisions else set()
    if len(shapes) == 1:  # not when a fold's training part lacked a class (fewer decision columns)
        out_of_fold = np.zeros((len(y), *shapes.pop()))
        for (_, test_idx), (_, values) in zip(folds, per_fold):
            out_of_fold[test_idx] = values[best]
    return SearchResult(best_estimator, candidates[best], mean_scores[best], candidates, mean_scores, out_of_fold)
