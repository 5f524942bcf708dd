"""What the classifier sees: a paragraph's embedding, and optionally its words.

Inputs:  paragraph texts and their embeddings (from the embed stage or the scorer's encoder).
Outputs: `model_inputs`, the one table every classifier is fitted and scored on: a `text`
         column and one column per embedding dimension (`e0`, `e1`, ...).
Params:  `train.classifier` / `train.classifier_params` (through `pipeline.train.build_classifier`).

Every classifier is an sklearn Pipeline whose first step picks its features from that table and
whose last step, `classifier`, is the estimator named in params:
- `embedding_features()`: the embedding columns only (the classic sentence-embedding classifier);
- `text_and_embedding_features(...)`: TF-IDF of the words (unigrams and bigrams, sublinear tf,
  fitted on the training paragraphs only) side by side with the embedding scaled by
  `embedding_weight`. Words catch the stance cues a mean-pooled embedding blurs ("must do
  more", "holds the key"); the embedding carries meaning across paraphrases.

`analyze` is the word analyser of the TF-IDF step. It lives here, not in sklearn, so that
`pipeline.model_store` can recompute the same features with numpy alone (no 2-3 s sklearn import
on the path of a cold `stance score`).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

TEXT = "text"
EMBEDDING_PATTERN = r"^e\d+$"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def analyze(text: str) -> list[str]:
    """Lower-cased, accent-stripped word unigrams and bigrams (tokens of two or more word characters)."""
    folded = str(text).lower()
    if not folded.isascii():  # ASCII has no accents to strip
        folded = unicodedata.normalize("NFKD", folded)
        marks = {ord(c): None for c in set(folded) if unicodedata.combining(c)}  # each distinct character once
        if marks:
            folded = folded.translate(marks)
    tokens = _TOKEN.findall(folded)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def embedding_columns(width: int) -> list[str]:
    return [f"e{i}" for i in range(width)]


def model_inputs(texts, embeddings):
    """The classifier's input table: `text` plus the embedding columns `e0..e{d-1}`."""
    import pandas as pd

    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but embeddings of shape {matrix.shape}")
    # Object dtype for the texts and the column names: pandas 3 would hold both as Arrow strings,
    # which are slow to iterate element by element, as every fit does (the TF-IDF step reads each
    # text; sklearn's column selection walks the names): ~10 % of the time of a fit.
    frame = pd.DataFrame(matrix, columns=pd.Index(embedding_columns(matrix.shape[1]), dtype=object))
    frame.insert(0, TEXT, pd.Series([str(t) for t in texts], dtype=object))
    return frame


def embedding_part(inputs) -> np.ndarray:
    """The embedding columns of a `model_inputs` table as a float matrix (a plain matrix passes through)."""
    if hasattr(inputs, "columns"):
        return inputs.drop(columns=[TEXT]).to_numpy(dtype=np.float64)
    return np.asarray(inputs, dtype=np.float64)


def take(inputs, index):
    """Rows `index` of a `model_inputs` table or of a plain array."""
    if hasattr(inputs, "iloc"):
        return inputs.iloc[np.asarray(index)].reset_index(drop=True)
    return inputs[index]


def embedding_features():
    """First pipeline step: the embedding columns only."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(embedding_part)


def text_and_embedding_features(embedding_weight: float = 0.5, min_df: int = 2):
    """First pipeline step: TF-IDF of `analyze`d words, then the embedding times `embedding_weight`."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(analyzer=analyze, min_df=min_df, sublinear_tf=True)
    return ColumnTransformer([("words", words, TEXT),
                              ("embedding", "passthrough", make_column_selector(pattern=EMBEDDING_PATTERN))],
                             transformer_weights={"words": 1.0, "embedding": float(embedding_weight)})


def tfidf_numpy(texts: list[str], vocabulary: dict[str, int], idf: np.ndarray) -> np.ndarray:
    """What the fitted TF-IDF step computes (sublinear tf, idf, l2 norm), as a dense numpy matrix."""
    out = np.zeros((len(texts), len(idf)))
    for row, text in enumerate(texts):
        counts: dict[int, int] = {}
        for term in analyze(text):
            column = vocabulary.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if counts:
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            values = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
            out[row, columns] = values * idf[columns]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=out, where=norms > 0)
