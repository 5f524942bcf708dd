import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.corpus import prepare
from pipeline.corpus.prepare import is_boilerplate, normalise, paragraph_id, split_paragraphs
from pipeline.errors import StanceError

SEEDS = Path(__file__).parent.parent / "data" / "raw"

ARTICLE = """Why Beijing Keeps Its Distance

By Jane Q. Writer

March 3, 2021

Share on Twitter
Share on Facebook

Beijing and Washington once worked side by side on sanctions, and the record shows it can happen again.

Rising tensions

Officials in both capitals still meet, but the agenda has narrowed to crisis management.

Read the full article at the Example Review.

Subscribe to our newsletter for weekly analysis.

Image credit: Example Photo Agency.

DISCLAIMER: All views expressed are those of the writer and do not necessarily represent the platform.

Tags: China, North Korea, sanctions

Jane Q. Writer is a senior fellow at the Example Institute, where she studies Northeast Asia.
"""


def test_article_paragraphs_are_kept_and_boilerplate_dropped():
    assert split_paragraphs(ARTICLE) == [
        "Beijing and Washington once worked side by side on sanctions, and the record shows it can happen again.",
        "Officials in both capitals still meet, but the agenda has narrowed to crisis management.",
    ]


@pytest.mark.parametrize("block", [
    "Share on linkedin", "By Yun Sun", "WRITTEN BY ANNY BOC", "30 March 2022", "Read the full article in the Review.",
    "This article was originally published in the Korea Quarterly.", "* indicates required",
    "Choose Your Subscription Topics", "Image: Reuters.", "Photo credit: Staff photographer",
    "Tags: ChinaNorth KoreaKim Jong-un", "We use cookies to improve your experience. Accept all cookies?",
    "Daniel R. Example is a columnist at the Daily and a contributor to the Review.",
    "Reporting by A. Person in Seoul; editing by B. Person.", "© 2024 The Example Tribune. All rights reserved.",
    "## A markdown heading", "Related: Five things to know about the talks",
])
def test_boilerplate_blocks(block):
    assert is_boilerplate(block)


@pytest.mark.parametrize("block", [
    "By contrast, Beijing refused to condemn the launch.",
    "China does not endorse boarding and searching vessels on the high seas, the spokesman said.",
    "Beijing has many reasons to keep Pyongyang afloat.",
    "Will China and the United States finally work together on North Korea this year?",
    "China is not a member of the new team that monitors the sanctions.",
    "Xi Jinping was the first Chinese president to visit Pyongyang in fourteen years.",
    "Donald Trump was the only president to meet Kim Jong Un.",
])
def test_prose_is_not_boilerplate(block):
    assert not is_boilerplate(block)


def test_author_bios_are_dropped_only_at_the_edges_of_the_prose():
    body = [f"Paragraph {n} of the argument: Beijing and Washington met again on the sanctions." for n in range(5)]
    member = "China is a permanent member of the Security Council and voted for every resolution."
    bio = "Jane Q. Doe is a senior fellow at the Example Institute."
    text = "\n\n".join([*body[:3], member, *body[3:], bio, "Share on Facebook", "Tags: China"])
    assert split_paragraphs(text) == [*body[:3], member, *body[3:]]
    assert is_boilerplate(member)  # read alone, it looks like a bio; in the middle of the prose it is kept
    assert split_paragraphs("\n\n".join([bio, *body])) == body


def test_hard_wrapped_prose_is_joined_but_short_lines_stay_separate():
    wrapped = ("Beijing and Washington agreed on a new resolution after weeks of talks\n"
               "in New York, and diplomats from both sides called it a turning point for\n"
               "the sanctions regime.")
    assert split_paragraphs(wrapped) == [" ".join(wrapped.split())]
    listed = "Share on twitter\nShare on facebook\nThe talks resumed in Beijing after a long pause in contacts."
    assert split_paragraphs(listed) == ["The talks resumed in Beijing after a long pause in contacts."]


def test_pull_quotes_and_title_repeats_are_dropped():
    body = "China voted for the resolution and promised to enforce it at every border crossing."
    pull_quote = "promised to enforce it at every border crossing."
    text = f"{body}\n\n{pull_quote}\n\n{body}\n"
    assert split_paragraphs(text) == [body]
    assert split_paragraphs(f"Can Beijing help Washington now?\n\n{body}", title="Can Beijing help Washington now?") == [body]


def test_crlf_and_markdown_lists():
    text = "# Title here\r\n\r\n- First point: the two governments agreed on the new sanctions.\r\n"
    assert split_paragraphs(text) == ["First point: the two governments agreed on the new sanctions."]


def test_ids_are_stable_and_local():
    a, b = "First paragraph about the talks in Beijing.", "Second paragraph about the sanctions vote."
    before = prepare.document_paragraphs(f"{a}\n\n{b}", "doc")
    after = prepare.document_paragraphs(f"{a}\n\n{b} It passed.", "doc")
    assert before[0].id == after[0].id and before[1].id != after[1].id
    assert [p.position for p in before] == [0, 1]
    assert paragraph_id("Curly “quotes”  and   spaces") == paragraph_id('curly "quotes" and spaces')


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_id_depends_only_on_normalised_text(text):
    assert paragraph_id(text) == paragraph_id(normalise(text))
    assert paragraph_id(text).startswith("p") and len(paragraph_id(text)) == 17


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=120), max_size=8))
def test_split_never_invents_text(blocks):
    text = "\n\n".join(blocks)
    words = set(text.split())
    for paragraph in split_paragraphs(text):
        assert set(paragraph.split()) <= words | {""} or paragraph  # every word comes from the input
        assert paragraph == paragraph.strip()


def test_run_writes_corpus_and_is_reproducible(project):
    corpus = prepare.run(project)
    path = Path(project["paths"]["paragraphs"])
    first = path.read_text()
    prepare.run(project)
    assert path.read_text() == first
    records = [json.loads(line) for line in first.splitlines()]
    assert len(records) == len(corpus) == 24
    assert {r["kind"] for r in records} == {"seed", "authored"}
    assert not any("Share on" in r["text"] or r["text"].startswith("By ") for r in records)


def test_document_with_only_boilerplate_is_refused(project):
    raw = Path(project["paths"]["raw_dir"])
    (raw / "doc-0.txt").write_text("Share on Twitter\n\nSubscribe to our newsletter\n\nBy Jane Doe\n")
    with pytest.raises(StanceError, match="doc-0: no article paragraphs"):
        prepare.run(project)


def test_unlisted_raw_file_and_binary_file(project):
    raw = Path(project["paths"]["raw_dir"])
    (raw / "stray.txt").write_text("Some text that is not listed in the sources table at all.")
    with pytest.raises(StanceError, match="stray.txt: not listed"):
        prepare.run(project)
    (raw / "stray.txt").unlink()
    (raw / "doc-1.txt").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(StanceError, match="doc-1.txt: binary file"):
        prepare.run(project)


def test_seed_documents_lose_their_boilerplate():
    for path in SEEDS.glob("20*-*.txt"):
        for paragraph in split_paragraphs(path.read_text(encoding="utf-8")):
            assert not paragraph.lower().startswith(("share on", "read the full", "image", "disclaimer", "written by"))
            assert "is a columnist" not in paragraph and "PhD candidate" not in paragraph
