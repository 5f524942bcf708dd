"""The OpenVINO export: the manifest check, the agreement check (with a tiny synthetic network)
that installs an export or refuses it, and the reuse of a valid export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.encoder import openvino_export
from pipeline.encoder.openvino_runtime import EncoderLayout, load_tokenizer, pool
from pipeline.errors import StanceError
from test_openvino_runtime import MODEL_DIR


def test_manifest_check_catches_another_model_and_damaged_files(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"12345")
    manifest = {"format": openvino_export.EXPORT_FORMAT, "identity": "m@1", "agreement_ok": True,
                "files": {"model.bin": 5}}
    assert openvino_export._valid_manifest(manifest, tmp_path, "m@1")
    assert not openvino_export._valid_manifest(manifest, tmp_path, "m@2")
    assert not openvino_export._valid_manifest({**manifest, "agreement_ok": False}, tmp_path, "m@1")
    (tmp_path / "model.bin").write_bytes(b"123")
    assert not openvino_export._valid_manifest(manifest, tmp_path, "m@1")
    assert not openvino_export._valid_manifest(None, tmp_path, "m@1")


def tiny_network():
    """An OpenVINO model whose 'token vectors' are (id, 1): small enough to build in a test."""
    import openvino as ov
    from openvino import opset13 as ops

    ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    mask = ops.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    as_float = ops.unsqueeze(ops.convert(ids, ov.Type.f32), ops.constant(np.array([-1], dtype=np.int64)))
    hidden = ops.concat([as_float, ops.unsqueeze(ops.convert(mask, ov.Type.f32),
                                                 ops.constant(np.array([-1], dtype=np.int64)))], axis=-1)
    model = ov.Model([hidden], [ids, mask], "tiny")
    for port, name in zip(model.inputs, ("input_ids", "attention_mask")):
        port.get_tensor().set_names({name})
    return model


def tiny_reference(texts, layout):
    tokenizer = load_tokenizer(MODEL_DIR / "tokenizer.json", layout.max_length)
    rows = []
    for encoding in tokenizer.encode_batch(texts):
        ids = np.array(encoding.ids, dtype=np.float32)
        rows.append(pool(np.stack([ids, np.ones_like(ids)], axis=1)[None], np.ones((1, len(ids))), layout)[0])
    return np.vstack(rows)


def test_an_export_that_agrees_is_installed_and_one_that_does_not_is_refused(tmp_path):
    pytest.importorskip("openvino")
    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["China and the United States", "a longer probe text about the sanctions regime and its limits"]
    reference = tiny_reference(probes, layout)
    target = tmp_path / "exports" / "key"
    manifest = openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, target, probes, reference)
    assert manifest["agreement_ok"] and min(manifest["agreement_min_cosine"].values()) >= 0.999
    assert openvino_export._valid_manifest(json.loads((target / "manifest.json").read_text()), target, "tiny@1")

    wrong = tmp_path / "exports" / "wrong"
    with pytest.raises(StanceError, match="disagrees with PyTorch"):
        openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, wrong, probes, -reference)
    assert not wrong.exists()
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["key"]  # no staging left behind


def test_a_valid_export_is_reused_not_rebuilt(tmp_path, monkeypatch):
    import openvino as ov

    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["one probe", "another probe"]
    directory = tmp_path / openvino_export.export_key("tiny@1", ov.get_version())
    openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, directory, probes,
                                   tiny_reference(probes, layout))
    monkeypatch.setattr(openvino_export, "export_model", lambda *a, **k: pytest.fail("re-exported a valid export"))
    assert openvino_export.ensure_export(MODEL_DIR, "tiny@1", layout, tmp_path) == directory


def test_processes_needing_the_same_export_at_once_make_it_once(tmp_path, monkeypatch):
    """Two Dask workers on a fresh machine both need the export: one makes it, the other waits and
    reuses it (before the lock, the second replaced the first's export while it was loading)."""
    import threading

    import openvino as ov

    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["one probe", "another probe"]
    exports = []

    def slow_export(location, identity, layout_, directory):
        exports.append(identity)
        threading.Event().wait(0.3)  # long enough for the other caller to arrive meanwhile
        openvino_export.install_export(tiny_network(), location, identity, layout_, directory, probes,
                                       tiny_reference(probes, layout_))

    monkeypatch.setattr(openvino_export, "export_model", slow_export)
    results = []
    callers = [threading.Thread(target=lambda: results.append(
        openvino_export.ensure_export(MODEL_DIR, "tiny@1", layout, tmp_path, ov))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert exports == ["tiny@1"]
    assert results == [tmp_path / openvino_export.export_key("tiny@1", ov.get_version())] * 2


def test_an_installed_valid_export_is_never_replaced(tmp_path):
    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["one probe", "another probe"]
    directory = tmp_path / "key"
    first = openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, directory, probes,
                                           tiny_reference(probes, layout))
    inode = (directory / "model.bin").stat().st_ino
    second = openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, directory, probes,
                                            tiny_reference(probes, layout))
    assert second == first and (directory / "model.bin").stat().st_ino == inode  # the same files, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # the second staging was removed

    (directory / "model.bin").write_bytes(b"damaged")
    openvino_export.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, directory, probes,
                                   tiny_reference(probes, layout))
    assert openvino_export._valid_manifest(json.loads((directory / "manifest.json").read_text()), directory,
                                           "tiny@1")  # a damaged one is replaced
