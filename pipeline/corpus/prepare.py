"""prepare stage: raw documents -> paragraphs with stable ids.

Inputs:  `paths.raw_dir` (one UTF-8 text file per document, `<slug>.txt`) and `paths.sources`
         (CSV: slug,title,author,outlet,date,year,kind,genre,voice).
Outputs: `paths.paragraphs` (JSONL: id, doc, position, kind, text).
Params:  `prepare.min_words`.

Splitting keeps only the article text: web boilerplate (share buttons, subscription prompts,
"read the full article", bylines, author bios, image credits, disclaimers, tag lines, cookie
notices, dates, headings and navigation) is dropped. A paragraph's id is a hash of its
normalised text, so it is stable across runs and changes only when that paragraph changes.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import StanceError
from pipeline.files import read_text_file, write_jsonl_atomic

SOURCE_COLUMNS = ["slug", "title", "author", "outlet", "date", "year", "kind", "genre", "voice"]
DEFAULT_MIN_WORDS = 4

_FLAGS = re.IGNORECASE
# Each pattern marks a whole block as boilerplate when it matches and the block is short
# (the word limit keeps a real paragraph that merely mentions e.g. "subscribe" safe).
_BOILERPLATE: list[tuple[re.Pattern, int]] = [
    (re.compile(r"^(share|tweet|email|print|pin|copy link|save)\b", _FLAGS), 8),
    (re.compile(r"\b(share|follow us) (on|this|via)\b", _FLAGS), 10),
    (re.compile(r"subscri(be|ption)|newsletter|sign ?up\b|log ?in\b|indicates required|i'm interested in"
                r"|inbox|unsubscribe|create an? (free )?account", _FLAGS), 30),
    (re.compile(r"read the (full|original|whole|rest of the) (article|story|piece|report)|continue reading"
                r"|(originally|first) (published|appeared)|(appeared|published) (first |originally )?(in|on|at) "
                r"|is reprinted|republished (from|with)", _FLAGS), 35),
    (re.compile(r"^(image|photo|photograph|picture|illustration|graphic|video|caption|credits?)\b"
                r"( credits?| source)?\s*[:：/|-]", _FLAGS), 40),
    (re.compile(r"\b(image|photo) (credit|courtesy|by)\b|\b(getty images|via reuters|/ ?ap photo|ap photo)\b",
                _FLAGS), 40),
    (re.compile(r"^disclaimer\b|views (expressed|presented)|do not necessarily (represent|reflect)"
                r"|does not (necessarily )?(endorse|represent) (the )?(views|opinions|positions)"
                r"|not (necessarily )?the (views|position)|for reference only|version shall prevail"
                r"|(unofficial|machine) translation", _FLAGS), 70),
    (re.compile(r"\b(is|are) available (from|at|on|online|here|upon request)\b|^(the )?full (text|statement|transcript)"
                r"|^(please )?(send|direct|email|submit) (your )?(questions|comments|letters|feedback|tips)"
                r"|contact (us|the (editor|desk|newsroom))|letters to the editor", _FLAGS), 25),
    (re.compile(r"\b(tags?|topics?|region|categor(y|ies)|filed under|keywords|blog brand)\s*:", _FLAGS), 40),
    (re.compile(r"\bcookies?\b.*\b(accept|consent|use|policy|settings)\b", _FLAGS), 40),
    (re.compile(r"^(related|recommended|more from|more on|you may also like|read also|also read|see also"
                r"|most (popular|read)|trending|editor'?s picks?|advertisement|sponsored)\b", _FLAGS), 25),
    (re.compile(r"^(©|ⓒ|\(c\)|copyright\b)|all rights reserved|(unauthori[sz]ed|no) (reproduction|redistribution)"
                r"|reproduction (is )?(prohibited|forbidden)", _FLAGS), 40),
    (re.compile(r"^(comments?|leave a (comment|reply)|\d+ comments?)\b", _FLAGS), 12),
    (re.compile(r"^(about the authors?|author biography|author bio|contributors?)\b", _FLAGS), 12),
    (re.compile(r"^(\(?additional )?(reporting|writing|editing|edited|compiled|translated|research) by\b", _FLAGS), 40),
]
# "By Jane Doe", "WRITTEN BY ANNY BOC", "By Jane Doe, Senior Fellow | March 3, 2021"
_BYLINE = re.compile(r"^(?:written |words |posted |reported )?by\s+(?:[A-Z][\w.'’-]*\s*){1,4}(?:(?:,|\||–|—|-|and)\s*.{0,80})?$",
                     re.IGNORECASE)
_BYLINE_NAMES = re.compile(r"^(?:written |words |posted |reported )?by\s+([A-Z][\w.'’-]*)", re.IGNORECASE)
# "Jane Doe is a senior fellow at ...", "Daniel R. DePetris is a columnist at Newsweek ..." The role
# is followed by where (at/of/with/for/in/on ...) or by nothing more; no "not", "first", "only"
# before it ("China is not a member of the new team", "Xi Jinping was the first Chinese president to").
_BIO = re.compile(
    r"^(?:[A-Z][\w'’-]*\.?\s+){1,4}(?:is|was|serves as|has been)\s+(?:a|an|the)?\s*"
    r"(?:(?!(?:not|no|never|first|second|third|last|only|sole|largest|biggest|main)\b)[\w-]+\s+){0,6}?"
    r"(?:fellow|professor|columnist|contributor|candidate|director|editor|author|journalist|correspondent"
    r"|researcher|analyst|lecturer|scholar|writer|reporter|chair|president|founder|associate|student"
    r"|ambassador|officer|member)s?"
    r"(?:\s+(?:at|of|with|for|in|on)\b|\s*(?:[,.;]|and\b|who\b|$))"
    r"|^(?:[A-Z][\w'’-]*\.?\s+){1,4}(?:writes|covers|reports|blogs|tweets)\s+(?:about|on|from|for|at)\b"
    r"|^(?:[A-Z][\w'’-]*\.?\s+){1,4}(?:served|worked|taught|spent|previously)\b.*\b(?:now|currently)\s+"
    r"(?:writes|teaches|works|serves|is|directs|leads)\b")
_MONTHS = r"(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|jun(e)?|jul(y)?|aug(ust)?|sep(t(ember)?)?|oct(ober)?|nov(ember)?|dec(ember)?)\.?"
_DATE_LINE = re.compile(rf"^[\W\d]*(({_MONTHS}|\d{{1,4}})[\s,./-]*){{2,4}}(\d{{1,2}}:\d{{2}}.*)?$", _FLAGS)
_SENTENCE_END = re.compile(r"[.!?…:;][\"'”’)\]»]*$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")
_MARKDOWN_HEADING = re.compile(r"^\s*#{1,6}\s")


@dataclass(frozen=True)
class Paragraph:
    id: str
    doc: str
    position: int
    text: str
    kind: str = ""

    def to_record(self) -> dict:
        return {"id": self.id, "doc": self.doc, "position": self.position, "kind": self.kind, "text": self.text}


def normalise(text: str) -> str:
    """Canonical form used for ids: NFKC, plain quotes and dashes, lower case, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "}))
    return " ".join(text.lower().split())


