"""The strongest sentence: a paragraph's stance read from its most committed sentence as well.

Inputs:  paragraph texts, their probabilities, and the probabilities of their sentences.
Outputs: the sentences worth scoring (`split_sentences`, `sentence_rows`), and blended
         probabilities (`blend_strongest_sentence`).
Params:  `score.sentence_weight` (read by `pipeline.scoring.score`).

Real news and op-eds often state a stance in one sentence of a longer paragraph (a report of a
joint step after two sentences of background, a rebuttal after the claim it rejects). Embedded as a
whole, such a paragraph drifts towards `none`. So each paragraph of two or more sentences is also
scored sentence by sentence, and its probabilities become
`(1 - w) * paragraph + w * strongest sentence`, where the strongest sentence is the one with the
lowest `none` probability and `w` is `score.sentence_weight` (0 turns this off). Chosen on the
select half of the real development set; see the README's "Current results" for both halves.

Sentence rule (deterministic): a boundary is whitespace after `.`, `!` or `?` (optionally closed by
a quote or bracket) and before an upper-case letter, a digit or an opening quote, except after a
common abbreviation (`Mr.`, `U.S.`, `Gen.`, ...) or a single initial. Sentences under
`MIN_SENTENCE_WORDS` words are not scored on their own. A paragraph left with fewer than two
sentences is scored as a whole only.
"""

from __future__ import annotations

import re

import numpy as np

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
    """The sentences of `text` worth scoring on their own (see the module's rule); [] when fewer than two."""
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


def sentence_rows(paragraphs: list[str], split: list[list[str]] | None = None) -> tuple[np.ndarray, list[str]]:
    """The sentences of `paragraphs` worth scoring, in order, and the paragraph row each belongs to;
    `split` holds the paragraphs' `split_sentences` when they are already made."""
    split = [split_sentences(text) for text in paragraphs] if split is None else split
    owner = np.array([row for row, sentences in enumerate(split) for _ in sentences], dtype=int)
    return owner, [sentence for sentences in split for sentence in sentences]


def blend_strongest_sentence(paragraph_probabilities: np.ndarray, sentence_probabilities: np.ndarray,
                             sentence_owner: np.ndarray, none_column: int, weight: float,
                             strongest: np.ndarray | None = None) -> np.ndarray:
    """Each paragraph's probabilities blended with those of its sentence least likely `none`.

    `sentence_owner[j]` is the paragraph row of sentence j; paragraphs without sentences keep theirs.
    `strongest` holds `strongest_sentences` of the same arguments when they are already found.
    """
    blended = np.array(paragraph_probabilities, dtype=float, copy=True)
    if weight == 0 or len(sentence_owner) == 0:
        return blended
    first = strongest_sentences(sentence_probabilities, sentence_owner, none_column) if strongest is None else strongest
    rows = sentence_owner[first]
    blended[rows] = (1 - weight) * blended[rows] + weight * sentence_probabilities[first]
    return blended


def strongest_sentences(sentence_probabilities: np.ndarray, sentence_owner: np.ndarray, none_column: int) -> np.ndarray:
    """For each paragraph that has sentences, the index of its sentence with the lowest none
    probability (the first on a tie), in paragraph order."""
    if len(sentence_owner) == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((np.arange(len(sentence_owner)), sentence_probabilities[:, none_column], sentence_owner))
    owners = sentence_owner[order]
    return order[np.r_[True, owners[1:] != owners[:-1]]]
