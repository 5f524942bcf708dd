"""The model store: joblib + sha256 as the model of record, and the verified numpy fast path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import StanceError
from pipeline.model import model_store
from pipeline.model.model_store import LinearModel, load_model, save_model

ROOT = Path(__file__).resolve().parent.parent


def data(n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(90, 16))
    y = np.array(["favor", "against", "none"][:n_classes] * (90 // n_classes))
    X[:, 0] += np.arange(90) % n_classes  # something to learn
    return X, y


def saved(tmp_path, estimator, meta=None):
    paths = tmp_path / "model.joblib", tmp_path / "model.json"
    save_model(estimator, meta or {"labels": ["favor", "against", "none"]}, *paths)
    return paths


@pytest.mark.parametrize("n_classes", [3, 2])
def test_linear_fast_path_reproduces_sklearn(tmp_path, n_classes):
    from sklearn.linear_model import LogisticRegression

    X, y = data(n_classes)
    estimator = LogisticRegression(class_weight="balanced", max_iter=1000).fit(X, y)
    paths = saved(tmp_path, estimator)
    fast, meta = load_model(*paths)
    assert isinstance(fast, LinearModel) and meta["linear"]["kind"] == ("softmax" if n_classes == 3 else "logistic")
    assert list(fast.classes_) == list(estimator.classes_)
    np.testing.assert_allclose(fast.predict_proba(X), estimator.predict_proba(X), rtol=0, atol=1e-12)
    assert list(fast.predict(X)) == list(estimator.predict(X))
    full, _ = load_model(*paths, sklearn=True)
    assert type(full).__name__ == "LogisticRegression"


def test_a_non_linear_estimator_is_stored_and_loaded_with_joblib_only(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    X, y = data()
    paths = saved(tmp_path, KNeighborsClassifier(n_neighbors=3).fit(X, y))
    assert "linear" not in json.loads(paths[1].read_text())
    estimator, _ = load_model(*paths)
    assert type(estimator).__name__ == "KNeighborsClassifier"


def test_retraining_a_non_linear_model_drops_a_stale_linear_payload(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    X, y = data()
    first = saved(tmp_path, model_store_lr(X, y))
    meta = json.loads(first[1].read_text())
    save_model(KNeighborsClassifier(n_neighbors=3).fit(X, y), meta, *first)
    assert "linear" not in json.loads(first[1].read_text())


def model_store_lr(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(X, y)


def test_tampered_model_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    import joblib

    X, y = data()
    paths = saved(tmp_path, model_store_lr(X, y))
    with open(paths[0], "ab") as handle:
        handle.write(b"tampered")
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("unpickled an unverified file"))
    for sklearn in (False, True):
        with pytest.raises(StanceError, match=r"model\.joblib: sha256 .* does not match .*refusing to load"):
            load_model(*paths, sklearn=sklearn)


def test_edited_coefficients_are_refused(tmp_path):
    X, y = data()
    paths = saved(tmp_path, model_store_lr(X, y))
    meta = json.loads(paths[1].read_text())
    coef = model_store._decode(meta["linear"]["coef"], tuple(meta["linear"]["shape"]))
    meta["linear"]["coef"] = model_store._encode(coef * 1.01)
    paths[1].write_text(json.dumps(meta))
    with pytest.raises(StanceError, match=r"model\.json: the linear coefficients do not match model_sha256"):
        load_model(*paths)


def test_a_swapped_model_file_with_its_sha256_updated_does_not_reuse_old_coefficients(tmp_path):
    X, y = data()
    paths = saved(tmp_path, model_store_lr(X, y))
    old_meta = json.loads(paths[1].read_text())
    other = tmp_path / "other"
    other.mkdir()
    other_paths = saved(other, model_store_lr(X[::-1] * 2, y))
    paths[0].write_bytes(other_paths[0].read_bytes())
    old_meta["model_sha256"] = json.loads(other_paths[1].read_text())["model_sha256"]
    paths[1].write_text(json.dumps(old_meta))
    with pytest.raises(StanceError, match="linear coefficients do not match"):
        load_model(*paths)


def test_corrupt_and_missing_metadata(tmp_path):
    X, y = data()
    paths = saved(tmp_path, model_store_lr(X, y))
    paths[1].write_text("{not json")
    with pytest.raises(StanceError, match=r"model\.json: corrupt model metadata"):
        load_model(*paths)
    paths[1].unlink()
    with pytest.raises(StanceError, match="run `dvc repro` first"):
        load_model(*paths)


def test_loading_the_fast_path_imports_neither_sklearn_nor_joblib(tmp_path):
    X, y = data()
    paths = saved(tmp_path, model_store_lr(X, y))
    probe = (f"import sys; from pipeline.model.model_store import load_model; "
             f"m, _ = load_model({str(paths[0])!r}, {str(paths[1])!r}); "
             f"print(type(m).__name__, [n for n in ('sklearn', 'joblib') if n in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LinearModel []"


def test_metadata_records_the_runtime_versions(tmp_path):
    X, y = data()
    meta = json.loads(saved(tmp_path, model_store_lr(X, y))[1].read_text())
    assert {"python", "numpy", "scikit-learn", "openvino", "tokenizers"} <= set(meta["versions"])
