"""The fast embedding path: the sentence-transformers model exported to OpenVINO, run without torch.

Inputs:  a local sentence-transformers model directory whose modules are Transformer -> Pooling
         (-> Normalize), e.g. the packaged all-MiniLM-L6-v2.
Outputs: an export under `embedding.export_dir` (default `.cache/openvino`), one directory per
         model identity and OpenVINO version: `model.xml`/`model.bin` (fp32 weights), the model's
         `tokenizer.json`, and `manifest.json` recording the layout and the agreement check.
Params:  `embedding.model`, `embedding.batch_size`, `embedding.precision`, `embedding.export_dir`.

The export is made once, on first use (this needs torch and sentence-transformers, which are
installed anyway), and only installed after it agrees with the PyTorch model: every probe text
must embed at cosine >= AGREEMENT_FLOOR to sentence-transformers fp32, in fp32 and in bf16.
Afterwards the encoder needs only `openvino`, `tokenizers`
and numpy: it tokenizes with the model's own `tokenizer.json` (truncated at the model's
`max_seq_length`, as sentence-transformers does), sorts the texts by token length so each batch
carries little padding, runs the network, and pools and normalises in numpy exactly as the
model's `modules.json` says. OpenVINO's compiled-model cache (inside the export directory) makes
the second and later loads fast.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.embed import DEFAULT_MODEL, model_identity, resolve_model, resolve_precision
from pipeline.errors import StanceError

EXPORT_FORMAT = 1
AGREEMENT_FLOOR = 0.999
DEFAULT_EXPORT_DIR = ".cache/openvino"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}

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


@dataclass(frozen=True)
class EncoderLayout:
    """What the sentence-transformers pipeline of a model directory does after the network."""

    max_length: int
    pooling: str          # mean | cls | max | mean_sqrt_len
    normalize: bool
    dimension: int


def _read_json(path: Path) -> dict | list | None:
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
    modules = _read_json(model_dir / "modules.json")
    if not isinstance(modules, list) or not (model_dir / "tokenizer.json").is_file():
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    if len(kinds) != len(modules) or kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None
    if modules[0].get("path", "") not in ("", "."):
        return None
    pooling = _read_json(model_dir / modules[1].get("path", "1_Pooling") / "config.json")
    if not isinstance(pooling, dict):
        return None
    modes = [name for key, name in POOLING_MODES.items() if pooling.get(key)]
    other = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k not in POOLING_MODES]
    if len(modes) != 1 or other or not pooling.get("include_prompt", True):
        return None
    sbert = _read_json(model_dir / "sentence_bert_config.json") or {}
    config = _read_json(model_dir / "config.json") or {}
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json") or {}
    limits = [int(v) for v in (sbert.get("max_seq_length"), tokenizer_config.get("model_max_length"),
                               config.get("max_position_embeddings")) if isinstance(v, int) and 0 < v < 100_000]
    if not limits or sbert.get("do_lower_case"):
        return None  # lower-casing outside tokenizer.json is not reproduced here
    dimension = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
    if dimension <= 0:
        return None
    return EncoderLayout(min(limits), modes[0], kinds[2:] == ["Normalize"], dimension)


def exportable(spec: str) -> bool:
    """True when the model named by `spec` can run on the OpenVINO path (and openvino is installed)."""
    from importlib.util import find_spec

    location = Path(resolve_model(spec))
    return find_spec("openvino") is not None and location.is_dir() and encoder_layout(location) is not None


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


def export_key(identity: str, openvino_version: str) -> str:
    import hashlib

    return hashlib.sha256(f"{identity}|openvino {openvino_version}|format {EXPORT_FORMAT}".encode()).hexdigest()[:16]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return (a * b).sum(axis=1)


class OpenVINOEmbedder:
    """Embeddings from the OpenVINO export (made on first use), with `tokenizers`; no torch import."""

    backend = "openvino"

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, precision: str = "auto",
                 export_dir: str | Path = DEFAULT_EXPORT_DIR):
        self.spec = model or DEFAULT_MODEL
        self.batch_size = max(1, int(batch_size))
        self.precision = resolve_precision(precision)
        self.model_identity = model_identity(self.spec)
        self.identity = f"{self.model_identity}/openvino-{self.precision}"
        self.export_root = Path(export_dir)
        self.export_path: Path | None = None
        self._tokenizer = None
        self._request = None  # an openvino AsyncInferQueue once loaded
        self._layout: EncoderLayout | None = None
        self._inputs: list[str] = []
        self._loader: threading.Thread | None = None  # see start_loading
        self._load_error: BaseException | None = None

    def __getstate__(self):  # picklable before and after loading (workers load their own copy)
        self.wait_loaded(raise_errors=False)
        state = dict(self.__dict__)
        state.update(_tokenizer=None, _request=None, _loader=None, _load_error=None)
        return state

    # -- loading -------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Start loading in a background thread, so that the caller can read its inputs meanwhile
        (OpenVINO compiles without holding the GIL); `encode` waits for it. Only an existing
        export is loaded this way: making one (first use) stays in the foreground, where it prints."""
        if self._request is not None or self._loader is not None:
            return
        # The import itself runs here: it holds the GIL either way (a thread would only slow this
        # thread's own imports down), whereas compiling does not, and then overlaps with them.
        try:
            import_openvino()
        except ImportError:
            pass  # reported where it always was: by the loading below

        def load() -> None:
            try:
                self._load_now(export=False, tokenizer=False)  # `_load` reads the tokenizer meanwhile
            except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits for it
                self._load_error = exc

        self._loader = threading.Thread(target=load, name="stance-model-load")
        self._loader.start()

    def wait_loaded(self, raise_errors: bool = True) -> None:
        """Wait for `start_loading`'s thread, if any, and raise what it raised."""
        if self._loader is None:
            return
        self._loader.join()
        self._loader = None
        error, self._load_error = self._load_error, None
        if error is not None and raise_errors:
            raise error

    def _source(self) -> tuple[Path, EncoderLayout | None]:
        """The model directory and its layout (None when this module cannot run it)."""
        location = Path(resolve_model(self.spec))
        return location, encoder_layout(location) if location.is_dir() else None

    def _load(self):
        if self._loader is not None and self._tokenizer is None:  # while OpenVINO compiles (no GIL held)
            location, layout = self._source()  # the export's tokenizer.json is a copy of this one's
            if layout is not None:
                self._tokenizer = load_tokenizer(location / "tokenizer.json", layout.max_length)
        self.wait_loaded()
        if self._request is None or self._tokenizer is None:
            self._load_now(export=True)

    def _load_now(self, export: bool, tokenizer: bool = True) -> None:
        """Load the export (making it first if `export`; otherwise a missing one is left for later)
        and, if `tokenizer`, its tokenizer."""
        ov = import_openvino()

        location, layout = self._source()
        if layout is None:
            raise StanceError(f"embedding model {self.spec!r}: not a local sentence-transformers model the "
                              f"OpenVINO backend can run (set embedding.backend: torch)")
        directory = (ensure_export(location, self.model_identity, layout, self.export_root, ov) if export
                     else existing_export(self.model_identity, self.export_root, ov))
        if directory is None:
            return
        core = ov.Core()
        try:
            core.set_property({"CACHE_DIR": str(directory / "compiled")})
        except Exception:  # noqa: BLE001 - a read-only cache only costs load time
            pass
        try:  # by path: on a cache hit OpenVINO loads the compiled blob without reading the IR
            compiled = core.compile_model(str(directory / "model.xml"), "CPU", compile_config(self.precision))
        except Exception as exc:  # noqa: BLE001 - a damaged export is removed and remade next time
            shutil.rmtree(directory, ignore_errors=True)
            raise StanceError(f"{directory}: cannot load the OpenVINO export ({type(exc).__name__}); it was "
                              f"removed and will be re-exported on the next run") from None
        self._inputs = [port.get_any_name() for port in compiled.inputs]
        self._request = ov.AsyncInferQueue(compiled, 0)  # one request per stream
        if tokenizer:
            self._tokenizer = load_tokenizer(directory / "tokenizer.json", layout.max_length)
        self._layout = layout
        self.export_path = directory

    # -- encoding ------------------------------------------------------------------------
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


