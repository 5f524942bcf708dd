"""`stance label`: label paragraphs one at a time in the terminal, the most useful first.

Inputs:  `paths.paragraphs`, `paths.sources`, `paths.labels_dir`, the trained model and
         `<paths.reports_dir>/predictions.csv`: what to offer, in which order and with which
         guess is `pipeline.labelling.label_queue`'s business.
Outputs: `paths.labels_dir`/<annotator>.csv: one row per answer, appended and fsynced at once
         (`pipeline.labelling.label_file`: crash safety, hand edits, one session per annotator).
Params:  `seed`, `labels.priority`, `embedding.*` (through `pipeline.labelling.label_queue`).

The order is fixed when the session starts; retrain (`dvc repro`) to refresh the guesses. The
screen fits the terminal (80 columns and up): long annotator names, document titles and paths
are shortened in the middle with "…", and lines are wrapped only between words.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import textwrap
from collections import defaultdict
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
# check_annotator, model_guesses and order_paragraphs are here for pipeline.labelling.label_exchange's imports
from pipeline.labelling.label_file import LabelFile, annotator_lock, check_annotator, label_file_path  # noqa: F401
from pipeline.labelling.label_queue import (MODEL, ORDERS, document_titles, load_guesses,  # noqa: F401
                                  model_guesses, order_paragraphs, read_paragraphs, session_queue)

KEYS = {"f": "favor", "a": "against", "n": "none"}
KEY_LINE = "[f] favor  [a] against  [n] none   [s] skip  [u] undo  [q] quit  [?] help"
HELP = ("f, a, n: label the paragraph favor / against / none (saved to disk at once).  s: skip it for this "
        "session.  u: undo the last answer or skip of this session.  q: quit (everything answered is saved).")
CONTEXT_CHARS = 280
ELLIPSIS = "…"


def shorten_middle(text: str, width: int) -> str:
    """`text` within `width` terminal cells, its middle replaced by "…": whole words at both ends
    when that keeps most of the room (a title), else characters (a path or a name)."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    if width < 2:
        return ELLIPSIS[:max(width, 0)]
    words, front, back, size = text.split(), [], [], 3  # size: " … " and the words kept so far
    while len(front) + len(back) < len(words):
        side = front if sum(map(cell_len, front)) <= sum(map(cell_len, back)) else back
        word = words[len(front)] if side is front else words[-1 - len(back)]
        if size + cell_len(word) + (1 if side else 0) > width:
            break
        side.append(word)
        size += cell_len(word) + (1 if len(side) > 1 else 0)
    if front and back and size >= width * 2 // 3:
        return f"{' '.join(front)} {ELLIPSIS} {' '.join(reversed(back))}"
    head, tail = (width - 1) - (width - 1) // 2, (width - 1) // 2
    while head + tail > 0 and cell_len(text[:head]) + cell_len(text[len(text) - tail:]) + 1 > width:
        if head >= tail:  # wide (CJK) characters take two cells: give back one character at a time
            head -= 1
        else:
            tail -= 1
    return text[:head] + ELLIPSIS + (text[len(text) - tail:] if tail else "")


def pack(parts: Iterable[str], width: int, sep: str = " | ") -> list[str]:
    """`parts` joined by `sep` on as few lines of `width` as they fit, each part whole (or shortened)."""
    from rich.cells import cell_len

    lines: list[str] = []
    for part in (shorten_middle(p, width) for p in parts if p):
        if lines and cell_len(lines[-1]) + len(sep) + cell_len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


def wrap_fit(text: str, width: int) -> list[str]:
    """`text` wrapped between words; a single word wider than `width` (a path) is shortened."""
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return [shorten_middle(line, width) for line in lines] or [""]


