"""A generated corpus of realistic op-ed paragraphs for the benchmark (no real data needed).

Paragraphs are assembled from sentence templates about China–US cooperation on North Korea with
slot fillers, seeded, so every run benchmarks the same text. Lengths follow the target token
distribution (mean about 136 word-piece tokens, spread like real op-ed paragraphs); the benchmark
measures and reports the actual token counts.
"""

from __future__ import annotations

import random

ACTORS = ["Beijing", "Washington", "the Chinese leadership", "the White House", "the State Department",
          "China's foreign ministry", "American negotiators", "officials in Seoul", "the Japanese government",
          "Pyongyang", "the United Nations Security Council", "Chinese customs officials", "the Pentagon",
          "think-tank analysts in Shanghai", "senators on Capitol Hill"]
ISSUES = ["the sanctions regime", "denuclearisation talks", "the missile programme", "coal smuggling across the border",
          "ship-to-ship transfers at sea", "the freeze on nuclear tests", "humanitarian aid to the North",
          "the six-party framework", "joint military exercises", "the export ban on refined petroleum",
          "the trade dispute", "technology export controls", "the future of the armistice"]
VERBS_FAVOR = ["worked closely with", "coordinated its position with", "found common ground with",
               "quietly supported", "shared intelligence with", "agreed on a joint statement with"]
VERBS_AGAINST = ["undercut", "refused to follow", "blamed", "accused", "stalled the plans of", "openly defied"]
YEARS = ["1994", "2003", "2006", "2013", "2017", "2018", "2019", "2021", "2023"]
ADJ = ["fragile", "surprising", "long-awaited", "limited", "hard-won", "costly", "symbolic", "decisive",
       "uneven", "overdue"]

TEMPLATES = [
    "In {year}, {a} {vf} {b} on {issue}, a {adj} step that few observers had predicted.",
    "Critics argue that {a} {va} {b} whenever {issue} came up for a vote, and that this pattern has not changed.",
    "The record since {year} suggests that progress on {issue} depends less on rhetoric than on whether {a} "
    "and {b} can keep talking when the headlines turn hostile.",
    "{A} has repeatedly said that {issue} is a shared responsibility, yet its actions at the border tell a "
    "more {adj} story.",
    "Nobody in {a} seriously believes that {b} will abandon its own interests, but cooperation on {issue} "
    "does not require trust, only verification.",
    "When {a} {vf} {b} in {year}, the result was a {adj} agreement on {issue} that held for almost two years.",
    "The deeper problem is that rivalry over trade and technology spills into {issue}, and {a} now reads "
    "every proposal from {b} as a trap.",
    "Supporters of engagement point to {year}, when {a} and {b} jointly drafted the resolution on {issue}.",
    "Sceptics reply that {a} {va} {b} within months, and that enforcement of {issue} quietly collapsed.",
    "It would be naive to expect a grand bargain, but a {adj} understanding on {issue} is within reach if "
    "{a} is willing to move first.",
    "Data from customs records show that trade between China and the North fell sharply after {year}, "
    "although enforcement of {issue} remained {adj}.",
    "{A} insists that pressure alone will never work, while {b} sees {issue} as the only lever left.",
    "The meeting ended with a {adj} communiqué that mentioned {issue} only once, in the final paragraph.",
    "Whatever one thinks of {a}, the fact is that {b} cannot solve {issue} without it.",
]


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(ACTORS, 2)
    text = rng.choice(TEMPLATES).format(
        a=a, b=b, A=a[0].upper() + a[1:], issue=rng.choice(ISSUES), year=rng.choice(YEARS), adj=rng.choice(ADJ),
        vf=rng.choice(VERBS_FAVOR), va=rng.choice(VERBS_AGAINST))
    return text[0].upper() + text[1:]


def paragraph(rng: random.Random, target_tokens: int) -> str:
    """One paragraph of about `target_tokens` word-piece tokens (1 word ≈ 1.36 tokens in these templates)."""
    sentences: list[str] = []
    words = 0
    while words * 1.36 < target_tokens:
        sentence = _sentence(rng)
        sentences.append(sentence)
        words += len(sentence.split())
    return " ".join(sentences)


def generate(n: int, seed: int = 20161, mean_tokens: int = 136, sd_tokens: int = 40) -> list[str]:
    """`n` distinct paragraphs, lengths ~ Normal(mean, sd) clipped to [40, 240] tokens."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        target = int(min(240, max(40, rng.gauss(mean_tokens, sd_tokens))))
        text = paragraph(rng, target)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def documents(paragraphs: list[str], n_docs: int) -> list[list[str]]:
    """The paragraphs dealt into `n_docs` documents in order (sizes differ by at most one)."""
    size, extra = divmod(len(paragraphs), n_docs)
    docs, start = [], 0
    for d in range(n_docs):
        end = start + size + (d < extra)
        docs.append(paragraphs[start:end])
        start = end
    return docs
