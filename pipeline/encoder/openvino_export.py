"""The OpenVINO export of a sentence-transformers model: made once, checked against PyTorch, installed.

Inputs:  a local sentence-transformers model directory whose modules are Transformer -> Pooling
         (-> Normalize), e.g. the packaged all-MiniLM-L6-v2.
Outputs: an export under `embedding.export_dir` (default `.cache/openvino`), one directory per
         model identity and OpenVINO version: `model.xml`/`model.bin` (fp32 weights), the model's
         `tokenizer.json`, and `manifest.json` recording the layout and the agreement check.
Params:  none read here (`pipeline.encoder.fast_encoder` passes the export directory).

The export is made once, on first use (this needs torch and sentence-transformers, which are
installed anyway), and only installed after it agrees with the PyTorch model: every probe text
must embed at cosine >= AGREEMENT_FLOOR to sentence-transformers fp32, in fp32 and in bf16. It is
staged beside its final directory and renamed into place, so a crash never leaves a half-written
export that looks valid. Processes that need the same export at once (Dask workers on a fresh
machine) take turns under a file lock beside it: one exports, the others wait and reuse its work,
and an installed valid export is never replaced while another process may be reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.encoder.openvino_runtime import (OV_PRECISION, CompiledEncoder, EncoderLayout, compile_config,
                                               import_openvino, load_tokenizer, read_json)
from pipeline.errors import StanceError

EXPORT_FORMAT = 1
AGREEMENT_FLOOR = 0.999

# Probe texts for the agreement check: short and long, punctuation, non-ASCII, and one longer
# than the model's window so truncation is checked too. Batched together, they also check padding.
PROBES = [
    "China and the United States should cooperate on North Korea.",
    "Beijing will never squeeze Pyongyang hard enough; rivalry with Washington makes joint work hopeless.",
    "The delegation arrived on Tuesday.",
    "Sanctions worked — for a while. Then coal ships slipped through Dandong, and the “joint pressure” "
    "campaign quietly ended.",
    "Xi Jinping (习近平) and the Biden administration agreed on little, but both said the peninsula "
    "must be free of nuclear weapons.",
    "Relying on Beijing to rein in the North is a mirage. " * 3,
    "In 2017 the Security Council passed three rounds of sanctions with Chinese support, cutting the "
    "North's exports of coal, iron, seafood and textiles, capping its imports of refined petroleum and "
    "ordering the repatriation of its overseas workers; customs data show Chinese trade with the North "
    "fell by more than eighty percent the following year, the sharpest fall since records began.",
    ("Every administration since the 1990s has hoped that China would deliver North Korea, and every "
     "one has been disappointed, because Beijing values a stable buffer state more than it fears a "
     "nuclear neighbour. ") * 6,
    "ok",
]


def export_key(identity: str, openvino_version: str) -> str:
    return hashlib.sha256(f"{identity}|openvino {openvino_version}|format {EXPORT_FORMAT}".encode()).hexdigest()[:16]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return (a * b).sum(axis=1)


def existing_export(identity: str, root: Path, ov=None) -> Path | None:
    """The valid export directory for this model and OpenVINO version, or None."""
    if ov is None:
        ov = import_openvino()
    directory = Path(root) / export_key(identity, ov.get_version())
    return directory if _valid_manifest(read_json(directory / "manifest.json"), directory, identity) else None


def ensure_export(location: Path, identity: str, layout: EncoderLayout, root: Path, ov=None) -> Path:
    """The export directory for this model and OpenVINO version, exporting it first if missing."""
    if ov is None:
        ov = import_openvino()
    directory = Path(root) / export_key(identity, ov.get_version())
    if existing_export(identity, root, ov) is not None:
        return directory
    with export_lock(directory):
        if existing_export(identity, root, ov) is None:  # nobody exported it while we waited
            print(f"exporting {identity} to OpenVINO in {directory} (once; checked against PyTorch)...",
                  file=sys.stderr)
            export_model(location, identity, layout, directory)
    return directory


def export_lock(directory: Path):
    """The inter-process lock that whoever exports, or removes, `directory` holds."""
    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(directory.with_name(f".{directory.name}.lock")))


def _valid_manifest(manifest, directory: Path, identity: str) -> bool:
    if not isinstance(manifest, dict) or manifest.get("identity") != identity:
        return False
    if manifest.get("format") != EXPORT_FORMAT or not manifest.get("agreement_ok"):
        return False
    for name, size in (manifest.get("files") or {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return bool(manifest.get("files"))


def _hidden_states_module(auto_model):
    """The Hugging Face encoder as a module from plain tensors to token vectors (what is traced)."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = auto_model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs).last_hidden_state

    return HiddenStates()


