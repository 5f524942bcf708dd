"""pipeline.model.features: the classifier's input table and the numpy copy of its TF-IDF step."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.model import features, train
from pipeline.model.model_store import LinearModel, linear_payload, linear_model

TEXTS = ["Beijing and Washington worked together on the sanctions.",
         "China will never do more; Beijing does not hold the key.",
         "The delegation arrived in Seoul on Tuesday.",
         "Café owners in Dandong say trade with the North has dried up.",
         "Sanctions work only when Beijing and Washington enforce them together.",
         "Washington says China must do more to stop the smuggling.",
         "The talks resumed in Beijing after a long pause.",
         "Joint pressure from China and the United States brought Pyongyang back to the table."]
Y = np.array(["favor", "against", "none", "none", "favor", "against", "none", "favor"])


def test_analyze_gives_lowercased_accent_free_unigrams_and_bigrams():
    assert features.analyze("Café in Dandong, a") == ["cafe", "in", "dandong", "cafe in", "in dandong"]
    assert features.analyze("") == []


@given(st.text(max_size=60))
def test_analyze_skips_accent_folding_only_where_it_changes_nothing(text):
    import re
    import unicodedata

    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    tokens = re.findall(r"(?u)\b\w\w+\b", folded)
    assert features.analyze(text) == tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def test_model_inputs_holds_text_and_embedding_columns():
    X = np.arange(6, dtype=float).reshape(3, 2)
    table = features.model_inputs(["a", "b", "c"], X)
    assert list(table.columns) == ["text", "e0", "e1"]
    assert table["text"].dtype == object and table.columns.dtype == object  # not Arrow strings: slow to iterate
    assert np.array_equal(features.embedding_part(table), X)
    assert features.take(table, [2, 0])["text"].tolist() == ["c", "a"]
    with pytest.raises(ValueError, match="3 texts but embeddings of shape"):
        features.model_inputs(["a", "b", "c"], np.zeros((2, 2)))


def test_document_context_is_the_unit_mean_embedding_of_each_document():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [0.0, 0.0]])
    context = features.document_context(X, ["a", "a", "b", "c"])
    half = np.sqrt(0.5)
    assert np.allclose(context, [[half, half], [half, half], [0.6, 0.8], [0.0, 0.0]])  # an all-zero document stays zero
    order = [3, 1, 2, 0]  # the rows' order does not matter, only which document each belongs to
    assert np.allclose(features.document_context(X[order], np.array(["a", "a", "b", "c"])[order]), context[order])
    table = features.model_inputs(["w", "x", "y", "z"], X, context)
    assert list(table.columns) == ["text", "e0", "e1", "c0", "c1"]
    assert np.array_equal(features.embedding_part(table), X)
    assert np.array_equal(features.context_part(table), context)
    assert features.context_part(features.model_inputs(["w", "x", "y", "z"], X)) is None
    with pytest.raises(ValueError, match="but context of shape"):
        features.model_inputs(["w", "x", "y", "z"], X, context[:2])
    with pytest.raises(ValueError, match="3 document names but embeddings"):
        features.document_context(X, ["a", "a", "b"])


def test_the_document_context_changes_the_prediction_only_for_a_model_that_reads_it():
    # Identical paragraphs, told apart only by the documents they sit in.
    X = np.tile([[1.0, 0.0, 0.0]], (len(TEXTS), 1))
    context = np.array([[0.0, 1.0, 0.0] if label == "favor" else [0.0, 0.0, 1.0] for label in Y])
    texts = ["the same words"] * len(TEXTS)
    inputs = features.model_inputs(texts, X, context)
    reads = train.build_classifier("logistic_regression", {"C": 100.0}, 0, "text+embedding",
                                   {"min_df": 1, "context_weight": 1.0}).fit(inputs, Y)
    assert (reads.predict(inputs) == "favor").tolist() == (Y == "favor").tolist()
    ignores = train.build_classifier("logistic_regression", {"C": 100.0}, 0, "text+embedding",
                                     {"min_df": 1, "context_weight": 0}).fit(inputs, Y)
    assert len(set(ignores.predict(inputs).tolist())) == 1


def test_context_model_is_reproduced_without_sklearn():
    rng = np.random.default_rng(1)
    X, context = rng.normal(size=(len(TEXTS), 5)), rng.normal(size=(len(TEXTS), 5))
    model = train.build_classifier("logistic_regression", {"C": 10.0}, 0, "text+embedding",
                                   {"embedding_weight": 0.5, "min_df": 1, "context_weight": 0.25}
                                   ).fit(features.model_inputs(TEXTS, X, context), Y)
    payload = linear_payload(model, "0" * 64)
    assert payload is not None and payload["words"]["context_weight"] == 0.25
    fast = linear_model({"linear": payload, "model_sha256": "0" * 64})
    new = ["Beijing and Washington must enforce the sanctions together.", "Nothing known here."]
    Z, C = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    expected = model.predict_proba(features.model_inputs(new, Z, C))
    assert np.allclose(fast.probabilities(new, Z, C), expected, atol=1e-9)
    assert np.allclose(fast.predict_proba(features.model_inputs(new, Z, C)), expected, atol=1e-9)
    assert not np.allclose(fast.probabilities(new, Z, -C), expected, atol=1e-3)  # the context counts
    with pytest.raises(ValueError, match="reads the document context"):
        fast.probabilities(new, Z)


def _fitted_tfidf(texts):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=features.analyze, min_df=1, sublinear_tf=True).fit(texts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abc déÉ.,\n", max_size=40), min_size=1, max_size=6))
def test_tfidf_entries_equal_sklearn(texts):
    vectorizer = _fitted_tfidf(TEXTS)
    expected = vectorizer.transform(texts).toarray()
    rows, columns, values = features.tfidf_entries(texts, vectorizer.vocabulary_, vectorizer.idf_)
    got = np.zeros_like(expected)
    got[rows, columns] = values
    assert np.allclose(got, expected, atol=1e-12)


def test_hybrid_pipeline_is_reproduced_without_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(TEXTS), 5))
    inputs = features.model_inputs(TEXTS, X)
    model = train.build_classifier("logistic_regression", {"C": 10.0}, 0, "text+embedding",
                                   {"embedding_weight": 0.5, "min_df": 1}).fit(inputs, Y)
    payload = linear_payload(model, "0" * 64)
    assert payload is not None and payload["words"]["embedding_weight"] == 0.5
    fast = linear_model({"linear": payload, "model_sha256": "0" * 64})
    new = ["Beijing and Washington must enforce the sanctions together.", "Nothing known here."]
    Z = rng.normal(size=(2, 5))
    assert isinstance(fast, LinearModel)
    assert np.allclose(fast.probabilities(new, Z), model.predict_proba(features.model_inputs(new, Z)), atol=1e-9)
    assert np.allclose(fast.predict_proba(features.model_inputs(new, Z)),
                       model.predict_proba(features.model_inputs(new, Z)), atol=1e-9)
    with pytest.raises(ValueError, match="reads paragraph texts"):
        fast.predict_proba(Z)
    with pytest.raises(ValueError, match="embeddings of width 4 do not fit this model"):
        fast.probabilities(new, Z[:, :4])


def test_words_change_the_prediction_only_for_a_model_that_reads_them():
    X = np.zeros((len(TEXTS), 3))  # embeddings carry nothing: only the words can separate the labels
    inputs = features.model_inputs(TEXTS, X)
    hybrid = train.build_classifier("logistic_regression", {"C": 100.0}, 0, "text+embedding",
                                    {"min_df": 1}).fit(inputs, Y)
    assert (hybrid.predict(inputs) == Y).mean() > 0.8
    plain = train.build_classifier("logistic_regression", {"C": 100.0}, 0).fit(inputs, Y)
    assert len(set(plain.predict(inputs).tolist())) == 1
