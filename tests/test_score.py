"""Scoring with the fake embedder: paragraph flags, the document rule, batching, the reference set,
--explain evidence and out-of-domain detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import LABELS
from pipeline.corpus.documents import Document
from pipeline.errors import StanceError
from pipeline.model.reference import (build_reference, held_out_similarity, load_reference, reference_path,
                                      save_reference)
from pipeline.scoring.score import document_verdict, load_scorer, score_documents, score_settings
from conftest import AGAINST, FAVOR, NONE, FakeEmbedder, write_project

OFF_TOPIC = ("Whisk eggs with sugar until pale, fold in flour gently, then bake the sponge for twenty "
             "minutes and dust it with icing.")


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory):
    """One trained tiny project for the tests that only read it (training is the slow part)."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    params = write_project(tmp_path_factory.mktemp("project"))
    prepare.run(params)
    embed.run(params, embedder=FakeEmbedder())
    train.run(params)
    return params


@pytest.fixture(scope="module")
def context_project(tmp_path_factory):
    """The tiny project trained with the document context (`train.feature_params.context_weight`)."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    params = write_project(tmp_path_factory.mktemp("context"))
    params["train"]["feature_params"] = {**params["train"]["feature_params"], "context_weight": 0.5}
    prepare.run(params)
    embed.run(params, embedder=FakeEmbedder())
    train.run(params)
    return params


@pytest.fixture
def context_scorer(context_project, fake_embedder):
    scorer = load_scorer(context_project, embedder=fake_embedder)
    scorer.ood_threshold = 0.8
    return scorer


@pytest.fixture
def scorer(shared_project, fake_embedder):
    scorer = load_scorer(shared_project, embedder=fake_embedder)
    # The tiny project repeats each sentence in several documents, so its calibrated threshold is ~1
    # (see test_calibrated_threshold_of_the_tiny_project); the paragraph tests use a fixed one.
    scorer.ood_threshold = 0.8  # off-topic text still shares stop words with the corpus (~0.6)
    return scorer


# --- reference set --------------------------------------------------------------------------------

def test_train_saves_the_reference_set_and_records_its_hash(shared_project):
    trained_project = shared_project
    path = reference_path(trained_project["paths"])
    assert path == Path(trained_project["paths"]["model"]).parent / "reference.npz"
    meta = json.loads(Path(trained_project["paths"]["model_meta"]).read_text())
    assert meta["reference"]["paragraphs"] == 24
    reference = load_reference(path, meta["reference"]["sha256"])
    assert len(reference) == 24 and reference.identity == "fake-bow@1/fp32"
    assert set(reference.labels) == set(LABELS)
    assert sorted(set(reference.docs)) == [f"doc-{d}" for d in range(8)]
    assert any(text.startswith(FAVOR[0]) for text in reference.texts)
    assert np.allclose(np.linalg.norm(reference.vectors, axis=1), 1, atol=1e-5)
    assert reference.ood_threshold == pytest.approx(np.percentile(reference.held_out_similarity, 2))


def test_calibrated_threshold_of_the_tiny_project(shared_project, fake_embedder):
    scorer = load_scorer(shared_project, embedder=fake_embedder)
    assert scorer.ood_threshold == pytest.approx(scorer.reference.threshold(2), abs=1e-6)
    assert scorer.ood_threshold > 0.99  # every sentence has a twin in another document
    [result] = score_documents([Document("d", [f"{FAVOR[0]} Report number 99.", OFF_TOPIC])], scorer)
    assert [p["out_of_domain"] for p in result["paragraphs"]] == [False, True]


def test_a_paragraph_within_float_noise_of_the_threshold_is_in_domain(shared_project, fake_embedder):
    # float32 similarities move in the last digit with the shape of the batch they are computed in
    # (the archive and `stance score` batch differently): that must not flip the flag.
    scorer = load_scorer(shared_project, embedder=fake_embedder)
    text = f"{FAVOR[0]} Report number 4."
    [[similarity]] = scorer.reference.nearest(scorer.embed([text]), 1)[1]
    for margin, expected in ((5e-7, False), (1e-5, True)):
        scorer.ood_threshold = float(similarity) + margin
        [result] = score_documents([Document("d", [text])], scorer)
        assert result["paragraphs"][0]["out_of_domain"] is expected, margin


def test_threshold_follows_the_configured_percentile():
    rows = [{"id": f"p{i}", "doc": f"d{i % 5}", "text": ""} for i in range(50)]
    X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    reference = build_reference(rows, X, ["none"] * 50, "m@1")
    assert reference.threshold() == reference.threshold(2) == pytest.approx(np.percentile(reference.held_out_similarity, 2))
    assert reference.threshold(50) == pytest.approx(np.median(reference.held_out_similarity))
    assert reference.threshold(0) < reference.threshold(2) < reference.threshold(50)


def test_reference_round_trip_keeps_unicode_texts(tmp_path):
    rows = [{"id": "p1", "doc": "a", "text": "Pékin — “coopération”"}, {"id": "p2", "doc": "b", "text": ""},
            {"id": "p3", "doc": "b", "text": "北京"}]
    X = np.eye(3, 4, dtype=np.float32) * 3
    summary = save_reference(build_reference(rows, X, ["favor", "none", "against"], "m@1/fp32"), tmp_path / "r.npz")
    loaded = load_reference(tmp_path / "r.npz", summary["sha256"])
    assert loaded.texts == ["Pékin — “coopération”", "", "北京"]
    assert loaded.ids == ["p1", "p2", "p3"] and loaded.labels == ["favor", "none", "against"]


def test_held_out_similarity_ignores_paragraphs_of_the_same_document():
    vectors = np.array([[1, 0], [1, 0], [0.6, 0.8]], dtype=np.float32)
    sims = held_out_similarity(vectors, np.array(["a", "a", "b"]))
    assert sims.tolist() == pytest.approx([0.6, 0.6, 0.6])  # the identical twin in doc a does not count
    single = held_out_similarity(vectors, np.array(["a", "a", "a"]))
    assert single.tolist() == pytest.approx([1.0, 1.0, 0.6])


def test_a_tampered_or_missing_reference_is_handled(trained_project, fake_embedder):
    path = reference_path(trained_project["paths"])
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(StanceError, match=r"reference\.npz: does not belong to the trained model .*dvc repro"):
        load_scorer(trained_project, embedder=fake_embedder)
    path.unlink()
    with pytest.raises(StanceError, match=r"reference\.npz: no reference set .*dvc repro"):
        load_scorer(trained_project, embedder=fake_embedder, explain=True)
    scorer = load_scorer(trained_project, embedder=fake_embedder)
    assert scorer.reference is None and "out-of-domain detection is off" in scorer.notes[0]
    result = score_documents([Document("d", [FAVOR[0]])], scorer)
    assert result[0]["paragraphs"][0]["out_of_domain"] is None
    with pytest.raises(StanceError, match="--explain needs the reference set"):
        score_documents([Document("d", [FAVOR[0]])], scorer, explain=True)


def test_model_trained_on_other_embeddings_is_refused(shared_project, fake_embedder):
    fake_embedder.identity = "other-model@2/fp32"
    with pytest.raises(StanceError, match="trained on embeddings from 'fake-bow@1/fp32'.*dvc repro"):
        load_scorer(shared_project, embedder=fake_embedder)


@pytest.mark.parametrize("identity, noted", [("fake-bow@1/openvino-fp32", False), ("fake-bow@1/bf16", True)])
def test_a_different_precision_is_noted_not_refused(shared_project, fake_embedder, identity, noted):
    fake_embedder.identity = identity
    scorer = load_scorer(shared_project, embedder=fake_embedder)
    assert any("trained on fp32 embeddings and scores with bf16" in n for n in scorer.notes) == noted


@pytest.mark.parametrize("key, value", [("uncertain_below", 1.5), ("document_min_share", "a lot"),
                                        ("out_of_domain_percentile", 101), ("explain_neighbours", 0),
                                        ("sentence_weight", -0.5)])
def test_bad_score_params_are_clear_errors(key, value):
    with pytest.raises(StanceError, match=f"params.yaml: score.{key} must be"):
        score_settings({"score": {key: value}})


# --- paragraphs and documents ---------------------------------------------------------------------

def test_paragraph_results(scorer):
    doc = Document("op-ed", [FAVOR[1], AGAINST[2], NONE[0]])
    [result] = score_documents([doc], scorer)
    paragraphs = result["paragraphs"]
    assert [p["label"] for p in paragraphs] == ["favor", "against", "none"]
    for p in paragraphs:
        assert set(p["probabilities"]) == set(LABELS)
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert p["out_of_domain"] is False and "id" not in p and "evidence" not in p
        assert p["uncertain"] == (max(p["probabilities"].values()) < scorer.uncertain_below)
    scorer.uncertain_below = 1.0
    assert all(p["uncertain"] for p in score_documents([doc], scorer)[0]["paragraphs"])


def test_record_documents_carry_their_ids(scorer):
    doc = Document("records.jsonl", [FAVOR[0], AGAINST[0]], ["r-1", None], records=True)
    paragraphs = score_documents([doc], scorer)[0]["paragraphs"]
    assert [p["id"] for p in paragraphs] == ["r-1", None]


def test_off_topic_paragraph_is_out_of_domain_and_does_not_drive_the_verdict(scorer):
    [result] = score_documents([Document("mixed", [AGAINST[0], OFF_TOPIC])], scorer)
    off = result["paragraphs"][1]
    assert off["out_of_domain"] is True and off["label"] == "none"
    assert result["paragraphs"][0]["out_of_domain"] is False
    assert result["out_of_domain_paragraphs"] == 1
    assert result["verdict"] == "against" and result["decisive"] == [0]
    [alone] = score_documents([Document("recipe", [OFF_TOPIC])], scorer)
    assert alone["verdict"] == "none" and alone["decisive"] == [] and alone["shares"]["none"] == 1.0


def test_explain_lists_the_most_similar_training_paragraphs(scorer):
    [result] = score_documents([Document("d", [f"{FAVOR[2]} Report number 3."])], scorer, explain=True)
    evidence = result["paragraphs"][0]["evidence"]
    assert len(evidence) == 3
    # the sentence is in two training documents (numbers are not words to the fake embedder)
    for e in evidence[:2]:
        assert e["label"] == "favor" and e["text"].startswith(FAVOR[2]) and e["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert {e["document"] for e in evidence[:2]} == {"doc-2", "doc-6"}
    assert evidence[2]["similarity"] < 0.99
    sims = [e["similarity"] for e in evidence]
    assert sims == sorted(sims, reverse=True)
    assert all(e["label"] in LABELS and e["document"].startswith("doc-") for e in evidence)


def test_document_verdict_rule():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    long_favor = ["word " * 30, "word " * 10, "word " * 10]
    verdict = document_verdict(long_favor, probabilities, 0.25)
    assert verdict["verdict"] == "favor" and verdict["decisive"] == [0, 1, 2]
    assert verdict["mass"]["favor"] == pytest.approx((30 * 0.9 + 10 * 0.1 + 10 * 0.1) / 50, abs=1e-4)
    assert verdict["shares"] == {"favor": pytest.approx(1 / 3, abs=1e-3), "against": pytest.approx(1 / 3, abs=1e-3),
                                 "none": pytest.approx(1 / 3, abs=1e-3)}
    long_against = ["word " * 10, "word " * 30, "word " * 10]
    assert document_verdict(long_against, probabilities, 0.25)["verdict"] == "against"
    # below the minimum share nothing wins
    assert document_verdict(long_against, probabilities, 0.9)["verdict"] == "none"
    # an out-of-domain paragraph carries no weight, however confident
    masked = document_verdict(long_favor, probabilities, 0.25, in_domain=np.array([False, True, True]),
                              decisive_count=1)
    assert masked["verdict"] == "against" and masked["decisive"] == [1] and masked["out_of_domain_paragraphs"] == 1


def test_paragraphs_of_many_documents_share_encoder_calls(scorer, fake_embedder):
    documents = [Document(f"d{d}", [f"{FAVOR[d % 4]} Item {d}.", f"{AGAINST[d % 4]} Item {d}.",
                                    f"{NONE[d % 4]} Item {d}."]) for d in range(10)]
    fake_embedder.calls.clear()
    ticks = []
    results = score_documents(documents, scorer, progress=ticks.append)
    assert fake_embedder.calls == [30] and ticks == [30]
    assert [r["document"] for r in results] == [f"d{d}" for d in range(10)]
    scorer.chunk = 8
    fake_embedder.calls.clear()
    again = score_documents(documents, scorer)
    assert fake_embedder.calls == [8, 8, 8, 6]
    assert again == results


def test_a_document_scores_the_same_alone_or_among_others(context_scorer):
    # Chunks of the encoder cross document boundaries; each paragraph's document context must not.
    documents = [Document(f"d{d}", [FAVOR[d % 4], AGAINST[(d + 1) % 4], NONE[(d + 2) % 4], FAVOR[(d + 3) % 4]][:2 + d % 3])
                 for d in range(5)]
    context_scorer.chunk = 3
    together = score_documents(documents, context_scorer)
    alone = [score_documents([doc], context_scorer)[0] for doc in documents]
    assert together == alone
    assert context_scorer.estimator.context_weight == 0.5  # the numpy fast path, reading the context


@pytest.mark.parametrize("reads_context", [True, False])
def test_a_paragraph_is_read_in_its_document_only_with_the_context(reads_context, context_scorer, scorer):
    """With the document context the same paragraph can score differently in different documents."""
    scorer = context_scorer if reads_context else scorer
    paragraph = "Officials from both governments met again this week to discuss the peninsula."
    in_favor = score_documents([Document("a", [paragraph, *FAVOR])], scorer)[0]["paragraphs"][0]
    in_against = score_documents([Document("b", [paragraph, *AGAINST])], scorer)[0]["paragraphs"][0]
    assert (in_favor["probabilities"] != in_against["probabilities"]) == reads_context
    assert scorer.probabilities([paragraph, *FAVOR])[0] == pytest.approx(
        [in_favor["probabilities"][label] for label in LABELS], abs=1e-4)


def test_nothing_to_score_is_an_error(scorer):
    with pytest.raises(StanceError, match="no paragraphs to score"):
        score_documents([Document("empty", [])], scorer)


def _probs(labels: list[str], strength: float = 0.8) -> np.ndarray:
    rest = (1 - strength) / 2
    return np.array([[strength if lab == label else rest for label in LABELS] for lab in labels])


def test_count_rule_a_mostly_none_report_reads_none_and_says_why():
    from pipeline.scoring.score import document_verdict

    labels = ["none"] * 7 + ["against"]
    summary = document_verdict(["word " * 20] * 8, _probs(labels), 0.25, rule="count")
    assert summary["verdict"] == "none"
    assert summary["verdict_reason"] == "against paragraphs 1 of 8 (12%), favor 0: under 25%, so none"


def test_count_rule_the_leading_stance_wins_and_a_tie_is_none():
    from pipeline.scoring.score import document_verdict

    lead = document_verdict(["w"] * 5, _probs(["favor", "favor", "against", "none", "none"]), 0.25, rule="count")
    assert lead["verdict"] == "favor" and lead["verdict_reason"].startswith("favor paragraphs 2 of 5 (40%), against 1")
    tie = document_verdict(["w"] * 4, _probs(["favor", "against", "none", "none"]), 0.25, rule="count")
    assert tie["verdict"] == "none" and "tied" in tie["verdict_reason"]


def test_mass_rule_states_its_figures_and_decisive_paragraphs_agree_with_the_verdict():
    from pipeline.scoring.score import document_verdict

    summary = document_verdict(["w " * 10] * 3, _probs(["against", "against", "none"]), 0.25, decisive_count=3)
    assert summary["verdict"] == "against"
    assert summary["verdict_reason"].startswith("against mass 0.")
    assert summary["decisive"][:2] == [0, 1] and summary["agreement"] == round(2 / 3, 4)


def test_an_unknown_verdict_rule_is_refused():
    from pipeline.scoring.score import score_settings

    with pytest.raises(StanceError, match=r"score.verdict_rule must be one of mass, count, got 'vote'"):
        score_settings({"score": {"verdict_rule": "vote"}})


def test_a_paragraph_blends_with_its_strongest_sentence(scorer):
    """A plain opening sentence and one that takes a side: the paragraph reads with the second."""
    from pipeline.encoder.sentence_rule import split_sentences
    from pipeline.model.features import document_context

    paragraph = f"{NONE[0]} {FAVOR[1]}"
    document = Document("d", [paragraph, NONE[1]])
    scorer.sentence_weight = 0.0
    alone = score_documents([document], scorer)[0]["paragraphs"]
    scorer.sentence_weight = 0.5
    blended = score_documents([document], scorer)[0]["paragraphs"]
    assert blended[1]["probabilities"] == alone[1]["probabilities"]  # one sentence: scored whole
    X = scorer.embed(document.paragraphs)
    context = document_context(X, np.zeros(2, dtype=int))
    sentences = split_sentences(paragraph)
    assert sentences == [NONE[0], FAVOR[1]]
    per_sentence = scorer.classify(sentences, scorer.embed(sentences), context[[0, 0]])
    strongest = per_sentence[per_sentence[:, LABELS.index("none")].argmin()]
    assert strongest[LABELS.index("favor")] > strongest[LABELS.index("none")]
    expected = 0.5 * np.array([alone[0]["probabilities"][label] for label in LABELS]) + 0.5 * strongest
    assert [blended[0]["probabilities"][label] for label in LABELS] == pytest.approx(expected, abs=1e-4)
    assert blended[0]["probabilities"]["favor"] > alone[0]["probabilities"]["favor"]
    assert blended[0]["strongest_sentence"]["text"] == FAVOR[1] and blended[0]["strongest_sentence"]["label"] == "favor"
    assert "strongest_sentence" not in blended[1] and "strongest_sentence" not in alone[0]
    assert scorer.probabilities(document.paragraphs)[0] == pytest.approx(expected, abs=1e-4)


def test_with_sentence_mean_vectors_each_sentence_is_encoded_once(scorer):
    """`embedding.paragraph_vector: sentence_mean`: the strongest-sentence reading costs no second pass."""
    from pipeline.encoder.paragraph_vectors import SentenceMeanEmbedder

    document = Document("d", [f"{NONE[0]} {FAVOR[1]}", f"{AGAINST[0]} {NONE[1]} {FAVOR[2]}", NONE[2]])
    scorer.sentence_weight = 0.5
    score_documents([document], scorer)
    whole = sum(scorer.embedder.calls)
    assert whole == 3 + 5  # the paragraphs, then their sentences
    inner = type(scorer.embedder)()
    scorer.embedder = SentenceMeanEmbedder(inner)
    result = score_documents([document], scorer)[0]
    assert sum(inner.calls) == 5 + 1  # the sentences and the one-sentence paragraph, once each
    assert result["paragraphs"][0]["strongest_sentence"]["text"] == FAVOR[1]
