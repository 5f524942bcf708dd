"""The real set's fixed paragraph rule: split, clean, keep, number, hash."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from pipeline.corpus.real_pages import MIN_WORDS, page_key, page_paragraphs, paragraph_sha

LONG = "The two governments agreed on Tuesday to press ahead with a joint plan for the talks next month."
OTHER = "Officials in the capital said the talks would resume after the holiday, although no date was set yet."


def test_keeps_long_sentence_lines_and_drops_headlines_fragments_and_repeats():
    text = "\n".join(["Big Headline Here", LONG, "By A Reporter", "", LONG, f"  {OTHER}  ",
                      "This paragraph runs on past the end of the excerpt and so it is cut off before it"])
    assert page_paragraphs(text) == [LONG, OTHER]


def test_whitespace_and_unicode_forms_do_not_change_the_paragraph():
    decomposed = LONG.replace("agreed", "agre\u0301ed")
    composed = LONG.replace("agreed", "agr\u00e9ed")
    assert page_paragraphs(decomposed.replace(" ", "   \t")) == [composed]


def test_a_closing_quote_after_the_full_stop_still_ends_a_sentence():
    quoted = "“" + LONG[:-1] + ".”"
    assert page_paragraphs(quoted) == [quoted]


def test_short_lines_are_dropped():
    assert page_paragraphs(" ".join(["word"] * (MIN_WORDS - 1)) + ".") == []


def test_hash_and_key_are_sha256():
    assert paragraph_sha(LONG) == hashlib.sha256(LONG.encode()).hexdigest()
    assert page_key("https://a.example/x") == hashlib.sha256(b"https://a.example/x").hexdigest()[:16]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80), max_size=8))
def test_the_rule_is_deterministic_and_idempotent(lines):
    text = "\n".join(lines)
    kept = page_paragraphs(text)
    assert kept == page_paragraphs(text)
    assert page_paragraphs("\n".join(kept)) == kept
