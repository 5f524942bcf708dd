"""The file-level side of `stance score`: read inputs, load the model once, score, write the output.

Inputs:  command-line arguments (files, directories, `-`), see `pipeline.corpus.documents`.
Outputs: the rendered results on stdout or, atomically, in `--output FILE`; every message
         (problems, notes, progress) goes to stderr, so machine formats keep stdout clean.
Params:  `prepare.min_words`, `score.*`, `embedding.*` (through `pipeline.scoring.score.load_scorer`).

Each input that cannot be read is reported on stderr in one line, and the rest are still
scored. Exit code: 0 when at least one document was scored (even if others were refused); 1
(StanceError "nothing could be scored") when none was. Progress bars (rich) appear on stderr
only when it is a terminal and the run is long.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline.errors import StanceError
from pipeline.files import write_text_atomic

if TYPE_CHECKING:
    from pipeline.corpus.documents import Document

PROGRESS_MIN_PARAGRAPHS = 200  # shorter runs finish before a bar is worth drawing
PROGRESS_MIN_FILES = 20


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Progress:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.started = False

    def _add(self, description: str, total: int | None):
        if not self.started:  # drawn only once there is something to show
            self.bar.start()
            self.started = True
        return self.bar.add_task(description, total=total)

    def task(self, description: str, total: int, show: bool = True):
        if self.bar is None or not show:
            return None
        task = self._add(description, total)
        return lambda n=1: self.bar.advance(task, n)

    def status(self, description: str):
        return None if self.bar is None else self._add(description, None)

    def done(self, task) -> None:
        if self.bar is not None and task is not None:
            self.bar.remove_task(task)

    def stop(self) -> None:
        if self.bar is not None and self.started:
            self.bar.stop()


@contextmanager
def progress_on_stderr(enabled: bool | None = None):
    progress = _Progress(sys.stderr.isatty() if enabled is None else enabled)
    try:
        yield progress
    finally:
        progress.stop()


def read_documents(paths: list[str], min_words: int, progress: _Progress | None = None,
                   on_first_document: Callable[[], None] | None = None) -> tuple[list[Document], int]:
    """Documents of all arguments; problems (and notes, such as a file read as Windows-1252) are
    printed on stderr as they are found. `on_first_document()` is called once, as soon as one
    document has been read.
    Returns (documents, number of problems)."""
    from pipeline.corpus.documents import expand_paths, read_input

    files, problems = expand_paths(paths)
    for message in problems:
        say(f"error: {message}")
    advance = progress.task("reading", len(files), show=len(files) >= PROGRESS_MIN_FILES) if progress else None
    documents = []
    for path in files:
        notes: list[str] = []
        try:
            docs, record_problems = read_input(path, min_words, notes=notes)
        except StanceError as exc:
            docs, record_problems = [], [str(exc)]
        for message in notes:
            say(f"note: {message}")
        if docs and not documents and on_first_document is not None:
            on_first_document()
        documents.extend(docs)
        problems.extend(record_problems)
        for message in record_problems:
            say(f"error: {message}")
        if advance:
            advance()
    return documents, len(problems)


def run_score(paths: list[str], fmt: str, output: Path | None, params: dict, precision: str | None = None,
              scorer=None, explain: bool = False, progress: bool | None = None, wide: bool = False) -> int:
    """Score `paths` and write the results; returns the exit code (raises StanceError when nothing
    could be scored). `scorer` replaces the trained model (tests); `progress` forces bars on/off;
    `wide` shows whole paragraphs in the table format (other formats always hold the whole text)."""
    from pipeline.encoder.embed import make_embedder

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars while the model loads
    min_words = int((params.get("prepare") or {}).get("min_words", 4))
    embedders = []  # made once there is something to score; OpenVINO then loads in the background
    #                 while the rest is read and imported (~0.3 s of a cold start)

    def start_loading() -> None:
        embedder = make_embedder(params, scoring=True, precision=precision)
        embedders.append(embedder)
        if hasattr(embedder, "start_loading"):
            embedder.start_loading()

    with progress_on_stderr(progress) as bars:
        documents, problems = read_documents(paths, min_words, bars, start_loading if scorer is None else None)
        if not documents:
            raise StanceError("nothing could be scored" + (f" ({problems} input problem(s) above)" if problems else ""))
        from pipeline.scoring.output import prepare, render, to_table
        from pipeline.scoring.score import load_scorer, score_documents

        prepare(fmt)
        if scorer is None:
            loading = bars.status("loading the model")
            scorer = load_scorer(params, embedder=embedders[0], explain=explain)
            bars.done(loading)
        for note in scorer.notes:
            say(f"note: {note}")
        total = sum(len(d.paragraphs) for d in documents)
        advance = bars.task("scoring paragraphs", total, show=total >= PROGRESS_MIN_PARAGRAPHS)
        results = score_documents(documents, scorer, advance, explain=explain)

    def rendered(color: bool = False, width: int = 80) -> str:
        if fmt == "table":  # the one format with a --wide layout
            return to_table(results, color, width, scorer.uncertain_below, wide=wide)
        return render(results, fmt, color=color, width=width, uncertain_below=scorer.uncertain_below)

    if output is not None:
        try:
            write_text_atomic(output, rendered())
        except OSError as exc:
            raise StanceError(f"{output}: cannot write ({exc.strerror or type(exc).__name__})") from None
        say(f"wrote {output} ({len(results)} documents, {total} paragraphs)")
    else:
        tty = sys.stdout.isatty()
        color = fmt == "table" and tty and not os.environ.get("NO_COLOR")
        width = shutil.get_terminal_size((80, 24)).columns if tty else 80
        sys.stdout.write(rendered(color, width))
        sys.stdout.flush()
    if problems:
        say(f"scored {len(results)} documents; {problems} input problem(s) reported above")
    return 0
