"""Learning curve: how grouped-CV f_avg grows with the number of labelled paragraphs.

Inputs:  the labels `y` (and document `groups`), the sizes to try (`evaluate.learning_curve`, e.g.
         50, 100, 200; "all" is always added), `seed`, and a function that returns out-of-fold
         probabilities when training is restricted to a subset of rows (the evaluate stage passes
         its nested cross-validation on the shared outer folds).
Outputs: a list of points {paragraphs, documents, f_avg, macro_f1, accuracy}, or {paragraphs,
         skipped: reason} for a size that cannot be evaluated.

The subsamples are nested (the 50 lie inside the 100, ...) and stratified by label: a seeded
shuffle of each label's paragraphs, interleaved so that every prefix keeps the label shares.
Only the training side shrinks: each outer fold trains on the subsample's paragraphs in its
training documents and is scored on all of its held-out paragraphs, so every point is measured
on the same held-out data and the last point equals the headline f_avg.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError


def subsample_order(y: np.ndarray, seed: int) -> np.ndarray:
    """Row indices in a seeded order whose every prefix keeps the label shares of `y`."""
    rng = np.random.default_rng(seed)
    position = np.zeros(len(y))
    for label in sorted(set(y.tolist())):
        members = rng.permutation(np.flatnonzero(y == label))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.random(len(y)), position))


def _point(n: int, subset: np.ndarray, y: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None,
           labels: tuple[str, ...]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    from pipeline.model.train import f_avg

    predicted = np.array(labels)[probabilities.argmax(axis=1)]
    point = {"paragraphs": int(n)}
    if groups is not None:
        point["documents"] = len(set(groups[subset].tolist()))
    point.update({
        "f_avg": round(f_avg(y, predicted), 4),
        "macro_f1": round(float(f1_score(y, predicted, labels=list(labels), average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
    })
    return point


def learning_curve(y: np.ndarray, sizes: list[int], seed: int,
                   probabilities_for: Callable[[np.ndarray], np.ndarray],
                   full_probabilities: np.ndarray | None = None, groups: np.ndarray | None = None,
                   labels: tuple[str, ...] = LABELS) -> list[dict]:
    """Points for each size below the number of labelled paragraphs, then one for all of them.

    `probabilities_for(subset)` gives out-of-fold probabilities for every row when training may
    use only the rows in `subset`; `full_probabilities` (all rows) saves recomputing the last point.
    A size that cannot be evaluated (e.g. too few paragraphs of a label for the inner folds) is
    kept as a point with a `skipped` reason instead of failing the whole evaluation.
    """
    order = subsample_order(y, seed)
    everything = np.arange(len(y))
    points = []
    for n in sorted(set(int(s) for s in sizes)):
        if n >= len(y):
            points.append({"paragraphs": n, "skipped": f"not fewer than the {len(y)} labelled paragraphs"})
            continue
        subset = np.sort(order[:n])
        try:
            probabilities = probabilities_for(subset)
        except StanceError as exc:
            points.append({"paragraphs": n, "skipped": str(exc)})
            continue
        points.append(_point(n, subset, y, probabilities, groups, labels))
    if full_probabilities is None:
        full_probabilities = probabilities_for(everything)
    points.append(_point(len(y), everything, y, full_probabilities, groups, labels) | {"all": True})
    return points
