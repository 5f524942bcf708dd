"""The PyTorch embedding backend: sentence-transformers on the CPU, loaded offline on first use.

Inputs:  a model spec and precision (resolved by `pipeline.encoder.identity`), a batch size.
Outputs: float32 sentence embeddings, one row per text. No params read here (the embed stage's
         `make_embedder` passes `embedding.*`).

The model is loaded with HF_HUB_OFFLINE=1 so nothing reaches for the network. This backend is the
reference the OpenVINO export is checked against (`pipeline.encoder.openvino_export`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from pipeline.encoder.identity import DEFAULT_MODEL, model_identity, resolve_model, resolve_precision
from pipeline.errors import StanceError


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
