"""End to end with the real packaged embedding model: raw text -> trained model -> scores."""

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.corpus import prepare
from pipeline.encoder import embed
from pipeline.evaluation import evaluate
from pipeline.model import train

pytestmark = pytest.mark.e2e


def test_raw_text_to_scores_with_the_packaged_model(project, tmp_path):
    prepare.run(project)
    embed.run(project)
    meta = train.run(project)
    assert meta["embedding_model"].startswith("all-MiniLM-L6-v2@")
    metrics = evaluate.run(project)
    assert metrics["paragraphs"] == 24
    article = tmp_path / "oped.txt"
    article.write_text(
        "Washington Must Stop Waiting for Beijing\n\nBy A. Columnist\n\n"
        "China quietly lets smuggled coal through and will never squeeze Pyongyang for Washington's sake.\n\n"
        "The delegation arrived on Tuesday and met officials for three hours at the guest house.\n\n"
        "Share on Facebook\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["score", str(article), "--format", "json", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    paragraphs = documents[0]["paragraphs"]
    assert len(paragraphs) == 2
    for p in paragraphs:
        assert set(p["probabilities"]) == {"favor", "against", "none"}
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert documents[0]["verdict"] in {"favor", "against", "none"}


def test_model_trained_on_other_embeddings_is_refused(trained_project, tmp_path):
    """The tiny project was trained with the fake embedder; the configured model is the real one."""
    result = CliRunner().invoke(app, ["score", "-", "--params", str(tmp_path / "params.yaml")],
                                input="China and the United States agreed to enforce the sanctions together.\n")
    assert result.exit_code == 1
    assert "was trained on embeddings from 'fake-bow@1/fp32'" in result.output
    assert "dvc repro" in result.output
