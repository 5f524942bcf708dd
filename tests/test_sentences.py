"""The strongest sentence: the blend (pipeline.scoring.sentences)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.encoder.sentence_rule import split_sentences
from pipeline.scoring.sentences import blend_strongest_sentence, sentence_rows, strongest_sentences


def test_the_blend_takes_the_sentence_least_likely_none():
    paragraphs = np.array([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])  # favor, against, none
    sentences = np.array([[0.1, 0.1, 0.8], [0.7, 0.1, 0.2], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
    owner = np.array([0, 0, 1, 1])
    blended = blend_strongest_sentence(paragraphs, sentences, owner, none_column=2, weight=0.5)
    np.testing.assert_allclose(blended[0], [0.45, 0.15, 0.4])  # its second sentence
    np.testing.assert_allclose(blended[1], [0.25, 0.4, 0.35])  # a tie on none: the first of them
    np.testing.assert_allclose(blended[2], paragraphs[2])  # no sentences: unchanged
    np.testing.assert_allclose(blended.sum(axis=1), 1.0)
    np.testing.assert_allclose(blend_strongest_sentence(paragraphs, sentences, owner, 2, 0.0), paragraphs)
    np.testing.assert_allclose(blend_strongest_sentence(paragraphs, sentences, owner, 2, 1.0)[0], sentences[1])
    found = strongest_sentences(sentences, owner, 2)
    assert found.tolist() == [1, 2]
    np.testing.assert_allclose(blend_strongest_sentence(paragraphs, sentences, owner, 2, 0.5, found), blended)


def test_sentence_rows_number_each_sentence_with_its_paragraph():
    paragraphs = ["Beijing and Washington agreed on the text. The vote is set for Monday.",
                  "One sentence only, read as a whole.",
                  "China halted coal imports in February. Officials in Washington welcomed the step at once."]
    owner, sentences = sentence_rows(paragraphs)
    assert owner.tolist() == [0, 0, 2, 2]
    assert sentences == split_sentences(paragraphs[0]) + split_sentences(paragraphs[2])
    split = [split_sentences(text) for text in paragraphs]
    assert sentence_rows(paragraphs, split)[1] == sentences
    assert sentence_rows([])[0].tolist() == [] and sentence_rows([])[1] == []


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_order_of_the_sentences_does_not_matter(weight):
    rng = np.random.default_rng(0)
    paragraphs = rng.dirichlet(np.ones(3), size=5)
    sentences = rng.dirichlet(np.ones(3), size=12)
    owner = rng.integers(0, 5, size=12)
    shuffled = rng.permutation(12)
    np.testing.assert_allclose(blend_strongest_sentence(paragraphs, sentences, owner, 2, weight),
                               blend_strongest_sentence(paragraphs, sentences[shuffled], owner[shuffled], 2, weight))
