"""Finding the project from any folder: --project, STANCE_PROJECT, parents, the installed one; --model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import project as project_module
from pipeline.cli import app
from pipeline.errors import StanceError
from pipeline.project import find_params, project_params, rooted


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"paths": {"model": "models/model.joblib"}}))
    return root


def test_the_order_is_project_option_then_environment_then_parents_then_installed(tmp_path, monkeypatch):
    a, b, c = make_project(tmp_path / "a"), make_project(tmp_path / "b"), make_project(tmp_path / "c")
    deep = c / "x" / "y"
    deep.mkdir(parents=True)
    monkeypatch.setenv("STANCE_PROJECT", str(b))
    assert find_params(a, deep) == a / "params.yaml"
    assert find_params(None, deep) == b / "params.yaml"
    monkeypatch.delenv("STANCE_PROJECT")
    assert find_params(None, deep) == c / "params.yaml"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.setattr(project_module, "installed_project", lambda: a)
    assert find_params(None, outside) == a / "params.yaml"


def test_no_project_anywhere_is_one_line_naming_the_places_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("STANCE_PROJECT", str(tmp_path / "gone"))
    monkeypatch.setattr(project_module, "installed_project", lambda: tmp_path / "not-installed")
    with pytest.raises(StanceError, match=r"no stance project found \(no params.yaml in STANCE_PROJECT=.*gone; "
                                          r".* and its parents; the installed package's folder .*not-installed\)"):
        find_params(None, tmp_path)
    with pytest.raises(StanceError, match=r"--project .*nowhere: no params.yaml there"):
        find_params(tmp_path / "nowhere")


def test_relative_paths_are_read_from_the_project_not_the_current_folder(tmp_path):
    params = rooted({"paths": {"model": "models/model.joblib", "abs": "/x/y"}, "embedding": {"export_dir": ".cache/ov"}},
                    tmp_path)
    assert params["paths"] == {"model": str(tmp_path / "models/model.joblib"), "abs": "/x/y"}
    assert params["embedding"]["export_dir"] == str(tmp_path / ".cache/ov")


def test_a_model_folder_must_hold_the_model_and_its_metadata(tmp_path):
    project = make_project(tmp_path / "p")
    (tmp_path / "copied").mkdir()
    (tmp_path / "copied" / "model.joblib").write_bytes(b"x")
    with pytest.raises(StanceError, match=r"--model .*copied: model.json missing"):
        project_params(project / "params.yaml", model_dir=tmp_path / "copied")
    with pytest.raises(StanceError, match=r"--model .*absent: not a folder"):
        project_params(project / "params.yaml", model_dir=tmp_path / "absent")


@pytest.fixture
def trained(trained_project) -> Path:
    return Path(trained_project["paths"]["model"]).parent.parent


def test_score_from_another_folder_and_with_a_copied_model(trained, tmp_path, monkeypatch, fake_embedder):
    import pipeline.encoder.embed as embed

    monkeypatch.setattr(embed, "make_embedder", lambda *args, **kwargs: fake_embedder)
    article = tmp_path / "downloads" / "oped.txt"
    article.parent.mkdir()
    article.write_text("China and the United States worked together on the sanctions resolution, a real success "
                       "for joint pressure on Pyongyang.\n", encoding="utf-8")
    monkeypatch.chdir(article.parent)
    monkeypatch.setenv("STANCE_PROJECT", str(trained))
    found = CliRunner().invoke(app, ["score", str(article), "-f", "json"])
    assert found.exit_code == 0, found.output
    laptop = tmp_path / "laptop-model"
    shutil.copytree(trained / "models", laptop)
    copied = CliRunner().invoke(app, ["score", str(article), "-f", "json", "--model", str(laptop)])
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)[0]["paragraphs"] == json.loads(found.stdout)[0]["paragraphs"]
    (laptop / "model.joblib").write_bytes((laptop / "model.joblib").read_bytes() + b"tampered")
    refused = CliRunner().invoke(app, ["score", str(article), "-f", "json", "--model", str(laptop)])
    assert refused.exit_code == 1 and "sha256" in refused.output
