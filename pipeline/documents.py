"""Reading the inputs of `stance score`: files, directories, stdin, and record files.

A text, Markdown or HTML document is split into paragraphs with the prepare stage's rules
(HTML first goes through trafilatura, which keeps the article and drops menus, share buttons,
comments and related-article lists). A `.jsonl` or `.csv` file holds records, one paragraph
each, with a `text` field and optional `id` and `document` fields; records are not re-split.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import StanceError
from pipeline.files import decode_text, read_text_file
from pipeline.prepare import split_paragraphs

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ""}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
RECORD_SUFFIXES = {".jsonl", ".csv"}
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | RECORD_SUFFIXES - {""}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass
class Document:
    name: str
    paragraphs: list[str]
    ids: list[str | None] = field(default_factory=list)  # record ids, for record inputs

    def __post_init__(self):
        if not self.ids:
            self.ids = [None] * len(self.paragraphs)


def html_to_text(html: str, name: str) -> str:
    """Main article text of an HTML page (trafilatura), paragraphs separated by blank lines."""
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True,
                               deduplicate=True)
    if not text or not text.strip():
        raise StanceError(f"{name}: no article text found in the HTML page")
    return "\n\n".join(line for line in text.splitlines() if line.strip())


def looks_like_html(text: str) -> bool:
    head = text.lstrip()[:1000].lower()
    return head.startswith(("<!doctype html", "<html")) or ("<body" in head and "</" in head)


def text_document(name: str, text: str, is_html: bool = False) -> Document:
    if not text.strip():
        raise StanceError(f"{name}: empty document")
    if is_html or looks_like_html(text):
        text = html_to_text(text, name)
    paragraphs = split_paragraphs(text)
    if not paragraphs:
        raise StanceError(f"{name}: no article paragraphs left after boilerplate removal")
    return Document(name, paragraphs)


def record_documents(name: str, text: str, kind: str) -> list[Document]:
    """Paragraph records grouped into documents by their `document` field (else the file)."""
    records = []
    if kind == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StanceError(f"{name}:{line_no}: invalid JSON ({exc.msg})") from None
            records.append((line_no, record))
    else:
        reader = csv.DictReader(io.StringIO(text))
        records = [(line_no, row) for line_no, row in enumerate(reader, start=2)]
    groups: dict[str, Document] = {}
    for line_no, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise StanceError(f"{name}:{line_no}: record without a non-empty string `text` field")
        document = str(record.get("document") or name)
        doc = groups.setdefault(document, Document(document, [], []))
        doc.paragraphs.append(" ".join(record["text"].split()))
        doc.ids.append(None if record.get("id") in (None, "") else str(record["id"]))
    if not groups:
        raise StanceError(f"{name}: no records")
    return list(groups.values())


def read_input(path: str) -> list[Document]:
    """Documents of one command-line argument (a file, or `-` for stdin)."""
    if _URL.match(path):
        raise StanceError(f"{path}: URLs are not fetched (stance never uses the network); save the page and pass the file")
    if path == "-":
        data = sys.stdin.buffer.read()
        return [text_document("<stdin>", decode_text(data, "<stdin>"))]
    file = Path(path)
    suffix = file.suffix.lower()
    text = read_text_file(file)
    if suffix in RECORD_SUFFIXES:
        return record_documents(path, text, suffix)
    return [text_document(path, text, is_html=suffix in HTML_SUFFIXES)]


def expand_paths(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files to read (directories expanded recursively by extension) and errors for the rest."""
    files, errors = [], []
    for path in paths:
        p = Path(path)
        if path != "-" and not _URL.match(path) and p.is_dir():
            found = sorted(str(f) for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in DOCUMENT_SUFFIXES and not f.name.startswith("."))
            if not found:
                errors.append(f"{path}: directory has no readable files ({', '.join(sorted(DOCUMENT_SUFFIXES))})")
            files.extend(found)
        else:
            files.append(path)
    return files, errors
