"""`stance labels check`: its list of suspected label issues fits the terminal (80 columns, or the
terminal's width, at least 60): long document names cut in the middle, texts at a word boundary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.corpus import prepare
from pipeline.encoder import embed
from pipeline.labelling.label_issues import issue_lines, ok_lines, run_check
from pipeline.terminal import shorten_middle, snippet

LONG_DOC = "2017-longform-brackwater-forum-point-counterpoint-enforcement-of-the-sanctions-on-coal"
LONG_TEXT = ("A reader in Seoul wrote after the last issue to tell me I am naive about this: Beijing, she argued, "
             "will never squeeze Pyongyang hard enough, and the customs figures prove it year after year.")


@pytest.mark.parametrize("width", [60, 80, 120])
def test_an_issue_fits_the_width_with_a_long_name_and_text(width):
    lines = issue_lines("p0123456789abcdef", LONG_DOC, "against", "favor", 0.57, LONG_TEXT, width)
    assert len(lines) == 3 and all(len(line) <= width for line in lines)
    first, labels, text = lines
    assert first.startswith("  p0123456789abcdef  2017-longform-") and first.endswith("on-coal")
    if len(LONG_DOC) + 21 > width:
        assert "…" in first and len(first) == width  # the middle goes, as little as needed
    else:
        assert first == f"  p0123456789abcdef  {LONG_DOC}"
    assert labels == "    labelled against, model says favor (0.57)"
    shown = text.strip()
    assert shown.endswith("…") and LONG_TEXT.startswith(shown[:-1])
    assert LONG_TEXT[len(shown) - 1] == " "  # cut after a whole word, never inside one


def test_short_names_and_texts_are_shown_whole():
    lines = issue_lines("p0123456789abcdef", "doc-1", "none", "favor", 0.9, "Short  text.\n", 80)
    assert lines == ["  p0123456789abcdef  doc-1", "    labelled none, model says favor (0.90)", "    Short text."]


def test_shortening_keeps_both_ends_and_counts_wide_characters():
    assert shorten_middle("abcdefghij", 10) == "abcdefghij"
    assert shorten_middle("abcdefghijkl", 7) == "abc…jkl"
    wide = shorten_middle("中国" * 30, 21)
    assert wide.startswith("中国") and wide.endswith("国") and "…" in wide
    assert sum(2 if ch != "…" else 1 for ch in wide) <= 21
    url = "https://example.com/" + "x" * 200
    assert snippet(url, 40) == url[:39] + "…"  # one long word: cut inside it rather than show nothing


def test_an_ok_line_with_a_long_path_keeps_the_file_name():
    path = "/tmp/" + "deep/" * 20 + "data/labels/primary.csv"
    lines = ok_lines(path, 3850, "favor 1230, against 1224, none 1396", 80)
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].endswith("primary.csv: ok, 3850 labels") and lines[0].startswith("/tmp/")
    assert lines[1] == "  (favor 1230, against 1224, none 1396)"
    assert ok_lines("data/labels/x.csv", 3, "favor 1, against 1, none 1", 80) == [
        "data/labels/x.csv: ok, 3 labels (favor 1, against 1, none 1)"]


def rename_documents(params: dict, slug) -> None:
    """Give every document of the little project a new slug (`slug(old)`); texts and labels stay."""
    raw = Path(params["paths"]["raw_dir"])
    with open(params["paths"]["sources"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        (raw / f"{row['slug']}.txt").rename(raw / f"{slug(row['slug'])}.txt")
        row["slug"] = slug(row["slug"])
    with open(params["paths"]["sources"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_labels_check_fits_the_terminal_width(project, fake_embedder, monkeypatch, capsys):
    rename_documents(project, lambda old: f"{LONG_DOC}-{old}")
    labels = Path(project["paths"]["labels_dir"]) / "primary.csv"
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].replace(",favor,", ",none,")  # a deliberately wrong label
    labels.write_text("\n".join(lines) + "\n")
    prepare.run(project)
    embed.run(project, embedder=fake_embedder)
    monkeypatch.setenv("COLUMNS", "60")  # what shutil.get_terminal_size reads first
    issues = run_check(project)
    out = capsys.readouterr().out.splitlines()
    assert issues and all(len(line) <= 60 for line in out), "\n".join(line for line in out if len(line) > 60)
    assert any(line.endswith("primary.csv: ok, 24 labels") for line in out)  # the tmp path is long
    wrong_id = lines[1].split(",")[0]
    first = next(line for line in out if line.startswith(f"  {wrong_id}  "))
    assert "2017-longform-" in first and "…" in first and first.endswith("-doc-0")
    assert out[out.index(first) + 1].startswith("    labelled none, model says ")
    assert out[out.index(first) + 2].startswith("    Beijing and Washington worked together")
