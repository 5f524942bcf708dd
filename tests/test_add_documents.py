"""`stance add` (new documents into data/raw and sources.csv, crash-safe) and the stale-label listing
of `stance labels check`, on the tiny project of conftest."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.corpus import add_documents as add_module
from pipeline.corpus import prepare
from pipeline.corpus.add_documents import (JOURNAL_NAME, add_documents, corpus_lock, make_slug, slugify,
                                           sources_with_rows, validate_meta)
from pipeline.encoder import embed
from pipeline.errors import StanceError
from pipeline.files import read_jsonl
from pipeline.labelling.label_issues import run_check

EXAMPLES = Path(__file__).parent.parent / "examples"
PROSE = ("Beijing and Washington quietly agreed this spring to share inspection data on cargo bound for the "
         "North, a modest step that officials on both sides said could grow into a wider arrangement.")
MORE = ("Skeptics in Seoul doubt that the arrangement will survive the next round of tariffs, noting that "
        "every earlier promise of coordination faded within a year of being made.")


def raw(params) -> Path:
    return Path(params["paths"]["raw_dir"])


def sources(params) -> list[dict]:
    with open(params["paths"]["sources"], encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def row_of(params, slug) -> dict:
    return next(row for row in sources(params) if row["slug"] == slug)


def write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


# --- adding --------------------------------------------------------------------------------------

def test_adds_html_markdown_and_text_with_validated_rows(project, tmp_path):
    article = write(tmp_path / "in" / "my_oped.txt", f"{PROSE}\n\n{MORE}\n")
    result = add_documents(project, [str(EXAMPLES / "saved-page-beijing-hedges.html"),
                                     str(EXAMPLES / "asia-desk-digest.md"), article],
                           {"date": "2023-04-05", "outlet": "The Test Post", "genre": "op-ed"})
    assert result.refused == []
    slugs = [a["slug"] for a in result.added]
    assert slugs == ["2023-dont-outsource-north-korea-to-beijing", "2023-asia-desk-digest-week-12", "2023-my-oped"]
    html_row = row_of(project, slugs[0])
    assert html_row == {"slug": slugs[0], "title": "Don't Outsource North Korea to Beijing", "author": "",
                        "outlet": "The Test Post", "date": "2023-04-05", "year": "2023", "kind": "added",
                        "genre": "op-ed", "voice": ""}
    assert row_of(project, slugs[1])["title"] == "Asia desk digest — week 12"  # the first Markdown heading
    assert row_of(project, slugs[2])["title"] == "my_oped"  # the file name: not written into the text
    html_text = (raw(project) / f"{slugs[0]}.txt").read_text(encoding="utf-8")
    assert html_text.startswith("Don't Outsource North Korea to Beijing\n\nEvery American president")
    for clutter in ("Subscribe", "Share on", "More in Opinion"):
        assert clutter not in html_text
    assert (raw(project) / f"{slugs[2]}.txt").read_text(encoding="utf-8") == f"{PROSE}\n\n{MORE}\n"
    # the prepare stage accepts the corpus and finds the paragraphs `stance score` reads
    corpus = prepare.run(project)
    html_paragraphs = [p.text for p in corpus if p.doc == slugs[0]]
    assert len(html_paragraphs) == result.added[0]["paragraphs"] == 6
    assert html_paragraphs[-1] == ("Talking to China about the peninsula is still worthwhile. Relying on it to "
                                   "deliver Pyongyang is not.")
    assert not (raw(project) / JOURNAL_NAME).exists()


def test_directories_are_added_recursively_by_extension(project, tmp_path):
    folder = tmp_path / "incoming"
    write(folder / "a.txt", PROSE)
    write(folder / "deeper" / "b.md", f"# Second thoughts\n\n{MORE}\n")
    write(folder / "records.jsonl", '{"text": "not a document"}\n')
    write(folder / ".hidden.txt", "A hidden draft paragraph that should never be picked up by a directory walk.")
    result = add_documents(project, [str(folder)], {"title": None, "kind": "authored-extra"})
    assert [(a["slug"], a["title"]) for a in result.added] == [("a", "a"), ("second-thoughts", "Second thoughts")]
    assert {row_of(project, a["slug"])["kind"] for a in result.added} == {"authored-extra"}
    assert result.refused == []


def test_slugs_are_ascii_hyphenated_and_unique():
    assert (slugify("Why Beijing Won’t Help: Korea & the U.S. — Café Talks")
            == "why-beijing-wont-help-korea-the-u-s-cafe-talks")
    assert len(slugify("word " * 40)) <= 60
    assert make_slug("", "", "My_File Name", set()) == "my-file-name"
    assert make_slug("北京", "", "2021 notes", set()) == "2021-notes"
    assert make_slug("Title", "2020", "x", {"2020-title", "2020-title-2"}) == "2020-title-3"


def test_same_title_twice_gets_a_numbered_slug(project, tmp_path):
    first, second = write(tmp_path / "one.txt", PROSE), write(tmp_path / "two.txt", MORE)
    result = add_documents(project, [first, second], {"title": "Joint inspections", "date": "2024"})
    assert [a["slug"] for a in result.added] == ["2024-joint-inspections", "2024-joint-inspections-2"]
    assert row_of(project, "2024-joint-inspections")["date"] == "2024"


@pytest.mark.parametrize("meta, message", [
    ({"date": "2021/03/04"}, r"--date '2021/03/04': expected YYYY or YYYY-MM-DD"),
    ({"date": "2021-02-30"}, r"--date '2021-02-30': no such day"),
    ({"kind": "Op Ed"}, r"--kind 'Op Ed': use lower-case letters, digits and hyphens"),
    ({"genre": "Op_Ed"}, r"--genre 'Op_Ed': use lower-case"),
])
def test_bad_metadata_is_refused_before_anything_is_written(project, tmp_path, meta, message):
    before = Path(project["paths"]["sources"]).read_bytes()
    with pytest.raises(StanceError, match=message):
        add_documents(project, [write(tmp_path / "a.txt", PROSE)], meta)
    assert Path(project["paths"]["sources"]).read_bytes() == before
    expected = [f"doc-{d}.txt" for d in range(8)] + ["sources.csv"]
    assert sorted(p.name for p in raw(project).iterdir()) == sorted(expected)


def test_metadata_is_cleaned_to_one_line():
    meta = validate_meta({"title": "  A\ntitle\twith\x07 breaks ", "voice": "x", "date": "1999"})
    assert meta["title"] == "A title with breaks" and meta["year"] == "1999" and meta["kind"] == "added"


def test_document_already_in_the_corpus_is_reported_not_duplicated(project, tmp_path):
    # the same paragraphs as doc-3, laid out differently and with other clutter
    copy = (raw(project) / "doc-3.txt").read_text().replace("Share on Facebook", "Subscribe to our newsletter")
    result = add_documents(project, [write(tmp_path / "copy.txt", "\n\n\n".join(copy.split("\n\n")))])
    assert result.added == []
    assert result.refused == [f"{tmp_path / 'copy.txt'}: already in the corpus as {raw(project) / 'doc-3.txt'} "
                              "(same text); not added"]
    # added once, then refused the second time (also within one run)
    article = write(tmp_path / "new.txt", PROSE)
    again = write(tmp_path / "again" / "new.txt", PROSE)
    result = add_documents(project, [article, again])
    assert len(result.added) == 1 and len(result.refused) == 1
    assert len(add_documents(project, [article]).refused) == 1
    assert len(sources(project)) == 9


def test_bad_inputs_get_one_line_each_and_the_rest_are_added(project, tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    binary = write(tmp_path / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    menu = write(tmp_path / "menu.html", "<html><body><nav><a href='/'>Home</a></nav>"
                                         "<div class='share'>Share on Facebook</div></body></html>")
    records = write(tmp_path / "rows.jsonl", '{"text": "x"}\n')
    good = write(tmp_path / "good.txt", PROSE)
    result = add_documents(project, [empty, binary, menu, str(tmp_path / "missing.txt"), records, good])
    assert [a["source"] for a in result.added] == [good]
    assert len(result.refused) == 5
    for line, expected in zip(result.refused, ["empty.txt: empty document", "image.txt: binary file",
                                               "menu.html: no article", "missing.txt: no such file",
                                               "rows.jsonl: paragraph records, not a document"]):
        assert expected in line and "\n" not in line
    assert [r["slug"] for r in sources(project)][-1] == "good"
    assert not list(raw(project).glob(".*"))  # no journal, no temporary files


# --- crash safety --------------------------------------------------------------------------------

def test_a_run_killed_before_sources_csv_is_completed_by_the_next(project, tmp_path, monkeypatch):
    before = Path(project["paths"]["sources"]).read_bytes()
    article, other = write(tmp_path / "a.txt", PROSE), write(tmp_path / "b.txt", MORE)

    def die(path, text):
        raise KeyboardInterrupt  # the process dies between the documents and the sources table

    monkeypatch.setattr(add_module, "write_sources", die)
    with pytest.raises(KeyboardInterrupt):
        add_documents(project, [article, other])
    monkeypatch.undo()
    assert (raw(project) / "a.txt").exists() and (raw(project) / "b.txt").exists()
    assert (raw(project) / JOURNAL_NAME).exists()
    assert Path(project["paths"]["sources"]).read_bytes() == before
    with pytest.raises(StanceError, match="a.txt: not listed in"):
        prepare.run(project)  # the inconsistency the next `stance add` repairs

    # the same command again: the interrupted documents are completed, not refused as duplicates
    result = add_documents(project, [article, other])
    assert result.recovered == ["a", "b"] and result.refused == [] and result.added == []
    assert result.messages[0].startswith("completed an interrupted `stance add`: 2 documents")
    assert [r["slug"] for r in sources(project)][-2:] == ["a", "b"]
    assert Path(project["paths"]["sources"]).read_bytes().startswith(before)
    assert not (raw(project) / JOURNAL_NAME).exists()
    assert {p.doc for p in prepare.run(project)} >= {"a", "b"}


def test_a_run_killed_between_documents_keeps_only_whole_documents(project, tmp_path, monkeypatch):
    article, other = write(tmp_path / "a.txt", PROSE), write(tmp_path / "b.txt", MORE)
    written = []

    def write_then_die(path, text):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        add_module.write_text_atomic(path, text)

    monkeypatch.setattr(add_module, "write_document", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        add_documents(project, [article, other])
    monkeypatch.undo()
    assert (raw(project) / "a.txt").exists() and not (raw(project) / "b.txt").exists()
    result = add_documents(project, [])  # `stance add` alone only completes the interrupted run
    assert result.recovered == ["a"]
    assert [r["slug"] for r in sources(project)][-1] == "a"
    prepare.run(project)
    result = add_documents(project, [other])  # the document that was never written can be added now
    assert [a["slug"] for a in result.added] == ["b"]


def test_a_failed_write_is_one_line(project, tmp_path, monkeypatch):
    def full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(add_module, "write_sources", full)
    with pytest.raises(StanceError, match=r"sources\.csv: cannot write \(No space left on device\); the next "
                                          r"`stance add` completes"):
        add_documents(project, [write(tmp_path / "a.txt", PROSE)])


def test_two_runs_at_once_are_refused(project, tmp_path):
    with corpus_lock(raw(project)):
        with pytest.raises(StanceError, match="another `stance add` is running"):
            add_documents(project, [write(tmp_path / "a.txt", PROSE)])


def test_sources_rows_are_appended_keeping_the_existing_bytes(tmp_path):
    path = tmp_path / "sources.csv"
    header = "\ufeffslug,title,author,outlet,date,year,kind,genre,voice,extra\r\n"
    path.write_bytes((header + 'x,"A, b",,,,,seed,,,z').encode())
    text = sources_with_rows(path, [{"slug": "y", "title": 'Say "no"', "kind": "added"}])
    assert text == ("\ufeffslug,title,author,outlet,date,year,kind,genre,voice,extra\r\nx,\"A, b\",,,,,seed,,,z\r\n"
                    "y,\"Say \"\"no\"\"\",,,,,added,,,\r\n")
    assert sources_with_rows(tmp_path / "none.csv", [{"slug": "y", "kind": "added"}]) == (
        "slug,title,author,outlet,date,year,kind,genre,voice\ny,,,,,,added,,\n")


# --- the pipeline after `add` --------------------------------------------------------------------

def test_next_prepare_and_embed_encode_only_the_new_paragraphs(project, fake_embedder):
    prepare.run(project)
    embed.run(project, embedder=fake_embedder)
    assert sum(fake_embedder.calls) == 24
    result = add_documents(project, [str(EXAMPLES / "oped-joint-pressure.txt")])
    new = result.added[0]["paragraphs"]
    assert new == 6
    corpus = prepare.run(project)
    assert len(corpus) == 24 + new
    embed.run(project, embedder=fake_embedder)
    assert sum(fake_embedder.calls) == 24 + new
    assert len(read_jsonl(project["paths"]["paragraphs"])) == 30


# --- the command line ----------------------------------------------------------------------------

def test_cli_add_exit_codes(project, tmp_path):
    runner = CliRunner()
    params = str(tmp_path / "params.yaml")
    good = write(tmp_path / "in" / "good.txt", PROSE)
    result = runner.invoke(app, ["add", good, "--date", "2022-01-02", "--author", "A. Writer", "--params", params])
    assert result.exit_code == 0, result.output
    assert "good.txt: added as" in result.output and "added 1 document to" in result.output
    assert row_of(project, "2022-good")["author"] == "A. Writer"
    empty = write(tmp_path / "in" / "empty.md", "")
    other = write(tmp_path / "in" / "other.txt", MORE)
    result = runner.invoke(app, ["add", empty, good, other, "--params", params])
    assert result.exit_code == 1
    assert "empty.md: empty document" in result.output and "already in the corpus" in result.output
    assert "added 1 document to" in result.output and "2 inputs refused" in result.output
    result = runner.invoke(app, ["add", good, "--date", "March 2021", "--params", params])
    assert result.exit_code == 1 and "--date 'March 2021': expected YYYY or YYYY-MM-DD" in result.output
    result = runner.invoke(app, ["add", "--params", params])
    assert result.exit_code == 2 and "nothing to add" in result.output


# --- `stance labels check`: labels of paragraphs that are gone -----------------------------------

def test_labels_check_lists_every_label_of_an_edited_or_removed_document(project, capsys):
    labels = Path(project["paths"]["labels_dir"])
    # doc-0: its favor paragraph (line 2 of primary.csv) rewritten; doc-7 (lines 23-25) removed
    doc0 = raw(project) / "doc-0.txt"
    doc0.write_text(doc0.read_text().replace("is paying off", "may yet pay off"))
    (raw(project) / "doc-7.txt").unlink()
    kept = [line for line in Path(project["paths"]["sources"]).read_text().splitlines(keepends=True)
            if not line.startswith("doc-7,")]
    Path(project["paths"]["sources"]).write_text("".join(kept))
    shutil.copy(labels / "primary.csv", labels / "second.csv")
    (labels / "third.csv").write_text("paragraph_id,label,annotator,note\nzzz,maybe,third,\n")
    prepare.run(project)
    ids = [line.split(",")[0] for line in (labels / "primary.csv").read_text().splitlines()]
    with pytest.raises(StanceError, match=r"^9 problems in the label files \(listed above\)"):
        run_check(project)
    err = capsys.readouterr().err.splitlines()
    for name in ("primary.csv", "second.csv"):
        for line in (2, 23, 24, 25):
            assert (f"{labels / name}:{line}: {ids[line - 1]} no longer in the corpus (document edited or removed)"
                    in err)
    assert any("third.csv:2: unknown label 'maybe'" in line for line in err)
    assert len(err) == 9 and not any("warning" in line for line in err)


def test_labels_check_warns_when_the_corpus_changed_after_prepare(project, capsys):
    import os
    import time

    prepare.run(project)
    doc = raw(project) / "doc-1.txt"
    later = time.time() + 5
    os.utime(doc, (later, later))
    labels = Path(project["paths"]["labels_dir"]) / "primary.csv"
    labels.write_text(labels.read_text() + "p0123456789abcdef,none,primary,\n")
    with pytest.raises(StanceError, match="^1 problems"):
        run_check(project)
    err = capsys.readouterr().err
    assert "changed after" in err and "run `stance prepare`" in err
    assert "primary.csv:26: p0123456789abcdef no longer in the corpus" in err
