"""`stance labels import` / `export`: Label Studio and doccano files, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.corpus import prepare
from pipeline.corpus.labels import read_label_file
from pipeline.errors import StanceError
from pipeline.labelling.label_exchange import (LABEL_STUDIO_CONFIG, export_tasks, import_labels, parse_mapping,
                                               read_export, write_tasks)
from pipeline.labelling.label_session import annotator_lock, model_guesses, order_paragraphs

runner = CliRunner()


@pytest.fixture
def records(project) -> list[dict]:
    """The small project's paragraphs; primary keeps labels for the first 12 only."""
    corpus = [p.to_record() for p in prepare.run(project)]
    primary = Path(project["paths"]["labels_dir"]) / "primary.csv"
    lines = primary.read_text().splitlines(keepends=True)
    primary.write_text("".join(lines[:13]))
    return corpus


def label_file(project: dict, annotator: str) -> Path:
    return Path(project["paths"]["labels_dir"]) / f"{annotator}.csv"


def rows(path: Path) -> list[tuple[str, str, str]]:
    return [(r.paragraph_id, r.label, r.annotator) for r in read_label_file(path)]


def choice(name: str, user: int = 1, cancelled: bool = False) -> dict:
    return {"id": 100 + user, "completed_by": user, "was_cancelled": cancelled,
            "result": [{"from_name": "stance", "to_name": "text", "type": "choices", "value": {"choices": [name]}}]}


def label_studio_export(tasks: list[dict], answers: dict[int, list[dict]]) -> list[dict]:
    """What Label Studio's JSON export looks like after annotating imported tasks."""
    return [{"id": n + 1, "data": task["data"], "annotations": answers.get(n, []), "predictions": [],
             "project": 3, "created_at": "2025-01-01T00:00:00Z"} for n, task in enumerate(tasks)]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_round_trip_through_label_studio(project, records, tmp_path):
    exported = tmp_path / "tasks.json"
    result = runner.invoke(app, ["labels", "export", "--params", str(tmp_path / "params.yaml"), "-o", str(exported)])
    assert result.exit_code == 0, result.output
    tasks = json.loads(exported.read_text())
    assert [t["data"]["paragraph_id"] for t in tasks] == [r["id"] for r in records[12:]]
    assert tasks[0]["data"]["title"] == "Headline number 4" and tasks[0]["data"]["text"] == records[12]["text"]
    names = ["favor", "against", "none", "Positive"]
    answers = {n: [choice(names[n % 4])] for n in range(8)}
    answers[8] = [choice("against", cancelled=True)]  # cancelled: not a label
    path = write_json(tmp_path / "project-3-at-2025.json", label_studio_export(tasks, answers))

    result = runner.invoke(app, ["labels", "import", str(path), "--annotator", "second", "--params",
                                 str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert "wrote 8 labels" in result.output and "from a label-studio export" in result.output
    expected = [(tasks[n]["data"]["paragraph_id"], ["favor", "against", "none", "favor"][n % 4], "second")
                for n in range(8)]
    assert rows(label_file(project, "second")) == expected
    assert read_label_file(label_file(project, "second"))[0].note == "imported from project-3-at-2025.json (label-studio, task 1)"

    # the labelled paragraphs are no longer exported; importing again changes nothing
    again = export_tasks(project)
    assert {t["data"]["paragraph_id"] for t in again} == {r["id"] for r in records[12:]} - {e[0] for e in expected}
    before = label_file(project, "second").read_bytes()
    summary = import_labels(project, path, "second")
    assert summary["written"] == 0 and summary["unchanged"] == 8
    assert label_file(project, "second").read_bytes() == before
    assert export_tasks(project, annotator="second") and len(export_tasks(project, annotator="second")) == len(records) - 8


def test_matching_by_normalised_text_when_ids_are_missing(project, records, tmp_path):
    target = records[13]
    text = "  " + target["text"].upper().replace(" ", "   ") + "\n"
    task = {"id": 7, "data": {"text": text}, "annotations": [choice("AGAINST")]}
    summary = import_labels(project, write_json(tmp_path / "ls.json", [task]), "second")
    assert summary["written"] == 1 and rows(label_file(project, "second")) == [(target["id"], "against", "second")]


def test_doccano_jsonl_with_default_and_custom_names(project, records, tmp_path):
    lines = [{"id": 1, "text": records[12]["text"], "label": ["Positive"], "Comments": []},
             {"id": 2, "text": records[13]["text"], "label": ["Mixed"], "Comments": []},
             {"id": 3, "text": records[14]["text"], "label": [], "Comments": []},
             {"id": 4, "text": records[15]["text"], "label": ["Unsure"], "Comments": []},
             {"id": 5, "text": records[16]["text"], "label": ["neutral"], "Comments": []}]
    path = tmp_path / "admin.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(StanceError, match=r"admin.jsonl: unknown label names 'Mixed' \(1 records\), 'Unsure' \(1 records\); "
                                          r"map them with e.g. --map \"Mixed=none\""):
        import_labels(project, path, "second")
    assert not label_file(project, "second").exists()
    summary = import_labels(project, path, "second", ["Mixed=against", "unsure=skip"])
    assert summary["format"] == "doccano" and summary["unlabelled"] == 1 and summary["skipped"] == 1
    assert rows(label_file(project, "second")) == [(records[12]["id"], "favor", "second"),
                                                   (records[13]["id"], "against", "second"),
                                                   (records[16]["id"], "none", "second")]


def test_old_doccano_numeric_labels_need_a_map(project, records, tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"id": 1, "text": records[12]["text"], "annotations": [{"label": 3, "user": 1}],
                                "meta": {"paragraph_id": records[12]["id"]}}) + "\n", encoding="utf-8")
    with pytest.raises(StanceError, match="unknown label names '3'"):
        import_labels(project, path, "second")
    import_labels(project, path, "second", ["3=against"])
    assert rows(label_file(project, "second")) == [(records[12]["id"], "against", "second")]


