"""The OpenVINO encoder: model layout, pooling, tokenizer settings, batching order, the export
check (with a tiny synthetic network), and one end-to-end export of the real packaged model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import fast_encoder
from pipeline.errors import StanceError
from pipeline.fast_encoder import EncoderLayout, OpenVINOEmbedder, encoder_layout, load_tokenizer, pool

MODEL_DIR = Path(fast_encoder.resolve_model("default"))
ROOT = Path(__file__).resolve().parent.parent


def write_st_model(root: Path, modules: list[dict], pooling: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODEL_DIR / "tokenizer.json", root / "tokenizer.json")
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (root / "config.json").write_text(json.dumps({"hidden_size": 4, "max_position_embeddings": 512}))
    (root / "1_Pooling").mkdir(exist_ok=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        pooling or {"word_embedding_dimension": 4, "pooling_mode_mean_tokens": True}))
    return root


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


def test_layout_of_the_packaged_model_follows_its_modules_json():
    layout = encoder_layout(MODEL_DIR)
    assert layout == EncoderLayout(max_length=256, pooling="mean", normalize=True, dimension=384)


def test_layout_refuses_what_it_cannot_reproduce(tmp_path):
    assert encoder_layout(write_st_model(tmp_path / "ok", [TRANSFORMER, POOLING])) == EncoderLayout(128, "mean", False, 4)
    assert encoder_layout(write_st_model(tmp_path / "dense", [TRANSFORMER, POOLING, DENSE])) is None
    two_modes = {"word_embedding_dimension": 4, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}
    assert encoder_layout(write_st_model(tmp_path / "two", [TRANSFORMER, POOLING, NORMALIZE], two_modes)) is None
    no_tokenizer = write_st_model(tmp_path / "notok", [TRANSFORMER, POOLING])
    (no_tokenizer / "tokenizer.json").unlink()
    assert encoder_layout(no_tokenizer) is None
    assert encoder_layout(tmp_path / "missing") is None


def test_pooling_ignores_padding_and_normalises():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]],
                       [[0.0, 2.0], [50.0, 50.0], [50.0, 50.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    mean = pool(hidden, mask, EncoderLayout(8, "mean", False, 2))
    np.testing.assert_allclose(mean, [[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(pool(hidden, mask, EncoderLayout(8, "mean", True, 2)), [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(pool(hidden, mask, EncoderLayout(8, "cls", False, 2)), [[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(pool(hidden, mask, EncoderLayout(8, "max", False, 2)), [[3.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(pool(hidden, mask, EncoderLayout(8, "mean_sqrt_len", False, 2)),
                               [[4.0 / np.sqrt(2), 0.0], [0.0, 2.0]], rtol=1e-6)


def test_tokenizer_truncates_at_the_model_window_and_does_not_pad():
    # The packaged tokenizer.json itself truncates and pads to 128; sentence-transformers uses 256.
    tokenizer = load_tokenizer(MODEL_DIR / "tokenizer.json", 256)
    long, short = tokenizer.encode_batch(["word " * 400, "two words"])
    assert len(long.ids) == 256 and long.ids[-1] == tokenizer.token_to_id("[SEP]")
    assert len(short.ids) == 4


class FakeQueue:
    """Stands in for openvino.AsyncInferQueue: 'hidden states' are the token ids as floats."""

    def __init__(self):
        self.widths: list[int] = []
        self.callback = None

    def set_callback(self, callback):
        self.callback = callback

    def start_async(self, inputs, job):
        ids = inputs["input_ids"]
        self.widths.append(ids.shape[1])
        hidden = np.repeat(ids[..., None].astype(np.float32), 2, axis=2)

        class Request:
            def get_output_tensor(self, index):
                return type("Tensor", (), {"data": hidden})()

        self.callback(Request(), job)

    def wait_all(self):
        pass


def fake_loaded_encoder(batch_size: int) -> tuple[OpenVINOEmbedder, FakeQueue]:
    encoder = OpenVINOEmbedder(batch_size=batch_size, precision="fp32", export_dir="unused")
    queue = FakeQueue()
    encoder._request = queue
    encoder._tokenizer = load_tokenizer(MODEL_DIR / "tokenizer.json", 256)
    encoder._layout = EncoderLayout(256, "mean", False, 2)
    encoder._inputs = ["input_ids", "attention_mask", "token_type_ids"]
    return encoder, queue


def test_batches_are_sorted_by_length_and_results_come_back_in_input_order():
    texts = ["short one", "a much longer paragraph " * 20, "medium sized text here " * 5, "tiny", "x " * 60]
    encoder, queue = fake_loaded_encoder(batch_size=2)
    batched = encoder.encode(texts)
    single = np.vstack([fake_loaded_encoder(batch_size=1)[0].encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, rtol=1e-6)  # padding never leaks into a vector
    assert queue.widths == sorted(queue.widths, reverse=True) and len(queue.widths) == 3
    assert encoder.encode([]).shape[0] == 0


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 3000), streams=st.integers(1, 8), batch_size=st.integers(1, 64))
def test_batches_keep_every_stream_busy_and_never_exceed_the_batch_size(count, streams, batch_size):
    encoder = OpenVINOEmbedder(batch_size=batch_size, precision="fp32", export_dir="unused")
    encoder._request = [None] * streams  # what matters of an AsyncInferQueue here: its length
    batches = encoder.batch_count(count)
    largest = max(len(b) for b in np.array_split(np.arange(count), batches))
    assert largest <= batch_size and batches <= count
    assert batches % streams == 0 or batches == count  # no stream idles while another works
    assert batches < -(-count // batch_size) + streams  # and no more batches than that needs


def test_identity_shares_the_model_part_with_the_torch_backend():
    from pipeline.embed import SentenceTransformerEmbedder

    fast = OpenVINOEmbedder(precision="fp32")
    torch_path = SentenceTransformerEmbedder(precision="fp32")
    assert fast.identity.split("/")[0] == torch_path.identity.split("/")[0]
    assert fast.identity.endswith("/openvino-fp32") and torch_path.identity.endswith("/fp32")


def test_manifest_check_catches_another_model_and_damaged_files(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"12345")
    manifest = {"format": fast_encoder.EXPORT_FORMAT, "identity": "m@1", "agreement_ok": True,
                "files": {"model.bin": 5}}
    assert fast_encoder._valid_manifest(manifest, tmp_path, "m@1")
    assert not fast_encoder._valid_manifest(manifest, tmp_path, "m@2")
    assert not fast_encoder._valid_manifest({**manifest, "agreement_ok": False}, tmp_path, "m@1")
    (tmp_path / "model.bin").write_bytes(b"123")
    assert not fast_encoder._valid_manifest(manifest, tmp_path, "m@1")
    assert not fast_encoder._valid_manifest(None, tmp_path, "m@1")


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


def test_openvino_is_imported_without_its_conversion_tools_which_still_import_later():
    pytest.importorskip("openvino")
    probe = ("import sys; from pipeline.fast_encoder import import_openvino; ov = import_openvino(); "
             "print(hasattr(ov, 'Core'), 'openvino.tools.ovc' in sys.modules); "
             "from openvino.tools.ovc import convert_model; print(callable(convert_model))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]


def test_an_openvino_that_needs_its_tools_at_import_is_imported_the_usual_way(tmp_path):
    package = tmp_path / "openvino"
    (package / "tools" / "ovc").mkdir(parents=True)
    (package / "__init__.py").write_text("from openvino.tools.ovc import convert_model\n")
    (package / "tools" / "__init__.py").write_text("")
    (package / "tools" / "ovc" / "__init__.py").write_text("convert_model = 'converter'\n")
    probe = ("from pipeline.fast_encoder import import_openvino; ov = import_openvino(); "
             "print(ov.__file__.startswith(%r), ov.convert_model)" % str(tmp_path))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "converter"]


def test_an_export_that_agrees_is_installed_and_one_that_does_not_is_refused(tmp_path):
    pytest.importorskip("openvino")
    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["China and the United States", "a longer probe text about the sanctions regime and its limits"]
    reference = tiny_reference(probes, layout)
    target = tmp_path / "exports" / "key"
    manifest = fast_encoder.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, target, probes, reference)
    assert manifest["agreement_ok"] and min(manifest["agreement_min_cosine"].values()) >= 0.999
    assert fast_encoder._valid_manifest(json.loads((target / "manifest.json").read_text()), target, "tiny@1")

    wrong = tmp_path / "exports" / "wrong"
    with pytest.raises(StanceError, match="disagrees with PyTorch"):
        fast_encoder.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, wrong, probes, -reference)
    assert not wrong.exists()
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["key"]  # no staging left behind


def test_a_valid_export_is_reused_not_rebuilt(tmp_path, monkeypatch):
    import openvino as ov

    layout = EncoderLayout(64, "mean", True, 2)
    probes = ["one probe", "another probe"]
    directory = tmp_path / fast_encoder.export_key("tiny@1", ov.get_version())
    fast_encoder.install_export(tiny_network(), MODEL_DIR, "tiny@1", layout, directory, probes,
                                tiny_reference(probes, layout))
    monkeypatch.setattr(fast_encoder, "export_model", lambda *a, **k: pytest.fail("re-exported a valid export"))
    assert fast_encoder.ensure_export(MODEL_DIR, "tiny@1", layout, tmp_path) == directory


def tiny_model_with_export(root: Path) -> tuple[Path, EncoderLayout]:
    """A sentence-transformers model directory and its installed export (the tiny network)."""
    import openvino as ov

    model_dir = write_st_model(root / "model", [TRANSFORMER, POOLING],
                               {"word_embedding_dimension": 2, "pooling_mode_mean_tokens": True})
    layout = encoder_layout(model_dir)
    identity = fast_encoder.model_identity(str(model_dir))
    probes = ["one probe", "another, longer probe text"]
    fast_encoder.install_export(tiny_network(), model_dir, identity, layout,
                                root / "exports" / fast_encoder.export_key(identity, ov.get_version()),
                                probes, tiny_reference(probes, layout))
    return model_dir, layout


def test_loading_in_the_background_gives_the_same_vectors(tmp_path):
    model_dir, layout = tiny_model_with_export(tmp_path)
    texts = ["Beijing and Washington", "a longer text about sanctions, talks and the peninsula", "short"]
    foreground = OpenVINOEmbedder(str(model_dir), batch_size=2, export_dir=tmp_path / "exports")
    background = OpenVINOEmbedder(str(model_dir), batch_size=2, export_dir=tmp_path / "exports")
    background.start_loading()
    background.start_loading()  # a second call does not start a second load
    vectors = background.encode(texts)
    assert background._loader is None and background._request is not None
    np.testing.assert_allclose(vectors, foreground.encode(texts), rtol=1e-6)
    np.testing.assert_allclose(vectors, tiny_reference(texts, layout), rtol=1e-5)


def test_a_background_load_leaves_a_missing_export_to_the_foreground_and_reports_errors(tmp_path):
    import pickle

    encoder = OpenVINOEmbedder(str(MODEL_DIR), export_dir=tmp_path / "exports")
    encoder.start_loading()
    copy = pickle.loads(pickle.dumps(encoder))  # waits for the load; the copy loads its own
    encoder.wait_loaded()
    assert encoder._request is None and copy._request is None and copy._loader is None
    assert not (tmp_path / "exports").exists()  # exporting (20 s, prints) never runs in the background

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    broken = OpenVINOEmbedder(str(not_a_model), export_dir=tmp_path / "exports")
    broken.start_loading()
    with pytest.raises(StanceError, match="not a local sentence-transformers model"):
        broken.encode(["text"])  # the background thread's error reaches the caller


@pytest.mark.e2e
def test_real_export_agrees_with_pytorch_and_scores_without_torch(tmp_path):
    """Export the packaged model (once, ~20 s), compare with sentence-transformers, and check that a
    fresh process encodes with it without importing torch, sentence-transformers or sklearn."""
    from pipeline.embed import SentenceTransformerEmbedder

    fast = OpenVINOEmbedder(precision="fp32", export_dir=tmp_path)
    texts = ["Beijing and Washington must cooperate on North Korea.", "The talks ended on Tuesday. " * 40]
    vectors = fast.encode(texts)
    manifest = json.loads((fast.export_path / "manifest.json").read_text())
    assert manifest["agreement_ok"] and manifest["agreement_min_cosine"]["fp32"] >= 0.999
    reference = SentenceTransformerEmbedder(precision="fp32").encode(texts)
    assert fast_encoder.cosines(vectors, reference).min() >= 0.999
    probe = (f"import sys; from pipeline.embed import make_embedder; "
             f"e = make_embedder({{'embedding': {{'backend': 'openvino', 'export_dir': {str(tmp_path)!r}}}}}); "
             f"v = e.encode(['hello world']); "
             f"print(v.shape, [m for m in ('torch', 'sentence_transformers', 'sklearn', 'openvino.tools.ovc') "
             f"if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 384) []"
