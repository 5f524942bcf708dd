"""Out-of-fold probabilities: a fold that cannot be trained is refused with a message naming it."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import StanceError
from pipeline.model.out_of_fold import cross_val_probabilities


def test_a_fold_whose_training_part_lacks_a_label_is_refused():
    y = np.array(["favor", "against", "none", "favor", "against", "none"])
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    folds = [(np.array([0, 1, 3, 4]), np.array([2, 5]))]  # both 'none' paragraphs held out together
    with pytest.raises(StanceError, match=r"outer fold 1 of 1: no 'none' paragraphs left to train on"):
        cross_val_probabilities(lambda *a: None, np.zeros((6, 2)), y, groups, folds)


def test_inner_folds_are_the_other_outer_folds_so_pairs_train_on_the_same_rows():
    from pipeline.model.out_of_fold import inner_folds

    owner = np.array([0, 1, 2, 0, 1, 2, 3, 3, 0, 1])
    folds = [(np.flatnonzero(owner != k), np.flatnonzero(owner == k)) for k in range(4)]
    trained_on = {}
    for i, (train_idx, _) in enumerate(folds):
        inner = inner_folds(folds, i, train_idx)
        assert len(inner) == 3
        for (inner_train, inner_test), j in zip(inner, [k for k in range(4) if k != i]):
            assert set(train_idx[inner_test]) == set(folds[j][1])
            trained_on[(i, j)] = train_idx[inner_train].tolist()
    for (i, j), rows in trained_on.items():
        assert rows == trained_on[(j, i)] == sorted(set(range(10)) - set(folds[i][1]) - set(folds[j][1]))


def test_folds_that_are_not_a_partition_leave_the_inner_folds_to_the_fitter():
    from pipeline.model.out_of_fold import inner_folds

    folds = [(np.array([0, 1, 3, 4]), np.array([2, 5]))]
    assert inner_folds(folds, 0, folds[0][0]) is None
    subset = [(np.array([2, 3]), np.array([0, 1])), (np.array([0, 1]), np.array([2, 3]))]
    assert inner_folds(subset, 0, subset[0][0]) is None  # one other fold: no inner cross-validation
