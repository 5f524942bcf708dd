"""Out-of-fold class probabilities under nested cross-validation grouped by document.

Inputs:  a feature table or matrix `X`, labels `y`, documents `groups`, the `train` params and the
         seed; a `Fitter` that trains one model per outer training part.
Outputs: out-of-fold probabilities (columns in LABELS order) of every paragraph. Params: `seed`,
         `train.*` (the same model selection as the train stage, `train.cv_folds` outer folds).

An outer StratifiedGroupKFold holds out whole documents; on each outer training part the train
stage's grouped grid search picks the hyper-parameters; the held-out documents are then predicted.
Nothing is scored on data it was trained or tuned on. The evaluation (`pipeline.evaluation`) and
the label checks (`stance labels check`) both read these probabilities, and every evaluated model
shares `outer_folds`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.model.features import take
from pipeline.model.train import fit_classifiers, grouped_folds

# (parts, names) -> one fitted estimator per part; a part is the (X, y, groups) of one outer training
# part, its name ("outer fold 2 of 5") starts the message of an error that concerns that part only.
Fitter = Callable[[list[tuple], list[str]], list]


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


def inner_params(train_params: dict, groups: np.ndarray) -> dict:
    """Train params for an outer training part: no more inner folds than it has documents."""
    inner = dict(train_params)
    inner["cv_folds"] = min(int(train_params.get("cv_folds", 5)), len(set(groups.tolist())))
    return inner


def fold_prefix(exc: ValueError, names: list[str]) -> str:
    """"inside <outer fold>: " when sklearn's error came from one part's fits (a ProblemError), else ""."""
    from pipeline.model.search import ProblemError

    return f"inside {names[exc.problem]}: " if isinstance(exc, ProblemError) and exc.problem < len(names) else ""


def first_line(exc: Exception) -> str:
    """The first line of an error's message (its type when the message is empty)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _unfittable(exc: ValueError, names: list[str], what: str) -> StanceError:
    """sklearn's verdict on parameters that do not suit the data, as one line naming the outer fold."""
    return StanceError(f"{fold_prefix(exc, names)}{what} cannot be fitted ({first_line(exc)})")


def classifier_fitter(train_params: dict, seed: int) -> Fitter:
    """The train stage's model selection (grouped grid search, optional calibration) on embeddings,
    all outer training parts at once (`pipeline.model.train.fit_classifiers`)."""
    def fit(parts, names):
        by_folds: dict[int, list[int]] = {}  # parts with fewer documents get fewer inner folds
        for number, (_, _, groups) in enumerate(parts):
            by_folds.setdefault(inner_params(train_params, groups)["cv_folds"], []).append(number)
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


def oof_probabilities(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int,
                      labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order) of the configured model, nested grouped CV."""
    folds = outer_folds(y, groups, train_params, seed)
    return cross_val_probabilities(classifier_fitter(train_params, seed), X, y, groups, folds, labels)
