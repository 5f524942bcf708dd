"""Rendering results: every format, the 80-column table, colour, evidence."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.cells import cell_len

from pipeline.scoring.output import FORMATS, choose_format, render, to_table

LONG = ("Washington and Beijing jointly drafted the resolution | and the long sentence goes on and on well past "
        "the width of any terminal, because op-ed paragraphs are long.")


def paragraph(index, label, probs, text, **extra):
    return {"index": index, **extra, "label": label, "probabilities": dict(zip(("favor", "against", "none"), probs)),
            "uncertain": max(probs) < 0.5, "out_of_domain": False, "text": text}


def results(explain=False):
    evidence = [{"label": "favor", "document": "2017-a-very-long-document-slug-from-the-training-corpus",
                 "similarity": 0.7312, "id": "pabc", "text": "A training paragraph about joint sanctions."},
                {"label": "none", "document": "1999-b", "similarity": 0.5, "id": "pdef", "text": "Background."}]
    strongest = {"label": "favor", "probabilities": {"favor": 0.9, "against": 0.05, "none": 0.05},
                 "text": "Washington and Beijing jointly drafted the resolution."}
    paras = [paragraph(0, "favor", (0.8, 0.1, 0.1), LONG, strongest_sentence=strongest),
             paragraph(1, "against", (0.3, 0.45, 0.25), "Short one."),
             {**paragraph(2, "none", (0.9, 0.05, 0.05), "The derby went to extra time."), "out_of_domain": True}]
    if explain:
        for p in paras:
            p["evidence"] = evidence
            p["text"] = p.pop("text")
    doc = {"document": "examples/op-ed.txt", "title": "A title", "verdict": "favor",
           "mass": {"favor": 0.6, "against": 0.3, "none": 0.1}, "shares": {"favor": 1 / 3, "against": 1 / 3, "none": 1 / 3},
           "out_of_domain_paragraphs": 1, "decisive": [0, 1], "paragraphs": paras}
    records = {"document": "notes", "verdict": "none", "mass": {"favor": 0.1, "against": 0.1, "none": 0.8},
               "shares": {"favor": 0.0, "against": 0.0, "none": 1.0}, "out_of_domain_paragraphs": 0, "decisive": [0],
               "paragraphs": [paragraph(0, "none", (0.1, 0.1, 0.8), "A record.", id="r-1")]}
    if explain:
        records["paragraphs"][0]["evidence"] = evidence
    return [doc, records]


@pytest.mark.parametrize("explain", [False, True])
def test_table_fits_80_columns_without_colour(explain):
    text = render(results(explain), "table", color=False, width=80)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert "\x1b[" not in text
    assert "verdict FAVOR" in text and "off-topic" in text and "against?" in text
    assert any(line.lstrip().startswith("0*") for line in lines)
    assert ("↳ favor" in text) == explain and ("sim 0.73" in text) == explain
    sentence_rows = [line.split() for line in lines if line.startswith(" ") and line.lstrip().startswith("›")]
    assert sentence_rows == ([["›", "favor", "sentence", "Washington", "and", "Beijing", "jointly", "drafted", "the…"]]
                             if explain else [])  # the strongest sentence, before the evidence
    assert ("› the paragraph's strongest sentence" in text) == explain  # and its key


@pytest.mark.parametrize("explain", [False, True])
def test_the_strongest_sentence_shows_with_the_evidence(explain):
    wide = to_table(results(explain), width=80, wide=True)
    assert max(cell_len(line) for line in wide.splitlines()) <= 80
    assert any(line.split()[:3] == ["›", "favor", "sentence"] for line in wide.splitlines()) == explain
    if explain:
        lines = wide.splitlines()
        assert [i for i, line in enumerate(lines) if "› favor" in line][0] < [i for i, line in enumerate(lines) if "↳ favor" in line][0]
    markdown = render(results(explain), "markdown")
    assert ("sentence favor (Washington and Beijing jointly drafted the resolution.)" in markdown) == explain
    record = json.loads(render(results(explain), "jsonl").splitlines()[0])
    assert record["strongest_sentence"]["label"] == "favor"  # machine formats carry it always


def test_table_key_explains_only_the_marks_it_shows():
    text = render(results(), "table", color=False, width=80, uncertain_below=0.5)
    assert "? uncertain (top probability < 0.5)" in text and "* decisive" in text and "off-topic: far" in text
    plain = results()[1:]  # one sure, in-domain paragraph
    text = render(plain, "table", color=False, width=80, uncertain_below=0.5)
    assert "* decisive for the verdict" in text and "uncertain" not in text and "off-topic" not in text
    plain[0]["decisive"] = []
    assert "decisive" not in render(plain, "table", color=False, width=80)


def test_table_prints_text_literally_with_record_ids_and_no_trailing_spaces():
    data = results()
    data[0]["paragraphs"][1]["text"] = "As the minister said [bold]twice[/bold] in 2017 [1], the talks stalled."
    text = render(data, "table", color=True, width=100)
    assert "[bold]twice[/bold] in 2017 [1]" in text
    assert "[r-1] A record." in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_table_colours_labels_on_a_terminal():
    text = render(results(), "table", color=True, width=80)
    assert "\x1b[32m" in text and "\x1b[31m" in text  # green favor, red against


def test_table_uses_a_wider_terminal():
    wide = render(results(), "table", width=160)
    assert max(cell_len(line) for line in wide.splitlines()) > 80
    assert LONG in wide.replace("\n", " ") or LONG[:100] in wide


def test_json_is_the_full_result():
    data = json.loads(render(results(True), "json"))
    assert data == json.loads(json.dumps(results(True)))


def test_jsonl_is_one_record_per_paragraph_with_ids():
    lines = render(results(), "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert records[0]["document"] == "examples/op-ed.txt" and records[0]["document_verdict"] == "favor"
    assert records[3]["id"] == "r-1" and records[3]["label"] == "none"
    assert records[3]["probabilities"] == {"favor": 0.1, "against": 0.1, "none": 0.8}


def test_csv_has_a_row_per_paragraph_and_evidence_columns_with_explain():
    rows = list(csv.DictReader(io.StringIO(render(results(), "csv"))))
    assert len(rows) == 4 and rows[0]["p_favor"] == "0.8" and rows[2]["out_of_domain"] == "True"
    assert rows[3]["id"] == "r-1" and rows[0]["text"] == LONG
    assert "n1_label" not in rows[0]
    assert (rows[0]["sentence_label"], rows[0]["sentence_p_favor"]) == ("favor", "0.9")
    assert rows[0]["sentence_text"] == "Washington and Beijing jointly drafted the resolution."
    assert (rows[1]["sentence_label"], rows[1]["sentence_p_none"], rows[1]["sentence_text"]) == ("", "", "")
    explained = list(csv.DictReader(io.StringIO(render(results(True), "csv"))))
    assert explained[0]["n1_label"] == "favor" and explained[0]["n2_document"] == "1999-b"
    assert explained[0]["n1_similarity"] == "0.7312"


def test_markdown_escapes_pipes_and_lists_evidence():
    text = render(results(True), "markdown")
    assert "## examples/op-ed.txt" in text and "**Verdict: favor**" in text
    assert "jointly drafted the resolution \\| and" in text
    assert "| 0* | favor |" in text and "none (off-topic)" in text and "against (uncertain)" in text
    assert "Most similar labelled training paragraphs" in text and "favor 0.73 `2017-a-very" in text


@pytest.mark.parametrize("fmt, output, expected", [
    (None, None, "table"), ("JSON", None, "json"), (None, "out.csv", "csv"), (None, "out.jsonl", "jsonl"),
    (None, "report.md", "markdown"), (None, "results.json", "json"), (None, "out.weird", "table"),
    ("csv", "out.json", "csv")])
def test_choose_format(fmt, output, expected):
    assert choose_format(fmt, output) == expected
    assert expected in FORMATS


def test_unknown_format_is_refused_by_render():
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render(results(), "yaml")


# --- --wide, 80 columns, headers and keys --------------------------------------------------------

LONG_NAME = "archive/2019/some-very-long-folder-name/an-even-longer-document-name-that-goes-on-and-on-and-on.txt"
REASON = "favor mass 0.54 (length-weighted), against 0.12: favor leads and holds >= 0.25 of the document mass"
URL = "https://example.com/" + "a-very-long-path-segment-" * 5 + "end"


def crowded(explain=False):
    """Results with everything long: a document name, a title, a reason, a paragraph, a URL."""
    data = results(explain)
    data[0].update(document=LONG_NAME, title="A title " * 20, verdict_reason=REASON)
    data[0]["paragraphs"][1]["text"] = " ".join([LONG] * 4 + [URL])
    return data


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("explain", [False, True])
def test_every_table_line_fits_80_columns(explain, wide):
    text = render(crowded(explain), "table", width=80) if not wide else to_table(crowded(explain), width=80, wide=True)
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert ("↳ favor" in text) == explain


def test_long_document_names_are_shortened_in_the_middle_not_wrapped():
    for wide in (False, True):
        lines = to_table(crowded(), width=80, wide=wide).splitlines()
        assert lines[0].startswith("archive/2019/some-very-long") and lines[0].endswith("-and-on.txt")
        assert "…" in lines[0] and cell_len(lines[0]) == 80
        assert lines[1].startswith("A title")  # the next line is the title, not the rest of the name
    short = to_table(results(), width=80).splitlines()
    assert short[0] == "examples/op-ed.txt"


def test_wide_shows_each_paragraph_whole_under_its_label_row_without_breaking_words():
    data = crowded(explain=True)
    lines = to_table(data, width=80, wide=True).splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("1*"))
    assert "against?" in lines[start] and "0.30/0.45/0.25" in lines[start]
    body = []
    for line in lines[start + 1:]:
        if line.lstrip().startswith("↳"):
            break
        assert line.startswith(" " * 7) and line[7] != " "  # indented under the label row
        body.append(line.strip())
    assert len(body) > 5
    url_from = next(i for i, line in enumerate(body) if "https://" in line)
    # up to the URL, whole words only, in the paragraph's order...
    assert " ".join(body[:url_from]) == " ".join([LONG] * 4)
    # ...and the URL, longer than a line, is the one thing folded (wrapping needs a space)
    assert body[url_from] == URL[:len(body[url_from])] and "".join(body[url_from:]) == URL
    assert all(cell_len(line) <= 80 for line in lines)


def test_wide_wraps_to_a_wider_terminal_and_plain_table_stays_snippets():
    data = results()
    wide = to_table(data, width=200, wide=True)
    assert LONG in wide.splitlines()[5] and max(cell_len(line) for line in wide.splitlines()) <= 200
    snippets = render(data, "table", width=80)
    assert LONG not in snippets.replace("\n", " ") and "paragraph" in snippets.splitlines()[3]
    assert render(data, "table", width=80) == to_table(data, width=80, wide=False)  # render's callers unchanged


def test_snippets_end_on_a_whole_word():
    text = render(results(), "table", width=80)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("0*"))
    assert row.endswith("…")
    last = row[:-1].split()[-1]
    assert last in [word.strip(",.") for word in LONG.split()]


def test_header_states_the_verdict_reason_wrapped_else_the_shares():
    data = crowded()
    text = to_table(data, width=80)
    joined = " ".join(line.strip() for line in text.splitlines())
    assert f"verdict FAVOR  {REASON}" in joined
    header = [line for line in text.splitlines() if line.startswith("verdict FAVOR")][0]
    assert "favor 33%" not in text and len(header) <= 80 and not header.endswith("-")
    assert "verdict NONE  favor 0%  against 0%  none 100%" in text  # no reason: the shares


def test_markdown_footer_lists_only_the_marks_that_occur():
    text = render(results(), "markdown")
    assert text.rstrip().endswith("`*` decisive for the verdict. Off-topic: far from every training paragraph, "
                                  "counted as none.")
    in_domain = results()[1:]
    text = render(in_domain, "markdown")
    assert "`*` decisive" in text and "Off-topic" not in text
    in_domain[0]["decisive"] = []
    text = render(in_domain, "markdown")
    assert "decisive for the verdict" not in text and "Off-topic" not in text
    assert text.rstrip().endswith("| A record. |")
