from pathlib import Path

import pytest

from pipeline.corpus.labels import load_labels, read_label_file, resolve_labels
from pipeline.errors import StanceError

HEADER = "paragraph_id,label,annotator,note\n"


def write(tmp_path: Path, text: str, name: str = "a.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_bom_crlf_blank_lines_and_extra_columns(tmp_path):
    text = "\ufeffparagraph_id,label,annotator,note,extra\r\np1,Favor ,ann,\"a, note\",x\r\n\r\np2,none,ann,,y\r\n"
    rows = read_label_file(write(tmp_path, text), {"p1", "p2"})
    assert [(r.paragraph_id, r.label, r.note) for r in rows] == [("p1", "favor", "a, note"), ("p2", "none", "")]


@pytest.mark.parametrize("body, message", [
    ("p1,maybe,ann,\n", r"a.csv:2: unknown label 'maybe'"),
    ("p9,favor,ann,\n", r"a.csv:2: paragraph id p9 is not in the corpus"),
    ("p1,favor,ann,\np1,against,ann,\n", r"a.csv:3: annotator ann labels p1 'against' but 'favor' at .*a.csv:2"),
    ("p1,favor,,\n", r"a.csv:2: empty annotator"),
    ("p1,favor\n", r"a.csv:2: 2 fields, expected 4"),
])
def test_invalid_rows_name_file_and_line(tmp_path, body, message):
    with pytest.raises(StanceError, match=message):
        read_label_file(write(tmp_path, HEADER + body), {"p1"})


def test_missing_columns_and_empty_file(tmp_path):
    with pytest.raises(StanceError, match=r"a.csv:1: missing columns annotator, note"):
        read_label_file(write(tmp_path, "paragraph_id,label\np1,favor\n"))
    with pytest.raises(StanceError, match="empty label file"):
        read_label_file(write(tmp_path, ""))
    with pytest.raises(StanceError, match="not UTF-8"):
        read_label_file(write(tmp_path, HEADER + "p1,favor,Jos\xe9,\n", encoding="latin-1"))


def test_same_annotator_conflict_across_files(tmp_path):
    write(tmp_path, HEADER + "p1,favor,ann,\n", "a.csv")
    write(tmp_path, HEADER + "p1,none,ann,\n", "b.csv")
    with pytest.raises(StanceError, match="b.csv:2: annotator ann labels p1 'none'"):
        load_labels(tmp_path, {"p1"})


def test_repeated_identical_label_is_fine(tmp_path):
    rows = read_label_file(write(tmp_path, HEADER + "p1,favor,ann,\np1,favor,ann,again\n"), {"p1"})
    assert resolve_labels(rows) == {"p1": "favor"}


def test_resolution_majority_then_priority(tmp_path):
    write(tmp_path, HEADER + "p1,favor,primary,\np2,favor,primary,\np3,none,primary,\n", "primary.csv")
    write(tmp_path, HEADER + "p1,against,second,\np2,against,second,\n", "second.csv")
    write(tmp_path, HEADER + "p2,against,zed,\n", "zed.csv")
    rows = load_labels(tmp_path, {"p1", "p2", "p3"})
    assert resolve_labels(rows, ["adjudicator", "primary", "second"]) == {"p1": "favor", "p2": "against", "p3": "none"}
    assert resolve_labels(rows, ["second", "primary"])["p1"] == "against"


def test_no_label_files(tmp_path):
    with pytest.raises(StanceError, match="no label files"):
        load_labels(tmp_path)


def test_project_label_files_are_valid():
    import json

    root = Path(__file__).parent.parent
    ids = {json.loads(line)["id"] for line in (root / "data/prepared/paragraphs.jsonl").open()} \
        if (root / "data/prepared/paragraphs.jsonl").exists() else None
    rows = load_labels(root / "data/labels", ids)
    labels = resolve_labels(rows)
    assert len(labels) >= 500
    for label in ("favor", "against", "none"):
        assert sum(v == label for v in labels.values()) / len(labels) >= 0.25
