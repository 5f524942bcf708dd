"""The OpenVINO embedder: its identity, loading an export in the background (with a tiny synthetic
network), and one end-to-end export of the real packaged model scored without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.encoder.fast_encoder import OpenVINOEmbedder
from pipeline.encoder.identity import model_identity
from pipeline.encoder.openvino_export import cosines, export_key, install_export
from pipeline.encoder.openvino_runtime import EncoderLayout, encoder_layout
from pipeline.errors import StanceError
from test_openvino_export import tiny_network, tiny_reference
from test_openvino_runtime import MODEL_DIR, POOLING, ROOT, TRANSFORMER, write_st_model


def test_identity_shares_the_model_part_with_the_torch_backend():
    from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder

    fast = OpenVINOEmbedder(precision="fp32")
    torch_path = SentenceTransformerEmbedder(precision="fp32")
    assert fast.identity.split("/")[0] == torch_path.identity.split("/")[0]
    assert fast.identity.endswith("/openvino-fp32") and torch_path.identity.endswith("/fp32")


def tiny_model_with_export(root: Path) -> tuple[Path, EncoderLayout]:
    """A sentence-transformers model directory and its installed export (the tiny network)."""
    import openvino as ov

    model_dir = write_st_model(root / "model", [TRANSFORMER, POOLING],
                               {"word_embedding_dimension": 2, "pooling_mode_mean_tokens": True})
    layout = encoder_layout(model_dir)
    identity = model_identity(str(model_dir))
    probes = ["one probe", "another, longer probe text"]
    install_export(tiny_network(), model_dir, identity, layout,
                   root / "exports" / export_key(identity, ov.get_version()), probes, tiny_reference(probes, layout))
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
    from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder

    fast = OpenVINOEmbedder(precision="fp32", export_dir=tmp_path)
    texts = ["Beijing and Washington must cooperate on North Korea.", "The talks ended on Tuesday. " * 40]
    vectors = fast.encode(texts)
    manifest = json.loads((fast.export_path / "manifest.json").read_text())
    assert manifest["agreement_ok"] and manifest["agreement_min_cosine"]["fp32"] >= 0.999
    reference = SentenceTransformerEmbedder(precision="fp32").encode(texts)
    assert cosines(vectors, reference).min() >= 0.999
    probe = (f"import sys; from pipeline.encoder.embed import make_embedder; "
             f"e = make_embedder({{'embedding': {{'backend': 'openvino', 'export_dir': {str(tmp_path)!r}}}}}); "
             f"v = e.encode(['hello world']); "
             f"print(v.shape, [m for m in ('torch', 'sentence_transformers', 'sklearn', 'openvino.tools.ovc') "
             f"if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 384) []"


class _CoreFailing:
    """An openvino.Core whose compile fails through the blob cache, or always."""

    def __init__(self, always: bool, calls: list):
        self.always, self.calls, self.cached = always, calls, False

    def set_property(self, properties):
        self.cached = "CACHE_DIR" in properties

    def compile_model(self, *args):
        self.calls.append(self.cached)
        if self.always or self.cached:
            raise RuntimeError("torn blob")
        return "compiled"


def test_a_compile_failure_is_retried_without_the_blob_cache_before_the_export_is_removed(tmp_path):
    from types import SimpleNamespace

    directory = tmp_path / "exports" / "key"
    directory.mkdir(parents=True)
    encoder = OpenVINOEmbedder(str(MODEL_DIR), export_dir=tmp_path / "exports")
    calls: list = []
    ov = SimpleNamespace(Core=lambda: _CoreFailing(False, calls))
    assert encoder._compile(ov, directory) == "compiled" and calls == [True, False]
    assert directory.exists()  # a torn blob cache does not cost the export

    ov = SimpleNamespace(Core=lambda: _CoreFailing(True, calls))
    with pytest.raises(StanceError, match="cannot load the OpenVINO export .RuntimeError.; it was removed"):
        encoder._compile(ov, directory)
    assert not directory.exists()
