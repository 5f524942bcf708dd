"""The strongest sentence: a paragraph's stance read from its most committed sentence as well.

Inputs:  paragraph texts, their probabilities, and the probabilities of their sentences.
Outputs: the sentences worth scoring (`sentence_rows`), and blended
         probabilities (`blend_strongest_sentence`).
Params:  `score.sentence_weight` (read by `pipeline.scoring.score`).

Real news and op-eds often state a stance in one sentence of a longer paragraph (a report of a
joint step after two sentences of background, a rebuttal after the claim it rejects). Embedded as a
whole, such a paragraph drifts towards `none`. So each paragraph of two or more sentences is also
scored sentence by sentence, and its probabilities become
`(1 - w) * paragraph + w * strongest sentence`, where the strongest sentence is the one with the
lowest `none` probability and `w` is `score.sentence_weight` (0 turns this off). Chosen on the
select half of the real development set; see the README's "Current results" for both halves.

The sentences are those of `pipeline.encoder.sentence_rule.split_sentences`, the rule the encoder uses
too when it builds a paragraph's vector from its sentences (`embedding.paragraph_vector`).
"""

from __future__ import annotations

import numpy as np

from pipeline.encoder.sentence_rule import split_sentences


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
