"""The real development set's paragraph rule: one saved public page -> numbered paragraphs + hashes.

The repository never holds the text of the real pages, only facts about their paragraphs (url,
paragraph index, sha256, label...; see `data/real/README.md`). For those facts to point at the
same paragraphs on every machine, the rule that turns a saved page into paragraphs is fixed here
and depends on nothing else in the package (the prepare stage's boilerplate rules may change;
this rule must not, or every hash in the manifest goes stale):

1. text: the saved file as UTF-8; an `.html`/`.htm` file is first reduced to its main text with
   trafilatura (no comments, no tables);
2. split: every line break ends a block;
3. clean: Unicode NFC, every run of whitespace becomes one space, stripped;
4. keep: a block of at least `MIN_WORDS` words that ends a sentence (`.`, `!`, `?` or `…`,
   optionally followed by closing quotes or brackets). Headlines, bylines, captions, menus, short
   boilerplate and a paragraph cut off at the end of an excerpt fail this;
5. repeats: a block equal to an earlier kept one is dropped;
6. number: paragraph index = position among the kept blocks, from 0; its hash = sha256 of the
   kept block's UTF-8 bytes.

A page is saved as `<page_key(url)>.txt` (or `.html`) in the hydrated folder.
Run `python -m pipeline.corpus.real_pages FILE...` to print a saved page's paragraphs with index and hash.
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from pathlib import Path

MIN_WORDS = 15
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*$")
_WHITESPACE = re.compile(r"\s+")
HTML_SUFFIXES = (".html", ".htm")


def page_key(url: str) -> str:
    """The file name stem a page is saved under: the first 16 hex digits of sha256(url)."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:16]


def paragraph_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean_block(block: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", block)).strip()


def keeps(block: str) -> bool:
    return len(block.split()) >= MIN_WORDS and bool(_SENTENCE_END.search(block))


def page_paragraphs(text: str) -> list[str]:
    """The kept paragraphs of a page's plain text, in order (index = position in the list)."""
    kept: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        block = clean_block(line)
        if keeps(block) and block not in seen:
            seen.add(block)
            kept.append(block)
    return kept


def html_main_text(html: str) -> str:
    import trafilatura  # only saved .html pages and fetching need it

    return trafilatura.extract(html, include_comments=False, include_tables=False) or ""


def saved_page_text(path: str | Path) -> str:
    """The plain text of a saved page file (HTML reduced to its main text)."""
    path = Path(path)
    raw = path.read_bytes().decode("utf-8", errors="replace")
    return html_main_text(raw) if path.suffix.lower() in HTML_SUFFIXES else raw


def main(argv: list[str]) -> int:
    if argv[:1] == ["save"] and len(argv) == 3:
        # Helper for building the set: `save URL DIR` stores stdin as DIR/<page_key(URL)>.txt.
        target = Path(argv[2]) / f"{page_key(argv[1])}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sys.stdin.read(), encoding="utf-8")
        argv = [str(target)]
        print(f"saved {target}")
    for name in argv:
        for index, paragraph in enumerate(page_paragraphs(saved_page_text(name))):
            print(f"[{index}] {paragraph_sha(paragraph)}\n{paragraph}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
