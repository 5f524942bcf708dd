"""Reading score inputs: formats, directories, stdin, records, decoding and bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.corpus.documents import (decode_document, declared_charset, expand_paths, markdown_to_text, read_input,
                                       record_documents, text_document)
from pipeline.errors import StanceError
from pipeline.files import MAX_TEXT_BYTES

EXAMPLES = Path(__file__).parent.parent / "examples"
PROSE = ("Beijing and Washington worked together on the sanctions resolution, and the joint effort is paying off "
         "along the border.")


def only(path, **kw):
    documents, problems = read_input(str(path), **kw)
    assert problems == []
    assert len(documents) == 1
    return documents[0]


def test_plain_text_example_keeps_only_the_article():
    doc = only(EXAMPLES / "oped-joint-pressure.txt")
    assert len(doc.paragraphs) == 6
    assert doc.paragraphs[0].startswith("For all the talk of a new cold war")
    assert doc.paragraphs[-1].startswith("The lesson is simple")
    joined = "\n".join(doc.paragraphs)
    for clutter in ("Share this article", "By Margaret Ellison", "senior fellow", "March 14, 2018"):
        assert clutter not in joined
    # hard-wrapped lines are joined into one paragraph
    assert "\n" not in doc.paragraphs[1]


def test_saved_html_page_scores_the_article_not_menus_comments_or_related_links():
    doc = only(EXAMPLES / "saved-page-beijing-hedges.html")
    assert doc.title == "Don't Outsource North Korea to Beijing"
    assert len(doc.paragraphs) == 6
    assert doc.paragraphs[0].startswith("Every American president")
    assert doc.paragraphs[-1] == "Talking to China about the peninsula is still worthwhile. Relying on it to deliver Pyongyang is not."
    joined = " ".join(doc.paragraphs)
    for clutter in ("Subscribe", "Share on", "Finally someone says it", "Naive take", "Beijing holds the key",
                    "More in Opinion", "cookies", "newsletter", "columnist", "All rights reserved", "Sport"):
        assert clutter not in joined


def test_html_without_article_text_is_refused(tmp_path):
    page = tmp_path / "menu.html"
    page.write_text("<html><body><nav><a href='/'>Home</a> <a href='/x'>World</a></nav>"
                    "<div class='share'>Share on Facebook</div></body></html>", encoding="utf-8")
    with pytest.raises(StanceError, match=r"menu\.html: no article (text found|paragraphs left) in the HTML page"):
        read_input(str(page))


def test_text_that_is_really_html_is_extracted(tmp_path):
    page = tmp_path / "saved.txt"
    page.write_text(f"<!DOCTYPE html><html><body><nav>Home World Sport</nav><article><p>{PROSE}</p>"
                    f"<p>{PROSE.replace('paying off', 'holding up')}</p></article></body></html>", encoding="utf-8")
    doc = only(page)
    assert len(doc.paragraphs) == 2 and "Home" not in doc.paragraphs[0]


def test_markdown_note_drops_markup_headings_code_and_front_matter():
    doc = only(EXAMPLES / "asia-desk-digest.md")
    joined = "\n".join(doc.paragraphs)
    assert "joint call for a freeze" in joined            # **bold** markers gone
    assert "A recent customs report found" in joined      # link became its text
    assert "example.org" not in joined and "**" not in joined and "*practical*" not in joined
    assert "Asia desk digest" not in joined               # front matter and headings
    assert "rota for next week" not in joined             # code block
    assert any(p.startswith("In the weekend's derby") for p in doc.paragraphs)
    assert any(p.startswith('"We have seen joint statements before,"') for p in doc.paragraphs)


def test_markdown_to_text_keeps_line_breaks_for_the_paragraph_rules():
    text = markdown_to_text("# Title\n\nFirst line of a *wrapped*\nparagraph.\n\n![chart](c.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert text == "First line of a wrapped\nparagraph."


def test_stdin_is_read_as_text():
    docs, problems = read_input("-", stdin=io.BytesIO(f"{PROSE}\n\nShare on Facebook\n".encode()))
    assert problems == [] and docs[0].name == "<stdin>" and docs[0].paragraphs == [PROSE]


def test_stdin_html_page_in_its_declared_charset():
    page = (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head>'
            f"<body><nav>Главная</nav><article><p>{PROSE} Пекин и Вашингтон.</p></article></body></html>")
    docs, _ = read_input("-", stdin=io.BytesIO(page.encode("cp1251")))
    assert docs[0].paragraphs == [f"{PROSE} Пекин и Вашингтон."]


def test_stdin_above_the_size_limit_is_refused():
    class Endless(io.RawIOBase):
        def read(self, n=-1):
            return b"a" * n

    with pytest.raises(StanceError, match=r"<stdin>: more than \d+ MB is too large"):
        read_input("-", stdin=Endless())


@pytest.mark.parametrize("content, message", [
    (b"", r"empty\.txt: empty document"),
    (b"   \n\n  \n", r"empty\.txt: empty document"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), r"empty\.txt: binary file"),
    ("Share on Facebook\n\nBy Jane Doe\n".encode(), r"empty\.txt: no article paragraphs left after boilerplate"),
])
def test_unusable_text_files_are_refused(tmp_path, content, message):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(StanceError, match=message):
        read_input(str(path))


def test_a_50_mb_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as handle:
        handle.truncate(50 * 2**20)  # sparse: no 50 MB written
    assert big.stat().st_size > MAX_TEXT_BYTES
    with pytest.raises(StanceError, match=r"huge\.txt: 50 MB is too large to score"):
        read_input(str(big))


def test_missing_file_and_urls_are_refused(tmp_path):
    with pytest.raises(StanceError, match=r"nope\.txt: no such file"):
        read_input(str(tmp_path / "nope.txt"))
    for url in ("https://example.com/oped.html", "www.example.com/oped"):
        with pytest.raises(StanceError, match="URLs are not fetched .*never uses the network"):
            read_input(url)


def test_windows_1252_text_is_decoded_by_the_fallback(tmp_path):
    path = tmp_path / "legacy.txt"
    path.write_bytes(f"\x93Joint pressure\x94 works \x96 {PROSE}".encode("latin-1"))
    doc = only(path)
    assert doc.paragraphs[0].startswith("“Joint pressure” works – Beijing")


def test_the_windows_1252_fallback_is_noted_once_naming_the_file(tmp_path):
    legacy = tmp_path / "old.txt"
    legacy.write_bytes(f"\x93Joint pressure\x94 works. {PROSE}\n\n{PROSE} Again \x96 twice.".encode("latin-1"))
    notes = []
    docs, problems = read_input(str(legacy), notes=notes)
    assert docs and problems == []
    assert notes == [f"{legacy}: not UTF-8; read as Windows-1252"]
    records = tmp_path / "old.jsonl"
    records.write_bytes("\n".join(json.dumps({"text": f"{PROSE} \u201c{i}\u201d"}, ensure_ascii=False)
                                  for i in range(3)).encode("cp1252"))
    notes = []
    read_input(str(records), notes=notes)
    assert notes == [f"{records}: not UTF-8; read as Windows-1252"]  # one note for the file, not per record
    notes = []
    read_input("-", stdin=io.BytesIO(f"\u201cQuoted\u201d {PROSE}".encode("cp1252")), notes=notes)
    assert notes == ["<stdin>: not UTF-8; read as Windows-1252"]
    utf8 = tmp_path / "new.txt"
    utf8.write_text(f"\u201cJoint pressure\u201d works. {PROSE}", encoding="utf-8")
    notes = []
    read_input(str(utf8), notes=notes)
    assert notes == []


def test_an_html_page_decoded_with_its_declared_charset_gets_no_note():
    page = (f'<html><head><meta charset="windows-1251"></head><body><article><p>{PROSE} \u0421\u0435\u0443\u043b.</p>'
            f"<p>{PROSE}</p></article></body></html>").encode("cp1251")
    notes = []
    assert "\u0421\u0435\u0443\u043b" in decode_document(page, "page.html", html=True, notes=notes)
    assert notes == []


def test_a_broken_json_line_is_reported_with_its_column_and_whole_message(tmp_path):
    path = tmp_path / "notes.jsonl"
    good = json.dumps({"text": PROSE})
    path.write_text(f"{good}\n{good}\n" + '{"id": 3, "text": "unterminated\n', encoding="utf-8")
    docs, problems = read_input(str(path))
    assert len(docs[0].paragraphs) == 2
    assert problems == [f"{path}:3: invalid JSON at column 19 (Unterminated string starting at: line 1 column 19 "
                        "(char 18)); record skipped"]


def test_html_declaring_its_charset_is_decoded_with_it(tmp_path):
    sentence = "北京与华盛顿在制裁问题上的合作正在取得成效，边境上的走私明显减少了，官员们对此表示满意。"
    page = (f'<html><head><meta charset="gb2312"></head><body><article><p>{sentence}</p>'
            f"<p>{PROSE}</p></article></body></html>").encode("gb18030")
    assert declared_charset(page) == "gb2312"
    text = decode_document(page, "page.html", html=True)
    assert sentence in text


def test_bytes_no_encoding_accepts_are_refused(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes(b"caf\xc3 and \x81\x8d\x8f\x90\x9d bytes that are neither UTF-8 nor Windows-1252")
    with pytest.raises(StanceError, match=r"odd\.txt: not UTF-8 or cp1252 text"):
        read_input(str(path))


def test_directories_are_searched_recursively_by_extension(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("a/one.txt", "a/b/two.md", "a/b/three.html", "a/four.jsonl", "a/skip.pdf", ".git/x.txt",
                 "a/.hidden.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    files, problems = expand_paths([str(tmp_path), str(tmp_path / "a" / "one.txt"), "-"])
    names = [Path(f).name if f != "-" else f for f in files]
    assert names == ["four.jsonl", "one.txt", "three.html", "two.md", "-"]
    assert problems == []


def test_directory_without_readable_files_is_a_problem(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "page.pdf").write_bytes(b"%PDF")
    files, problems = expand_paths([str(tmp_path / "scans")])
    assert files == []
    assert len(problems) == 1 and "scans: directory has no readable files" in problems[0]


def test_jsonl_records_keep_ids_group_by_document_and_skip_bad_lines(tmp_path):
    path = tmp_path / "paras.jsonl"
    lines = [{"id": "a1", "document": "alpha", "text": "  First   paragraph text. "},
             {"id": 7, "document": "beta", "text": "Second paragraph text."},
             {"document": "alpha", "text": "Third, without an id."},
             {"id": "bad", "body": "no text field here"},
             {"id": "blank", "text": "   "}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n{not json\n\n", encoding="utf-8")
    docs, problems = read_input(str(path))
    assert [(d.name, d.paragraphs, d.ids) for d in docs] == [
        ("alpha", ["First paragraph text.", "Third, without an id."], ["a1", None]),
        ("beta", ["Second paragraph text."], ["7"])]
    assert all(d.records for d in docs)
    assert problems == [f"{path}:4: record without a non-empty string `text` field; record skipped",
                        f"{path}:5: record without a non-empty string `text` field; record skipped",
                        f"{path}:6: invalid JSON at column 2 (Expecting property name enclosed in double quotes: "
                        "line 1 column 2 (char 1)); record skipped"]


def test_record_file_with_no_usable_record(tmp_path):
    docs, problems = record_documents("x.jsonl", '{"id": 1}\n', ".jsonl")
    assert docs == [] and problems[-1] == "x.jsonl: no usable records"


def test_csv_records_and_a_csv_without_text_column(tmp_path):
    good = tmp_path / "paras.csv"
    good.write_text('id,text\nr1,"One paragraph, quoted."\nr2,Another paragraph.\n', encoding="utf-8")
    docs, problems = read_input(str(good))
    assert problems == [] and docs[0].paragraphs == ["One paragraph, quoted.", "Another paragraph."]
    assert docs[0].ids == ["r1", "r2"]
    bad = tmp_path / "other.csv"
    bad.write_text("id,body\n1,hello\n", encoding="utf-8")
    with pytest.raises(StanceError, match=r"other\.csv: CSV without a `text` column"):
        read_input(str(bad))


def test_text_document_uses_the_prepare_word_limit():
    text = "Five words in this one.\n\nAnd here are seven words in total."
    assert text_document("t", text, min_words=4).paragraphs == ["Five words in this one.", "And here are seven words in total."]
    assert text_document("t", text, min_words=6).paragraphs == ["And here are seven words in total."]
