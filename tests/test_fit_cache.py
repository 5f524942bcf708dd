"""The fit cache: keys that change with anything a fit depends on, entries that load as stored."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from pipeline.model import fit_cache
from pipeline.model.features import model_inputs
from pipeline.model.fit_cache import FitCache, fit_key, load_fit, row_digests, store_fit


def _table(texts=("a b", "c d", "e f"), seed=0):
    return model_inputs(list(texts), np.random.default_rng(seed).normal(size=(len(texts), 4)))


def test_a_row_digest_changes_with_its_text_its_embedding_or_its_label_only():
    X, y = _table(), np.array(["favor", "against", "none"])
    base = row_digests(X, y)
    assert len({bytes(row) for row in base}) == 3
    assert np.array_equal(row_digests(_table(), y.copy()), base)
    other_text = row_digests(_table(("a b", "c d!", "e f")), y)
    assert [bytes(a) == bytes(b) for a, b in zip(base, other_text)] == [True, False, True]
    nudged = X.copy()
    nudged.loc[2, "e0"] = np.nextafter(nudged.loc[2, "e0"], np.inf)  # the last bit of one number
    assert [bytes(a) == bytes(b) for a, b in zip(base, row_digests(nudged, y))] == [True, True, False]
    relabelled = row_digests(X, np.array(["favor", "none", "none"]))
    assert [bytes(a) == bytes(b) for a, b in zip(base, relabelled)] == [True, False, True]


@pytest.mark.parametrize("make", [lambda X: X.to_numpy()[:, 1:].astype(float), lambda X: X["text"].to_numpy(),
                                  lambda X: __import__("scipy.sparse", fromlist=["x"]).csr_matrix(
                                      X.to_numpy()[:, 1:].astype(float))])
def test_matrices_texts_and_sparse_rows_have_digests_too(make):
    X, y = _table(), np.array(["favor", "against", "none"])
    digests = row_digests(make(X), y)
    assert digests.shape == (3, 16) and len({bytes(row) for row in digests}) == 3
    assert np.array_equal(row_digests(make(X), y), digests)


def test_the_key_depends_on_the_rows_and_their_order():
    digests = row_digests(_table(), np.array(["favor", "against", "none"]))
    assert fit_key("s", digests) == fit_key("s", digests.copy())
    assert fit_key("s", digests) != fit_key("t", digests)
    assert fit_key("s", digests) != fit_key("s", digests[::-1])
    assert fit_key("s", digests) != fit_key("s", digests[:2])


def test_the_signature_names_the_numerics_and_the_feature_code():
    signature = fit_cache.code_signature()
    assert "sklearn " in signature and "features " in signature
    assert signature.splitlines()[-1].startswith(("pinned ", "native "))


def test_a_stored_fit_loads_and_a_damaged_one_is_dropped(tmp_path):
    cache = FitCache(tmp_path / "fits")
    path = cache.path("ab" * 32)
    assert load_fit(path) is None
    store_fit(path, {"coef": np.arange(3.0)})
    assert np.array_equal(load_fit(path)["coef"], np.arange(3.0))
    with open(path, "wb") as handle:
        handle.write(b"\x80\x05 truncated")
    assert load_fit(path) is None and not os.path.exists(path)
    assert FitCache(None).path("ab" * 32) is None and load_fit(None) is None
    store_fit(None, object())  # no directory: nothing kept, no error


def test_a_fit_too_large_to_be_worth_keeping_is_not_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_cache, "ENTRY_LIMIT_BYTES", 1000)
    path = FitCache(tmp_path).path("cd" * 32)
    store_fit(path, np.zeros(1000))
    assert not os.path.exists(path)


def test_pruning_keeps_the_most_recently_used_entries(tmp_path):
    cache = FitCache(tmp_path)
    paths = [cache.path(f"{i:02d}" * 32) for i in range(4)]
    for age, path in enumerate(paths):
        store_fit(path, np.zeros(200))
        stamp = time.time() - 1000 + age * 10
        os.utime(path, (stamp, stamp))
    load_fit(paths[0])  # used just now: kept
    size = os.path.getsize(paths[0])
    assert cache.prune(limit=2 * size) == 2
    assert [os.path.exists(path) for path in paths] == [True, False, False, True]
