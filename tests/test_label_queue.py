"""`stance label`'s queue: unlabelled first by uncertainty, then disagreements, then the rest;
guesses never from a model that trained on the paragraph."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline import LABELS
from pipeline.corpus import prepare
from pipeline.errors import StanceError
from pipeline.labelling.label_queue import (MODEL, OUT_OF_FOLD, Guesses, load_guesses, model_guesses,
                                            model_probabilities, order_paragraphs, predictions_path, session_queue,
                                            uncertainty)

NEW_DOC = ["Washington and Beijing will coordinate sanctions closely, and the joint talks look promising.",
           "Beijing keeps stalling on enforcement, so working with China on Korea is a waste of time.",
           "The ministers met in a hotel ballroom for three hours and then the delegation flew home."]


def write_labels(params: dict, annotator: str, labels: dict[str, str]) -> None:
    lines = ["paragraph_id,label,annotator,note"] + [f"{pid},{label},{annotator}," for pid, label in labels.items()]
    (Path(params["paths"]["labels_dir"]) / f"{annotator}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_document(params: dict, slug: str = "doc-new") -> list[dict]:
    """A new, unlabelled document in the corpus (after training); returns all paragraph records."""
    raw = Path(params["paths"]["raw_dir"])
    (raw / f"{slug}.txt").write_text("A new headline\n\n" + "\n\n".join(NEW_DOC) + "\n", encoding="utf-8")
    with open(params["paths"]["sources"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows.append({**rows[-1], "slug": slug, "title": "A new headline"})
    with open(params["paths"]["sources"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [p.to_record() for p in prepare.run(params)]


def write_predictions(params: dict, records: list[dict]) -> dict[str, np.ndarray]:
    """A predictions.csv as the evaluate stage writes it, with made-up out-of-fold probabilities."""
    rng = np.random.default_rng(3)
    probabilities = {r["id"]: rng.dirichlet([1, 1, 1]) for r in records}
    path = predictions_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "doc", "kind", "label", "predicted", *[f"p_{label}" for label in LABELS]])
        for r in records:
            p = probabilities[r["id"]]
            writer.writerow([r["id"], r["doc"], "authored", "none", LABELS[int(p.argmax())], *[f"{x:.6f}" for x in p]])
    return {pid: np.round(p, 6) for pid, p in probabilities.items()}


# --- the order -----------------------------------------------------------------------------------

def test_margin_and_entropy_put_the_least_sure_first():
    probabilities = {"sure": np.array([0.9, 0.05, 0.05]), "torn": np.array([0.45, 0.40, 0.15]),
                     "flat": np.array([0.34, 0.33, 0.33]), "lean": np.array([0.6, 0.3, 0.1])}
    ids = ["sure", "torn", "flat", "lean", "unseen"]
    margin = order_paragraphs(ids, probabilities, "margin", seed=1)
    assert margin[:4] == ["flat", "torn", "lean", "sure"] and margin[4] == "unseen"
    assert order_paragraphs(ids, probabilities, "entropy", seed=1)[:4] == ["flat", "torn", "lean", "sure"]
    assert uncertainty(np.array([[0.5, 0.5, 0.0]]), "margin")[0] == pytest.approx(1.0)


def test_random_order_is_seeded_and_nobody_labelled_comes_first():
    ids = [f"p{i}" for i in range(30)]
    first = order_paragraphs(ids, {}, "random", seed=7)
    assert first == order_paragraphs(ids, {}, "random", seed=7)
    assert first != order_paragraphs(ids, {}, "random", seed=8) and sorted(first) == sorted(ids)
    assert order_paragraphs(ids, {}, "document", seed=7) == ids
    elsewhere = {"p0", "p1", "p2"}
    ordered = order_paragraphs(ids, {}, "random", seed=7, labelled_elsewhere=elsewhere, disputed={"p9"})
    assert set(ordered[-3:]) == elsewhere and ordered[-4] == "p9"
    with pytest.raises(StanceError, match="unknown --order 'best'"):
        order_paragraphs(ids, {}, "best", seed=7)


def test_tiers_unlabelled_then_disagreements_then_others_each_by_uncertainty():
    p = {"u-sure": [0.9, 0.05, 0.05], "u-torn": [0.4, 0.4, 0.2], "d-sure": [0.8, 0.1, 0.1],
         "d-torn": [0.35, 0.35, 0.3], "o-torn": [0.34, 0.33, 0.33], "o-sure": [0.98, 0.01, 0.01]}
    probabilities = {pid: np.array(v) for pid, v in p.items()}
    ids = ["o-sure", "d-sure", "u-sure", "o-torn", "d-torn", "u-torn", "u-none"]
    ordered = order_paragraphs(ids, probabilities, "margin", 0, labelled_elsewhere={"o-sure", "o-torn", "d-sure", "d-torn"},
                               disputed={"d-sure", "d-torn"})
    # the least sure of all (o-torn) waits until everything nobody labelled and every disagreement is done
    assert ordered == ["u-torn", "u-sure", "u-none", "d-torn", "d-sure", "o-torn", "o-sure"]


def test_session_queue_reads_disagreements_and_the_adjudicator_from_label_files(project):
    records = [p.to_record() for p in prepare.run(project)]
    ids = [r["id"] for r in records]
    primary = {r["id"]: label for r, label in zip(records, ["favor", "against", "none"] * 8)}
    write_labels(project, "primary", {pid: primary[pid] for pid in ids[:18]})   # docs 6 and 7: nobody
    write_labels(project, "second", {ids[0]: "none", ids[1]: "against", ids[2]: "favor", ids[3]: "none"})
    write_labels(project, "adjudicator", {ids[2]: "none"})                       # ids[2] is settled
    probabilities = {pid: np.array([0.34 + 0.01 * (k % 5), 0.33, 0.33 - 0.01 * (k % 5)]) for k, pid in enumerate(ids)}
    queue, name = session_queue(project, records, "third", "margin", Guesses(probabilities))
    nobody = order_paragraphs(ids[18:], probabilities, "margin", 0)
    assert name == "margin" and queue[:6] == nobody
    assert set(queue[6:8]) == {ids[0], ids[3]}                                  # unsettled disagreements
    assert set(queue[8:]) == set(ids[:18]) - {ids[0], ids[3]}
    project["labels"]["priority"] = ["adjudicator-jo", "primary"]                 # another adjudicator's name
    write_labels(project, "adjudicator-jo", {ids[0]: "favor"})
    queue, _ = session_queue(project, records, "third", "margin", Guesses(probabilities))
    assert set(queue[6:8]) == {ids[2], ids[3]}  # "adjudicator" is now an ordinary annotator
    _, name = session_queue(project, records, "third", "margin", Guesses())
    assert name == "random (no guesses for margin)"


# --- the guesses ---------------------------------------------------------------------------------

def test_labelled_paragraphs_get_out_of_fold_guesses_and_new_ones_the_model(trained_project, fake_embedder):
    labelled = [p.to_record() for p in prepare.run(trained_project)]
    records = add_document(trained_project)
    new = [r for r in records if r["doc"] == "doc-new"]
    assert len(new) == 3 and len(records) == len(labelled) + 3
    oof = write_predictions(trained_project, labelled)
    guesses = load_guesses(trained_project, records, embedder=fake_embedder)
    assert set(guesses.probabilities) == {r["id"] for r in records}
    for r in labelled:
        assert guesses.sources[r["id"]] == OUT_OF_FOLD and np.allclose(guesses.probabilities[r["id"]], oof[r["id"]])
    in_sample, _ = model_probabilities(trained_project, records, embedder=fake_embedder)
    for r in new:
        assert guesses.sources[r["id"]] == MODEL and np.allclose(guesses.probabilities[r["id"]], in_sample[r["id"]])
    assert "out-of-fold guesses for 24 of 24 labelled paragraphs" in guesses.status
    assert "model guesses for 3 unlabelled paragraphs" in guesses.status


def test_no_in_sample_guess_without_predictions_csv(trained_project, fake_embedder):
    labelled = [p.to_record() for p in prepare.run(trained_project)]
    records = add_document(trained_project)
    guesses = load_guesses(trained_project, records, embedder=fake_embedder)
    assert set(guesses.probabilities) == {r["id"] for r in records if r["doc"] == "doc-new"}
    assert set(guesses.sources.values()) == {MODEL}
    assert "out-of-fold guesses for 0 of 24 labelled paragraphs" in guesses.status
    assert "predictions.csv is missing" in guesses.status
    # the compatible (probabilities, status) form gives the same, and nothing for the labelled ones
    probabilities, status = model_guesses(trained_project, labelled, embed=False)
    assert probabilities == {} and "predictions.csv is missing" in status
    # an unreadable predictions.csv is no guess either, and no error
    predictions_path(trained_project).parent.mkdir(parents=True, exist_ok=True)
    predictions_path(trained_project).write_text("id,doc\nx,y\n", encoding="utf-8")
    probabilities, status = model_guesses(trained_project, labelled, embed=False)
    assert probabilities == {} and "missing columns p_favor, p_against, p_none" in status


def test_context_model_probabilities_read_whole_documents(project, fake_embedder):
    """With the document context, a paragraph's guess is the same whichever paragraphs are asked about:
    its context comes from all the paragraphs of its document (the embed stage's output)."""
    from pipeline.encoder import embed
    from pipeline.model import train
    from pipeline.model.features import document_context, model_inputs
    from pipeline.model.model_store import load_model

    project["train"]["feature_params"] = {**project["train"]["feature_params"], "context_weight": 0.5}
    records = [r.to_record() for r in prepare.run(project)]
    embed.run(project, embedder=fake_embedder)
    train.run(project)
    everything, _ = model_probabilities(project, records, embed=False)
    some = records[1::3]  # one paragraph of each document
    assert set(model_probabilities(project, some, embed=False)[0]) == {r["id"] for r in some}
    for record in some:
        assert np.allclose(model_probabilities(project, some, embed=False)[0][record["id"]], everything[record["id"]])
    estimator, _ = load_model(project["paths"]["model"], project["paths"]["model_meta"])
    vectors = fake_embedder.encode([r["text"] for r in records])
    context = document_context(vectors, [r["doc"] for r in records])
    expected = estimator.predict_proba(model_inputs([r["text"] for r in records], vectors, context))
    got = np.array([everything[r["id"]] for r in records])
    assert np.allclose(got[:, [LABELS.index(label) for label in estimator.classes_]], expected, atol=1e-5)


def test_paragraph_unknown_to_embed_stage_is_embedded_only_when_allowed(trained_project, fake_embedder):
    records = [r.to_record() for r in prepare.run(trained_project)]
    new = {"id": "pnew", "doc": "doc-0", "position": 9, "kind": "authored",
           "text": "Washington and Beijing will coordinate sanctions closely."}
    guesses = load_guesses(trained_project, records + [new], embed=False)
    assert guesses.probabilities == {} and "no model guesses" in guesses.status  # labelled ones: no predictions.csv
    guesses = load_guesses(trained_project, records + [new], embedder=fake_embedder)
    assert list(guesses.probabilities) == ["pnew"] and fake_embedder.calls[-1] == 1  # only the new one is encoded