class LabelSession:
    """The state of one labelling session; `press(key)` acts on a key, `render()` draws it."""

    def __init__(self, records: list[dict], order: list[str], label_file: LabelFile,
                 probabilities: dict[str, np.ndarray] | None = None, titles: dict[str, str] | None = None,
                 show_guess: bool = True, status: str = "", order_name: str = "",
                 sources: dict[str, str] | None = None):
        self.records = {r["id"]: r for r in records}
        self.documents: dict[str, list[dict]] = defaultdict(list)
        for record in records:
            self.documents[record["doc"]].append(record)
        for paragraphs in self.documents.values():
            paragraphs.sort(key=lambda r: r["position"])
        self.order = [pid for pid in order if pid in self.records]
        self.file = label_file
        self.probabilities = probabilities or {}
        self.sources = sources or {}  # id -> where its guess came from (label_queue.MODEL / OUT_OF_FOLD)
        self.titles = titles or {}
        self.show_guess = show_guess
        self.status = status
        self.order_name = order_name
        self.skipped: set[str] = set()
        self.history: list[tuple[str, str, str]] = []  # (action, paragraph id, label)
        self.pinned: str | None = None  # brought back by undo
        self.saved = 0
        self.message = ""
        self.blocked: str | None = None  # why the label file cannot be used right now
        self.current: str | None = None

    # state

    def start(self) -> None:
        self.file.refresh()  # an invalid file at start is an error for the caller
        self.current = self._next()

    def _next(self) -> str | None:
        if self.pinned and self.pinned not in self.file.labels:
            return self.pinned
        self.pinned = None
        return next((pid for pid in self.order if pid not in self.file.labels and pid not in self.skipped), None)

    def remaining(self) -> int:
        return sum(1 for pid in self.order if pid not in self.file.labels)

    def _sync(self) -> bool:
        """Re-read the label file; False while it is invalid (then `blocked` says why)."""
        try:
            changed = self.file.refresh()
        except StanceError as exc:
            self.blocked = str(exc)
            return False
        if changed or self.blocked:
            self.message = (f"{self.file.path} changed on disk (edited by hand?); re-read it: "
                            f"{len(self.file.labels)} labels by {self.file.annotator}.")
        self.blocked = None
        return True

    # keys

    def press(self, key: str) -> bool:
        """Act on one key press; False when the session should end."""
        self.message = ""
        if key in ("q", "Q", "\x04"):
            return False
        was_blocked = self.blocked is not None
        if not self._sync():
            return True
        shown = self.current
        if shown is None or shown in self.file.labels:  # the file changed under the paragraph on screen
            self.current = self._next()
            if shown is not None:
                self._say(f"{shown} is already labelled {self.file.labels[shown]!r} in the file, so "
                          f"{describe_key(key)} was not applied to it.")
            if self.current != shown:
                return True  # never apply a key to a paragraph that was not on screen
        if was_blocked:
            return True  # the key only asked to re-check the file
        lower = key.lower() if len(key) == 1 else key
        if lower in KEYS:
            self._answer(KEYS[lower])
        elif lower == "s":
            self._skip()
        elif lower == "u":
            self._undo()
        elif lower in ("?", "h"):
            self._say(HELP)
        else:
            self._say(f"{describe_key(key)} is not a key here: press f, a, n, s, u or q "
                      f"(? for help). Nothing was saved or lost.")
        self.current = self._next()
        return True

    def _say(self, text: str) -> None:
        self.message = f"{self.message} {text}".strip()

    def _answer(self, label: str) -> None:
        pid = self.current
        if pid is None:
            self._say("Nothing left to label. Press q to quit or u to undo.")
            return
        self.file.append(pid, label)
        self.history.append(("label", pid, label))
        self.pinned = None
        self.saved += 1
        self._say(f"Saved {pid} as {label}.")

    def _skip(self) -> None:
        pid = self.current
        if pid is None:
            self._say("Nothing left to skip. Press q to quit or u to undo.")
            return
        self.skipped.add(pid)
        self.history.append(("skip", pid, ""))
        self.pinned = None
        self._say(f"Skipped {pid} (it comes back in your next session).")

    def _undo(self) -> None:
        if not self.history:
            self._say("Nothing to undo in this session.")
            return
        action, pid, label = self.history.pop()
        if action == "skip":
            self.skipped.discard(pid)
            self._say(f"Undid the skip of {pid}.")
        elif self.file.remove(pid, label):
            self.saved -= 1
            self._say(f"Undid {pid} = {label}: removed from {self.file.path}.")
        else:
            self._say(f"{pid} = {label} was no longer in {self.file.path} (edited by hand?); nothing removed.")
        self.pinned = pid if pid not in self.file.labels else None

    # drawing

    def render(self, width: int = 100, style: Callable[..., str] | None = None) -> str:
        style = style or (lambda text, **_: text)
        width = max(40, min(width, 110))
        rule = "-" * width
        lines = self._header(width, style) + [rule]
        if self.blocked:
            lines += [style(line, fg="red", bold=True)
                      for line in wrap_fit(f"The label file cannot be used: {self.blocked}", width)]
            lines += wrap_fit("Nothing is written until it is fixed. Fix the file, then press any key to "
                              "re-check (q quits).", width)
        elif self.current is None:
            lines += [style(line, bold=True) for line in wrap_fit(
                f"Nothing left to label for {self.file.annotator}"
                f"{' (skipped paragraphs come back next session)' if self.skipped else ''}.", width)]
            lines += wrap_fit("Press q to quit, or u to undo the last answer.", width)
        else:
            lines += self._paragraph_lines(self.current, width, style)
        lines += [rule]
        if self.message:
            lines += wrap_fit(self.message, width)
        keys = [KEY_LINE] if len(KEY_LINE) <= width else pack(KEY_LINE.replace("   ", "  ").split("  "), width, "  ")
        lines += keys + ["> "]
        return "\n".join(lines)

    def _header(self, width: int, style: Callable[..., str]) -> list[str]:
        """The session's state in `width` columns: the annotator's name gives way first."""
        counts = [f"{self.saved} saved this session", f"{self.remaining()} to go"]
        room = width - len("stance label | annotator ") - sum(3 + len(part) for part in counts)
        name = shorten_middle(self.file.annotator, max(12, room))
        lines = [style(line, bold=True) for line in pack(["stance label", f"annotator {name}", *counts], width)]
        lines += wrap_fit(" | ".join(part for part in (f"order {self.order_name}", self.status) if part), width)
        lines.append("labels file " + shorten_middle(str(self.file.path), width - len("labels file ")))
        return lines

    def _paragraph_lines(self, pid: str, width: int, style: Callable[..., str]) -> list[str]:
        record = self.records[pid]
        siblings = self.documents[record["doc"]]
        index = next(i for i, r in enumerate(siblings) if r["id"] == pid)
        title = self.titles.get(record["doc"]) or record["doc"]
        where = f", paragraph {index + 1} of {len(siblings)}, id {pid})"
        lines = [style("Document: " + shorten_middle(title, width - len("Document: ")), bold=True),
                 *wrap_fit("(" + shorten_middle(record["doc"], max(12, width - 1 - len(where))) + where, width), ""]
        if index > 0:
            lines += _context(siblings[index - 1]["text"], "before", width, style) + [""]
        lines += [style(line, bold=True) for line in textwrap.wrap(record["text"], width - 4,
                                                                     initial_indent=">>  ", subsequent_indent=">>  ",
                                                                     break_on_hyphens=False)]
        if index + 1 < len(siblings):
            lines += [""] + _context(siblings[index + 1]["text"], "after", width, style)
        lines += [""]
        probabilities = self.probabilities.get(pid)
        if not self.show_guess:
            lines.append("Guess: hidden (--no-guess)")
        elif probabilities is None:
            lines.append("Guess: not available")
        else:
            guess = LABELS[int(np.argmax(probabilities))]
            lead = f"Guess ({self.sources.get(pid, MODEL)}): "
            shares = "(" + "  ".join(f"{label} {p:.2f}" for label, p in zip(LABELS, probabilities)) + ")"
            if len(lead) + len(guess) + 3 + len(shares) <= width:
                lines.append(f"{lead}{style(guess, bold=True)}   {shares}")
            else:
                lines += [f"{lead}{style(guess, bold=True)}", f"  {shares}"]
        return lines


