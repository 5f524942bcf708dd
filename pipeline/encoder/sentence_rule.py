"""The sentence rule: where a paragraph's sentences begin and end, the same everywhere it is used.

Inputs:  a paragraph's text.
Outputs: its sentences worth reading on their own (`split_sentences`). No params read here.

Two readers use it: the encoder, which may build a paragraph's vector from its sentences' vectors
(`pipeline.encoder.paragraph_vectors`), and scoring, which reads each paragraph's strongest sentence
(`pipeline.scoring.sentences`). One rule for both means a sentence is encoded once and read twice;
it lives with the encoder, which is below scoring.

Rule (deterministic): a boundary is whitespace after `.`, `!` or `?` (optionally closed by a quote
or bracket) and before an upper-case letter, a digit or an opening quote, except after a common
abbreviation (`Mr.`, `U.S.`, `Gen.`, ...) or a single initial. Sentences under `MIN_SENTENCE_WORDS`
words are not read on their own. A paragraph left with fewer than two sentences has none: it is
read as a whole.
"""

from __future__ import annotations

import re

MIN_SENTENCE_WORDS = 4
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+(?=[\"'“‘(\[]?[A-Z0-9])")
# Titles, ranks, months and country initials that end in a full stop inside a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "gen", "lt", "col", "maj", "capt", "adm", "sgt", "sen", "rep", "gov", "pres",
    "amb", "st", "jr", "sr", "no", "vol", "fig", "vs", "etc", "inc", "corp", "co", "ltd", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.n", "u.k", "e.u", "r.o.k",
    "d.p.r.k", "p.r.c", "u.s.a", "a.m", "p.m",
}


def _ends_with_abbreviation(text: str) -> bool:
    words = text.rstrip("\"'”’)]").split()
    if not words:
        return False
    last = words[-1].rstrip(".").lstrip("\"'“‘([").lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` worth reading on their own (see the module's rule); [] when fewer than two."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        head = text[start:match.start()]
        if _ends_with_abbreviation(text[max(start, match.start() - 40):match.start()]):  # the last word is enough
            continue
        sentences.append((head + match.group(0)).strip())
        start = match.end()
    sentences.append(text[start:].strip())
    kept = [s for s in sentences if len(s.split()) >= MIN_SENTENCE_WORDS]
    return kept if len(kept) >= 2 else []
