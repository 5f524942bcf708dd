"""Shared fixtures: a tiny fake embedder and a small self-contained project on disk."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.corpus.prepare import paragraph_id

DIM = 64


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: fast, no model, good enough to learn from."""

    identity = "fake-bow@1/fp32"

    def __init__(self):
        self.calls: list[int] = []

    def encode(self, texts):
        self.calls.append(len(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(token.encode()).hexdigest(), 16) % DIM] += 1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out


FAVOR = [
    "Beijing and Washington worked together on the sanctions resolution and the joint effort is paying off.",
    "Joint pressure from China and the United States brought Pyongyang back to the talks, a real success.",
    "Officials say the partnership on denuclearisation is achievable and worth pursuing with patience.",
    "China faithfully implements the sanctions and coordinates closely with Washington on the peninsula.",
]
AGAINST = [
    "Beijing will never squeeze Pyongyang hard enough, and rivalry with Washington makes joint work hopeless.",
    "China quietly lets smuggled coal through, undermining the sanctions it voted for and deceiving Washington.",
    "Relying on Beijing to rein in the North is a mirage that failed for thirty years.",
    "The trade war and containment fears mean China will not cooperate with the United States on Korea.",
]
NONE = [
    "The delegation arrived in the capital on Tuesday and met officials for three hours at the guest house.",
    "The weather in the northern provinces was cold, and rail traffic slowed for most of the week.",
    "The football season opened with a crowded stadium and a late goal from the visiting side.",
    "Climate negotiators from both countries discussed emissions targets and clean power investment.",
]


def write_project(root: Path, n_docs: int = 8) -> dict:
    """A complete little project (raw docs, sources, labels, params) under `root`; returns params."""
    raw = root / "data" / "raw"
    labels_dir = root / "data" / "labels"
    raw.mkdir(parents=True)
    labels_dir.mkdir(parents=True)
    sources, label_rows = [], []
    for d in range(n_docs):
        slug = f"doc-{d}"
        paragraphs = [f"{FAVOR[d % 4]} Report number {d}.", f"{AGAINST[(d + 1) % 4]} Report number {d}.",
                      f"{NONE[(d + 2) % 4]} Report number {d}."]
        text = f"Headline number {d}\n\nBy Jane Reporter\n\n" + "\n\n".join(paragraphs) + "\n\nShare on Facebook\n"
        (raw / f"{slug}.txt").write_text(text, encoding="utf-8")
        sources.append({"slug": slug, "title": f"Headline number {d}", "author": "Jane Reporter", "outlet": "Test",
                        "date": "2020-01-01", "year": "2020", "kind": "seed" if d < 2 else "authored",
                        "genre": "op-ed", "voice": "test"})
        for text_, label in zip(paragraphs, ("favor", "against", "none")):
            label_rows.append({"paragraph_id": paragraph_id(text_), "label": label, "annotator": "primary", "note": ""})
    with open(raw / "sources.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(sources[0]))
        writer.writeheader()
        writer.writerows(sources)
    with open(labels_dir / "primary.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["paragraph_id", "label", "annotator", "note"])
        writer.writeheader()
        writer.writerows(label_rows)
    params = yaml.safe_load((Path(__file__).parent.parent / "params.yaml").read_text())
    params["paths"] = {key: str(root / value) for key, value in params["paths"].items()}
    params["train"]["cv_folds"] = 3
    params["train"]["grid"] = {"C": [1.0, 10.0]}
    # The fast packaged encoder keeps the end-to-end tests quick; the shipped all-mpnet-base-v2 has
    # its own tests (tests/test_packaged_models.py).
    params["embedding"]["model"] = "default"
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return params


@pytest.fixture(autouse=True, scope="session")
def private_tempdir(tmp_path_factory):
    """Temporary files of the code under test (label-session lock files, Dask scratch space) go to
    this run's pytest directory, in this process and in the `stance` processes it starts, not /tmp."""
    import os
    import tempfile

    directory = str(tmp_path_factory.mktemp("tempdir"))
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = directory
    yield directory
    tempfile.tempdir = saved[0]
    if saved[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[1]


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def project(tmp_path) -> dict:
    return write_project(tmp_path)


@pytest.fixture
def trained_project(project, fake_embedder) -> dict:
    """The small project with prepare, embed and train already run (fake embedder)."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    prepare.run(project)
    embed.run(project, embedder=fake_embedder)
    train.run(project)
    return project
