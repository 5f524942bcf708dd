"""train stage: embeddings + labels -> classifier, selected by grouped cross-validation.

Inputs:  `paths.embeddings` (from embed), `paths.labels_dir`, `paths.paragraphs` (ids for validation).
Outputs: `paths.model` (joblib) and `paths.model_meta` (JSON: labels, embedding model, params,
         training-data hash, CV metrics, library versions, sha256 of the model file).
Params:  `seed`, `train.*`, `labels.priority`.

Hyper-parameters in `train.grid` are chosen by cross-validation grouped by source document
(`grouped_folds`: paragraphs of one article never sit on both sides of a split, and a document's
fold comes from its name, so adding documents moves no other), scored with
`train.selection_metric`; the winner is refitted on all labelled paragraphs.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import Counter
from contextlib import contextmanager

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError

CLASSIFIERS = {
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "svc": "sklearn.svm.SVC",
    "knn": "sklearn.neighbors.KNeighborsClassifier",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "mlp": "sklearn.neural_network.MLPClassifier",
}


def f_avg(y_true, y_pred) -> float:
    """SemEval-2016 stance score: mean of F1(favor) and F1(against) (0 for a label never predicted
    nor present), as sklearn's `f1_score(labels=["favor", "against"], average="macro",
    zero_division=0)` computes it, in plain numpy: the grid searches call it for every candidate
    of every fold, and sklearn's input checks took longer than the count."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"f_avg needs two label lists of one length, got shapes {y_true.shape} and {y_pred.shape}")
    scores = []
    for label in ("favor", "against"):
        truth, guess = y_true == label, y_pred == label
        hits = int(np.count_nonzero(truth & guess))
        denominator = int(np.count_nonzero(truth)) + int(np.count_nonzero(guess))
        scores.append(2 * hits / denominator if denominator else 0.0)
    return float(np.mean(scores))


def scorer(metric: str):
    from sklearn.metrics import make_scorer

    if metric == "f_avg":
        return make_scorer(f_avg)
    return metric  # any sklearn scorer name, e.g. "f1_macro", "accuracy"


FEATURES = ("embedding", "text+embedding")
CALIBRATIONS = ("none", "temperature", "sigmoid", "isotonic")


def build_classifier(name: str, params: dict | None, seed: int, features: str = "embedding",
                     feature_params: dict | None = None):
    """An unfitted sklearn Pipeline: a feature step (see `pipeline.model.features`) then the estimator
    named `name` (registry name or dotted path) with its params and seed, as step `classifier`."""
    from sklearn.pipeline import Pipeline

    from pipeline.model import features as feats

    target = CLASSIFIERS.get(name, name)
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise StanceError(f"params.yaml: unknown classifier {name!r} (known: {', '.join(CLASSIFIERS)})") from None
    params = dict(params or {})
    if "random_state" in cls().get_params():
        params.setdefault("random_state", seed)
    if name == "svc":
        params.setdefault("probability", True)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise StanceError(f"params.yaml: bad parameters for {name}: {exc}") from None
    if features == "embedding":
        step = feats.embedding_features()
    elif features == "text+embedding":
        allowed = {"embedding_weight", "min_df", "context_weight"}
        unknown = sorted(set(feature_params or {}) - allowed)
        if unknown:
            raise StanceError(f"params.yaml: unknown train.feature_params {', '.join(unknown)} "
                              f"(allowed: {', '.join(sorted(allowed))})")
        step = feats.text_and_embedding_features(**(feature_params or {}))
    else:
        raise StanceError(f"params.yaml: unknown train.features {features!r} (expected {' or '.join(FEATURES)})")
    return Pipeline([("features", step), ("classifier", estimator)])


def grid_for_pipeline(grid: dict) -> dict:
    """`train.grid` keys name the classifier's parameters (`C`); sklearn wants `classifier__C`."""
    return {(key if "__" in key else f"classifier__{key}"): list(values) for key, values in (grid or {}).items()}


def _short(key: str) -> str:
    return key.removeprefix("classifier__")


# Documents a fold from which folds are hashed from document names (stable as documents are added):
# with fewer, chance leaves folds too uneven in size and labels (the corpus has over 80 a fold).
STABLE_FROM = 10


def document_folds(groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Each row's fold: its document's name hashed with the seed, so the fold of a document never
    depends on which other documents exist (adding one moves no other)."""
    names = sorted(set(groups.tolist()))
    fold_of = {name: int.from_bytes(hashlib.sha256(f"{seed}\0{name}".encode()).digest()[:8], "big") % n_splits
               for name in names}
    return np.array([fold_of[name] for name in groups.tolist()], dtype=np.int64)


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that keep each document on one side; clear errors when impossible.

    Stable once the corpus is large enough (`STABLE_FROM` documents a fold): a document's fold comes
    from its name (`document_folds`), so a new document adds its paragraphs to one fold and leaves
    every other fold as it was. The train and evaluate stages then refit only the folds it changed
    (`pipeline.model.fit_cache`), and a change in the metrics comes from the new data, not from a
    reshuffle. A smaller corpus, or one that hashing would leave with a fold's training part
    lacking a label, gets StratifiedGroupKFold's folds, which balance labels and sizes better.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise StanceError(f"grouped cross-validation needs labelled paragraphs from at least 2 documents, got {n_groups}")
    if n_splits < 2:
        raise StanceError(f"params.yaml: train.cv_folds must be at least 2, got {n_splits}")
    if n_groups < n_splits:
        raise StanceError(f"only {n_groups} labelled documents for {n_splits} folds: lower train.cv_folds in params.yaml")
    counts = Counter(y.tolist())
    for label, count in sorted(counts.items()):
        docs = len(set(groups[y == label].tolist()))
        if count < n_splits or docs < 2:
            raise StanceError(f"label {label!r} has {count} paragraphs in {docs} documents: too few for "
                              f"{n_splits}-fold grouped cross-validation (label more, or lower train.cv_folds)")
    if n_groups >= STABLE_FROM * n_splits:
        fold = document_folds(groups, n_splits, seed)
        folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_splits)]
        if all(len(test) and set(y[train].tolist()) == set(counts) for train, test in folds):
            return folds
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def n_jobs(train_params: dict) -> int | None:
    """`train.n_jobs`: worker processes for the grid search and calibration folds (joblib's
    convention: -1 = all cores, unset = 1). The fitted model does not depend on it."""
    value = train_params.get("n_jobs")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value == 0):
        raise StanceError(f"params.yaml: train.n_jobs must be a whole number other than 0 (-1 = all cores), "
                          f"got {value!r}")
    return value


def fit_classifier(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train_params: dict, seed: int,
                   cache_dir: str | None = None):
    """Grid search with grouped CV, refit on all rows. Returns (estimator, cv summary).

    With `train.calibration` temperature, the winner's probabilities are temperature-scaled (see
    `apply_temperature`); with sigmoid or isotonic it is wrapped in CalibratedClassifierCV whose
    calibration folds are the same document-grouped folds; none: no recalibration.
    """
    return fit_classifiers([(X, y, groups)], train_params, seed, cache_dir=cache_dir)[0]


@contextmanager
def naming_part(names: list[str] | None, number: int):
    """A StanceError raised inside starts with "inside <names[number]>: " (unchanged without names)."""
    try:
        yield
    except StanceError as exc:
        if names is None:
            raise
        raise StanceError(f"inside {names[number]}: {exc}") from None


def fit_classifiers(parts: list[tuple], train_params: dict, seed: int, names: list[str] | None = None,
                    cache_dir: str | None = None, score_lone_candidate: bool = True) -> list[tuple]:
    """`fit_classifier` on each `(X, y, groups)` part (the outer training parts of a nested
    cross-validation), their grid searches sharing one pool of workers; a part may bring its own
    folds as a fourth element. A part's error starts with "inside <its name>: " when `names` are
    given; sklearn's ValueErrors come as `pipeline.model.search.ProblemError` naming the part. Fits
    are kept in `cache_dir` (`pipeline.model.fit_cache`); `score_lone_candidate` as in
    `pipeline.model.search.grouped_searches`."""
    calibration = str(train_params.get("calibration") or "none").lower()
    if calibration not in CALIBRATIONS:
        raise StanceError(f"params.yaml: unknown train.calibration {calibration!r} "
                          f"(expected {', '.join(CALIBRATIONS)})")
    estimator = build_classifier(train_params.get("classifier", "logistic_regression"),
                                 train_params.get("classifier_params"), seed,
                                 train_params.get("features", "embedding"), train_params.get("feature_params"))
    problems = []
    for number, (X, y, groups, *folds) in enumerate(parts):
        with naming_part(names, number):
            problems.append((X, y, folds[0] if folds else grouped_folds(y, groups, int(train_params.get("cv_folds", 5)),
                                                                        seed)))
    grid = grid_for_pipeline(train_params.get("grid"))
    metric = train_params.get("selection_metric", "f_avg")
    jobs = n_jobs(train_params)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # many small fits: BLAS threads only contend (10x slower on a busy CPU)
        searches = _searches(estimator, grid, problems, scorer(metric), jobs, calibration == "temperature",
                             cache_dir, score_lone_candidate)
    fitted = []
    for number, ((X, y, folds), found) in enumerate(zip(problems, searches)):
        summary = {
            "selection_metric": metric,
            "best_params": {_short(k): _plain(v) for k, v in found.best_params.items()},
            "best_score": round(float(found.best_score), 4),
            "folds": len(folds),
            "candidates": [{"params": {_short(k): _plain(v) for k, v in p.items()}, "mean_score": round(float(s), 4)}
                           for p, s in zip(found.candidates, found.mean_scores)],
            "calibration": calibration,
        }
        try:
            with naming_part(names, number):
                fitted.append((_calibrate(found, calibration, X, y, folds, jobs, summary), summary))
        except ValueError as exc:
            from pipeline.model.search import ProblemError

            raise ProblemError(number, str(exc) or type(exc).__name__) from None
    return fitted


def _calibrate(found, calibration: str, X, y: np.ndarray, folds, jobs: int | None, summary: dict):
    """The search winner recalibrated as `train.calibration` says (the temperature goes in `summary`)."""
    from threadpoolctl import threadpool_limits

    best = found.best_estimator
    if calibration == "none":
        return best
    if calibration == "temperature":
        with threadpool_limits(limits=1):
            summary["temperature"] = round(apply_temperature(best, X, y, folds, jobs, found.decisions), 4)
        return best
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV

    calibrated = CalibratedClassifierCV(clone(best), method=calibration, cv=folds, n_jobs=jobs)
    with threadpool_limits(limits=1):
        calibrated.fit(X, y)
    return calibrated


def _searches(estimator, grid: dict, problems: list[tuple], scoring, jobs: int | None, decisions: bool,
              cache_dir: str | None = None, score_lone_candidate: bool = True) -> list:
    """The grouped grid search of each `(X, y, folds)` problem, as `pipeline.model.search.SearchResult`s.

    Classifier-only grids share each fold's features across candidates and one worker pool across
    problems (`pipeline.model.search`); a grid that also varies the features goes through GridSearchCV
    (no out-of-fold decisions kept).
    """
    from pipeline.model.search import ProblemError, SearchResult, grouped_searches, shares_features

    if shares_features(grid):
        decisions = decisions and hasattr(estimator.named_steps["classifier"], "decision_function")
        return grouped_searches(estimator, grid, problems, scoring, jobs, decisions, cache_dir, score_lone_candidate)
    from sklearn.model_selection import GridSearchCV

    results = []
    for number, (X, y, folds) in enumerate(problems):
        search = GridSearchCV(estimator, grid, scoring=scoring, cv=folds, refit=True, n_jobs=jobs, error_score="raise")
        try:
            search.fit(X, y)
        except ValueError as exc:
            raise ProblemError(number, str(exc) or type(exc).__name__) from None
        results.append(SearchResult(search.best_estimator_, search.best_params_, search.best_score_,
                                    list(search.cv_results_["params"]), list(search.cv_results_["mean_test_score"])))
    return results


def fit_temperature(scores: np.ndarray, y: np.ndarray, classes) -> float:
    """The T minimising the log loss of softmax(scores / T) (temperature scaling, Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    target = np.searchsorted(np.asarray(classes), y)

    def loss(log_t: float) -> float:
        z = scores / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), target]))

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))


def apply_temperature(estimator, X, y: np.ndarray, folds, jobs: int | None = None,
                      decisions: np.ndarray | None = None) -> float:
    """Temperature-scale a fitted Pipeline ending in a multinomial linear classifier, in place.

    T is fitted on out-of-fold decision values of the same document-grouped folds; dividing the
    coefficients and intercept by T keeps the model linear (and the numpy fast path of
    `pipeline.model.model_store`), changes no prediction, only how confident the probabilities are.
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    classifier = estimator.named_steps["classifier"]
    coef = getattr(classifier, "coef_", None)
    if coef is None or coef.shape[0] != len(classifier.classes_) or len(classifier.classes_) < 3:
        raise StanceError("params.yaml: train.calibration temperature needs a multinomial linear classifier "
                          "(logistic_regression on three labels); use sigmoid or isotonic")
    scores = decisions  # the search's out-of-fold decision values of this very model, when it kept them
    if scores is None:
        scores = cross_val_predict(clone(estimator), X, y, cv=folds, method="decision_function", n_jobs=jobs)
    temperature = fit_temperature(scores, y, classifier.classes_)
    classifier.coef_ = classifier.coef_ / temperature
    classifier.intercept_ = classifier.intercept_ / temperature
    return temperature


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def training_set(params: dict):
    """(rows, X, y, groups, embedding identity) of the labelled paragraphs; X is the classifier's
    input table (`pipeline.model.features.model_inputs`: text, embedding and document context columns)."""
    from pipeline.corpus.labels import load_labels, resolve_labels
    from pipeline.encoder.embed import load_embeddings
    from pipeline.model.features import document_context, model_inputs

    rows, matrix, identity = load_embeddings(params["paths"]["embeddings"])
    context = document_context(matrix, [r["doc"] for r in rows])  # from every paragraph, labelled or not
    ids = [r["id"] for r in rows]
    label_rows = load_labels(params["paths"]["labels_dir"])
    embedded = set(ids)
    unembedded = [row for row in label_rows if row.paragraph_id not in embedded]
    if unembedded:  # new documents prepared and labelled, but the embed stage has not run since
        raise StanceError(f"{unembedded[0].source}: paragraph {unembedded[0].paragraph_id} is not in "
                          f"{params['paths']['embeddings']} ({len(unembedded)} labelled paragraphs are not); run "
                          "`dvc repro` (or `stance prepare`, then `stance embed`)")
    labels = resolve_labels(label_rows, params.get("labels", {}).get("priority"))
    keep = [i for i, pid in enumerate(ids) if pid in labels]
    if not keep:
        raise StanceError(f"{params['paths']['labels_dir']}: no labelled paragraphs in the corpus")
    rows = [rows[i] for i in keep]
    y = np.array([labels[r["id"]] for r in rows])
    groups = np.array([r["doc"] for r in rows])
    return rows, model_inputs([r["text"] for r in rows], matrix[keep], context[keep]), y, groups, identity


def data_hash(rows: list[dict], y: np.ndarray, identity: str) -> str:
    digest = hashlib.sha256(identity.encode())
    for row, label in sorted(zip((r["id"] for r in rows), y.tolist())):
        digest.update(f"{row}\t{label}\n".encode())
    return digest.hexdigest()


def run(params: dict) -> dict:
    from pipeline.model.model_store import save_model

    rows, X, y, groups, identity = training_set(params)
    seed = int(params["seed"])
    # The cross-validation fits are kept for the evaluate stage, whose outer folds are these folds.
    estimator, summary = fit_classifier(X, y, groups, params["train"], seed, params["paths"].get("fit_cache"))
    meta = {
        "labels": [label for label in LABELS if label in set(y.tolist())],
        "embedding_model": identity,
        "embedding_params": params.get("embedding", {}),
        "features": params["train"].get("features", "embedding"),
        "train_params": params["train"],
        "seed": seed,
        "training_data": {"sha256": data_hash(rows, y, identity), "paragraphs": len(y),
                          "documents": len(set(groups.tolist())),
                          "label_counts": dict(sorted(Counter(y.tolist()).items()))},
        "cv": summary,
    }
    # The labelled paragraphs with their embeddings: evidence for `stance score --explain` and the
    # calibration of out-of-domain detection (see pipeline.model.reference). Written first, so the model
    # metadata can record its sha256.
    from pipeline.model.features import embedding_part
    from pipeline.model.reference import build_reference, reference_path, save_reference

    meta["reference"] = save_reference(build_reference(rows, embedding_part(X), y, identity),
                                       reference_path(params["paths"]))
    save_model(estimator, meta, params["paths"]["model"], params["paths"]["model_meta"])
    return meta
