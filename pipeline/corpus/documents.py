"""Reading the inputs of `stance score`: files, directories, stdin, and record files.

Inputs:  command-line arguments (paths, directories, `-` for stdin).
Outputs: `Document`s (a name and its paragraphs) and one-line problems for what could not be read.
Params:  `prepare.min_words` (the same paragraph rules as the training data).

Formats, chosen by extension:
- plain text (`.txt`, `.text`, and any other or no extension given explicitly): split into
  paragraphs with the prepare stage's rules (`pipeline.corpus.prepare.split_paragraphs`), which drop web
  boilerplate, bylines, bios, headings and repeats;
- Markdown (`.md`, `.markdown`): parsed with markdown-it; the text of paragraphs, list items and
  quotes is kept (links become their text, emphasis and inline HTML markers go), headings, code,
  images, tables and YAML front matter are dropped; then the prepare rules apply;
- HTML (`.html`, `.htm`, `.xhtml`, or text that starts like an HTML page): the main article text
  is extracted with trafilatura, so menus, share buttons, comment sections and related-article
  lists are never scored; then the prepare rules apply;
- records (`.jsonl`, `.csv`): one paragraph per record with a `text` field and optional `id` and
  `document` (or `doc`) fields; records are not re-split, and a record's `document` groups it
  (default: the file). A bad record is reported and skipped; the others are scored.
- `-` reads stdin as plain text (or HTML when it looks like a page).
Directories are searched recursively for the extensions above (hidden files and directories are
skipped). URLs are refused: this tool never uses the network.

Decoding: UTF-8 (with or without BOM); an HTML page that is not UTF-8 is decoded with the charset
its `<meta>` tag declares; anything else falls back to Windows-1252 (`pipeline.files.decode_text`;
`stance score` notes it once per file on stderr); bytes that fit none of these, NUL bytes or many
control characters are refused as not text.
Files (and stdin) above `pipeline.files.MAX_TEXT_BYTES` are refused before being read.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.corpus.prepare import DEFAULT_MIN_WORDS, split_paragraphs
from pipeline.errors import StanceError
from pipeline.files import MAX_TEXT_BYTES, decode_text, json_error

TEXT_SUFFIXES = {".txt", ".text"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
RECORD_SUFFIXES = {".jsonl", ".ndjson", ".csv"}
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | RECORD_SUFFIXES
STDIN = "-"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|www\.)", re.IGNORECASE)
_DECLARED_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)"""
                               rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(---|\.\.\.)[ \t]*(\n|\Z)", re.DOTALL)


@dataclass
class Document:
    name: str
    paragraphs: list[str]
    ids: list[str | None] = field(default_factory=list)  # record ids, for record inputs
    title: str = ""
    records: bool = False  # True when the paragraphs came from a record file (not re-split)

    def __post_init__(self):
        if not self.ids:
            self.ids = [None] * len(self.paragraphs)


# --- decoding ---------------------------------------------------------------------------------

def declared_charset(data: bytes) -> str | None:
    """The charset an HTML page declares in its first 4 KB (`<meta charset>`, http-equiv or XML)."""
    match = _DECLARED_CHARSET.search(data[:4096])
    if not match:
        return None
    name = (match.group(1) or match.group(2)).decode("ascii", "ignore")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_document(data: bytes, name: str, html: bool = False, notes: list[str] | None = None) -> str:
    """Text of a document's bytes: UTF-8, then (HTML only) the declared charset, then Windows-1252
    (noted in `notes`, see `pipeline.files.decode_text`)."""
    if html and b"\x00" not in data[:8192]:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            charset = declared_charset(data)
            if charset and charset != "utf-8":
                try:
                    text = data.decode(charset)
                except UnicodeDecodeError:
                    pass
                else:  # the same binary checks as any other text
                    return decode_text(text.encode("utf-8"), name)
    return decode_text(data, name, notes)


def read_bytes(path: str) -> bytes:
    """A file's bytes, refusing missing, special, unreadable and oversized files."""
    file = Path(path)
    try:
        if not file.exists():
            raise StanceError(f"{path}: no such file or directory")
        if file.is_dir():
            raise StanceError(f"{path}: is a directory")
        if not file.is_file():
            raise StanceError(f"{path}: not a regular file")
        size = file.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise StanceError(f"{path}: {size / 2**20:.0f} MB is too large to score "
                              f"(limit {MAX_TEXT_BYTES // 2**20} MB per file)")
        return file.read_bytes()
    except OSError as exc:
        raise StanceError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def read_stdin(stream=None) -> bytes:
    stream = stream if stream is not None else sys.stdin.buffer
    data = stream.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise StanceError(f"<stdin>: more than {MAX_TEXT_BYTES // 2**20} MB is too large to score")
    return data


# --- formats ----------------------------------------------------------------------------------

def looks_like_html(text: str) -> bool:
    head = text.lstrip()[:1000].lower()
    return head.startswith(("<!doctype html", "<html")) or ("<body" in head and "</" in head)


def html_to_text(html: str, name: str) -> tuple[str, str]:
    """(main article text, title) of an HTML page, paragraphs separated by blank lines.

    trafilatura runs in precision mode first (the least boilerplate); a page where that finds
    nothing gets a second, default-mode pass before being refused."""
    import trafilatura

    document = None
    for precision in (True, False):
        document = trafilatura.bare_extraction(html, include_comments=False, include_tables=False,
                                               favor_precision=precision, with_metadata=True)
        if document is not None and (document.text or "").strip():
            break
    text = (document.text or "") if document is not None else ""
    if not text.strip():
        raise StanceError(f"{name}: no article text found in the HTML page")
    title = (document.title or "").strip()
    return "\n\n".join(line for line in text.splitlines() if line.strip()), title


