import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StanceError
from pipeline.model import train
from pipeline.model.model_store import load_model


def test_grouped_folds_never_split_a_document():
    y = np.array(["favor", "against", "none"] * 8)
    groups = np.repeat([f"d{i}" for i in range(8)], 3)
    for train_idx, test_idx in train.grouped_folds(y, groups, 4, seed=1):
        assert not set(groups[train_idx]) & set(groups[test_idx])


@pytest.mark.parametrize("y, groups, message", [
    (["favor", "against"] * 3, ["d"] * 6, "at least 2 documents, got 1"),
    (["favor", "against"] * 3, ["a", "b", "a", "b", "a", "b"], "only 2 labelled documents for 3 folds"),
    (["favor"] * 8 + ["against"], [f"d{i}" for i in range(9)], "label 'against' has 1 paragraphs"),
])
def test_impossible_folds_are_clear_errors(y, groups, message):
    with pytest.raises(StanceError, match=message):
        train.grouped_folds(np.array(y), np.array(groups), 3, seed=0)


def test_build_classifier_from_params():
    est = train.build_classifier("logistic_regression", {"class_weight": "balanced", "C": 2.0}, seed=3)
    assert est.get_params()["classifier__C"] == 2.0 and est.get_params()["classifier__random_state"] == 3
    hybrid = train.build_classifier("logistic_regression", {}, 0, "text+embedding", {"embedding_weight": 0.25})
    assert hybrid.named_steps["features"].transformer_weights["embedding"] == 0.25
    with pytest.raises(StanceError, match="unknown train.features 'words'"):
        train.build_classifier("logistic_regression", {}, 0, "words")
    with pytest.raises(StanceError, match="unknown train.feature_params ngrams"):
        train.build_classifier("logistic_regression", {}, 0, "text+embedding", {"ngrams": 3})
    with pytest.raises(StanceError, match="unknown classifier 'nope'"):
        train.build_classifier("nope", {}, 0)
    with pytest.raises(StanceError, match="bad parameters for logistic_regression"):
        train.build_classifier("logistic_regression", {"no_such": 1}, 0)


def test_f_avg_is_mean_of_favor_and_against_f1():
    y = ["favor", "favor", "against", "none"]
    assert train.f_avg(y, ["favor", "none", "against", "none"]) == pytest.approx((2 / 3 + 1) / 2)
    assert train.f_avg(["none"], ["none"]) == 0.0  # neither stance present nor predicted
    with pytest.raises(ValueError, match="two label lists of one length"):
        train.f_avg(y, y[:3])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["favor", "against", "none"]), st.sampled_from(["favor", "against", "none"])),
                min_size=1, max_size=40))
def test_f_avg_equals_sklearn(pairs):
    from sklearn.metrics import f1_score

    y_true, y_pred = (list(side) for side in zip(*pairs))
    expected = f1_score(y_true, y_pred, labels=["favor", "against"], average="macro", zero_division=0)
    assert train.f_avg(y_true, y_pred) == pytest.approx(expected, rel=0, abs=1e-15)


def test_run_saves_model_and_metadata(trained_project):
    paths = trained_project["paths"]
    meta = json.loads(Path(paths["model_meta"]).read_text())
    assert meta["labels"] == ["favor", "against", "none"]
    assert meta["embedding_model"] == "fake-bow@1/fp32"
    assert meta["training_data"]["paragraphs"] == 24 and meta["training_data"]["documents"] == 8
    assert meta["cv"]["folds"] == 3 and 0 <= meta["cv"]["best_score"] <= 1
    assert {"scikit-learn", "numpy", "python"} <= set(meta["versions"])
    estimator, loaded_meta = load_model(paths["model"], paths["model_meta"])
    assert loaded_meta["model_sha256"] == meta["model_sha256"]
    assert list(estimator.classes_) == sorted(meta["labels"])


def test_training_is_deterministic(trained_project):
    paths = trained_project["paths"]
    first = json.loads(Path(paths["model_meta"]).read_text())
    train.run(trained_project)
    second = json.loads(Path(paths["model_meta"]).read_text())
    assert first["cv"] == second["cv"] and first["training_data"] == second["training_data"]


