"""A paragraph's vector built from its sentences' vectors: one encoder pass serves two readings.

Inputs:  an embedder (PyTorch or OpenVINO) and paragraph texts.
Outputs: one vector per paragraph. No params read here: `pipeline.encoder.embed.make_embedder`
         wraps the encoder in `SentenceMeanEmbedder` when `embedding.paragraph_vector` is
         `sentence_mean` (otherwise, `whole`, the encoder reads each paragraph at once).

Scoring reads each paragraph twice: as a whole, and by its strongest sentence
(`pipeline.scoring.sentences`). Encoding the paragraph and then its sentences costs two encoder
passes over the same words. Here a paragraph of two or more sentences
(`pipeline.encoder.sentence_rule`) is encoded sentence by sentence, and its vector is the
word-count-weighted mean of its sentences' unit vectors, normalised; a paragraph of one sentence
is encoded whole. `encode_with_pieces` hands back the sentence vectors with the paragraph
vectors, so the strongest-sentence reading that follows costs no second pass. A paragraph longer
than the encoder's window is no longer cut at the window's end either.

Chosen on the select half of the real development set, with training on vectors built the same way
(the embed stage uses this wrapper too): level with the whole-paragraph reading there and on the
report half, at half the encoding (README, "Current results" and "Performance").
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pipeline.encoder.sentence_rule import split_sentences

PARAGRAPH_VECTORS = ("whole", "sentence_mean")
SUFFIX = "+sentence-mean"


class SentenceMeanEmbedder:
    """An embedder whose paragraph vectors are the weighted means of their sentences' vectors."""

    def __init__(self, inner, encode_pieces: Callable[[list[str]], np.ndarray] | None = None):
        self.inner = inner
        # How the pieces are encoded: the encoder itself, or through a cache of its vectors (the
        # embed stage passes `embed_texts` with the encoder's own cache).
        self.encode_pieces = encode_pieces

    @property
    def identity(self) -> str:
        # The model part names the reading, so a model trained on whole-paragraph vectors refuses
        # these (and the embedding caches never mix the two); the precision part stays as it was.
        model, _, precision = self.inner.identity.partition("/")
        return f"{model}{SUFFIX}/{precision}"

    def __getattr__(self, name: str):  # backend, batch_size, start_loading ...: the encoder's own
        if name in ("inner", "encode_pieces") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getstate__(self):  # sent to Dask workers without the local cache
        return {"inner": self.inner}

    def __setstate__(self, state):
        self.inner, self.encode_pieces = state["inner"], None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_with_pieces(texts)[0]

    def encode_with_pieces(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The texts' vectors, and the vector of each piece they were built from: every sentence
        of a text of two or more sentences (`split_sentences`), and each one-sentence text."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), {}
        split = [split_sentences(text) or [text] for text in texts]
        pieces = list(dict.fromkeys(piece for parts in split for piece in parts))
        encode = self.encode_pieces or self.inner.encode
        known = dict(zip(pieces, np.asarray(encode(pieces), dtype=np.float32)))
        return np.stack([combine([known[piece] for piece in parts], parts) for parts in split]), known


def combine(vectors: list[np.ndarray], pieces: list[str]) -> np.ndarray:
    """The word-count-weighted mean of `vectors` (one per piece of text), normalised."""
    if len(vectors) == 1:
        return np.asarray(vectors[0], dtype=np.float32)
    weights = np.array([len(piece.split()) for piece in pieces], dtype=np.float64)
    mean = (weights[:, None] * np.asarray(vectors, dtype=np.float64)).sum(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
