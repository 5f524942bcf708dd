"""Running an OpenVINO export: model layout, pooling, tokenizer settings, batching order and
importing openvino without its conversion tools."""

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

from pipeline.encoder.fast_encoder import OpenVINOEmbedder
from pipeline.encoder.identity import resolve_model
from pipeline.encoder.openvino_runtime import EncoderLayout, encoder_layout, load_tokenizer, pool

MODEL_DIR = Path(resolve_model("default"))
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


def test_openvino_is_imported_without_its_conversion_tools_which_still_import_later():
    pytest.importorskip("openvino")
    probe = ("import sys; from pipeline.encoder.openvino_runtime import import_openvino; ov = import_openvino(); "
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
    probe = ("from pipeline.encoder.openvino_runtime import import_openvino; ov = import_openvino(); "
             "print(ov.__file__.startswith(%r), ov.convert_model)" % str(tmp_path))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "converter"]
