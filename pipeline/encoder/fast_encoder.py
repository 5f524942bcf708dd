"""The fast embedding path: the sentence-transformers model exported to OpenVINO, run without torch.

Inputs:  a local sentence-transformers model directory whose modules are Transformer -> Pooling
         (-> Normalize), e.g. the packaged all-MiniLM-L6-v2.
Outputs: float32 sentence embeddings, as the PyTorch backend computes them (cosine >= 0.999).
Params:  `embedding.model`, `embedding.batch_size`, `embedding.precision`, `embedding.export_dir`.

`OpenVINOEmbedder` loads the model's export (`pipeline.encoder.openvino_export`), making it on
first use, and encodes through `pipeline.encoder.openvino_runtime` with `tokenizers`: afterwards
the encoder needs only `openvino`, `tokenizers` and numpy. OpenVINO's compiled-model cache (inside
the export directory) makes the second and later loads fast, and `start_loading` overlaps the
compilation with reading the inputs.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from pipeline.encoder.identity import DEFAULT_MODEL, model_identity, resolve_model, resolve_precision
from pipeline.encoder.openvino_export import ensure_export, existing_export, export_lock
from pipeline.encoder.openvino_runtime import (CompiledEncoder, EncoderLayout, compile_config, encoder_layout,
                                               import_openvino, load_tokenizer)
from pipeline.errors import StanceError

DEFAULT_EXPORT_DIR = ".cache/openvino"


def exportable(spec: str) -> bool:
    """True when the model named by `spec` can run on the OpenVINO path (and openvino is installed)."""
    from importlib.util import find_spec

    location = Path(resolve_model(spec))
    return find_spec("openvino") is not None and location.is_dir() and encoder_layout(location) is not None


class OpenVINOEmbedder(CompiledEncoder):
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
        compiled = self._compile(ov, directory)
        self._inputs = [port.get_any_name() for port in compiled.inputs]
        self._request = ov.AsyncInferQueue(compiled, 0)  # one request per stream
        if tokenizer:
            self._tokenizer = load_tokenizer(directory / "tokenizer.json", layout.max_length)
        self._layout = layout
        self.export_path = directory

    def _compile(self, ov, directory: Path):
        """The compiled export, through OpenVINO's blob cache in `directory/compiled` when it works.

        A failure is first retried from the IR alone, since a torn blob (another process writing
        the cache) is not a damaged export; only an export that cannot compile at all is removed.
        """
        for cached in (True, False):
            core = ov.Core()
            if cached:
                try:
                    core.set_property({"CACHE_DIR": str(directory / "compiled")})
                except Exception:  # noqa: BLE001 - a read-only cache only costs load time
                    pass
            try:  # by path: on a cache hit OpenVINO loads the compiled blob without reading the IR
                return core.compile_model(str(directory / "model.xml"), "CPU", compile_config(self.precision))
            except Exception as exc:  # noqa: BLE001 - decided below
                error = exc
        with export_lock(directory):
            shutil.rmtree(directory, ignore_errors=True)
        raise StanceError(f"{directory}: cannot load the OpenVINO export ({type(error).__name__}); it was "
                          f"removed and will be re-exported on the next run") from None
