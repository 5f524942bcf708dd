"""`stance label`: label paragraphs one at a time in the terminal, the most useful first.

Inputs:  `paths.paragraphs` (from prepare), `paths.sources` (document titles), `paths.labels_dir`
         (what is labelled already) and, when a trained model exists, `paths.model`,
         `paths.model_meta` and `paths.embeddings` (paragraphs the embed stage has not seen yet are
         embedded on the fly through `pipeline.embed`, cached in `paths.embedding_cache`).
Outputs: `paths.labels_dir`/<annotator>.csv: one row per answer, appended and fsynced at once.
Params:  `seed` (random order), `embedding.*` (only for paragraphs missing from the embeddings).

Order: "margin" (default) and "entropy" show first the paragraphs the current model is least
sure of (smallest gap between its two most likely labels / largest entropy of its
probabilities); "random" is a shuffle seeded from `seed`; "document" follows the corpus. In the
first three, paragraphs nobody has labelled come before those only other annotators labelled.
Without a trained model there is no guess, and margin/entropy fall back to random order. The
order is fixed when the session starts; retrain (`dvc repro`) to refresh it.

Safety: an answer is on disk (flush + fsync) before the next paragraph is shown, so killing the
session loses at most the paragraph on screen. The label file is re-read before every key is
acted on: a file edited by hand meanwhile is noticed and its new content used; a file that
became invalid is never written to until it is fixed. Undo rewrites the file atomically
(temporary file + rename). One session per annotator at a time (a lock in the temp directory);
different annotators write different files, so they can label at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError

ORDERS = ("margin", "entropy", "random", "document")
KEYS = {"f": "favor", "a": "against", "n": "none"}
KEY_LINE = "[f] favor  [a] against  [n] none   [s] skip  [u] undo  [q] quit  [?] help"
HELP = ("f, a, n: label the paragraph favor / against / none (saved to disk at once).  s: skip it for this "
        "session.  u: undo the last answer or skip of this session.  q: quit (everything answered is saved).")
ANNOTATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CONTEXT_CHARS = 280


def check_annotator(name: str | None) -> str:
    if not name or not ANNOTATOR_NAME.match(name):
        raise StanceError(f"annotator name {name!r}: use letters, digits, '.', '_' or '-' "
                          f"(it names the label file <labels_dir>/<annotator>.csv)")
    return name


def label_file_path(params: dict, annotator: str) -> Path:
    return Path(params["paths"]["labels_dir"]) / f"{check_annotator(annotator)}.csv"


def read_paragraphs(params: dict) -> list[dict]:
    from pipeline.files import read_jsonl

    path = Path(params["paths"]["paragraphs"])
    if not path.exists():
        raise StanceError(f"{path}: not found (run `stance prepare` first)")
    return read_jsonl(path)


def document_titles(params: dict) -> dict[str, str]:
    """slug -> title from the sources table; empty when the table is missing or unreadable."""
    from pipeline.prepare import read_sources

    try:
        return {s["slug"]: s["title"] for s in read_sources(params["paths"]["sources"])}
    except StanceError:
        return {}


def labelled_by_others(labels_dir: str | Path, annotator: str) -> set[str]:
    """Ids labelled by any other annotator (unreadable label files are passed over here)."""
    from pipeline.labels import read_label_file

    ids: set[str] = set()
    for path in sorted(Path(labels_dir).glob("*.csv")):
        try:
            rows = read_label_file(path)
        except StanceError:
            continue
        ids.update(r.paragraph_id for r in rows if r.annotator != annotator)
    return ids


# --- the model's guess and the order ---------------------------------------------------------

def model_guesses(params: dict, records: list[dict], embed: bool = True, embedder=None,
                  log: Callable[[str], None] = lambda message: None) -> tuple[dict[str, np.ndarray], str]:
    """(probabilities in LABELS order by paragraph id, a one-line status) from the trained model.

    Embeddings come from the embed stage's output; paragraphs missing there are embedded with
    `embedder` (default: the configured model via `pipeline.embed`) unless `embed` is False, in
    which case they simply get no guess. No model, or a model that does not match the
    embeddings, means no guesses (and a status saying why), never an error.
    """
    paths = params["paths"]
    if not Path(paths["model"]).exists() or not Path(paths["model_meta"]).exists():
        return {}, "no trained model yet, so no guesses (train with `dvc repro` once there are labels)"
    from pipeline.embed import load_embeddings
    from pipeline.model_store import load_model

    log(f"loading the model from {paths['model']} ...")
    try:
        estimator, meta = load_model(paths["model"], paths["model_meta"])
    except StanceError as exc:
        return {}, f"model not used: {exc}"
    trained = meta.get("embedding_model", "").split("/")[0]
    vectors: dict[str, np.ndarray] = {}
    document_of = {r["id"]: r.get("doc", r["id"]) for r in records}
    stale = ""
    if Path(paths["embeddings"]).exists():
        rows, matrix, identity = load_embeddings(paths["embeddings"])
        if not identity or identity.split("/")[0] == trained:
            vectors = {row["id"]: matrix[i] for i, row in enumerate(rows)}
            document_of = {**{row["id"]: row["doc"] for row in rows}, **document_of}
        else:
            stale = f"; {paths['embeddings']} is from {identity.split('/')[0]}, the model from {trained}"
    missing = [r for r in records if r["id"] not in vectors]
    if missing and (embed or embedder is not None):
        from pipeline.embed import EmbeddingCache, embed_texts, make_embedder

        try:
            embedder = embedder or make_embedder(params)
            if embedder.identity.split("/")[0] == trained:
                log(f"embedding {len(missing)} paragraphs the embed stage has not seen ...")
                cache = EmbeddingCache(paths["embedding_cache"], embedder.identity)
                new = embed_texts([r["text"] for r in missing], embedder, cache)
                vectors.update(zip((r["id"] for r in missing), new))
        except StanceError as exc:  # no guess for those paragraphs is better than no session
            stale += f"; new paragraphs not embedded ({exc})"
    ids = [r["id"] for r in records if r["id"] in vectors]
    if not ids:
        return {}, f"no guesses: no embeddings match the model (run `dvc repro`){stale}"
    from pipeline.features import document_context, model_inputs

    known = list(vectors)  # each paragraph's document context comes from all of its document's paragraphs
    context = dict(zip(known, document_context(np.stack([vectors[i] for i in known]),
                                               [document_of.get(i, i) for i in known])))
    text_of = {r["id"]: r["text"] for r in records}
    raw = estimator.predict_proba(model_inputs([text_of[i] for i in ids], np.stack([vectors[i] for i in ids]),
                                               np.stack([context[i] for i in ids])))
    probabilities = np.zeros((len(ids), len(LABELS)))
    for j, label in enumerate(estimator.classes_):
        probabilities[:, LABELS.index(label)] = raw[:, j]
    without = len(records) - len(ids)
    status = f"guesses from {paths['model']}" + (f" ({without} paragraphs without embeddings get none)"
                                                 if without else "")
    return dict(zip(ids, probabilities)), status + stale


def uncertainty(probabilities: np.ndarray, method: str) -> np.ndarray:
    """Higher means the model is less sure. margin: 1 - (top - second); entropy: Shannon entropy."""
    if method == "margin":
        top = np.sort(probabilities, axis=1)
        return 1.0 - (top[:, -1] - top[:, -2])
    if method == "entropy":
        return -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=1)
    raise StanceError(f"unknown uncertainty {method!r} (expected margin or entropy)")


def order_paragraphs(ids: list[str], probabilities: dict[str, np.ndarray], order: str, seed: int,
                     labelled_elsewhere: Iterable[str] = ()) -> list[str]:
    """The session's order of paragraph ids (see the module docstring)."""
    if order not in ORDERS:
        raise StanceError(f"unknown --order {order!r} (expected one of {', '.join(ORDERS)})")
    if order == "document":
        return list(ids)
    rng = np.random.default_rng(seed)
    known = [i for i in ids if i in probabilities] if order in ("margin", "entropy") else []
    unknown = [i for i in ids if i not in probabilities] if known else list(ids)
    ranked = []
    if known:
        scores = uncertainty(np.stack([probabilities[i] for i in known]), order)
        ranked = [known[k] for k in np.argsort(-scores, kind="stable")]
    ranked += [unknown[k] for k in rng.permutation(len(unknown))]
    elsewhere = set(labelled_elsewhere)
    return [i for i in ranked if i not in elsewhere] + [i for i in ranked if i in elsewhere]


