"""`stance add`: bring new documents into the corpus (`paths.raw_dir` and `paths.sources`) in one command.

Inputs:  `.txt`, `.md` and `.html` files or directories (recursively, by extension), and the
         sources fields given on the command line (title, author, outlet, date, kind, genre, voice).
Outputs: `<raw_dir>/<slug>.txt` per document and one new `paths.sources` row for each.
Params:  `paths.raw_dir`, `paths.sources`, `prepare.min_words`.

Each file is read exactly as `stance score` reads it (`pipeline.corpus.documents`: HTML main text via
trafilatura, Markdown prose, plain text), and its paragraphs are written one per block, the title
first when one is known, so that the prepare stage finds the same paragraphs. A document whose
paragraphs (normalised, hashed) equal those of a document already in `raw_dir` is not added again.

Crash safety: the pending rows are recorded in `<raw_dir>/.add-journal.json` before any document is
written; each document is written atomically; then sources.csv is rewritten atomically with the
new rows appended (existing bytes untouched) and the journal removed. A run that finds a journal
(the previous one died in between) first completes it: every document it names that exists on
disk without a sources row gets its row. A lock on `raw_dir` keeps two runs from interleaving.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pipeline.corpus.prepare import DEFAULT_MIN_WORDS, SOURCE_COLUMNS, normalise, read_sources, split_paragraphs
from pipeline.errors import StanceError
from pipeline.files import read_text_file, write_json_atomic, write_text_atomic

JOURNAL_NAME = ".add-journal.json"
DEFAULT_KIND = "added"
MAX_SLUG_LENGTH = 60
META_FIELDS = ("title", "author", "outlet", "date", "kind", "genre", "voice")
_VOCABULARY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # kind and genre: the corpus' own style
_DATE = re.compile(r"^\d{4}(-\d{2}-\d{2})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class AddResult:
    added: list[dict] = field(default_factory=list)  # slug, path, source, title, paragraphs
    refused: list[str] = field(default_factory=list)  # one line per input not added
    recovered: list[str] = field(default_factory=list)  # slugs completed from an interrupted run
    messages: list[str] = field(default_factory=list)  # every line to show, in order

    def refuse(self, line: str) -> None:
        self.refused.append(line)
        self.messages.append(line)


# --- metadata and slugs -----------------------------------------------------------------------

def clean_field(value: str | None) -> str:
    """One line of text for a sources cell: control characters dropped, whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", value or "").split())


def validate_meta(meta: dict) -> dict:
    """The command-line sources fields, cleaned and checked; `year` derived from `date`."""
    unknown = set(meta) - set(META_FIELDS)
    if unknown:
        raise StanceError(f"unknown sources fields {', '.join(sorted(unknown))}")
    clean = {name: clean_field(meta.get(name)) for name in META_FIELDS}
    clean["kind"] = clean["kind"] or DEFAULT_KIND
    for name in ("kind", "genre"):
        if clean[name] and not _VOCABULARY.match(clean[name]):
            raise StanceError(f"--{name} {clean[name]!r}: use lower-case letters, digits and hyphens "
                              f"(e.g. {'added' if name == 'kind' else 'op-ed'})")
    clean["year"] = ""
    if clean["date"]:
        date = clean["date"]
        if not _DATE.match(date):
            raise StanceError(f"--date {date!r}: expected YYYY or YYYY-MM-DD")
        if len(date) == 10:
            try:
                datetime.date.fromisoformat(date)
            except ValueError:
                raise StanceError(f"--date {date!r}: no such day") from None
        clean["year"] = date[:4]
    return clean


