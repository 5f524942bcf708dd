"""Out-of-fold class probabilities under nested cross-validation grouped by document.

Inputs:  a feature table or matrix `X`, labels `y`, documents `groups`, the `train` params and the
         seed; a `Fitter` that trains one model per outer training part.
Outputs: out-of-fold probabilities (columns in LABELS order) of every paragraph. Params: `seed`,
         `train.*` (the same model selection as the train stage, `train.cv_folds` outer folds).

Outer folds grouped by document (`pipeline.model.train.grouped_folds`, the train stage's own
folds) hold out whole documents; on each outer training part the train stage's grouped grid search,
its inner folds the other outer folds (`inner_folds`), picks the hyper-parameters; the held-out
documents are then predicted. Nothing is scored on data it was trained or tuned on. The evaluation (`pipeline.evaluation`) and
the label checks (`stance labels check`) both read these probabilities, and every evaluated model
shares `outer_folds`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.model.features import take
from pipeline.model.train import fit_classifiers, grouped_folds, naming_part

# (parts, names) -> one fitted estimator per part; a part is the (X, y, groups) of one outer training
# part, its name ("outer fold 2 of 5") starts the message of an error that concerns that part only.
Fitter = Callable[[list[tuple], list[str]], list]


def outer_folds(y: np.ndarray, groups: np.ndarray, train_params: dict,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer document-grouped folds every evaluated model shares."""
    return grouped_folds(y, groups, int(train_params.get("cv_folds", 5)), seed)


def inner_folds(folds, number: int, train_idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The inner folds of outer fold `number`'s training part `train_idx`: the other outer folds
    (positions within the part), those that hold some of its rows; None when fewer than 2 do.

    Outer fold i's inner fold j and outer fold j's inner fold i then train on the same rows, so
    `pipeline.model.search` fits each pair once, and the outer parts' own fits are the train stage's
    cross-validation fits (the same folds over all the labelled rows).
    """
    owner = np.full(max((int(rows.max()) + 1 for fold in folds for rows in fold if len(rows)), default=0), -1)
    for other, (_, test_idx) in enumerate(folds):  # train_idx lies within the folds' rows
        owner[test_idx] = other
    part = owner[train_idx]
    inner = [(np.flatnonzero(part != other), np.flatnonzero(part == other))
             for other in range(len(folds)) if other != number and np.any(part == other)]
    if len(inner) < 2 or np.any(part < 0):
        return None
    return inner


def cross_val_probabilities(fit: Fitter, X, y: np.ndarray, groups: np.ndarray, folds, labels: tuple[str, ...] = LABELS,
                            subset: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order).

    `fit` trains on every outer training part at once (restricted to the row indices in `subset`
    if given); each part's model predicts its whole held-out part. A part is `(X, y, groups,
    inner folds)`, the inner folds from `inner_folds` (None: the fitter makes its own).
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
        parts.append((take(X, train_idx), y[train_idx], groups[train_idx], inner_folds(folds, number - 1, train_idx)))
        names.append(where)
    for (_, test_idx), estimator in zip(folds, fit(parts, names)):
        fold_probs = estimator.predict_proba(take(X, test_idx))
        for j, label in enumerate(estimator.classes_):
            probabilities[test_idx, labels.index(label)] = fold_probs[:, j]
    return probabilities


def part_folds(part: tuple, train_params: dict, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A part's inner folds: those `cross_val_probabilities` gave it, else grouped folds of its own."""
    X, y, groups, *given = part
    if given and given[0] is not None:
        return given[0]
    return grouped_folds(y, groups, inner_params(train_params, groups)["cv_folds"], seed)


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


def classifier_fitter(train_params: dict, seed: int, cache_dir: str | None = None,
                      score_lone_candidate: bool = True) -> Fitter:
    """The train stage's model selection (grouped grid search, optional calibration) on embeddings,
    all outer training parts at once (`pipeline.model.train.fit_classifiers`); fits kept in
    `cache_dir` when given (`pipeline.model.fit_cache`)."""
    def fit(parts, names):
        problems = []
        for number, part in enumerate(parts):
            with naming_part(names, number):
                problems.append((*part[:3], part_folds(part, train_params, seed)))
        try:
            results = fit_classifiers(problems, train_params, seed, names, cache_dir=cache_dir,
                                      score_lone_candidate=score_lone_candidate)
        except ValueError as exc:
            raise _unfittable(exc, names, str(train_params.get("classifier", "logistic_regression"))) from None
        return [estimator for estimator, _ in results]

    return fit


def oof_probabilities(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int,
                      labels: tuple[str, ...] = LABELS, cache_dir: str | None = None) -> np.ndarray:
    """Out-of-fold class probabilities (columns in `labels` order) of the configured model, nested
    grouped CV; with `cache_dir`, the fits the train and evaluate stages already made are reused."""
    folds = outer_folds(y, groups, train_params, seed)
    return cross_val_probabilities(classifier_fitter(train_params, seed, cache_dir), X, y, groups, folds, labels)