def paragraph_id(text: str) -> str:
    """Stable id of a paragraph: `p` + the first 16 hex digits of sha256(normalised text)."""
    return "p" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]


def _is_hard_wrapped(lines: list[str]) -> bool:
    """True when a block's line breaks are wrapping (all lines but the last of similar, moderate width)."""
    if len(lines) < 2:
        return False
    widths = [len(line) for line in lines[:-1]]
    return min(widths) >= 40 and max(widths) <= 100 and not any(_LIST_MARKER.match(line) for line in lines)


def _blocks(text: str) -> list[str]:
    """Candidate paragraphs: blank-line separated blocks; inside a block, lines are separate
    paragraphs unless the block is hard-wrapped prose."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if _is_hard_wrapped(lines):
            blocks.append(" ".join(lines))
        else:
            blocks.extend(lines)
    return blocks


def _clean(block: str) -> str:
    block = _LIST_MARKER.sub("", block)
    block = re.sub(r"^>\s*", "", block)
    return " ".join(block.split())


def is_boilerplate(block: str, min_words: int = DEFAULT_MIN_WORDS, bio: bool = True) -> bool:
    """True for blocks that are not article prose: web clutter, headings, navigation, dates; and,
    with `bio`, author biographies ("Jane Doe is a senior fellow at ...")."""
    if _MARKDOWN_HEADING.match(block):
        return True
    text = _clean(block)
    words = len(text.split())
    if words < min_words or _DATE_LINE.match(text):
        return True
    if not _SENTENCE_END.search(text) and words < 25:  # headings, menus, titles
        return True
    # Word counts first: most prose paragraphs are longer than every limit, so no pattern runs.
    if any(words <= limit and pattern.search(text) for pattern, limit in _BOILERPLATE):
        return True
    if words <= 14 and _BYLINE.match(text) and _BYLINE_NAMES.match(text).group(1)[0].isupper():
        return True
    return bio and words <= 90 and bool(_BIO.match(text))


BIO_EDGE = (2, 3)  # author bios sit among the first 2 or the last 3 prose blocks of a document


def split_paragraphs(text: str, min_words: int = DEFAULT_MIN_WORDS, title: str = "") -> list[str]:
    """The article paragraphs of a document, in order, boilerplate, the title and repeats removed.

    Author biographies are looked for only at the edges of the prose (`BIO_EDGE`): in the middle of
    an article, "Kim Jong Un was the president of ..." is a sentence of the argument, not a bio.
    """
    prose = [block for block in _blocks(text) if not is_boilerplate(block, min_words, bio=False)]
    head, tail = BIO_EDGE
    cleaned = [_clean(block) for i, block in enumerate(prose)
               if not ((i < head or i >= len(prose) - tail) and is_boilerplate(block, min_words))]
    if title:
        cleaned = [p for p in cleaned if normalise(p) != normalise(title)]
    keys = [normalise(p) for p in cleaned]
    paragraphs, seen = [], set()
    for paragraph, key in zip(cleaned, keys):
        # Pull quotes, repeated titles and standfirsts repeat (part of) another paragraph.
        if key in seen or any(key in other and key != other for other in keys):
            continue
        seen.add(key)
        paragraphs.append(paragraph)
    return paragraphs


def document_paragraphs(text: str, doc: str, kind: str = "", min_words: int = DEFAULT_MIN_WORDS,
                        title: str = "") -> list[Paragraph]:
    return [Paragraph(paragraph_id(p), doc, i, p, kind) for i, p in enumerate(split_paragraphs(text, min_words, title))]


def read_sources(path: str | Path) -> list[dict]:
    """The sources table; every row needs a slug and a kind."""
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: sources table not found")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SOURCE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StanceError(f"{path}: missing columns {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            if not (row["slug"] or "").strip() or not (row["kind"] or "").strip():
                raise StanceError(f"{path}:{line}: slug and kind are required")
            rows.append({k: (row[k] or "").strip() for k in SOURCE_COLUMNS})
    return rows


def prepare_corpus(documents: list[dict], min_words: int = DEFAULT_MIN_WORDS) -> list[Paragraph]:
    """Paragraphs of all documents (dicts with slug, kind, text and optional title). A paragraph
    repeated in a later document keeps its first occurrence only, so no text sits in two CV groups."""
    seen: set[str] = set()
    corpus = []
    for document in documents:
        slug = document["slug"]
        paragraphs = document_paragraphs(document["text"], slug, document.get("kind", ""), min_words,
                                         document.get("title", ""))
        if not paragraphs:
            raise StanceError(f"{slug}: no article paragraphs left after boilerplate removal")
        for p in paragraphs:
            if p.id not in seen:
                seen.add(p.id)
                corpus.append(p)
    return corpus


def run(params: dict) -> list[Paragraph]:
    """Read the raw corpus named in params, write the paragraphs table."""
    paths = params["paths"]
    raw_dir = Path(paths["raw_dir"])
    sources = read_sources(paths["sources"])
    slugs = [s["slug"] for s in sources]
    duplicates = {s for s in slugs if slugs.count(s) > 1}
    if duplicates:
        raise StanceError(f"{paths['sources']}: duplicate slugs {', '.join(sorted(duplicates))}")
    on_disk = {p.stem for p in raw_dir.glob("*.txt")}
    unlisted = sorted(on_disk - set(slugs))
    if unlisted:
        raise StanceError(f"{raw_dir}/{unlisted[0]}.txt: not listed in {paths['sources']}")
    documents = [{**s, "text": read_text_file(raw_dir / f"{s['slug']}.txt")} for s in sources]
    corpus = prepare_corpus(documents, params.get("prepare", {}).get("min_words", DEFAULT_MIN_WORDS))
    write_jsonl_atomic(paths["paragraphs"], [p.to_record() for p in corpus])
    return corpus