def export_model(location: Path, identity: str, layout: EncoderLayout, directory: Path,
                 probes: Sequence[str] = PROBES, floor: float = AGREEMENT_FLOOR) -> dict:
    """Convert the model to OpenVINO IR, check it against sentence-transformers fp32, install it."""
    started = time.perf_counter()
    converted, reference, notes = convert_with_torch(location, probes)
    return install_export(converted, location, identity, layout, directory, probes, reference, floor,
                          {**notes, "export_seconds": round(time.perf_counter() - started, 2)})


def convert_with_torch(location: Path, probes: Sequence[str]):
    """(OpenVINO model of the network, sentence-transformers fp32 embeddings of `probes`, notes)."""
    import inspect

    import openvino as ov
    import torch
    from openvino.tools.ovc import convert_model

    from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder

    reference_embedder = SentenceTransformerEmbedder(str(location), batch_size=len(probes), precision="fp32")
    st_model = reference_embedder._load()
    reference = reference_embedder.encode(list(probes))
    auto_model = st_model[0].auto_model.float().eval()
    accepted = set(inspect.signature(auto_model.forward).parameters)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in accepted else [])
    example = {name: (torch.zeros if name == "token_type_ids" else torch.ones)((2, 8), dtype=torch.long)
               for name in names}
    example["attention_mask"][1, 5:] = 0  # a padded row, so masking cannot be traced away
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant here
        converted = convert_model(_hidden_states_module(auto_model), example_input=example,
                                  input=[(name, [-1, -1], ov.Type.i64) for name in names])
    return converted, reference, {"torch": torch.__version__}


def install_export(converted, location: Path, identity: str, layout: EncoderLayout, directory: Path,
                   probes: Sequence[str], reference: np.ndarray, floor: float = AGREEMENT_FLOOR,
                   notes: dict | None = None) -> dict:
    """Save `converted` beside `directory`, check it, and rename it into place.

    Every probe must embed at cosine >= `floor` to `reference` (sentence-transformers fp32) in
    fp32 and in bf16; otherwise nothing is installed and the error says so.
    """
    import openvino as ov

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        ov.save_model(converted, staging / "model.xml", compress_to_fp16=False)
        shutil.copyfile(location / "tokenizer.json", staging / "tokenizer.json")
        agreement = {}
        for precision in OV_PRECISION:  # both, whatever this CPU would pick: the export may be shared
            probe_encoder = _StagedEncoder(staging, layout, precision)
            agreement[precision] = round(float(cosines(probe_encoder.encode(list(probes)), reference).min()), 6)
        ok = all(value >= floor for value in agreement.values())
        manifest = {
            "format": EXPORT_FORMAT,
            "identity": identity,
            "source": str(location),
            "openvino": ov.get_version(),
            **(notes or {}),
            "layout": asdict(layout),
            "inputs": [port.get_any_name() for port in converted.inputs],
            "agreement_floor": floor,
            "agreement_min_cosine": agreement,
            "agreement_ok": ok,
            "probes": len(probes),
            "files": {name: (staging / name).stat().st_size for name in ("model.xml", "model.bin", "tokenizer.json")},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if not ok:
            raise StanceError(f"{directory}: the OpenVINO export of {identity} disagrees with PyTorch (minimum "
                              f"cosine {agreement} < {floor}); set embedding.backend: torch")
        installed = read_json(directory / "manifest.json")
        if _valid_manifest(installed, directory, identity):
            return installed  # another process installed one first: keep it, it may be in use
        if directory.exists():  # an older or damaged export
            trash = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


class _StagedEncoder(CompiledEncoder):
    """An encoder over a not-yet-installed export directory (for the agreement check)."""

    def __init__(self, directory: Path, layout: EncoderLayout, precision: str):
        self.batch_size = 64
        self.precision = precision
        self._directory = directory
        self._layout = layout
        self._request = None

    def _load(self):
        if self._request is not None:
            return
        ov = import_openvino()

        core = ov.Core()
        compiled = core.compile_model(core.read_model(self._directory / "model.xml"), "CPU",
                                      compile_config(self.precision))
        self._inputs = [port.get_any_name() for port in compiled.inputs]
        self._request = ov.AsyncInferQueue(compiled, 0)
        self._tokenizer = load_tokenizer(self._directory / "tokenizer.json", self._layout.max_length)
