"""The embed stage: the cache (only new paragraphs are encoded), settings validation and backend resolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.encoder import embed, fast_encoder, identity
from pipeline.encoder.embed import EmbeddingCache, embed_texts, make_embedder
from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder
from pipeline.errors import StanceError
from pipeline.files import read_jsonl

# -- the cache ------------------------------------------------------------------------------


def test_only_texts_missing_from_the_cache_reach_the_encoder(tmp_path, fake_embedder):
    cache = EmbeddingCache(tmp_path, fake_embedder.identity)
    first = embed_texts(["alpha beta", "gamma delta", "alpha beta"], fake_embedder, cache)
    assert fake_embedder.calls == [2]  # the repeat is encoded once
    again = embed_texts(["gamma delta", "epsilon", "alpha beta"], fake_embedder, EmbeddingCache(tmp_path, fake_embedder.identity))
    assert fake_embedder.calls == [2, 1]  # a fresh cache object reads the shards from disk
    np.testing.assert_array_equal(again[2], first[0])
    np.testing.assert_array_equal(again[0], first[1])


def test_the_cache_is_keyed_by_identity(tmp_path, fake_embedder):
    embed_texts(["alpha beta"], fake_embedder, EmbeddingCache(tmp_path, "model@1/fp32"))
    embed_texts(["alpha beta"], fake_embedder, EmbeddingCache(tmp_path, "model@1/openvino-fp32"))
    embed_texts(["alpha beta"], fake_embedder, EmbeddingCache(tmp_path, "model@1/fp32"))
    assert fake_embedder.calls == [1, 1]


def test_a_damaged_shard_is_only_a_cache_miss(tmp_path, fake_embedder):
    cache = EmbeddingCache(tmp_path, fake_embedder.identity)
    embed_texts(["alpha beta"], fake_embedder, cache)
    for shard in cache.dir.glob("*.npz"):
        shard.write_bytes(b"not an npz")
    vectors = embed_texts(["alpha beta"], fake_embedder, EmbeddingCache(tmp_path, fake_embedder.identity))
    assert fake_embedder.calls == [1, 1] and vectors.shape == (1, 64)


def test_rerunning_the_stage_after_adding_a_document_embeds_only_its_paragraphs(project, fake_embedder):
    from pipeline.corpus import prepare

    prepare.run(project)
    embed.run(project, embedder=fake_embedder)
    assert sum(fake_embedder.calls) == 24
    with open(project["paths"]["sources"], "a", encoding="utf-8") as handle:
        handle.write("new-doc,New,Someone,Test,2021-01-01,2021,authored,op-ed,test\n")
    (Path(project["paths"]["raw_dir"]) / "new-doc.txt").write_text(
        "A brand new paragraph about joint sanctions enforcement on the peninsula.\n\n"
        "Another new paragraph saying the rivalry makes cooperation impossible now.\n", encoding="utf-8")
    prepare.run(project)
    path = embed.run(project, embedder=fake_embedder)
    assert fake_embedder.calls[1:] == [2]
    rows, matrix, written = embed.load_embeddings(path)
    assert len(rows) == len(read_jsonl(project["paths"]["paragraphs"])) == 26
    assert matrix.shape == (26, 64) and written == fake_embedder.identity


# -- precision ------------------------------------------------------------------------------


def test_unknown_precision_and_backend_are_clear_errors():
    with pytest.raises(StanceError, match="unknown precision 'fp8'"):
        make_embedder({"embedding": {"precision": "fp8"}})
    with pytest.raises(StanceError, match="unknown embedding backend 'onnx'"):
        make_embedder({"embedding": {"backend": "onnx"}})
    with pytest.raises(StanceError, match="embedding.batch_size must be a positive integer"):
        make_embedder({"embedding": {"batch_size": 0}})


# -- backend ---------------------------------------------------------------------------------


def test_auto_backend_is_openvino_when_the_model_can_be_exported(monkeypatch):
    monkeypatch.setattr(fast_encoder, "exportable", lambda spec: True)
    assert embed.resolve_backend("auto") == "openvino"
    monkeypatch.setattr(fast_encoder, "exportable", lambda spec: False)
    assert embed.resolve_backend("auto") == "torch"
    assert embed.resolve_backend("openvino") == "openvino"


def test_the_packaged_model_is_exportable_and_a_hub_name_is_not():
    assert fast_encoder.exportable("default")
    assert not fast_encoder.exportable("some-org/some-model-not-on-disk")


def test_make_embedder_builds_the_configured_backend_and_overrides_win(monkeypatch, tmp_path):
    monkeypatch.setattr(identity, "cpu_has_native_bf16", lambda: False)
    params = {"embedding": {"model": "default", "batch_size": 16, "precision": "auto", "backend": "auto",
                            "export_dir": str(tmp_path)}}
    fast = make_embedder(params)
    assert isinstance(fast, fast_encoder.OpenVINOEmbedder)
    assert fast.identity.endswith("/openvino-fp32") and fast.batch_size == 16 and fast.export_root == tmp_path
    slow = make_embedder(params, backend="torch", precision="bf16", model=None)
    assert isinstance(slow, SentenceTransformerEmbedder) and slow.identity.endswith("/bf16")
    assert fast.identity.split("/")[0] == slow.identity.split("/")[0]  # same model: score does not refuse
    assert not list(tmp_path.iterdir())  # nothing is loaded or exported until the first encode


def test_training_embeddings_are_fp32_on_any_cpu_and_scoring_may_use_bf16(monkeypatch, tmp_path):
    monkeypatch.setattr(identity, "cpu_has_native_bf16", lambda: True)  # an AMX processor
    params = {"embedding": {"model": "default", "precision": "fp32", "backend": "auto", "export_dir": str(tmp_path)},
              "score": {"precision": "auto"}}
    assert make_embedder(params).identity.endswith("/openvino-fp32")
    # auto: bf16 where the CPU has AMX, but never through OpenVINO (its AMX bf16 kernels fail)
    assert make_embedder(params, scoring=True).identity.endswith("/openvino-fp32")
    assert make_embedder(params, scoring=True, precision="bf16").identity.endswith("/bf16")  # PyTorch
    assert isinstance(make_embedder(params, scoring=True, backend="torch"), SentenceTransformerEmbedder)
    assert make_embedder(params, scoring=True, backend="torch").identity.endswith("/bf16")
    with pytest.raises(StanceError, match=r"bf16 with the OpenVINO backend is disabled"):
        make_embedder(params, scoring=True, backend="openvino", precision="bf16")
    monkeypatch.setattr(identity, "cpu_has_native_bf16", lambda: False)
    assert make_embedder(params, scoring=True, backend="torch").identity.endswith("/fp32")


def test_training_embeds_with_embedding_backend_and_scoring_with_score_backend(monkeypatch, tmp_path):
    monkeypatch.setattr(identity, "cpu_has_native_bf16", lambda: False)
    params = {"embedding": {"model": "default", "precision": "fp32", "backend": "torch", "export_dir": str(tmp_path)},
              "score": {"precision": "fp32", "backend": "auto"}}
    assert isinstance(make_embedder(params), SentenceTransformerEmbedder)  # the embed stage (pinned: reproducible)
    assert isinstance(make_embedder(params, scoring=True), fast_encoder.OpenVINOEmbedder)  # new text: the fast path
    assert isinstance(make_embedder(params, scoring=True, backend="torch"), SentenceTransformerEmbedder)
    with pytest.raises(StanceError, match="unknown embedding backend 'onnx'"):
        make_embedder({**params, "score": {"backend": "onnx"}}, scoring=True)


def test_no_heavy_imports_before_the_first_encode():
    probe = ("import sys; from pipeline.encoder.embed import make_embedder; make_embedder({}); "
             "print([m for m in ('torch', 'sentence_transformers', 'openvino', 'sklearn') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- the score command's options ---------------------------------------------------------------


def test_score_passes_backend_and_precision_to_the_embedder(trained_project, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from conftest import FakeEmbedder
    from pipeline.cli import app

    seen = []

    def fake_make_embedder(params, **overrides):
        scoring = {k: v for k, v in (params.get("score") or {}).items() if k in ("backend", "precision") and v}
        seen.append({**params.get("embedding", {}), **scoring, **{k: v for k, v in overrides.items() if v is not None}})
        return FakeEmbedder()

    monkeypatch.setattr(embed, "make_embedder", fake_make_embedder)
    document = tmp_path / "oped.txt"
    document.write_text("Beijing and Washington worked together on the sanctions resolution and it paid off.\n")
    params = str(Path(trained_project["paths"]["model"]).parent.parent / "params.yaml")
    result = CliRunner().invoke(app, ["score", str(document), "--params", params, "--format", "json",
                                      "--backend", "torch", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert seen and seen[-1]["backend"] == "torch" and seen[-1]["precision"] == "fp32"


def test_score_with_an_unknown_backend_is_a_one_line_error(trained_project, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    document = tmp_path / "oped.txt"
    document.write_text("Beijing and Washington worked together on the sanctions resolution and it paid off.\n")
    params = str(Path(trained_project["paths"]["model"]).parent.parent / "params.yaml")
    result = CliRunner().invoke(app, ["score", str(document), "--params", params, "--backend", "onnx"])
    assert result.exit_code == 1
    assert "error: unknown embedding backend 'onnx' (expected one of auto, torch, openvino)" in result.output


def test_string_array_matches_pyarrow():
    import pyarrow as pa

    from pipeline.encoder.embed import string_array

    for values in (["Café", "", "北京 and Washington", "a\nb"], []):
        built = string_array(values)
        assert built.type == pa.string() and built.equals(pa.array(values, type=pa.string()))


def test_the_embed_stage_writes_its_table_without_importing_pandas(project, tmp_path):
    """An incremental embed run is mostly start-up: pandas (0.9 s) must stay out of it."""
    from pipeline.corpus import prepare

    prepare.run(project)
    probe = ("import sys, json; import numpy as np; from pipeline.encoder import embed; "
             "from pipeline.files import load_params; "
             "E = type('E', (), {'identity': 'fake@1', 'batch_size': 8, "
             "'encode': lambda self, t: np.ones((len(t), 3), dtype=np.float32)}); "
             "embed.run(load_params('params.yaml'), E()); pandas = 'pandas' in sys.modules; "
             "rows, matrix, identity = embed.load_embeddings(load_params('params.yaml')['paths']['embeddings']); "
             "print(matrix.shape[1], identity, pandas)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "fake@1", "False"]
