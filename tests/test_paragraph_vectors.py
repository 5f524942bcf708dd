"""A paragraph's vector from its sentences' vectors (pipeline.encoder.paragraph_vectors)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.encoder.sentence_rule import split_sentences
from pipeline.encoder import embed
from pipeline.encoder.embed import make_embedder
from pipeline.encoder.paragraph_vectors import SentenceMeanEmbedder, combine
from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder
from pipeline.errors import StanceError
from pipeline.files import read_jsonl

TWO_SENTENCES = ("China and the United States agreed on new sanctions at the council. "
                 "Officials called the joint step overdue but welcome.")
ONE_SENTENCE = "The delegation arrived in Seoul on a cold Tuesday morning."


def test_a_paragraph_of_several_sentences_is_their_word_weighted_mean(fake_embedder):
    vector = SentenceMeanEmbedder(fake_embedder).encode([TWO_SENTENCES])[0]
    sentences = split_sentences(TWO_SENTENCES)
    parts = fake_embedder.encode(sentences)
    weights = np.array([len(s.split()) for s in sentences], dtype=float)
    expected = (weights[:, None] * parts).sum(axis=0)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), rtol=1e-6)
    assert vector.dtype == np.float32 and np.isclose(np.linalg.norm(vector), 1.0)


def test_a_paragraph_of_one_sentence_is_encoded_whole(fake_embedder):
    wrapped = SentenceMeanEmbedder(fake_embedder).encode([ONE_SENTENCE])
    np.testing.assert_array_equal(wrapped, fake_embedder.encode([ONE_SENTENCE]))


def test_the_pieces_come_back_with_the_paragraphs_each_encoded_once(fake_embedder):
    embedder = SentenceMeanEmbedder(fake_embedder)
    vectors, pieces = embedder.encode_with_pieces([TWO_SENTENCES, ONE_SENTENCE, TWO_SENTENCES])
    assert fake_embedder.calls == [3]  # two sentences and the one-sentence paragraph, each once
    assert list(pieces) == [*split_sentences(TWO_SENTENCES), ONE_SENTENCE]
    sentences = split_sentences(TWO_SENTENCES)
    np.testing.assert_array_equal(np.stack([pieces[s] for s in sentences]), fake_embedder.encode(sentences))
    np.testing.assert_array_equal(vectors, embedder.encode([TWO_SENTENCES, ONE_SENTENCE, TWO_SENTENCES]))


def test_the_identity_names_the_reading_so_a_whole_paragraph_model_refuses_it(fake_embedder):
    from pipeline.scoring.score import check_embedding_identity

    embedder = SentenceMeanEmbedder(fake_embedder)
    assert embedder.identity == "fake-bow@1+sentence-mean/fp32"
    with pytest.raises(StanceError, match="trained on embeddings from 'fake-bow@1/fp32'.*run `dvc repro`"):
        check_embedding_identity({"embedding_model": fake_embedder.identity}, embedder.identity)
    check_embedding_identity({"embedding_model": embedder.identity}, embedder.identity)


def test_it_pickles_without_its_local_cache(fake_embedder):
    embedder = SentenceMeanEmbedder(fake_embedder, encode_pieces=lambda texts: fake_embedder.encode(texts))
    copy = pickle.loads(pickle.dumps(embedder))
    assert copy.encode_pieces is None and copy.identity == embedder.identity
    np.testing.assert_array_equal(copy.encode([TWO_SENTENCES]), embedder.encode([TWO_SENTENCES]))


def test_an_empty_call_and_a_zero_mean_are_handled(fake_embedder):
    assert SentenceMeanEmbedder(fake_embedder).encode([]).shape == (0, 0)
    zero = combine([np.zeros(4, dtype=np.float32), np.zeros(4, dtype=np.float32)], ["a b c d", "e f g h"])
    assert not np.isnan(zero).any()


def test_make_embedder_wraps_the_encoder_when_configured_and_refuses_an_unknown_reading(tmp_path):
    params = {"embedding": {"model": "default", "backend": "torch", "precision": "fp32",
                            "paragraph_vector": "sentence_mean"}}
    embedder = make_embedder(params)
    assert isinstance(embedder, SentenceMeanEmbedder) and isinstance(embedder.inner, SentenceTransformerEmbedder)
    assert embedder.backend == "torch" and embedder.identity.split("/")[0].endswith("+sentence-mean")
    plain = make_embedder({"embedding": {**params["embedding"], "paragraph_vector": "whole"}})
    assert isinstance(plain, SentenceTransformerEmbedder)
    with pytest.raises(StanceError, match="embedding.paragraph_vector must be one of whole, sentence_mean, got 'mean'"):
        make_embedder({"embedding": {**params["embedding"], "paragraph_vector": "mean"}})


def test_the_embed_stage_caches_the_sentences_so_a_rerun_encodes_nothing(project, fake_embedder):
    from pipeline.corpus import prepare

    prepare.run(project)
    embedder = SentenceMeanEmbedder(fake_embedder)
    path = embed.run(project, embedder=embedder)
    first = sum(fake_embedder.calls)
    rows, matrix, written = embed.load_embeddings(path)
    assert written == embedder.identity and matrix.shape == (len(read_jsonl(project["paths"]["paragraphs"])), 64)
    paragraphs = embed.EmbeddingCache(project["paths"]["embedding_cache"], embedder.identity)
    for shard in paragraphs.dir.glob("*.npz"):  # the paragraphs' vectors gone: rebuilt from the cached sentences
        shard.unlink()
    again = embed.run(project, embedder=SentenceMeanEmbedder(fake_embedder))
    assert sum(fake_embedder.calls) == first
    np.testing.assert_array_equal(embed.load_embeddings(again)[1], matrix)
