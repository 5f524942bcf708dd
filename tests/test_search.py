import numpy as np
import pytest

from pipeline.model import train
from pipeline.model.features import model_inputs
from pipeline.model.search import ProblemError, grouped_search, grouped_searches, shares_features


def _data(seed: int = 4, n: int = 60):
    rng = np.random.default_rng(seed)
    y = np.array(["favor", "against", "none"] * (n // 3))
    words = {"favor": "cooperate jointly", "against": "sanctions pressure", "none": "weather report"}
    texts = [f"{words[label] if rng.random() < 0.6 else 'mixed signals'} paragraph {i % 7}"
             for i, label in enumerate(y)]
    X = model_inputs(texts, rng.normal(size=(n, 5)) + (y == "favor")[:, None] * 0.8)
    groups = np.array([f"d{i % 12}" for i in range(n)])
    return X, y, groups


def test_same_choice_scores_model_and_decisions_as_gridsearchcv():
    from sklearn.model_selection import GridSearchCV, cross_val_predict

    X, y, groups = _data()
    folds = train.grouped_folds(y, groups, 4, seed=2)
    pipeline = train.build_classifier("logistic_regression", {"class_weight": "balanced"}, 0, "text+embedding")
    grid = {"classifier__C": [0.01, 0.3, 1.0, 30.0]}
    scoring = train.scorer("f_avg")
    found = grouped_search(pipeline, grid, X, y, folds, scoring, decisions=True)
    reference = GridSearchCV(pipeline, grid, scoring=scoring, cv=folds, refit=True).fit(X, y)
    assert found.best_params == reference.best_params_
    assert found.best_score == reference.best_score_
    assert found.mean_scores == list(reference.cv_results_["mean_test_score"])
    assert np.array_equal(found.best_estimator.predict_proba(X), reference.best_estimator_.predict_proba(X))
    expected = cross_val_predict(reference.best_estimator_, X, y, cv=folds, method="decision_function")
    assert np.array_equal(found.decisions, expected)


def test_ties_go_to_the_first_candidate_like_gridsearchcv():
    X, y, groups = _data()
    folds = train.grouped_folds(y, groups, 3, seed=0)
    pipeline = train.build_classifier("logistic_regression", {}, 0)
    grid = {"classifier__max_iter": [6000, 5000]}  # both converge to the same model: an exact tie
    found = grouped_search(pipeline, grid, X, y, folds, "accuracy")
    assert found.mean_scores[0] == found.mean_scores[1]
    assert found.best_params == {"classifier__max_iter": 6000} and found.decisions is None


def test_a_grid_over_the_features_is_refused():
    X, y, groups = _data()
    assert not shares_features({"features__embedding_weight": [1.0]}) and shares_features({})
    with pytest.raises(ValueError, match="grid keys must all start with 'classifier__'"):
        grouped_search(train.build_classifier("knn", {}, 0), {"features__x": [1]}, X, y, [], "accuracy")


def test_fit_classifier_searches_feature_grids_with_gridsearchcv():
    X, y, groups = _data()
    params = {"classifier": "logistic_regression", "features": "text+embedding", "cv_folds": 3,
              "grid": {"C": [1.0], "features__transformer_weights": [{"words": 1.0, "embedding": 0.1},
                                                                     {"words": 1.0, "embedding": 2.0}]}}
    estimator, summary = train.fit_classifier(X, y, groups, params, 0)
    assert len(summary["candidates"]) == 2 and "features__transformer_weights" in summary["best_params"]
    assert estimator.predict(X).shape == y.shape


def test_decisions_are_left_out_when_a_training_part_lacks_a_class():
    X, y, groups = _data()
    y = np.where(groups == "d0", "against", np.where(y == "against", "none", y))  # against: in d0 only
    only, rest = np.flatnonzero(groups == "d0"), np.flatnonzero(groups != "d0")
    folds = [(rest, only), (np.arange(len(y)), rest[:5])]  # the first training part has no "against"
    pipeline = train.build_classifier("logistic_regression", {}, 0)
    found = grouped_search(pipeline, {"classifier__C": [1.0]}, X, y, folds, "accuracy", decisions=True)
    assert found.decisions is None
    assert grouped_search(pipeline, {"classifier__C": [1.0]}, X, y, folds[1:], "accuracy",
                          decisions=True).decisions.shape == (len(y), 3)


def test_several_problems_at_once_give_what_each_gives_alone():
    X, y, groups = _data()
    other_X, other_y, other_groups = _data(seed=9, n=45)
    pipeline = train.build_classifier("logistic_regression", {"class_weight": "balanced"}, 0, "text+embedding")
    grid = {"classifier__C": [0.1, 3.0]}
    problems = [(X, y, train.grouped_folds(y, groups, 3, seed=1)),
                (other_X, other_y, train.grouped_folds(other_y, other_groups, 4, seed=1))]
    together = grouped_searches(pipeline, grid, problems, "accuracy", n_jobs=2, decisions=True)
    for (data, labels, folds), found in zip(problems, together):
        alone = grouped_search(pipeline, grid, data, labels, folds, "accuracy", decisions=True)
        assert found.mean_scores == alone.mean_scores and found.best_params == alone.best_params
        assert np.array_equal(found.decisions, alone.decisions)
        assert np.array_equal(found.best_estimator.predict_proba(data), alone.best_estimator.predict_proba(data))


def test_an_error_names_the_problem_it_came_from():
    X, y, groups = _data()
    folds = train.grouped_folds(y, groups, 3, seed=1)
    pipeline = train.build_classifier("logistic_regression", {}, 0)
    only_favor = np.full(len(y), "favor")  # logistic regression refuses a single class
    with pytest.raises(ProblemError, match="at least 2 classes") as raised:
        grouped_searches(pipeline, {"classifier__C": [1.0]}, [(X, y, folds), (X, only_favor, folds)], "accuracy")
    assert raised.value.problem == 1


def test_folds_with_the_same_training_rows_are_fitted_once_and_cached_fits_change_nothing(tmp_path, monkeypatch):
    from pipeline.model import search

    X, y, groups = _data()
    pipeline = train.build_classifier("logistic_regression", {"class_weight": "balanced"}, 0, "text+embedding")
    grid = {"classifier__C": [0.3, 3.0]}
    half = np.arange(30)
    # Two problems on the same rows with the same folds: each fold's training rows are fitted once.
    problems = [(X, y, train.grouped_folds(y, groups, 3, seed=1))] * 2
    fits = []
    real_fit = search._fit
    monkeypatch.setattr(search, "_fit", lambda *args: fits.append(1) or real_fit(*args))
    fresh = grouped_searches(pipeline, grid, problems, "accuracy", decisions=True)
    assert len(fits) == 3 + 1  # three folds, then one refit for both problems
    fits.clear()
    cached = tmp_path / "fits"
    first = grouped_searches(pipeline, grid, problems, "accuracy", decisions=True, cache_dir=str(cached))
    assert len(fits) == 4 and len(list(cached.glob("*/*.pkl"))) == 4  # 3 folds + 1 refit key
    fits.clear()
    again = grouped_searches(pipeline, grid, problems, "accuracy", decisions=True, cache_dir=str(cached))
    assert fits == []  # everything came from the cache
    for one, two, three in zip(fresh, first, again):
        assert one.mean_scores == two.mean_scores == three.mean_scores and one.best_params == three.best_params
        assert np.array_equal(one.decisions, three.decisions)
        assert np.array_equal(one.best_estimator.predict_proba(X), three.best_estimator.predict_proba(X))
    other = grouped_search(pipeline, grid, X.iloc[half], y[half],
                           train.grouped_folds(y[half], groups[half], 3, seed=1), "accuracy", cache_dir=str(cached))
    assert other.best_estimator.predict(X).shape == y.shape  # other rows: other keys, fitted afresh


def test_a_lone_candidate_can_skip_its_folds():
    X, y, groups = _data()
    pipeline = train.build_classifier("logistic_regression", {}, 0)
    folds = train.grouped_folds(y, groups, 3, seed=1)
    skipped = grouped_search(pipeline, {"classifier__C": [1.0]}, X, y, folds, "accuracy", score_lone_candidate=False)
    scored = grouped_search(pipeline, {"classifier__C": [1.0]}, X, y, folds, "accuracy")
    assert np.isnan(skipped.best_score) and not np.isnan(scored.best_score)
    assert np.array_equal(skipped.best_estimator.predict_proba(X), scored.best_estimator.predict_proba(X))