def _context(text: str, where: str, width: int, style: Callable[..., str]) -> list[str]:
    short = text if len(text) <= CONTEXT_CHARS else text[:CONTEXT_CHARS].rsplit(" ", 1)[0] + " ..."
    return [style(line, dim=True) for line in textwrap.wrap(f"[{where}] {short}", width - 4,
                                                            initial_indent="    ", subsequent_indent="    ")]


def describe_key(key: str) -> str:
    if key in ("\r", "\n"):
        return "Enter"
    if key.startswith("\x1b"):
        return "An arrow, function or Escape key"
    if len(key) > 1:
        return f"{len(key)} characters at once (a paste?)"
    if key == " ":
        return "Space"
    if not key.isprintable():
        return f"Control character {key.encode('unicode_escape').decode()}"
    return f"{key!r}"


# --- terminal plumbing ------------------------------------------------------------------------

@contextlib.contextmanager
def key_reader(stream: TextIO) -> Iterator[Callable[[], str]]:
    """Yield a function returning the next key press ('' at end of input).

    On a terminal, keys arrive one at a time without Enter and without echo (cbreak mode,
    restored on exit, also on SIGTERM/SIGHUP; Ctrl-C always ends the session); a read returning
    several characters at once (a paste) comes back whole, so the session can refuse it.
    Otherwise (a pipe, a script) characters are read one by one, line breaks skipped.
    """
    if not stream.isatty():
        def read_char() -> str:
            while True:
                char = stream.read(1)
                if char not in ("\n", "\r"):
                    return char

        yield read_char
        return
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C ends the session even when the shell that started us ignored SIGINT (a background job
    # without job control passes SIG_IGN on, and Python then never raises KeyboardInterrupt).
    handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    tty.setcbreak(fd)
    try:
        yield lambda: os.read(fd, 64).decode("utf-8", "replace")
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _styler(out: TextIO) -> Callable[..., str]:
    colour = out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    if not colour:
        return lambda text, **_: text
    import click

    return lambda text, **kwargs: click.style(text, **kwargs)


def run_session(params: dict, annotator: str, order: str = "margin", show_guess: bool = True, embed: bool = True,
                embedder=None, keys: Iterable[str] | None = None, stdin: TextIO | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> dict:
    """Run an interactive session; returns a summary. `keys` (for tests) replaces the terminal."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    if order not in ORDERS:
        raise StanceError(f"unknown --order {order!r} (expected one of {', '.join(ORDERS)})")
    path = label_file_path(params, annotator)
    records = read_paragraphs(params)
    with annotator_lock(path, annotator):
        label_file = LabelFile(path, annotator)
        label_file.refresh()

        def log(message: str) -> None:
            print(message, file=err, flush=True)

        guesses = load_guesses(params, records, embed=embed, embedder=embedder, log=log)
        ids, order_name = session_queue(params, records, annotator, order, guesses)
        session = LabelSession(records, ids, label_file, guesses.probabilities, document_titles(params), show_guess,
                               guesses.status, order_name, guesses.sources)
        session.start()
        interactive = keys is None and out.isatty()
        style = _styler(out)
        clear = "\x1b[H\x1b[2J" if interactive and os.environ.get("TERM") != "dumb" else ""
        with contextlib.ExitStack() as stack:
            read = iter(keys).__next__ if keys is not None else stack.enter_context(key_reader(stdin))
            try:
                while True:
                    width = shutil.get_terminal_size((100, 24)).columns
                    out.write(clear + session.render(width, style) + ("" if interactive else "\n"))
                    out.flush()
                    key = read()
                    if key == "" or not session.press(key):
                        break
            except (StopIteration, KeyboardInterrupt, EOFError):
                pass  # Ctrl-C, end of input: every answer is already on disk
        if interactive:
            out.write("\n")
    return {"annotator": annotator, "path": str(path), "saved": session.saved,
            "labelled": len(label_file.labels), "remaining": session.remaining()}

