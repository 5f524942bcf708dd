"""pipeline.files: atomic writes."""

import json
import os

import pytest

from pipeline.files import atomic_path, merge_json_atomic, write_text_atomic


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
