"""The pipeline commands through Typer's CliRunner, with the fake embedder."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.encoder import embed

runner = CliRunner()
ROOT = Path(__file__).parent.parent


@pytest.fixture
def fake_make_embedder(monkeypatch, fake_embedder):
    monkeypatch.setattr(embed, "make_embedder", lambda params, **overrides: fake_embedder)
    return fake_embedder


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("prepare", "embed", "train", "evaluate", "score", "labels"):
        assert command in result.output


def test_pipeline_commands_in_order(project, fake_make_embedder, tmp_path):
    params = tmp_path / "params.yaml"
    for command in ("prepare", "embed", "train", "evaluate"):
        result = invoke(command, "--params", params)
        assert result.exit_code == 0, result.output
    metrics = json.loads(Path(project["paths"]["metrics"]).read_text())
    assert 0 <= metrics["f_avg"] <= 1
    assert Path(project["paths"]["model"]).exists()


def test_embed_rerun_encodes_only_new_paragraphs(project, fake_make_embedder, tmp_path):
    params = tmp_path / "params.yaml"
    invoke("prepare", "--params", params)
    invoke("embed", "--params", params)
    assert sum(fake_make_embedder.calls) == 24
    raw = Path(project["paths"]["raw_dir"]) / "doc-0.txt"
    raw.write_text(raw.read_text() + "\n\nA brand new paragraph about the talks in Beijing this week.\n")
    invoke("prepare", "--params", params)
    result = invoke("embed", "--params", params)
    assert result.exit_code == 0, result.output
    assert sum(fake_make_embedder.calls) == 25


def test_errors_are_one_line_and_nonzero(project, tmp_path):
    result = invoke("train", "--params", tmp_path / "params.yaml")
    assert result.exit_code == 1
    assert "run `dvc repro` or `stance embed` first" in result.output
    result = invoke("prepare", "--params", tmp_path / "missing.yaml")
    assert result.exit_code == 1 and "params file not found" in result.output


def test_labels_check_reports_schema_errors(project, tmp_path):
    invoke("prepare", "--params", tmp_path / "params.yaml")
    (Path(project["paths"]["labels_dir"]) / "bad.csv").write_text("paragraph_id,label,annotator,note\nzzz,favor,b,\n")
    result = invoke("labels", "check", "--params", tmp_path / "params.yaml")
    assert result.exit_code == 1
    assert "bad.csv:2: paragraph id zzz is not in the corpus" in result.output


def test_labels_check_lists_suspected_issues(project, fake_make_embedder, tmp_path):
    params = tmp_path / "params.yaml"
    invoke("prepare", "--params", params)
    invoke("embed", "--params", params)
    labels = Path(project["paths"]["labels_dir"]) / "primary.csv"
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].replace(",favor,", ",none,")  # a deliberately wrong label
    labels.write_text("\n".join(lines) + "\n")
    result = invoke("labels", "check", "--params", params)
    assert result.exit_code == 0, result.output
    assert "primary.csv: ok, 24 labels" in result.output
    assert "suspected label issues" in result.output
    wrong_id = lines[1].split(",")[0]
    assert wrong_id in result.output


def test_dvc_stages_list_exactly_the_params_they_read():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"{name}: {key} not in params.yaml"
                node = node[part]
        assert stage["cmd"].startswith("stance ") or stage["cmd"].startswith("python "), name
    embed_params = set(stages["embed"]["params"])
    assert not any(p.startswith(("train", "evaluate", "labels", "seed")) for p in embed_params)
    assert "train" in stages["train"]["params"] and "train" in stages["evaluate"]["params"]


def _help_pages():
    """(arguments, click command) of `stance` and of every command and sub-command."""
    import typer.main

    root = typer.main.get_command(app)
    pages, todo = [], [([], root)]
    while todo:
        args, command = todo.pop(0)
        pages.append((args, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            todo.append((args + [name], sub))
    return pages


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


@pytest.mark.parametrize("args, command", _help_pages(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_help_at_80_columns_shows_every_help_text_whole(args, command):
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    shown = _flat(result.output)
    # every option's help whole: nothing swallowed as markup ("[default: ...]") or cut
    for param in command.params:
        if getattr(param, "help", None):
            assert _flat(param.help) in shown, param.name
    description = [line.strip() for line in lines[: next(i for i, l in enumerate(lines) if l.startswith("╭"))]]
    for paragraph in (command.help or "").split("\n\n"):
        assert _flat(paragraph) in _flat(" ".join(description))
    # no line of the description broken before it had to be (a hard line break in a docstring)
    for line, following in zip(description, description[1:]):
        if line and following and not line.startswith("Usage:"):
            assert len(line) + 1 + len(following.split()[0]) > 78, (line, following)