# --- the label file and the session --------------------------------------------------------------

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
        from pipeline.labels import read_label_file

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
        from pipeline.labels import append_label_row

        append_label_row(self.path, {"paragraph_id": paragraph_id, "label": label,
                                     "annotator": self.annotator, "note": ""})
        self._reread()

    def remove(self, paragraph_id: str, label: str) -> bool:
        from pipeline.labels import remove_last_label_row

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


class LabelSession:
    """The state of one labelling session; `press(key)` acts on a key, `render()` draws it."""

    def __init__(self, records: list[dict], order: list[str], label_file: LabelFile,
                 probabilities: dict[str, np.ndarray] | None = None, titles: dict[str, str] | None = None,
                 show_guess: bool = True, status: str = "", order_name: str = ""):
        self.records = {r["id"]: r for r in records}
        self.documents: dict[str, list[dict]] = defaultdict(list)
        for record in records:
            self.documents[record["doc"]].append(record)
        for paragraphs in self.documents.values():
            paragraphs.sort(key=lambda r: r["position"])
        self.order = [pid for pid in order if pid in self.records]
        self.file = label_file
        self.probabilities = probabilities or {}
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
        lines = [style(f"stance label | annotator {self.file.annotator} | {self.saved} saved this session | "
                       f"{self.remaining()} to go | order {self.order_name}", bold=True),
                 f"labels file {self.file.path}" + (f" | {self.status}" if self.status else ""), rule]
        if self.blocked:
            lines += [style(f"The label file cannot be used: {self.blocked}", fg="red", bold=True),
                      "Nothing is written until it is fixed. Fix the file, then press any key to re-check (q quits)."]
        elif self.current is None:
            lines += [style(f"Nothing left to label for {self.file.annotator}"
                            f"{' (skipped paragraphs come back next session)' if self.skipped else ''}.",
                            bold=True), "Press q to quit, or u to undo the last answer."]
        else:
            lines += self._paragraph_lines(self.current, width, style)
        lines += [rule]
        if self.message:
            lines += textwrap.wrap(self.message, width) or [""]
        lines += [KEY_LINE, "> "]
        return "\n".join(lines)

    def _paragraph_lines(self, pid: str, width: int, style: Callable[..., str]) -> list[str]:
        record = self.records[pid]
        siblings = self.documents[record["doc"]]
        index = next(i for i, r in enumerate(siblings) if r["id"] == pid)
        title = self.titles.get(record["doc"]) or record["doc"]
        lines = [style(f"Document: {title}", bold=True),
                 f"({record['doc']}, paragraph {index + 1} of {len(siblings)}, id {pid})", ""]
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
            lines.append("Model guess: hidden (--no-guess)")
        elif probabilities is None:
            lines.append("Model guess: not available")
        else:
            guess = LABELS[int(np.argmax(probabilities))]
            shares = "  ".join(f"{label} {p:.2f}" for label, p in zip(LABELS, probabilities))
            lines.append(f"Model guess: {style(guess, bold=True)}   ({shares})")
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

        probabilities, status = model_guesses(params, records, embed=embed, embedder=embedder, log=log)
        effective = order if probabilities or order in ("random", "document") else "random"
        ids = order_paragraphs([r["id"] for r in records], probabilities, effective, int(params["seed"]),
                               labelled_by_others(params["paths"]["labels_dir"], annotator))
        session = LabelSession(records, ids, label_file, probabilities, document_titles(params), show_guess,
                               status, effective if effective == order else f"{effective} (no model for {order})")
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
