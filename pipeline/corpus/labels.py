"""Label files: loading, validation and resolution across annotators.

Inputs:  `paths.labels_dir`/*.csv with columns paragraph_id,label,annotator,note (extra columns
         are ignored; a UTF-8 BOM, CRLF line endings and blank lines are accepted).
Params:  `labels.priority` (annotators in tie-breaking order).

Validation errors name the file and line: an unknown label, a paragraph id not in the corpus,
or one annotator giving one paragraph two different labels.

Resolution: each paragraph takes the majority label of its annotators; a tie goes to the label
of the annotator who comes first in `labels.priority` (unlisted annotators rank after, by name).
Agreement between two annotators is Cohen's kappa (`kappa`), for `stance labels agreement` and
the real development set's blind second pass alike.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

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


def kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa over LABELS; NaN when undefined."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(cohen_kappa_score(first, second, labels=list(LABELS)))
        except (ValueError, ZeroDivisionError):
            return math.nan


# --- Writing label files (the labelling session, imports) ------------------------------------
# Rows are appended in place (O_APPEND, then flush + fsync) or the file is rewritten atomically
# (temporary file + fsync + rename). Rows not touched keep their exact bytes, and the file keeps
# its own column order, BOM and line endings.

_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")  # a BOM stays in the text as U+FEFF and is written back as is
    except UnicodeDecodeError:
        raise StanceError(f"{path}: not UTF-8 text") from None


def _line_ending(text: str) -> str:
    end = text.find("\n")
    return "\r\n" if end > 0 and text[end - 1] == "\r" else "\n"


def _blank(text: str) -> bool:
    return not text.replace("\ufeff", "").strip()


def _records(text: str, path: Path) -> tuple[list[str] | None, list[tuple[int, int, list[str]]]]:
    """The lower-case header and the data records of a label file, each with its character span."""
    lines = _LINE.findall(text)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    reader = csv.reader(iter(lines))
    header, records, consumed = None, [], 0
    try:
        for cells in reader:
            start, consumed = offsets[consumed], reader.line_num
            if all(_blank(cell) for cell in cells):
                continue
            if header is None:
                header = [cell.replace("\ufeff", "").strip().lower() for cell in cells]
                missing = [c for c in LABEL_COLUMNS if c not in header]
                if missing:
                    raise StanceError(f"{path}:1: missing columns {', '.join(missing)} "
                                      f"(expected {','.join(LABEL_COLUMNS)})")
            else:
                records.append((start, offsets[consumed], cells))
    except csv.Error as exc:
        raise StanceError(f"{path}: malformed CSV ({exc})") from None
    return header, records


def _format_row(columns: list[str], row: dict, ending: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerow([row.get(column, "") for column in columns])
    return buffer.getvalue()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_label_row(path: str | Path, row: dict) -> None:
    """Append one row (keys from LABEL_COLUMNS) and force it to disk before returning.

    A missing or empty file gets the header first; a last line without a line break (typed by
    hand) is ended first, so it is never merged with the new row. Nothing already in the file is
    rewritten, so a kill at any moment leaves every earlier row intact.
    """
    path = Path(path)
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        handle.seek(0)
        text = _decode(handle.read(), path)
        header, _ = _records(text, path)
        ending = _line_ending(text)
        chunk = "" if _blank(text) or text.endswith("\n") else ending
        if header is None:
            header = list(LABEL_COLUMNS)
            chunk += ",".join(LABEL_COLUMNS) + ending
        chunk += _format_row(header, row, ending)
        handle.write(chunk.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        _fsync_dir(path.parent)


def edit_label_file(path: str | Path, edit: Callable[[list[dict]], tuple[Iterable[int], list[dict]]]) -> None:
    """Rewrite a label file atomically. `edit(rows)` receives the data rows (dicts keyed by
    lower-case column name, in file order) and returns (indices of rows to drop, rows to add at
    the end). The new content is fsynced before it is renamed over the old file, and the file
    keeps its permissions."""
    import stat

    from pipeline.files import atomic_path

    path = Path(path)
    try:
        text = _decode(path.read_bytes(), path)
    except FileNotFoundError:
        text = ""
    header, records = _records(text, path)
    drop, add = edit([dict(zip(header, cells)) for _, _, cells in records] if header else [])
    drop = sorted(set(drop))
    if not drop and not add:
        return
    ending = _line_ending(text)
    pieces, cursor = [], 0
    for index in drop:
        start, end, _ = records[index]
        pieces.append(text[cursor:start])
        cursor = end
    pieces.append(text[cursor:])
    new = "".join(pieces)
    if add:
        if header is None:
            header = list(LABEL_COLUMNS)
            new = ",".join(LABEL_COLUMNS) + ending
        elif not new.endswith("\n"):
            new += ending
        new += "".join(_format_row(header, row, ending) for row in add)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(new.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    _fsync_dir(path.parent)


def remove_last_label_row(path: str | Path, paragraph_id: str, annotator: str, label: str | None = None) -> bool:
    """Drop the last row of `annotator` for `paragraph_id` (with `label`, if given), atomically.
    False when there is no such row (e.g. it was already removed by hand)."""
    found = []

    def edit(rows: list[dict]):
        for index in range(len(rows) - 1, -1, -1):
            row = rows[index]
            if ((row.get("paragraph_id") or "").strip() == paragraph_id
                    and (row.get("annotator") or "").strip() == annotator
                    and (label is None or (row.get("label") or "").strip().lower() == label)):
                found.append(index)
                return [index], []
        return [], []

    edit_label_file(path, edit)
    return bool(found)
