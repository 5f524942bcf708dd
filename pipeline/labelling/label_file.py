"""An annotator's own label file as `stance label` keeps it: every answer safe on disk at once.

Inputs/outputs: `paths.labels_dir`/<annotator>.csv (one row per answer; see `pipeline.corpus.labels`
for the format and the low-level writes).

Safety: an answer is on disk (flush + fsync) before the session shows the next paragraph, so
killing it loses at most the paragraph on screen. The file is re-read whenever its bytes change:
a file edited by hand meanwhile is noticed and its new content used; a file that became invalid
raises StanceError (naming file and line) and is never written to until it is fixed. Undo
rewrites the file atomically (temporary file + rename). One session (or import) per annotator at
a time: `annotator_lock`, a lock file in the temp directory; different annotators write
different files, so they can label at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from pipeline.errors import StanceError

ANNOTATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_annotator(name: str | None) -> str:
    if not name or not ANNOTATOR_NAME.match(name):
        raise StanceError(f"annotator name {name!r}: use letters, digits, '.', '_' or '-' "
                          f"(it names the label file <labels_dir>/<annotator>.csv)")
    return name


def label_file_path(params: dict, annotator: str) -> Path:
    return Path(params["paths"]["labels_dir"]) / f"{check_annotator(annotator)}.csv"


class LabelFile:
    """One annotator's label file as the session sees it; re-read whenever its bytes change."""

    def __init__(self, path: Path, annotator: str):
        self.path = Path(path)
        self.annotator = annotator
        self.labels: dict[str, str] = {}
        self._digest: str | None = None

    def refresh(self) -> bool:
        """Re-read the file if its content changed since last seen; True if it did (not on the
        first read). Raises StanceError (naming file and line) when the file is invalid."""
        from pipeline.corpus.labels import read_label_file

        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StanceError(f"{self.path}: cannot read ({exc.strerror})") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        empty = not data.decode("utf-8", "replace").replace("\ufeff", "").strip()
        rows = [] if empty else read_label_file(self.path)
        self.labels = {r.paragraph_id: r.label for r in rows if r.annotator == self.annotator}
        first, self._digest = self._digest is None, digest
        return not first

    def append(self, paragraph_id: str, label: str) -> None:
        from pipeline.corpus.labels import append_label_row

        append_label_row(self.path, {"paragraph_id": paragraph_id, "label": label,
                                     "annotator": self.annotator, "note": ""})
        self._reread()

    def remove(self, paragraph_id: str, label: str) -> bool:
        from pipeline.corpus.labels import remove_last_label_row

        removed = remove_last_label_row(self.path, paragraph_id, self.annotator, label)
        self._reread()
        return removed

    def _reread(self) -> None:
        """Take in our own write. Should someone break the file in that instant, the next key's
        refresh reports it."""
        try:
            self.refresh()
        except StanceError:
            pass


@contextlib.contextmanager
def annotator_lock(path: Path, annotator: str) -> Iterator[None]:
    """Refuse a second session (or import) for the same label file while one is running."""
    import fcntl

    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"stance-label-{os.getuid()}-{key}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            raise StanceError(f"{path}: a `stance label` session for {annotator} is already running"
                              f"{f' (process {owner})' if owner else ''}; quit it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
