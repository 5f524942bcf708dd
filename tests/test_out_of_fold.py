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
