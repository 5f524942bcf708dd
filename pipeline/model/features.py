"""What the classifier sees: a paragraph's embedding, and optionally its words.

Inputs:  paragraph texts and their embeddings (from the embed stage or the scorer's encoder).
Outputs: `model_inputs`, the one table every classifier is fitted and scored on: a `text`
         column, one column per embedding dimension (`e0`, `e1`, ...) and, when the document
         context is given, one per dimension of it (`c0`, `c1`, ...).
Params:  `train.classifier` / `train.classifier_params` (through `pipeline.model.train.build_classifier`).

Every classifier is an sklearn Pipeline whose first step picks its features from that table and
whose last step, `classifier`, is the estimator named in params:
- `embedding_features()`: the embedding columns only (the classic sentence-embedding classifier);
- `text_and_embedding_features(...)`: TF-IDF of the words (unigrams and bigrams, sublinear tf,
  fitted on the training paragraphs only) side by side with the embedding scaled by
  `embedding_weight`. Words catch the stance cues a mean-pooled embedding blurs ("must do
  more", "holds the key"); the embedding carries meaning across paraphrases. With
  `context_weight` > 0 the paragraph's document context (`document_context`: the normalised
  mean embedding of all paragraphs of its document) follows, times `context_weight`: the
  labelling guide reads a paragraph in its document, and so can the classifier.

`analyze` is the word analyser of the TF-IDF step. It lives here, not in sklearn, so that
`pipeline.model.model_store` can recompute the same features with numpy alone (no 2-3 s sklearn import
on the path of a cold `stance score`).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

TEXT = "text"
EMBEDDING_PATTERN = r"^e\d+$"
CONTEXT_PATTERN = r"^c\d+$"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def analyze(text: str) -> list[str]:
    """Lower-cased, accent-stripped word unigrams and bigrams (tokens of two or more word characters)."""
    return list(_terms(str(text)))


# Every fold of every search re-reads the same paragraphs: each worker tokenises a paragraph once.
@functools.lru_cache(maxsize=65536)
def _terms(text: str) -> tuple[str, ...]:
    folded = text.lower()
    if not folded.isascii():  # ASCII has no accents to strip
        folded = unicodedata.normalize("NFKD", folded)
        marks = {ord(c): None for c in set(folded) if unicodedata.combining(c)}  # each distinct character once
        if marks:
            folded = folded.translate(marks)
    tokens = _TOKEN.findall(folded)
    return tuple(tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])])


def embedding_columns(width: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{i}" for i in range(width)]


def document_context(embeddings, documents) -> np.ndarray:
    """Each row's document context: the mean embedding of all rows of its document (`documents`
    gives each row's document), scaled to unit length. Rows must cover whole documents."""
    matrix = np.asarray(embeddings, dtype=np.float64)
    documents = np.asarray(documents)
    if matrix.ndim != 2 or len(documents) != matrix.shape[0]:
        raise ValueError(f"{len(documents)} document names but embeddings of shape {matrix.shape}")
    if not len(documents):
        return np.zeros_like(matrix)
    names, owner = np.unique(documents, return_inverse=True)
    sums = np.zeros((len(names), matrix.shape[1]))
    np.add.at(sums, owner.ravel(), matrix)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    means = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return means[owner.ravel()]


def model_inputs(texts, embeddings, context=None):
    """The classifier's input table: `text`, the embedding columns `e0..e{d-1}` and, if given,
    the document context columns `c0..c{d-1}` (see `document_context`)."""
    import pandas as pd

    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but embeddings of shape {matrix.shape}")
    columns = embedding_columns(matrix.shape[1])
    if context is not None:
        context = np.asarray(context, dtype=np.float64)
        if context.shape != matrix.shape:
            raise ValueError(f"embeddings of shape {matrix.shape} but context of shape {context.shape}")
        matrix = np.hstack([matrix, context])
        columns += embedding_columns(context.shape[1], "c")
    # Object dtype for the texts and the column names: pandas 3 would hold both as Arrow strings,
    # which are slow to iterate element by element, as every fit does (the TF-IDF step reads each
    # text; sklearn's column selection walks the names): ~10 % of the time of a fit.
    frame = pd.DataFrame(matrix, columns=pd.Index(columns, dtype=object))
    frame.insert(0, TEXT, pd.Series([str(t) for t in texts], dtype=object))
    return frame


def _columns(inputs, prefix: str) -> np.ndarray:
    names = [name for name in inputs.columns if isinstance(name, str) and re.fullmatch(rf"{prefix}\d+", name)]
    return inputs[names].to_numpy(dtype=np.float64)


def embedding_part(inputs) -> np.ndarray:
    """The embedding columns of a `model_inputs` table as a float matrix (a plain matrix passes through)."""
    if hasattr(inputs, "columns"):
        return _columns(inputs, "e")
    return np.asarray(inputs, dtype=np.float64)


def context_part(inputs) -> np.ndarray | None:
    """The document context columns of a `model_inputs` table (None when it has none)."""
    if not hasattr(inputs, "columns"):
        return None
    matrix = _columns(inputs, "c")
    return matrix if matrix.shape[1] else None


def take(inputs, index):
    """Rows `index` of a `model_inputs` table or of a plain array."""
    if hasattr(inputs, "iloc"):
        return inputs.iloc[np.asarray(index)].reset_index(drop=True)
    return inputs[index]


def embedding_features():
    """First pipeline step: the embedding columns only."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(embedding_part)


def text_and_embedding_features(embedding_weight: float = 0.5, min_df: int = 2, context_weight: float = 0.0):
    """First pipeline step: TF-IDF of `analyze`d words, then the embedding times `embedding_weight`,
    then (if `context_weight` > 0) the document context times `context_weight`."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(analyzer=analyze, min_df=min_df, sublinear_tf=True)
    parts = [("words", words, TEXT), ("embedding", "passthrough", make_column_selector(pattern=EMBEDDING_PATTERN))]
    weights = {"words": 1.0, "embedding": float(embedding_weight)}
    if context_weight:
        parts.append(("context", "passthrough", make_column_selector(pattern=CONTEXT_PATTERN)))
        weights["context"] = float(context_weight)
    return ColumnTransformer(parts, transformer_weights=weights)


def tfidf_entries(texts: list[str], vocabulary: dict[str, int], idf: np.ndarray):
    """The non-zero entries of what the fitted TF-IDF step computes (sublinear tf, idf, l2 norm):
    (rows, columns, values), rows in order, each row's entries in order of first occurrence."""
    rows, columns, values = [], [], []
    for row, text in enumerate(texts):
        counts: dict[int, int] = {}
        for term in analyze(text):
            column = vocabulary.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if counts:
            found = np.fromiter(counts, dtype=np.int64, count=len(counts))
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[found]
            rows.append(np.full(len(found), row, dtype=np.int64))
            columns.append(found)
            values.append(weights / np.linalg.norm(weights))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)