def slugify(text: str, max_length: int = MAX_SLUG_LENGTH) -> str:
    """Lower-case ASCII words joined by hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower().replace("'", "").replace("’", ""))
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    return slug or "-".join(words)[:max_length].strip("-")


def make_slug(title: str, year: str, stem: str, taken: set[str]) -> str:
    """`<year>-<title words>` (or the file name's words), made unique with -2, -3, ..."""
    base = slugify(title) or slugify(stem) or "document"
    if year and not base.startswith(f"{year}-"):
        base = f"{year}-{base}"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


# --- reading ----------------------------------------------------------------------------------

def text_hash(paragraphs: list[str]) -> str:
    """sha256 of a document's normalised paragraphs: equal for the same text however it is laid out."""
    return hashlib.sha256("\n".join(normalise(p) for p in paragraphs).encode("utf-8")).hexdigest()


def markdown_title(markdown: str) -> str:
    """The text of a Markdown document's first heading ('' when it has none)."""
    from markdown_it import MarkdownIt

    from pipeline.corpus.documents import _FRONT_MATTER

    tokens = MarkdownIt("commonmark").parse(_FRONT_MATTER.sub("", markdown))
    for i, token in enumerate(tokens[:-1]):
        if token.type == "heading_open" and tokens[i + 1].type == "inline":
            return clean_field("".join(child.content for child in tokens[i + 1].children or []
                                       if child.type in ("text", "code_inline")))
    return ""


def read_document(path: str, min_words: int) -> tuple[list[str], str]:
    """(paragraphs, title found in the document) of one file, read as `stance score` reads it."""
    from pipeline.corpus.documents import decode_document, kind_of, read_bytes, text_document

    kind = kind_of(path)
    if kind == "records":
        raise StanceError(f"{path}: paragraph records, not a document (add .txt, .md or .html files)")
    text = decode_document(read_bytes(path), path, html=kind == "html")
    document = text_document(path, text, kind, min_words)
    title = document.title or (markdown_title(text) if kind == "markdown" else "")
    return document.paragraphs, clean_field(title)


def document_text(title: str, paragraphs: list[str]) -> str:
    return "\n\n".join(([title] if title else []) + paragraphs) + "\n"


def expand_inputs(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files to add (directories searched recursively for .txt, .md and .html) and problems."""
    from pipeline.corpus.documents import HTML_SUFFIXES, MARKDOWN_SUFFIXES, TEXT_SUFFIXES

    suffixes = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES
    files, problems = [], []
    for path in paths:
        if path == "-":
            problems.append("-: `stance add` reads files, not stdin; save the text to a file first")
        elif "://" in path and not Path(path).exists():
            problems.append(f"{path}: URLs are not fetched (stance never uses the network); save the page "
                            "from your browser and pass the file")
        elif Path(path).is_dir():
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in sorted(names)
                             if not n.startswith(".") and Path(n).suffix.lower() in suffixes)
            if not found:
                problems.append(f"{path}: directory has no documents (looked for {', '.join(sorted(suffixes))})")
            files.extend(found)
        else:
            files.append(path)
    unique: dict[str, str] = {}
    for f in files:
        unique.setdefault(os.path.normpath(os.path.abspath(f)), f)
    return list(unique.values()), problems


def corpus_hashes(raw_dir: Path, titles: dict[str, str], min_words: int) -> dict[str, str]:
    """text hash -> slug of every document in `raw_dir`, split as the prepare stage splits it."""
    hashes = {}
    for path in sorted(raw_dir.glob("*.txt")):
        try:
            text = read_text_file(path)
        except StanceError:
            continue  # not ours to judge here: the prepare stage reports unreadable documents
        paragraphs = split_paragraphs(text, min_words, titles.get(path.stem, ""))
        if paragraphs:
            hashes.setdefault(text_hash(paragraphs), path.stem)
    return hashes


# --- writing ----------------------------------------------------------------------------------

def sources_with_rows(path: Path, rows: list[dict]) -> str:
    """The text of the sources table with `rows` appended; existing bytes, column order, BOM and
    line endings are kept."""
    text = path.read_bytes().decode("utf-8") if path.exists() else ""
    if not text.replace("\ufeff", "").strip():
        columns, ending, text = list(SOURCE_COLUMNS), "\n", ",".join(SOURCE_COLUMNS) + "\n"
    else:
        columns = [c.replace("\ufeff", "").strip() for c in next(csv.reader(io.StringIO(text)))]
        end = text.find("\n")
        ending = "\r\n" if end > 0 and text[end - 1] == "\r" else "\n"
        if not text.endswith("\n"):
            text += ending
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=ending)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return text + buffer.getvalue()


def write_document(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def write_sources(path: Path, text: str) -> None:
    write_text_atomic(path, text)


@contextlib.contextmanager
def corpus_lock(raw_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `raw_dir` itself (nothing is left on disk) for one run."""
    import fcntl

    raw_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(raw_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StanceError(f"{raw_dir}: another `stance add` is running; try again when it ends") from None
        yield
    finally:
        os.close(fd)


def recover(raw_dir: Path, sources: Path) -> list[str]:
    """Complete an interrupted run: give every document its journal names that is on disk but has
    no sources row that row, then remove the journal. Returns the completed slugs."""
    journal = raw_dir / JOURNAL_NAME
    if not journal.exists():
        return []
    try:
        pending = json.loads(journal.read_text(encoding="utf-8"))["pending"]
        entries = [(str(entry["slug"]), dict(entry["row"])) for entry in pending]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StanceError(f"{journal}: unreadable journal of an interrupted `stance add` ({type(exc).__name__}); "
                          f"check the .txt files it names against {sources.name}, then delete it") from None
    listed = {row["slug"] for row in read_rows(sources)}
    complete = [row for slug, row in entries if slug not in listed and (raw_dir / f"{slug}.txt").is_file()]
    if complete:
        write_sources(sources, sources_with_rows(sources, complete))
    # Temporary files an atomic write left behind when the process was killed mid-write.
    leftovers = [f".{JOURNAL_NAME}.*.tmp", *(f".{slug}.txt.*.tmp" for slug, _ in entries)]
    for pattern in leftovers:
        for tmp in raw_dir.glob(pattern):
            tmp.unlink(missing_ok=True)
    for tmp in sources.parent.glob(f".{sources.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
    journal.unlink()
    return [row["slug"] for row in complete]


def write_pending(raw_dir: Path, sources: Path, pending: list[tuple[str, dict, str]]) -> None:
    """Journal, documents, sources rows, in that order (see the module docstring)."""
    journal = raw_dir / JOURNAL_NAME
    try:
        write_json_atomic(journal, {"pending": [{"slug": slug, "row": row} for slug, row, _ in pending]})
        for slug, _, text in pending:
            write_document(raw_dir / f"{slug}.txt", text)
        write_sources(sources, sources_with_rows(sources, [row for _, row, _ in pending]))
    except OSError as exc:
        raise StanceError(f"{getattr(exc, 'filename', None) or sources}: cannot write "
                          f"({exc.strerror or type(exc).__name__}); the next `stance add` completes or "
                          "skips the documents of this run") from None
    journal.unlink()


def read_rows(sources: Path) -> list[dict]:
    """The sources rows ([] before the first document), with a one-line error for a non-UTF-8 file."""
    if not sources.exists():
        return []
    try:
        return read_sources(sources)
    except UnicodeDecodeError:
        raise StanceError(f"{sources}: not UTF-8 text") from None


def add_documents(params: dict, paths: list[str], meta: dict | None = None) -> AddResult:
    """Add the documents in `paths` to the corpus; one line per input in `messages`."""
    meta = validate_meta(meta or {})
    raw_dir, sources = Path(params["paths"]["raw_dir"]), Path(params["paths"]["sources"])
    min_words = int((params.get("prepare") or {}).get("min_words", DEFAULT_MIN_WORDS))
    result = AddResult()
    with corpus_lock(raw_dir):
        result.recovered = recover(raw_dir, sources)
        if result.recovered:
            completed = _count(len(result.recovered), "document")
            result.messages.append(f"completed an interrupted `stance add`: {completed} given their {sources.name} "
                                   f"rows ({', '.join(result.recovered)})")
        rows = read_rows(sources)
        titles = {row["slug"]: row["title"] for row in rows}
        known = corpus_hashes(raw_dir, titles, min_words)
        taken = set(titles) | {p.stem for p in raw_dir.glob("*.txt")}
        files, problems = expand_inputs(paths)
        for problem in problems:
            result.refuse(problem)
        pending = []
        for path in files:
            try:
                paragraphs, found_title = read_document(path, min_words)
            except StanceError as exc:
                result.refuse(str(exc))
                continue
            title = meta["title"] or found_title
            text = document_text(title, paragraphs)
            title = title or Path(path).stem
            # Hash what the prepare stage will find in the written file, as for the corpus.
            prepared = split_paragraphs(text, min_words, title)
            if not prepared:
                result.refuse(f"{path}: no article paragraphs left after boilerplate removal")
                continue
            digest = text_hash(prepared)
            if digest in known:
                slug = known[digest]
                if slug in result.recovered:
                    result.messages.append(f"{path}: already added as {raw_dir / slug}.txt by the interrupted run")
                else:
                    result.refuse(f"{path}: already in the corpus as {raw_dir / slug}.txt (same text); not added")
                continue
            slug = make_slug(title, meta["year"], Path(path).stem, taken)
            taken.add(slug)
            known[digest] = slug
            pending.append((slug, {**meta, "title": title, "slug": slug}, text))
            result.added.append({"slug": slug, "path": str(raw_dir / f"{slug}.txt"), "source": path,
                                 "title": title, "paragraphs": len(prepared)})
            result.messages.append(f"{path}: added as {raw_dir / slug}.txt ({len(prepared)} paragraphs; "
                                   f"title: {title})")
        if pending:
            write_pending(raw_dir, sources, pending)
    return result


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary_line(result: AddResult, params: dict) -> str:
    paths = params["paths"]
    refused = f"{_count(len(result.refused), 'input')} refused"
    if not result.added:
        return f"added nothing; {refused}"
    return (f"added {_count(len(result.added), 'document')} to {paths['raw_dir']} and {paths['sources']}"
            f"{f'; {refused}' if result.refused else ''}. Next: `dvc repro` (prepares and embeds only the new "
            "paragraphs), then `stance label`")