def test_unmatched_paragraphs_fail_whole_import_unless_skipped(project, records, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"text": records[12]["text"], "label": ["favor"]}) + "\n"
                    + json.dumps({"text": "A paragraph that is not in this corpus at all.", "label": ["none"]}) + "\n")
    with pytest.raises(StanceError, match=r"mixed.jsonl: 1 records match no paragraph of the corpus by id or text "
                                          r"\(line 2: A paragraph that is not in this corpus at all.\)"):
        import_labels(project, path, "second")
    assert not label_file(project, "second").exists()
    summary = import_labels(project, path, "second", skip_unmatched=True)
    assert summary["written"] == 1 and summary["unmatched"] == 1


def test_existing_labels_conflict_unless_replace(project, records, tmp_path):
    target = label_file(project, "second")
    target.write_bytes(b"paragraph_id,label,annotator,note\r\n"
                       + f"{records[12]['id']},favor,second,mine\r\n{records[13]['id']},none,second,keep\r\n".encode())
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"paragraph_id": records[12]["id"], "text": "", "label": "against"}) + "\n")
    before = target.read_bytes()
    with pytest.raises(StanceError, match=r"1 labels differ from .*second.csv \(.* is 'favor' at .*second.csv:2, "
                                          r"line 1 says 'against'\); pass --replace"):
        import_labels(project, path, "second")
    assert target.read_bytes() == before
    assert import_labels(project, path, "second", dry_run=True, replace=True)["replaced"] == 1
    assert target.read_bytes() == before
    summary = import_labels(project, path, "second", replace=True)
    assert summary["replaced"] == 1
    assert rows(target) == [(records[13]["id"], "none", "second"), (records[12]["id"], "against", "second")]
    assert target.read_bytes().startswith(b"paragraph_id,label,annotator,note\r\n" +
                                          f"{records[13]['id']},none,second,keep\r\n".encode())


def test_same_annotator_in_another_file_is_checked(project, records, tmp_path):
    extra = label_file(project, "extra")
    extra.write_text(f"paragraph_id,label,annotator,note\n{records[20]['id']},favor,second,\n", encoding="utf-8")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": records[20]["text"], "label": ["against"]}) + "\n")
    with pytest.raises(StanceError, match=r"line 1 labels .* 'against' but .*extra.csv:2 has second's label 'favor'"):
        import_labels(project, path, "second")
    assert not label_file(project, "second").exists()


def test_disagreeing_or_multiple_choices_in_one_record(project, records, tmp_path):
    task = {"id": 4, "data": {"text": records[12]["text"]}, "annotations": [choice("favor", 1), choice("against", 2)]}
    with pytest.raises(StanceError, match=r"task 4: its annotations disagree \('favor' by user 1, 'against' by user 2\)"):
        import_labels(project, write_json(tmp_path / "a.json", [task]), "second")
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"text": records[12]["text"], "label": ["favor", "none"]}) + "\n")
    with pytest.raises(StanceError, match=r"line 1: 2 labels \(favor, none\); a paragraph takes one label"):
        import_labels(project, path, "second")
    spans = tmp_path / "c.jsonl"
    spans.write_text(json.dumps({"text": records[12]["text"], "label": [[0, 5, "ORG"]]}) + "\n")
    with pytest.raises(StanceError, match="labels are spans, not categories"):
        import_labels(project, spans, "second")
    assert not label_file(project, "second").exists()


