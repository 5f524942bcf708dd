"""Label files: loading, validation and resolution across annotators.

Inputs:  `paths.labels_dir`/*.csv with columns paragraph_id,label,annotator,note (extra columns
         are ignored; a UTF-8 BOM, CRLF line endings and blank lines are accepted).
Params:  `labels.priority` (annotators in tie-breaking order).

Validation errors name the file and line: an unknown label, a paragraph id not in the corpus,
or one annotator giving one paragraph two different labels.

Resolution: each paragraph takes the majority label of its annotators; a tie goes to the label
of the annotator who comes first in `labels.priority` (unlisted annotators rank after, by name).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline import LABELS
from pipeline.errors import StanceError

LABEL_COLUMNS = ["paragraph_id", "label", "annotator", "note"]


@dataclass(frozen=True)
class LabelRow:
    paragraph_id: str
    label: str
    annotator: str
    note: str
    source: str  # "file:line", for messages


def read_label_file(path: str | Path, known_ids: set[str] | None = None) -> list[LabelRow]:
    """Rows of one label file, validated; `known_ids` (the corpus) catches orphan ids."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise StanceError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        try:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise StanceError(f"{path}: empty label file (expected header {','.join(LABEL_COLUMNS)})")
            header = [h.strip().lower() for h in header]
            missing = [c for c in LABEL_COLUMNS if c not in header]
            if missing:
                raise StanceError(f"{path}:1: missing columns {', '.join(missing)} (expected {','.join(LABEL_COLUMNS)})")
            index = {c: header.index(c) for c in LABEL_COLUMNS}
            rows = []
            for line, cells in enumerate(reader, start=2):
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) < len(header):
                    raise StanceError(f"{path}:{line}: {len(cells)} fields, expected {len(header)}")
                rows.append(_row(cells, index, f"{path}:{line}", known_ids))
        except UnicodeDecodeError:
            raise StanceError(f"{path}: not UTF-8 text") from None
        except csv.Error as exc:
            raise StanceError(f"{path}: malformed CSV ({exc})") from None
    _check_conflicts(rows)
    return rows


def _row(cells: list[str], index: dict[str, int], source: str, known_ids: set[str] | None) -> LabelRow:
    pid = cells[index["paragraph_id"]].strip()
    label = cells[index["label"]].strip().lower()
    annotator = cells[index["annotator"]].strip()
    if not pid:
        raise StanceError(f"{source}: empty paragraph_id")
    if label not in LABELS:
        raise StanceError(f"{source}: unknown label {label!r} (expected one of {', '.join(LABELS)})")
    if not annotator:
        raise StanceError(f"{source}: empty annotator")
    if known_ids is not None and pid not in known_ids:
        raise StanceError(f"{source}: paragraph id {pid} is not in the corpus (run `stance prepare`?)")
    return LabelRow(pid, label, annotator, cells[index["note"]].strip(), source)


def _check_conflicts(rows: Iterable[LabelRow]) -> None:
    first: dict[tuple[str, str], LabelRow] = {}
    for row in rows:
        key = (row.annotator, row.paragraph_id)
        earlier = first.setdefault(key, row)
        if earlier.label != row.label:
            raise StanceError(
                f"{row.source}: annotator {row.annotator} labels {row.paragraph_id} {row.label!r}"
                f" but {earlier.label!r} at {earlier.source}")


def load_labels(labels_dir: str | Path, known_ids: set[str] | None = None) -> list[LabelRow]:
    """All rows of all label files in a directory, validated (also across files)."""
    labels_dir = Path(labels_dir)
    files = sorted(labels_dir.glob("*.csv"))
    if not files:
        raise StanceError(f"{labels_dir}: no label files (*.csv)")
    rows = [row for path in files for row in read_label_file(path, known_ids)]
    _check_conflicts(rows)
    return rows


def resolve_labels(rows: Iterable[LabelRow], priority: list[str] | None = None) -> dict[str, str]:
    """One label per paragraph: majority vote; ties go to the highest-priority annotator."""
    priority = list(priority or [])

    def rank(annotator: str) -> tuple[int, str]:
        return (priority.index(annotator) if annotator in priority else len(priority), annotator)

    votes: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        votes[row.paragraph_id][row.annotator] = row.label
    resolved = {}
    for pid, by_annotator in votes.items():
        counts = Counter(by_annotator.values())
        top = max(counts.values())
        tied = {label for label, n in counts.items() if n == top}
        leader = min((a for a, label in by_annotator.items() if label in tied), key=rank)
        resolved[pid] = by_annotator[leader]
    return resolved
