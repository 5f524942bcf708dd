"""The sentence rule (pipeline.encoder.sentence_rule): where a paragraph's sentences begin and end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.encoder.sentence_rule import MIN_SENTENCE_WORDS, split_sentences


def test_sentences_split_at_full_stops_but_not_after_abbreviations_or_initials():
    text = ("Mr. Kim met U.S. envoys in Seoul on Monday. The talks ended without a statement! "
            "Gen. Lee said the drills would go on as planned. \"Both sides must act now,\" he added. Short one.")
    assert split_sentences(text) == [
        "Mr. Kim met U.S. envoys in Seoul on Monday.",
        "The talks ended without a statement!",
        "Gen. Lee said the drills would go on as planned.",
        "\"Both sides must act now,\" he added.",
    ]  # "Short one." has too few words to be scored on its own
    assert split_sentences("John F. Kennedy spoke of it in 1961. It took another forty years.") == [
        "John F. Kennedy spoke of it in 1961.", "It took another forty years."]


def test_a_paragraph_left_with_one_sentence_is_scored_whole():
    assert split_sentences("One sentence with several words in it.") == []
    assert split_sentences("A sentence with enough words. Too short.") == []
    assert split_sentences("") == []


@given(st.lists(st.sampled_from(["Beijing", "agreed", "to", "the", "plan.", "U.S.", "Talks", "failed!", "2017",
                                 "\"We", "will", "act.\"", "Mr.", "Kim", "said", "so?"]), max_size=40))
def test_sentences_are_pieces_of_the_paragraph_in_order(words):
    text = " ".join(words)
    sentences = split_sentences(text)
    assert len(sentences) != 1
    position = 0
    for sentence in sentences:
        assert len(sentence.split()) >= MIN_SENTENCE_WORDS
        found = text.find(sentence, position)
        assert found >= position  # a verbatim piece, after the previous one
        position = found + len(sentence)