def markdown_to_text(markdown: str) -> str:
    """The prose of a Markdown document: paragraph, list-item and quote text, blocks separated by
    blank lines; line breaks inside a block are kept so the prepare rules decide on them."""
    from markdown_it import MarkdownIt

    markdown = _FRONT_MATTER.sub("", markdown)
    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = parser.parse(markdown)
    blocks = []
    for i, token in enumerate(tokens):
        if token.type != "inline" or i == 0 or tokens[i - 1].type != "paragraph_open":
            continue
        parts = []
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
        block = "".join(parts).strip()
        if block:
            blocks.append(block)
    return "\n\n".join(blocks)


def text_document(name: str, text: str, kind: str = "text", min_words: int = DEFAULT_MIN_WORDS) -> Document:
    """A document from its decoded text; kind is text, markdown or html (text is sniffed for HTML)."""
    if not text.strip():
        raise StanceError(f"{name}: empty document")
    title = ""
    if kind == "html" or (kind == "text" and looks_like_html(text)):
        text, title = html_to_text(text, name)
        kind = "html"
    elif kind == "markdown":
        text = markdown_to_text(text)
    paragraphs = split_paragraphs(text, min_words, title)
    if not paragraphs:
        where = "in the HTML page" if kind == "html" else "after boilerplate removal"
        raise StanceError(f"{name}: no article paragraphs left {where}")
    return Document(name, paragraphs, title=title)


def _record_text(record) -> str | None:
    if not isinstance(record, dict):
        return None
    text = record.get("text")
    return " ".join(text.split()) if isinstance(text, str) and text.strip() else None


def record_documents(name: str, text: str, kind: str) -> tuple[list[Document], list[str]]:
    """Paragraph records grouped into documents by their `document`/`doc` field (else the file),
    and one problem line per record that could not be used."""
    problems: list[tuple[int, str]] = []  # (line, message), reported in line order
    records: list[tuple[int, object]] = []
    if kind in (".jsonl", ".ndjson"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append((line_no, f"{name}:{line_no}: {json_error(exc)}; record skipped"))
    else:
        try:
            reader = csv.DictReader(io.StringIO(text))
            if "text" not in (reader.fieldnames or []):
                raise StanceError(f"{name}: CSV without a `text` column (columns: {', '.join(reader.fieldnames or [])})")
            records = [(reader.line_num, row) for row in reader]
        except csv.Error as exc:
            raise StanceError(f"{name}: malformed CSV ({exc})") from None
    groups: dict[str, Document] = {}
    for line_no, record in records:
        paragraph = _record_text(record)
        if paragraph is None:
            problems.append((line_no, f"{name}:{line_no}: record without a non-empty string `text` field; "
                                      "record skipped"))
            continue
        document = str(record.get("document") or record.get("doc") or name)
        doc = groups.setdefault(document, Document(document, [], [], records=True))
        doc.paragraphs.append(paragraph)
        doc.ids.append(None if record.get("id") in (None, "") else str(record["id"]))
    messages = [message for _, message in sorted(problems)]
    if not groups:
        messages.append(f"{name}: no usable records" if problems else f"{name}: no records")
    return list(groups.values()), messages


def kind_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in RECORD_SUFFIXES:
        return "records"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    return "text"


def read_input(path: str, min_words: int = DEFAULT_MIN_WORDS, stdin=None,
               notes: list[str] | None = None) -> tuple[list[Document], list[str]]:
    """Documents of one command-line argument (a file, or `-` for stdin) and problems with some of
    its records. Raises StanceError when the input as a whole cannot be used. Facts the reader
    should know but that are no problem (the Windows-1252 fallback) are appended to `notes`."""
    if _URL.match(path) and not Path(path).exists():
        raise StanceError(f"{path}: URLs are not fetched (stance never uses the network); save the page "
                          "from your browser and pass the file")
    if path == STDIN:
        data = read_stdin(stdin)
        html = looks_like_html(data[:2000].decode("ascii", "ignore"))
        return [text_document("<stdin>", decode_document(data, "<stdin>", html, notes), "html" if html else "text",
                              min_words)], []
    kind = kind_of(path)
    text = decode_document(read_bytes(path), path, html=kind == "html", notes=notes)
    if kind == "records":
        if not text.strip():
            raise StanceError(f"{path}: empty file")
        return record_documents(path, text, Path(path).suffix.lower())
    return [text_document(path, text, kind, min_words)], []


def expand_paths(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files to read (directories expanded recursively by extension, duplicates removed) and
    problems for the rest."""
    files, problems = [], []
    for path in paths:
        p = Path(path)
        if path != STDIN and not _URL.match(path) and p.is_dir():
            found = []
            for root, dirs, names in os.walk(p, onerror=lambda exc: problems.append(
                    f"{exc.filename}: cannot read directory ({exc.strerror})")):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in sorted(names)
                             if not n.startswith(".") and Path(n).suffix.lower() in DOCUMENT_SUFFIXES)
            if not found:
                problems.append(f"{path}: directory has no readable files "
                                f"(looked for {', '.join(sorted(DOCUMENT_SUFFIXES))})")
            files.extend(found)
        else:
            files.append(path)
    unique: dict[str, str] = {}
    for f in files:  # the first spelling of a file named twice wins
        unique.setdefault(f if f == STDIN else os.path.normpath(f), f)
    return list(unique.values()), problems