def test_tampered_model_is_refused_before_unpickling(trained_project):
    paths = trained_project["paths"]
    with open(paths["model"], "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(StanceError, match="does not match .*refusing to load"):
        load_model(paths["model"], paths["model_meta"])


def test_missing_model_says_run_dvc_repro(project):
    with pytest.raises(StanceError, match="run `dvc repro` first"):
        load_model(project["paths"]["model"], project["paths"]["model_meta"])


def test_temperature_is_recovered_and_changes_no_prediction():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(4000, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = np.array(["against", "favor", "none"])
    y = np.array([rng.choice(classes, p=p) for p in probs])
    # scores twice as sharp as the truth: the fitted temperature must undo it
    assert train.fit_temperature(2.0 * logits, y, classes) == pytest.approx(2.0, rel=0.1)


def test_temperature_calibration_scales_a_linear_model_only(tmp_path):
    from pipeline.model.features import model_inputs

    rng = np.random.default_rng(2)
    y = np.array(["favor", "against", "none"] * 20)
    X = model_inputs(["text"] * len(y), rng.normal(size=(len(y), 4)) + (y == "favor")[:, None] * 2.0)
    groups = np.array([f"d{i % 10}" for i in range(len(y))])
    params = {"classifier": "logistic_regression", "grid": {"C": [1.0]}, "cv_folds": 3}
    plain, _ = train.fit_classifier(X, y, groups, {**params, "calibration": "none"}, 0)
    scaled, summary = train.fit_classifier(X, y, groups, {**params, "calibration": "temperature"}, 0)
    assert summary["temperature"] > 0
    assert (plain.predict(X) == scaled.predict(X)).all()
    assert not np.allclose(plain.predict_proba(X), scaled.predict_proba(X))
    with pytest.raises(StanceError, match="temperature needs a multinomial linear classifier"):
        train.fit_classifier(X, y, groups, {"classifier": "knn", "grid": {}, "cv_folds": 3,
                                            "calibration": "temperature"}, 0)


def test_parallel_grid_search_gives_the_same_model():
    from pipeline.model.features import model_inputs

    rng = np.random.default_rng(3)
    y = np.array(["favor", "against", "none"] * 20)
    texts = [f"{label} paragraph number {i} about sanctions" for i, label in enumerate(y)]
    X = model_inputs(texts, rng.normal(size=(len(y), 4)) + (y == "favor")[:, None])
    groups = np.array([f"d{i % 10}" for i in range(len(y))])
    params = {"classifier": "logistic_regression", "features": "text+embedding", "grid": {"C": [0.1, 1.0, 10.0]},
              "cv_folds": 3, "calibration": "temperature"}
    one, one_summary = train.fit_classifier(X, y, groups, params, 0)
    two, two_summary = train.fit_classifier(X, y, groups, {**params, "n_jobs": 2}, 0)
    assert one_summary == two_summary
    assert np.array_equal(one.predict_proba(X), two.predict_proba(X))
    assert pickle.dumps(one) == pickle.dumps(two)  # the saved model file too, byte for byte


@pytest.mark.parametrize("value", [0, 1.5, "all", True])
def test_n_jobs_must_be_a_whole_number_other_than_zero(value):
    with pytest.raises(StanceError, match=r"train.n_jobs must be a whole number other than 0 .*got"):
        train.n_jobs({"n_jobs": value})
    assert train.n_jobs({}) is None and train.n_jobs({"n_jobs": -1}) == -1


def test_folds_are_stable_as_documents_are_added_once_the_corpus_is_large():
    rng = np.random.default_rng(0)
    names = [f"doc-{d}" for d in range(60)]
    groups = np.repeat(names, 3)
    y = np.tile(["favor", "against", "none"], 60)
    before = train.grouped_folds(y, groups, 5, seed=7)
    grown_groups = np.concatenate([groups, ["new-doc"] * 3])
    after = train.grouped_folds(np.concatenate([y, ["favor", "none", "against"]]), grown_groups, 5, seed=7)
    held_out = lambda folds, g: [sorted(set(g[test].tolist())) for _, test in folds]
    changed = [(a, b) for a, b in zip(held_out(before, groups), held_out(after, grown_groups)) if a != b]
    assert changed and all(set(b) - set(a) == {"new-doc"} for a, b in changed) and len(changed) == 1
    shuffled = rng.permutation(len(y))  # the fold of a document does not depend on row order either
    moved = train.grouped_folds(y[shuffled], groups[shuffled], 5, seed=7)
    assert held_out(moved, groups[shuffled]) == held_out(before, groups)


def test_a_small_corpus_gets_stratified_folds():
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.tile(["favor", "against", "none"], 12)
    groups = np.repeat([f"d{i}" for i in range(12)], 3)
    expected = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=1).split(np.zeros(36), y, groups)
    for (train_idx, test_idx), (want_train, want_test) in zip(train.grouped_folds(y, groups, 3, seed=1), expected):
        assert np.array_equal(train_idx, want_train) and np.array_equal(test_idx, want_test)


def test_labelled_paragraphs_prepared_but_not_embedded_say_run_the_embed_stage(project, fake_embedder):
    from pipeline.corpus import prepare
    from pipeline.corpus.prepare import paragraph_id
    from pipeline.encoder import embed

    prepare.run(project)
    embed.run(project, embedder=fake_embedder)
    added = "A new labelled paragraph about the joint task force, added after the embed stage ran."
    Path(project["paths"]["raw_dir"], "doc-new.txt").write_text(f"New headline\n\n{added}\n", encoding="utf-8")
    with open(project["paths"]["sources"], "a", encoding="utf-8") as sources:
        sources.write("doc-new,New headline,Jane Reporter,Test,2020-01-01,2020,authored,op-ed,test\n")
    with open(Path(project["paths"]["labels_dir"]) / "primary.csv", "a", encoding="utf-8") as labels:
        labels.write(f"{paragraph_id(added)},favor,primary,\n")
    prepare.run(project)
    with pytest.raises(StanceError, match=r"primary\.csv:26: paragraph p[0-9a-f]{16} is not in .*paragraphs\.parquet "
                                          r"\(1 labelled paragraphs are not\); run `dvc repro`"):
        train.training_set(project)
