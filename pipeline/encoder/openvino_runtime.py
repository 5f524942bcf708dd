"""Running an OpenVINO export: what a model directory does after the network, tokenizing, batching, pooling.

Inputs:  a local sentence-transformers model directory (its `modules.json`, pooling config and
         `tokenizer.json`) or an export made from one (`pipeline.encoder.openvino_export`).
Outputs: the model's layout (`encoder_layout`), and sentence embeddings from a compiled network
         (`CompiledEncoder.encode`). No params read here.

The encoder needs only `openvino`, `tokenizers` and numpy: it tokenizes with the model's own
`tokenizer.json` (truncated at the model's `max_seq_length`, as sentence-transformers does), sorts
the texts by token length so each batch carries little padding, runs the network, and pools and
normalises in numpy exactly as the model's `modules.json` says. Both the embedder
(`pipeline.encoder.fast_encoder`) and the export's agreement check encode through
`CompiledEncoder`, so the check measures the very code that scores.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


@dataclass(frozen=True)
class EncoderLayout:
    """What the sentence-transformers pipeline of a model directory does after the network."""

    max_length: int
    pooling: str          # mean | cls | max | mean_sqrt_len
    normalize: bool
    dimension: int


def read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def encoder_layout(model_dir: str | Path) -> EncoderLayout | None:
    """The layout of a local sentence-transformers model if this module can run it, else None.

    Supported: modules.json listing a Transformer at the model root, one Pooling mode, and an
    optional Normalize, with a `tokenizer.json`. Anything else (Dense layers, prompts, several
    pooling modes) stays on the PyTorch path.
    """
    model_dir = Path(model_dir)
    modules = read_json(model_dir / "modules.json")
    if not isinstance(modules, list) or not (model_dir / "tokenizer.json").is_file():
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    if len(kinds) != len(modules) or kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None
    if modules[0].get("path", "") not in ("", "."):
        return None
    pooling = read_json(model_dir / modules[1].get("path", "1_Pooling") / "config.json")
    if not isinstance(pooling, dict):
        return None
    modes = [name for key, name in POOLING_MODES.items() if pooling.get(key)]
    other = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k not in POOLING_MODES]
    if len(modes) != 1 or other or not pooling.get("include_prompt", True):
        return None
    sbert = read_json(model_dir / "sentence_bert_config.json") or {}
    config = read_json(model_dir / "config.json") or {}
    tokenizer_config = read_json(model_dir / "tokenizer_config.json") or {}
    limits = [int(v) for v in (sbert.get("max_seq_length"), tokenizer_config.get("model_max_length"),
                               config.get("max_position_embeddings")) if isinstance(v, int) and 0 < v < 100_000]
    if not limits or sbert.get("do_lower_case"):
        return None  # lower-casing outside tokenizer.json is not reproduced here
    dimension = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
    if dimension <= 0:
        return None
    return EncoderLayout(min(limits), modes[0], kinds[2:] == ["Normalize"], dimension)


def pool(hidden: np.ndarray, mask: np.ndarray, layout: EncoderLayout) -> np.ndarray:
    """Sentence vectors from token vectors (batch, tokens, dim) and the attention mask, in fp32."""
    hidden = hidden.astype(np.float32, copy=False)
    weights = mask[..., None].astype(np.float32)
    if layout.pooling == "cls":
        vectors = hidden[:, 0]
    elif layout.pooling == "max":
        vectors = np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    else:
        counts = np.clip(weights.sum(axis=1), 1e-9, None)
        vectors = (hidden * weights).sum(axis=1)
        vectors = vectors / (np.sqrt(counts) if layout.pooling == "mean_sqrt_len" else counts)
    if layout.normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors.astype(np.float32, copy=False)


def import_openvino():
    """`import openvino` without its model-conversion tools: openvino/__init__ imports
    openvino.tools.ovc (about 0.2 s of imports and a telemetry set-up) only to re-export
    convert_model, which scoring never calls. Export imports openvino.tools.ovc itself."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    if "openvino.tools.ovc" not in sys.modules:
        sys.modules["openvino.tools.ovc"] = None  # makes openvino's guarded import fail fast
        try:
            import openvino

            return openvino
        except ImportError:
            pass  # an openvino that needs its tools at import time (or none): the usual import decides
        finally:
            if sys.modules.get("openvino.tools.ovc", False) is None:
                del sys.modules["openvino.tools.ovc"]  # a later `import openvino.tools.ovc` works as usual
    import openvino

    return openvino


def load_tokenizer(path: str | Path, max_length: int):
    """The model's fast tokenizer, truncating at `max_length` and not padding (batches pad themselves)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def compile_config(precision: str) -> dict:
    """OpenVINO CPU settings: the precision, and one stream per core fed by an async queue (on 2
    cores this beat one 2-thread stream, and it degrades gracefully when other work shares the CPU)."""
    return {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "THROUGHPUT"}


class CompiledEncoder:
    """Sentence embeddings from a compiled OpenVINO network, in batches of similar token lengths.

    A subclass loads the network in `_load`, setting `_request` (an `AsyncInferQueue`), `_inputs`
    (the network's input names), `_tokenizer` and `_layout`; `batch_size` is the target batch size.
    """

    batch_size: int
    _inputs: list[str]
    _layout: EncoderLayout | None

    def _load(self) -> None:
        raise NotImplementedError

    def _batch_arrays(self, encodings, width: int) -> dict[str, np.ndarray]:
        rows = len(encodings)
        ids = np.zeros((rows, width), dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        types = np.zeros((rows, width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self._inputs}

    def batch_count(self, count: int) -> int:
        """How many batches `count` texts go in: enough for `batch_size` each, rounded up to a
        multiple of the streams so that none idles at the end (10 texts, batch size 8, 2 streams:
        2 batches of 5, not 8 + 2: 0.73 -> 0.43 s); never more than one per text."""
        streams = max(len(self._request) if hasattr(self._request, "__len__") else 1, 1)
        batches = -(-count // self.batch_size)
        return max(1, min(count, -(-batches // streams) * streams))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, 0), dtype=np.float32)
        self._load()
        encodings = self._tokenizer.encode_batch([str(t).strip() for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # longest first: little padding per batch
        out = np.empty((len(texts), self._layout.dimension), dtype=np.float32)
        layout = self._layout

        def done(request, job):
            index, mask = job
            out[index] = pool(request.get_output_tensor(0).data, mask, layout)

        queue = self._request
        queue.set_callback(done)
        for index in np.array_split(order, self.batch_count(len(texts))):  # near-equal sizes
            inputs = self._batch_arrays([encodings[i] for i in index], int(lengths[index].max()))
            queue.start_async(inputs, (index, inputs["attention_mask"]))
        queue.wait_all()
        return out
