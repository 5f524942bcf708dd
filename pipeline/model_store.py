"""Saving and loading the trained classifier with its metadata, verified by sha256."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from pipeline.errors import StanceError
from pipeline.files import atomic_path, sha256_file, write_json_atomic

VERSIONED = ("numpy", "scikit-learn", "joblib", "sentence-transformers", "torch", "transformers")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def save_model(estimator, meta: dict, model_path: str | Path, meta_path: str | Path) -> dict:
    """Write the joblib model and its metadata JSON (with the model's sha256), each atomically."""
    import joblib

    with atomic_path(model_path) as tmp:
        joblib.dump(estimator, tmp)
        digest = sha256_file(tmp)
    meta = {**meta, "model_file": Path(model_path).name, "model_sha256": digest, "versions": library_versions()}
    write_json_atomic(meta_path, meta)
    return meta


def load_meta(meta_path: str | Path) -> dict:
    meta_path = Path(meta_path)
    if not meta_path.exists():
        raise StanceError(f"{meta_path}: no trained model (run `dvc repro` first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StanceError(f"{meta_path}: corrupt model metadata (run `dvc repro` to retrain)") from None
    if not isinstance(meta, dict) or "model_sha256" not in meta:
        raise StanceError(f"{meta_path}: model metadata without model_sha256 (run `dvc repro` to retrain)")
    return meta


def load_model(model_path: str | Path, meta_path: str | Path):
    """(estimator, metadata); the model file's sha256 is checked before anything is unpickled."""
    import joblib

    model_path = Path(model_path)
    meta = load_meta(meta_path)
    if not model_path.exists():
        raise StanceError(f"{model_path}: no trained model (run `dvc repro` first)")
    actual = sha256_file(model_path)
    if actual != meta["model_sha256"]:
        raise StanceError(f"{model_path}: sha256 {actual[:12]}… does not match {meta_path} "
                          f"({meta['model_sha256'][:12]}…); refusing to load (run `dvc repro` to retrain)")
    return joblib.load(model_path), meta
