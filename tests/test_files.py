"""pipeline.files: atomic writes, JSON-lines errors, decoding notes."""

import json
import os

import pytest

from pipeline.errors import StanceError
from pipeline.files import atomic_path, decode_text, merge_json_atomic, read_jsonl, write_text_atomic


def test_merge_keeps_other_sections_and_survives_a_corrupt_file(tmp_path):
    path = tmp_path / "benchmark.json"
    merge_json_atomic(path, {"a": 1})
    assert merge_json_atomic(path, {"b": 2}) == {"a": 1, "b": 2}
    merge_json_atomic(path, {"a": 3})
    assert json.loads(path.read_text()) == {"a": 3, "b": 2}
    path.write_text("{not json")
    assert merge_json_atomic(path, {"c": 4}) == {"c": 4}


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_invalid_json_line_names_line_column_and_the_whole_message(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2, "text": "cut\n', encoding="utf-8")
    with pytest.raises(StanceError) as caught:
        read_jsonl(path)
    assert str(caught.value) == (f"{path}:3: invalid JSON at column 19 (Unterminated string starting at: "
                                 "line 1 column 19 (char 18))")
    path.write_text('{"id": 1} trailing\n', encoding="utf-8")
    with pytest.raises(StanceError, match=r"notes\.jsonl:1: invalid JSON at column 11 \(Extra data: line 1 "
                                          r"column 11 \(char 10\)\)$"):
        read_jsonl(path)


def test_decode_text_notes_the_windows_1252_fallback_only():
    notes = []
    assert decode_text("\u201cquoted\u201d".encode("cp1252"), "old.txt", notes) == "\u201cquoted\u201d"
    assert notes == ["old.txt: not UTF-8; read as Windows-1252"]
    notes = []
    assert decode_text("\u201cquoted\u201d".encode("utf-8"), "new.txt", notes) == "\u201cquoted\u201d"
    assert notes == []
    assert decode_text(b"\x93plain call\x94", "x.txt") == "\u201cplain call\u201d"  # notes are optional