# -- export ------------------------------------------------------------------------------------
def existing_export(identity: str, root: Path, ov=None) -> Path | None:
    """The valid export directory for this model and OpenVINO version, or None."""
    if ov is None:
        ov = import_openvino()
    directory = Path(root) / export_key(identity, ov.get_version())
    return directory if _valid_manifest(_read_json(directory / "manifest.json"), directory, identity) else None


def ensure_export(location: Path, identity: str, layout: EncoderLayout, root: Path, ov=None) -> Path:
    """The export directory for this model and OpenVINO version, exporting it first if missing."""
    if ov is None:
        ov = import_openvino()
    directory = Path(root) / export_key(identity, ov.get_version())
    if existing_export(identity, root, ov) is not None:
        return directory
    print(f"exporting {identity} to OpenVINO in {directory} (once; checked against PyTorch)...", file=sys.stderr)
    export_model(location, identity, layout, directory)
    return directory


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

    from pipeline.embed import SentenceTransformerEmbedder

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
        if directory.exists():  # an older or damaged export (a valid one is never rebuilt)
            trash = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(staging, directory)
        except OSError:
            if not _valid_manifest(_read_json(directory / "manifest.json"), directory, identity):
                raise  # not a concurrent export that finished first: a real error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


class _StagedEncoder(OpenVINOEmbedder):
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
