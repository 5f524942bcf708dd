"""The PyTorch embedding backend: sentence-transformers on the CPU, loaded offline on first use.

Inputs:  a model spec and precision (resolved by `pipeline.encoder.identity`), a batch size.
Outputs: float32 sentence embeddings, one row per text. No params read here (the embed stage's
         `make_embedder` passes `embedding.*`).

The model is loaded with HF_HUB_OFFLINE=1 so nothing reaches for the network. This backend is the
reference the OpenVINO export is checked against (`pipeline.encoder.openvino_export`).
"""

from __future__ import annotations

import os
from itertools import groupby
from typing import Sequence

import numpy as np

from pipeline.encoder.identity import DEFAULT_MODEL, model_identity, resolve_model, resolve_precision
from pipeline.errors import StanceError
from pipeline.numerics import is_pinned


class SentenceTransformerEmbedder:
    """sentence-transformers on the CPU, loaded offline and only when first used."""

    backend = "torch"

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, precision: str = "auto"):
        self.spec = model or DEFAULT_MODEL
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        # Pinned fp32 (`pipeline.numerics`) gives other bits than the processor's own paths: its
        # embeddings get their own name, so the cache never mixes the two.
        pinned = "avx2-" if self.precision == "fp32" and is_pinned() else ""
        self.identity = f"{model_identity(self.spec)}/{pinned}{self.precision}"
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
        texts = list(texts)
        # Batches of equal token length only: padding changes the order of the sums in attention
        # and pooling (up to 7e-8 in the embedding), so a paragraph would embed to other bits
        # beside other paragraphs than alone. Without padding it embeds the same in any company:
        # an incremental `dvc repro` then writes what a from-scratch run does.
        prepare = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` before sentence-transformers 6
        lengths = prepare(texts)["attention_mask"].sum(dim=1).tolist()
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        batches = []
        for _, same_length in groupby(order, key=lengths.__getitem__):
            same_length = list(same_length)
            batches += [same_length[s:s + self.batch_size] for s in range(0, len(same_length), self.batch_size)]
        vectors = None
        for batch in batches:
            encoded = model.encode([texts[i] for i in batch], batch_size=len(batch), convert_to_numpy=False,
                                   convert_to_tensor=True, show_progress_bar=False).float().cpu().numpy()
            if vectors is None:
                vectors = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
            vectors[batch] = encoded
        return vectors
