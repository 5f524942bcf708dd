"""`stance export-dataset`: the tiny project's labelled corpus as a DatasetDict, loaded back."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import LABELS
from pipeline.corpus import prepare
from pipeline.corpus.prepare import paragraph_id
from pipeline.encoder import embed
from pipeline.errors import StanceError
from pipeline.evaluation.dataset_export import MARKER, export_dataset

ROOT = Path(__file__).parent.parent


def _doc_paragraphs(project: dict, doc: str) -> list[dict]:
    from pipeline.files import read_jsonl

    return [p for p in read_jsonl(project["paths"]["paragraphs"]) if p["doc"] == doc]


@pytest.fixture
def prepared(project, fake_embedder) -> dict:
    """The tiny project, prepared and embedded, with a second annotator who agrees on doc-0 and
    disagrees on doc-1's first paragraph (a 1-1 tie: the primary label wins by priority)."""
    prepare.run(project)
    embed.run(project, embedder=fake_embedder)  # the evaluation's folds are computed from the embeddings
    primary = {row["paragraph_id"]: row["label"]
               for row in csv.DictReader(open(Path(project["paths"]["labels_dir"]) / "primary.csv"))}
    doc0, doc1 = _doc_paragraphs(project, "doc-0"), _doc_paragraphs(project, "doc-1")
    rows = [(p["id"], primary[p["id"]]) for p in doc0]
    other = next(label for label in LABELS if label != primary[doc1[0]["id"]])
    rows.append((doc1[0]["id"], other))
    with open(Path(project["paths"]["labels_dir"]) / "second.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["paragraph_id", "label", "annotator", "note"])
        writer.writerows([pid, label, "second", ""] for pid, label in rows)
    project["_second"] = {"agree": {p["id"] for p in doc0}, "disagree": {doc1[0]["id"]}}
    return project


def test_export_loads_back_with_features_labels_and_sources(prepared, tmp_path):
    import datasets

    export_dataset(prepared, tmp_path / "ds")
    corpus = datasets.load_from_disk(str(tmp_path / "ds"))
    assert set(corpus) == {"train", "test"}
    for split in corpus.values():
        assert split.column_names == ["id", "text", "label", "document", "genre", "kind", "year", "second_agrees"]
        assert isinstance(split.features["label"], datasets.ClassLabel)
        assert split.features["label"].names == list(LABELS)
    rows = [row for split in corpus.values() for row in split]
    assert len(rows) == 24  # 8 documents x 3 labelled paragraphs, each once
    names = corpus["train"].features["label"].int2str
    primary = {row["paragraph_id"]: row["label"]  # the second pass's one disagreement loses the tie
               for row in csv.DictReader(open(Path(prepared["paths"]["labels_dir"]) / "primary.csv"))}
    assert {row["id"]: names(row["label"]) for row in rows} == primary
    for row in rows:
        assert paragraph_id(row["text"]) == row["id"]
        assert row["genre"] == "op-ed" and row["year"] == 2020
        assert row["kind"] == ("seed" if row["document"] in ("doc-0", "doc-1") else "authored")


def test_split_is_the_evaluations_first_outer_fold_and_grouped(prepared, tmp_path):
    import datasets

    from pipeline.model.out_of_fold import outer_folds
    from pipeline.model.train import training_set

    export_dataset(prepared, tmp_path / "ds")
    corpus = datasets.load_from_disk(str(tmp_path / "ds"))
    train_docs, test_docs = set(corpus["train"]["document"]), set(corpus["test"]["document"])
    assert train_docs and test_docs and not train_docs & test_docs

    rows, _, y, groups, _ = training_set(prepared)
    folds = outer_folds(y, groups, prepared["train"], int(prepared["seed"]))
    train_idx, test_idx = folds[0]
    assert list(corpus["test"]["id"]) == [rows[i]["id"] for i in test_idx]
    assert list(corpus["train"]["id"]) == [rows[i]["id"] for i in train_idx]
    # and it is not just any fold: the other outer folds hold out other documents
    assert all(set(groups[idx].tolist()) != test_docs for _, idx in folds[1:])


def test_second_agrees(prepared, tmp_path):
    import datasets

    export_dataset(prepared, tmp_path / "ds")
    corpus = datasets.load_from_disk(str(tmp_path / "ds"))
    values = {row["id"]: row["second_agrees"] for split in corpus.values() for row in split}
    second = prepared["_second"]
    assert {pid for pid, v in values.items() if v is True} == second["agree"]
    assert {pid for pid, v in values.items() if v is False} == second["disagree"]
    assert sum(v is None for v in values.values()) == 24 - 4


def test_missing_paragraphs_says_to_prepare(project, tmp_path):
    with pytest.raises(StanceError, match=r"paragraphs\.jsonl: not found \(run `stance prepare` or `dvc repro`"):
        export_dataset(project, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_refuses_a_folder_that_is_not_an_export(prepared, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(StanceError, match=r"mine: exists and is not a previous `stance export-dataset` output"):
        export_dataset(prepared, target)
    assert (target / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(StanceError, match=r"file: exists and is not a folder"):
        export_dataset(prepared, tmp_path / "file")


def test_replaces_a_previous_export_and_leaves_no_temporary_folders(prepared, tmp_path):
    import datasets

    target = tmp_path / "out" / "ds"
    export_dataset(prepared, target)
    second = Path(prepared["paths"]["labels_dir"]) / "second.csv"
    second.unlink()  # the labels change: the new export must say so
    summary = export_dataset(prepared, target)
    corpus = datasets.load_from_disk(str(target))
    assert all(v is None for split in corpus.values() for v in split["second_agrees"])
    assert (target / MARKER).is_file() and summary["paragraphs"] == 24
    assert sorted(p.name for p in target.parent.iterdir()) == ["ds"]


def test_failed_export_keeps_the_previous_one(prepared, tmp_path, monkeypatch):
    import datasets

    target = tmp_path / "ds"
    export_dataset(prepared, target)
    before = sorted(p.name for p in target.rglob("*"))

    def broken(self, path, **kwargs):
        Path(path).mkdir(parents=True)
        (Path(path) / "half-written").write_text("")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(prepared, target)
    assert sorted(p.name for p in target.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []


def test_cli_writes_and_reports(prepared, tmp_path):
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["export-dataset", str(tmp_path / "ds"), "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert re.search(r"wrote 24 labelled paragraphs to .*ds: train \d+ \(\d+ documents\), test \d+", result.output)
    result = CliRunner().invoke(app, ["export-dataset", str(tmp_path / "data"), "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert "data: exists and is not a previous `stance export-dataset` output" in result.output


def test_readme_snippet_runs_on_an_export(prepared, tmp_path, monkeypatch, capsys):
    """The README's evaluation example works as printed (on the tiny project's export)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_from_disk" in block)
    export_dataset(prepared, tmp_path / "stance-dataset")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    score = float(re.search(r"f_avg (\S+)", capsys.readouterr().out).group(1))
    assert 0 <= score <= 1