@pytest.mark.parametrize("content, message", [
    ('{"name": "x", "rows": 3}', r"not a Label Studio JSON export or a doccano JSONL export \(the first record has keys name, rows\)"),
    ("paragraph_id,label\np1,favor\n", r"x.json:1: not JSON or JSON lines"),
    ('[{"id": 1, "text": "t", "sentiment": "Positive", "annotator": 1, "annotation_id": 2}]', "JSON-MIN"),
    ("[]", "no records"),
    ('[1, 2]', "records are not JSON objects"),
])
def test_files_from_other_tools_are_refused(project, records, tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StanceError, match=message):
        import_labels(project, path, "second")
    assert not label_file(project, "second").exists()


def test_label_studio_annotation_without_choices(project, records, tmp_path):
    task = {"id": 2, "data": {"text": records[12]["text"]},
            "annotations": [{"result": [{"type": "labels", "value": {"start": 0, "end": 3, "labels": ["X"]}}]}]}
    with pytest.raises(StanceError, match=r"task 2 has an annotation without a \"choices\" result"):
        import_labels(project, write_json(tmp_path / "a.json", [task]), "second")


def test_forced_format_and_bad_options(project, records, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": records[12]["text"], "label": ["favor"]}) + "\n")
    with pytest.raises(StanceError, match=r"line 1 has no \"data\" object; not a Label Studio JSON export"):
        read_export(path, "label-studio")
    with pytest.raises(StanceError, match="unknown --format 'csv'"):
        read_export(path, "csv")
    with pytest.raises(StanceError, match=r"--map 'Positive': expected NAME=LABEL"):
        parse_mapping(["Positive"])
    with pytest.raises(StanceError, match=r"--map 'Positive=great'"):
        parse_mapping(["Positive=great"])
    assert parse_mapping(["  Yes = FAVOR "])["yes"] == "favor"


def test_import_refused_while_a_session_for_that_annotator_runs(project, records, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": records[12]["text"], "label": ["favor"]}) + "\n")
    with annotator_lock(label_file(project, "second"), "second"):
        with pytest.raises(StanceError, match="session for second is already running"):
            import_labels(project, path, "second")


def test_cli_errors_are_one_line_and_nothing_written(project, records, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": records[12]["text"], "label": ["Maybe"]}) + "\n")
    result = runner.invoke(app, ["labels", "import", str(path), "-a", "second", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and "error: " in result.output and "unknown label names 'Maybe'" in result.output
    assert not label_file(project, "second").exists()
    result = runner.invoke(app, ["labels", "import", str(path), "-a", "second", "--map", "Maybe=none", "--dry-run",
                                 "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0 and "would write 1 labels" in result.output
    assert not label_file(project, "second").exists()


def test_export_with_model_predictions_and_order(trained_project, tmp_path):
    primary = label_file(trained_project, "primary")
    primary.write_text("".join(primary.read_text().splitlines(keepends=True)[:13]))
    tasks = export_tasks(trained_project, order="margin", limit=3, predictions=True)
    assert len(tasks) == 3
    for task in tasks:
        prediction = task["predictions"][0]
        assert prediction["result"][0]["from_name"] == "stance" and prediction["result"][0]["to_name"] == "text"
        assert prediction["result"][0]["value"]["choices"][0] in ("favor", "against", "none")
        assert 0 < prediction["score"] <= 1
    todo = [r.to_record() for r in prepare.run(trained_project)][12:]
    guesses, _ = model_guesses(trained_project, todo, embed=False)
    assert [t["data"]["paragraph_id"] for t in tasks] == order_paragraphs([r["id"] for r in todo], guesses, "margin", 0)[:3]
    assert '<Choices name="stance" toName="text"' in LABEL_STUDIO_CONFIG
    out = tmp_path / "out" / "tasks.json"
    write_tasks(tasks, out)
    assert json.loads(out.read_text()) == tasks


def test_export_predictions_need_a_model(project, records):
    with pytest.raises(StanceError, match="no model guesses available for --predictions"):
        export_tasks(project, predictions=True)
