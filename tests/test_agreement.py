"""`stance labels agreement`: Cohen's kappa between independent passes, the disagreements, and
what the adjudicator settled."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.corpus import prepare
from pipeline.corpus.labels import LabelRow, kappa
from pipeline.labelling.agreement import (adjudication, adjudicator_name, agreement_report, by_annotator, pair_agreement,
                                          unsettled_disagreements)

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


def test_adjudicator_is_not_a_kappa_pair_but_a_tally_of_settled_disagreements():
    rows = [row("p1", "favor", "primary"), row("p1", "against", "second"), row("p1", "against", "adjudicator"),
            row("p2", "none", "primary"), row("p2", "favor", "second"), row("p2", "none", "adjudicator"),
            row("p3", "favor", "primary"), row("p3", "none", "second"), row("p3", "against", "adjudicator"),
            row("p4", "none", "primary"), row("p4", "favor", "second"),
            row("p5", "none", "primary"), row("p5", "none", "second"), row("p5", "favor", "adjudicator")]
    priority = ["adjudicator", "primary", "second"]
    assert [e["annotators"] for e in agreement_report(rows, priority)] == [("primary", "second")]
    table = by_annotator(rows)
    summary = adjudication(table, priority)
    assert summary["settled"] == 3 and summary["took"] == {"primary": 1, "second": 1} and summary["other"] == 1
    assert summary["matches"] == {"primary": (1, 4), "second": (1, 4)}
    assert summary["undisputed"] == 1 and summary["unsettled"] == ["p4"]
    assert unsettled_disagreements(table) == {"p4"}


def test_adjudicator_name_comes_from_the_first_priority_entry_if_it_is_one():
    assert adjudicator_name(["adjudicator", "primary"]) == "adjudicator"
    assert adjudicator_name(["Adjudicator-Jo", "primary"]) == "Adjudicator-Jo"
    assert adjudicator_name(["primary", "adjudicator-jo"]) == "adjudicator"
    assert adjudicator_name(None) == "adjudicator"
    rows = [row("p1", "favor", "primary"), row("p1", "against", "second"), row("p1", "against", "adjudicator-jo")]
    assert [e["annotators"] for e in agreement_report(rows, ["adjudicator-jo"])] == [("primary", "second")]
    assert len(agreement_report(rows, ["primary"])) == 3  # without the setting it is an ordinary annotator


def test_cli_reports_adjudication_without_a_misleading_kappa(two_annotators, tmp_path):
    project, records = two_annotators
    labels_dir = Path(project["paths"]["labels_dir"])
    (labels_dir / "adjudicator.csv").write_text(
        "paragraph_id,label,annotator,note\n"
        f"{records[4]['id']},against,adjudicator,primary right\n", encoding="utf-8")
    out = tmp_path / "disagreements.csv"
    result = runner.invoke(app, ["labels", "agreement", "--params", str(tmp_path / "params.yaml"),
                                 "--disagreements", str(out)])
    assert result.exit_code == 0, result.output
    assert "Annotators: adjudicator (1 labels), primary (24 labels), second (10 labels)" in result.output
    assert "primary vs second: 10 shared paragraphs, agreement 80.0%, Cohen's kappa 0.692" in result.output
    assert "adjudicator vs" not in result.output and result.output.count("kappa") == 1
    assert "adjudicator settled 1 disagreement: 1 kept primary's label, 0 took second's, 0 other" in result.output
    assert "adjudicator's label matches primary's on 1 of 1, second's on 0 of 1" in result.output
    assert f"1 disagreement not settled yet: {records[1]['id']}" in result.output
    assert f"{records[4]['id']}  primary=against  second=none  doc-1  settled: adjudicator=against" in result.output
    with open(out, newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [(w["paragraph_id"], w["settled"]) for w in written] == [(records[1]["id"], ""), (records[4]["id"], "against")]
    (labels_dir / "second.csv").unlink()
    result = runner.invoke(app, ["labels", "agreement", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0 and "Only one independent pass" in result.output and " vs " not in result.output
    assert "adjudicator settled no disagreements" in result.output
