"""score: label the paragraphs of new documents with the trained model.

Inputs:  documents (see `pipeline.corpus.documents`), `paths.model`, `paths.model_meta`, the reference set
         (`pipeline.model.reference`, beside the model).
Outputs: per paragraph a label, the three probabilities, an `uncertain` flag and an
         `out_of_domain` flag, its `strongest_sentence` when it has two or more (label,
         probabilities, text), and with `explain` the most similar labelled training paragraphs;
         per document a verdict, the probability mass and share of paragraphs per label, and the
         most decisive paragraphs.
Params:  `embedding.*`, `score.uncertain_below`, `score.document_min_share`,
         `score.out_of_domain_percentile`, `score.explain_neighbours`, `score.decisive_paragraphs`,
         `score.sentence_weight`.

A paragraph's probabilities blend the whole paragraph's with those of its strongest sentence
(`pipeline.scoring.sentences`), weighted by `score.sentence_weight` (0 = the paragraph alone).

Paragraph rules: `uncertain` when the top probability is below `score.uncertain_below`.
`out_of_domain` when the paragraph's nearest labelled training paragraph is less similar than the
threshold calibrated on the reference set (see `pipeline.model.reference`), by more than float noise
(`SIMILARITY_TOLERANCE`); such a paragraph is about something the model never saw, so its `label`
is `none` whatever the classifier says (its probabilities are still reported as computed) and it
plays no part in the document verdict.
Without a reference set (a model trained before it existed) `out_of_domain` is null.

Document verdict rule (`score.verdict_rule`, threshold `score.document_min_share`, chosen by
page-verdict accuracy on the select half of the real development set: `studies/verdict_rule.py`):
- `count`: the verdict is favor or against when that label is given to more of the document's
  in-domain paragraphs than the other stance and to at least `document_min_share` of them;
  otherwise none (also on a tie, and when every paragraph is out of domain);
- `mass`: each in-domain paragraph weighs by its length in words; `mass` is the length-weighted
  mean probability of each label; the verdict is favor or against, whichever has the larger mass,
  provided that mass is at least `document_min_share`; otherwise none.
`verdict_reason` states the figures that decided it in one line. The decisive paragraphs are the
(up to `score.decisive_paragraphs`) in-domain paragraphs with the largest length-weighted
probability of the verdict, best first; `agreement` is the share of them labelled with the verdict.
`shares` counts the paragraphs per label (out-of-domain ones as none).

Speed: the paragraphs of all documents go through the encoder together, longest first,
`CHUNK_PARAGRAPHS` at a time, so many short documents cost the same as one long one; the model is
loaded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline import LABELS
from pipeline.corpus.documents import Document
from pipeline.encoder.embed import Embedder, embed_texts
from pipeline.errors import StanceError
from pipeline.model.reference import Reference

CHUNK_PARAGRAPHS = 128  # paragraphs per encoder call, across documents (also the progress step)
# float32 similarities move in the last digits with the shape of the batch they are computed in; a
# paragraph this close to the out-of-domain threshold is in domain whatever company it is scored in.
SIMILARITY_TOLERANCE = 1e-6
DEFAULTS = {"uncertain_below": 0.5, "document_min_share": 0.25, "verdict_rule": "mass", "out_of_domain_percentile": 2.0,
            "explain_neighbours": 3, "decisive_paragraphs": 3, "sentence_weight": 0.0}


@dataclass
class Scorer:
    estimator: object
    embedder: Embedder
    meta: dict
    uncertain_below: float = DEFAULTS["uncertain_below"]
    document_min_share: float = DEFAULTS["document_min_share"]
    verdict_rule: str = "mass"
    reference: Reference | None = None
    ood_threshold: float | None = None
    explain_neighbours: int = DEFAULTS["explain_neighbours"]
    decisive_paragraphs: int = DEFAULTS["decisive_paragraphs"]
    sentence_weight: float = DEFAULTS["sentence_weight"]
    chunk: int = CHUNK_PARAGRAPHS
    notes: list[str] = field(default_factory=list)  # things the user should know (printed on stderr)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed_texts(texts, self.embedder)

    def embed_paragraphs(self, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The paragraphs' vectors, and the sentence vectors they were built from when the encoder
        builds them so (`embedding.paragraph_vector: sentence_mean`): the strongest-sentence
        reading then needs no second encoder pass."""
        encode_with_pieces = getattr(self.embedder, "encode_with_pieces", None)
        return encode_with_pieces(texts) if encode_with_pieces is not None else (self.embed(texts), {})

    def classify(self, texts: list[str], X: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Probabilities in LABELS order for each paragraph (its text, its embedding and its
        document context, `pipeline.model.features.document_context`)."""
        from pipeline.model.model_store import LinearModel

        if isinstance(self.estimator, LinearModel):  # the numpy fast path: no pandas or sklearn import
            raw = self.estimator.probabilities(texts, X, context)
        else:
            from pipeline.model.features import model_inputs

            raw = self.estimator.predict_proba(model_inputs(texts, X, context))
        out = np.zeros((len(X), len(LABELS)))
        for j, label in enumerate(self.estimator.classes_):
            out[:, LABELS.index(str(label))] = raw[:, j]
        return out

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Probabilities of the paragraphs of one document, as `score_documents` gives them."""
        from pipeline.model.features import document_context

        X, pieces = self.embed_paragraphs(texts)
        context = document_context(X, np.zeros(len(texts), dtype=int))
        return self.with_sentences(texts, self.classify(texts, X, context), context, pieces)[0]

    def with_sentences(self, paragraphs: list[str], probabilities: np.ndarray, context: np.ndarray,
                       sentence_vectors: dict[str, np.ndarray] | None = None,
                       split: list[list[str]] | None = None) -> tuple[np.ndarray, dict]:
        """`probabilities` blended with each paragraph's strongest sentence (see
        `pipeline.scoring.sentences`), and {paragraph row: (that sentence, its probabilities)};
        `sentence_vectors` holds embeddings already made, `split` the paragraphs' sentences."""
        from pipeline.scoring.sentences import blend_strongest_sentence, sentence_rows, strongest_sentences

        if not self.sentence_weight:
            return probabilities, {}
        owner, texts = sentence_rows(paragraphs, split)
        if not texts:
            return probabilities, {}
        vectors = sentence_vectors or {}
        missing = [text for text in dict.fromkeys(texts) if text not in vectors]
        if missing:
            vectors = {**vectors, **dict(zip(missing, self.embed(missing)))}
        found = np.zeros((len(texts), len(LABELS)))
        for start in range(0, len(texts), self.chunk):
            rows = slice(start, start + self.chunk)
            found[rows] = self.classify(texts[rows], np.stack([vectors[t] for t in texts[rows]]), context[owner[rows]])
        none = LABELS.index("none")
        first = strongest_sentences(found, owner, none)
        strongest = {int(owner[j]): (texts[j], found[j]) for j in first}
        return blend_strongest_sentence(probabilities, found, owner, none, self.sentence_weight, first), strongest


def check_embedding_identity(meta: dict, identity: str, meta_path: str = "models/model.json") -> None:
    trained = meta.get("embedding_model", "")
    if trained.split("/")[0] != identity.split("/")[0]:
        raise StanceError(f"{meta_path}: model was trained on embeddings from {trained!r} but the configured "
                          f"embedding model is {identity!r}; run `dvc repro` to retrain")


def _precision(identity: str) -> str:
    """The numeric precision of an embedding identity (`model@hash/[backend-]precision`)."""
    return identity.partition("/")[2].rpartition("-")[2]


def score_settings(params: dict) -> dict:
    """The `score:` section with defaults, validated."""
    settings = {**DEFAULTS, **(params.get("score") or {})}
    for key in ("uncertain_below", "document_min_share", "sentence_weight"):
        value = settings[key]
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise StanceError(f"params.yaml: score.{key} must be a number within 0-1, got {value!r}")
    if settings["verdict_rule"] not in VERDICT_RULES:
        raise StanceError(f"params.yaml: score.verdict_rule must be one of {', '.join(VERDICT_RULES)}, "
                          f"got {settings['verdict_rule']!r}")
    value = settings["out_of_domain_percentile"]
    if not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise StanceError(f"params.yaml: score.out_of_domain_percentile must be within 0-100, got {value!r}")
    for key in ("explain_neighbours", "decisive_paragraphs"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            raise StanceError(f"params.yaml: score.{key} must be a positive integer, got {settings[key]!r}")
    return settings


def load_scorer(params: dict, embedder: Embedder | None = None, explain: bool = False, **overrides) -> Scorer:
    """The trained model, its reference set and a matching embedder; refuses an embedding-model
    mismatch. `explain` makes a missing reference set an error (otherwise only a note)."""
    from pipeline.encoder import embed
    from pipeline.model.model_store import load_model
    from pipeline.model.reference import load_reference, reference_path

    settings = score_settings(params)
    paths = params["paths"]
    estimator, meta = load_model(paths["model"], paths["model_meta"])
    embedder = embedder or embed.make_embedder(params, scoring=True, **overrides)
    check_embedding_identity(meta, embedder.identity, paths["model_meta"])
    scorer = Scorer(estimator, embedder, meta, float(settings["uncertain_below"]),
                    float(settings["document_min_share"]), settings["verdict_rule"],
                    explain_neighbours=settings["explain_neighbours"],
                    decisive_paragraphs=settings["decisive_paragraphs"],
                    sentence_weight=float(settings["sentence_weight"]))
    trained_precision = _precision(meta.get("embedding_model", ""))
    current_precision = _precision(embedder.identity)
    if trained_precision and current_precision and trained_precision != current_precision:
        scorer.notes.append(f"the model was trained on {trained_precision} embeddings and scores with "
                            f"{current_precision} ones (probabilities may differ slightly)")
    path = reference_path(paths)
    recorded = meta.get("reference") or {}
    if not path.exists() and not explain:
        scorer.notes.append(f"{path}: no reference set, so out-of-domain detection is off "
                            "(run `dvc repro` to retrain)")
        return scorer
    reference = load_reference(path, recorded.get("sha256"))
    if reference.identity.split("/")[0] != embedder.identity.split("/")[0]:
        raise StanceError(f"{path}: reference embeddings come from {reference.identity!r}, not the configured "
                          f"{embedder.identity!r}; run `dvc repro`")
    scorer.reference = reference
    scorer.ood_threshold = reference.threshold(settings["out_of_domain_percentile"])
    return scorer


VERDICT_RULES = ("mass", "count")


def document_verdict(paragraphs: list[str], probabilities: np.ndarray, min_share: float,
                     in_domain: np.ndarray | None = None, decisive_count: int = 3, rule: str = "mass") -> dict:
    """The document-level summary (see the module docstring for the rules)."""
    n = len(paragraphs)
    in_domain = np.ones(n, dtype=bool) if in_domain is None else np.asarray(in_domain, dtype=bool)
    weights = np.array([max(len(p.split()), 1) for p in paragraphs], dtype=float) * in_domain
    if weights.sum() > 0:
        mass = weights @ probabilities / weights.sum()
    else:
        mass = np.zeros(len(LABELS))
    labels = [LABELS[int(i)] if ok else "none" for i, ok in zip(probabilities.argmax(axis=1), in_domain)]
    scored = int(in_domain.sum())
    if rule == "count":
        counts = {label: sum(1 for lab, ok in zip(labels, in_domain) if ok and lab == label) for label in ("favor", "against")}
        leader = max(counts, key=counts.get)
        other = "against" if leader == "favor" else "favor"
        share = counts[leader] / scored if scored else 0.0
        stance = counts[leader] > counts[other] and share >= min_share
        reason = (f"{leader} paragraphs {counts[leader]} of {scored} ({share:.0%}), {other} {counts[other]}: "
                  + (f"{leader} leads and holds >= {min_share:.0%}" if stance else
                     ("tied" if counts[leader] == counts[other] else f"under {min_share:.0%}") + ", so none"))
    else:
        stance_mass = {label: float(mass[LABELS.index(label)]) for label in ("favor", "against")}
        leader = max(stance_mass, key=stance_mass.get)
        other = "against" if leader == "favor" else "favor"
        stance = scored > 0 and stance_mass[leader] >= min_share
        reason = (f"{leader} mass {stance_mass[leader]:.2f} (length-weighted), {other} {stance_mass[other]:.2f}: "
                  + (f"{leader} leads and holds >= {min_share:.2f}" if stance else f"under {min_share:.2f}, so none"))
    verdict = leader if stance else "none"
    if not scored:
        reason = "no paragraph on the subject (all off-topic), so none"
    strength = weights * probabilities[:, LABELS.index(verdict)] if n else np.zeros(0)
    decisive = [int(i) for i in np.argsort(-strength, kind="stable")[:decisive_count] if weights[i] > 0]
    agreeing = sum(1 for i in decisive if labels[i] == verdict)
    return {
        "verdict": verdict,
        "verdict_reason": reason,
        "mass": {label: round(float(m), 4) for label, m in zip(LABELS, mass)},
        "shares": {label: round(labels.count(label) / n, 4) if n else 0.0 for label in LABELS},
        "out_of_domain_paragraphs": int(n - in_domain.sum()),
        "decisive": decisive,
        # how many of the decisive paragraphs are themselves labelled with the verdict
        "agreement": round(agreeing / len(decisive), 4) if decisive else None,
    }


def _evidence(reference: Reference, indices, similarities) -> list[dict]:
    return [{"label": reference.labels[i], "document": reference.docs[i], "similarity": round(float(s), 4),
             "id": reference.ids[i], "text": reference.texts[i]} for i, s in zip(indices, similarities)]


def score_documents(documents: list[Document], scorer: Scorer, progress=None, explain: bool = False) -> list[dict]:
    """Results for each document. `progress(n)` is called after each chunk of n paragraphs."""
    from pipeline.model.features import document_context

    flat = [text for doc in documents for text in doc.paragraphs]
    owner = np.repeat(np.arange(len(documents)), [len(doc.paragraphs) for doc in documents])
    if not flat:
        raise StanceError("no paragraphs to score")
    reference = scorer.reference
    if explain and reference is None:
        raise StanceError("--explain needs the reference set saved by `stance train` (run `dvc repro`)")
    k = scorer.explain_neighbours if explain else 1
    embeddings = None
    neighbours = np.zeros((len(flat), 0), dtype=int)
    similarities = np.zeros((len(flat), 0), dtype=np.float32)
    if reference is not None:
        k = min(k, len(reference))
        neighbours = np.zeros((len(flat), k), dtype=int)
        similarities = np.zeros((len(flat), k), dtype=np.float32)
    # Longest first across all documents: each chunk holds paragraphs of like length, so the
    # encoder's batches pad as little as if it saw every paragraph at once.
    order = np.argsort([-len(text) for text in flat], kind="stable")
    sentence_vectors: dict[str, np.ndarray] = {}
    split = None
    if scorer.sentence_weight:
        from pipeline.encoder.sentence_rule import split_sentences

        split = [split_sentences(text) for text in flat]
    for start in range(0, len(flat), scorer.chunk):
        chunk = order[start:start + scorer.chunk]
        X, pieces = scorer.embed_paragraphs([flat[i] for i in chunk])
        if split is not None:  # here, so that progress counts the sentences' time too
            sentence_vectors.update((s, pieces[s]) for i in chunk for s in split[i] if s in pieces)
            sentences = [s for i in chunk for s in split[i] if s not in sentence_vectors]
            sentences = sorted(dict.fromkeys(sentences), key=len, reverse=True)
            if sentences:
                sentence_vectors.update(zip(sentences, scorer.embed(sentences)))
        if embeddings is None:
            embeddings = np.zeros((len(flat), X.shape[1]), dtype=np.asarray(X).dtype)
        embeddings[chunk] = X
        if reference is not None:
            idx, sims = reference.nearest(X, k)
            neighbours[chunk] = idx
            similarities[chunk] = sims
        if progress is not None:
            progress(len(chunk))
    # A paragraph is read in its document: the classifier sees the document's mean embedding too.
    context = document_context(embeddings, owner)
    probabilities = np.zeros((len(flat), len(LABELS)))
    for start in range(0, len(flat), scorer.chunk):  # in chunks: memory stays bounded for any number of paragraphs
        rows = slice(start, start + scorer.chunk)
        probabilities[rows] = scorer.classify(flat[rows], embeddings[rows], context[rows])
    probabilities, strongest = scorer.with_sentences(flat, probabilities, context, sentence_vectors, split)
    if reference is not None and k:
        out_of_domain = similarities[:, 0] < scorer.ood_threshold - SIMILARITY_TOLERANCE
    else:
        out_of_domain = np.zeros(len(flat), dtype=bool)
    results, offset = [], 0
    for doc in documents:
        rows = slice(offset, offset + len(doc.paragraphs))
        offset += len(doc.paragraphs)
        probs, ood = probabilities[rows], out_of_domain[rows]
        paragraphs = []
        for i, (text, pid, p, off) in enumerate(zip(doc.paragraphs, doc.ids, probs, ood)):
            record = {"index": i}
            if doc.records:
                record["id"] = pid
            record.update({
                "label": "none" if off else LABELS[int(p.argmax())],
                "probabilities": {label: round(float(v), 4) for label, v in zip(LABELS, p)},
                "uncertain": bool(p.max() < scorer.uncertain_below),
                "out_of_domain": bool(off) if reference is not None else None,
            })
            if rows.start + i in strongest:
                sentence, sentence_probabilities = strongest[rows.start + i]
                record["strongest_sentence"] = {
                    "label": LABELS[int(sentence_probabilities.argmax())],
                    "probabilities": {label: round(float(v), 4) for label, v in zip(LABELS, sentence_probabilities)},
                    "text": sentence}
            if explain:
                row = rows.start + i
                record["evidence"] = _evidence(reference, neighbours[row], similarities[row])
            record["text"] = text
            paragraphs.append(record)
        summary = document_verdict(doc.paragraphs, probs, scorer.document_min_share, ~ood, scorer.decisive_paragraphs,
                                   scorer.verdict_rule)
        head = {"document": doc.name, **({"title": doc.title} if doc.title else {})}
        results.append({**head, **summary, "paragraphs": paragraphs})
    return results
