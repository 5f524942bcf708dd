"""`stance labels agreement`: Cohen's kappa per annotator pair and the disagreements."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import prepare
from pipeline.agreement import agreement_report, kappa, pair_agreement
from pipeline.cli import app
from pipeline.labels import LabelRow

runner = CliRunner()


def row(pid: str, label: str, annotator: str) -> LabelRow:
    return LabelRow(pid, label, annotator, "", "test")


def test_kappa_by_hand():
    a = ["favor", "favor", "against", "none", "none", "favor"]
    b = ["favor", "against", "against", "none", "favor", "favor"]
    # observed 4/6; expected = sum over labels of p_a * p_b = (3/6*3/6) + (1/6*2/6) + (2/6*1/6)
    po, pe = 4 / 6, (9 + 2 + 2) / 36
    assert kappa(a, b) == pytest.approx((po - pe) / (1 - pe))
    assert kappa(a, a) == pytest.approx(1.0)
    assert math.isnan(kappa(["none", "none"], ["none", "none"]))


def test_pair_agreement_lists_disagreements_in_corpus_order():
    first = {"p1": "favor", "p2": "against", "p3": "none", "p9": "none"}
    second = {"p3": "favor", "p2": "against", "p1": "none", "p8": "favor"}
    result = pair_agreement(first, second, order=["p3", "p2", "p1"])
    assert result["shared"] == 3 and result["agreement"] == pytest.approx(1 / 3)
    assert result["disagreements"] == [("p3", "none", "favor"), ("p1", "favor", "none")]


def test_report_orders_annotators_by_priority_and_keeps_pairs_without_overlap():
    rows = [row("p1", "favor", "zed"), row("p1", "favor", "primary"), row("p2", "none", "primary"),
            row("p5", "none", "amy")]
    report = agreement_report(rows, priority=["primary"])
    assert [e["annotators"] for e in report] == [("primary", "amy"), ("primary", "zed"), ("amy", "zed")]
    assert [e["shared"] for e in report] == [0, 1, 0]


@pytest.fixture
def two_annotators(project) -> tuple[dict, list[dict]]:
    records = [p.to_record() for p in prepare.run(project)]
    primary = {r.split(",")[0]: r.split(",")[1] for r in
               (Path(project["paths"]["labels_dir"]) / "primary.csv").read_text().splitlines()[1:]}
    flipped = {records[1]["id"]: "favor", records[4]["id"]: "none"}
    lines = ["paragraph_id,label,annotator,note"]
    for r in records[:10]:
        lines.append(f"{r['id']},{flipped.get(r['id'], primary[r['id']])},second,")
    (Path(project["paths"]["labels_dir"]) / "second.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return project, records


def test_cli_prints_kappa_and_disagreements_and_writes_csv(two_annotators, tmp_path):
    project, records = two_annotators
    out = tmp_path / "disagreements.csv"
    result = runner.invoke(app, ["labels", "agreement", "--params", str(tmp_path / "params.yaml"),
                                 "--disagreements", str(out)])
    assert result.exit_code == 0, result.output
    assert "Annotators: primary (24 labels), second (10 labels)" in result.output
    assert "primary vs second: 10 shared paragraphs, agreement 80.0%, Cohen's kappa 0.692" in result.output
    assert f"{records[1]['id']}  primary=against  second=favor  doc-0" in result.output
    assert records[4]["text"][:60] in result.output
    with open(out, newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [(w["paragraph_id"], w["label_1"], w["label_2"]) for w in written] == [
        (records[1]["id"], "against", "favor"), (records[4]["id"], "against", "none")]
    assert written[0]["text"] == records[1]["text"]


def test_cli_limit_single_annotator_and_refused_output(two_annotators, project, tmp_path):
    result = runner.invoke(app, ["labels", "agreement", "--limit", "1", "--params", str(tmp_path / "params.yaml")])
    assert "2 disagreements (first 1; --limit 0 lists all)" in result.output
    inside = Path(project["paths"]["labels_dir"]) / "out.csv"
    result = runner.invoke(app, ["labels", "agreement", "--disagreements", str(inside),
                                 "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and "would be read as a label file" in result.output and not inside.exists()
    (Path(project["paths"]["labels_dir"]) / "second.csv").unlink()
    result = runner.invoke(app, ["labels", "agreement", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0 and "Only one annotator" in result.output


def test_cli_invalid_label_file_is_an_error(project, tmp_path):
    prepare.run(project)
    (Path(project["paths"]["labels_dir"]) / "second.csv").write_text(
        "paragraph_id,label,annotator,note\npzzz,favor,second,\n", encoding="utf-8")
    result = runner.invoke(app, ["labels", "agreement", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and "second.csv:2: paragraph id pzzz is not in the corpus" in result.output
