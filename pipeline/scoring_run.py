"""The file-level side of `stance score`: read inputs, score them, write the output.

Files that cannot be read are reported on stderr, one line each, and the rest are still scored;
the exit code is 1 only when nothing could be scored.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.documents import expand_paths, read_input
from pipeline.errors import StanceError
from pipeline.files import write_text_atomic
from pipeline.output import render


def _progress(total: int):
    """A rich progress bar on stderr for long runs on a terminal; None otherwise."""
    if total < 200 or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    task = progress.add_task("scoring paragraphs", total=total)
    progress.start()
    return progress, lambda n: progress.advance(task, n)


def run_score(paths: list[str], fmt: str, output: Path | None, params: dict, precision: str | None = None,
              scorer=None) -> int:
    from pipeline.score import load_scorer, score_documents

    files, errors = expand_paths(paths)
    documents = []
    for path in files:
        try:
            documents.extend(read_input(path))
        except StanceError as exc:
            errors.append(str(exc))
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if not documents:
        raise StanceError("nothing could be scored")
    scorer = scorer or load_scorer(params, precision=precision)
    progress, advance = _progress(sum(len(d.paragraphs) for d in documents))
    try:
        results = score_documents(documents, scorer, advance)
    finally:
        if progress is not None:
            progress.stop()
    if output is not None:
        write_text_atomic(output, render(results, fmt, color=False))
    else:
        sys.stdout.write(render(results, fmt, color=fmt == "table" and sys.stdout.isatty()))
    return 0
