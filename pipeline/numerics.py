"""The same numbers on every Intel x86-64 processor: the code paths the DVC stages compute with.

PyTorch (ATen kernels), MKL (its matrix products), oneDNN, OpenBLAS and numpy's own loops each
pick their code path by the processor they run on, and each path sums in its own order. So the
same paragraphs embed to other last bits on a Xeon with AVX-512 than on one with AVX2 only, and an
iterative solver grows such differences: refitting the classifier with OpenBLAS's AVX2 kernels
moved its coefficients by up to 3e-5 (measured on the corpus). A fresh clone's `dvc repro` would
then rewrite the committed embeddings, model and metrics.

`pin()` asks each library for its AVX2 path, which every x86-64 processor of the last decade
has, through the environment variables the libraries read when they load:
- `ATEN_CPU_CAPABILITY=avx2`: PyTorch's own kernels (layer norm, softmax, GELU);
- `MKL_CBWR=AVX2,STRICT`: MKL's conditional numerical reproducibility, AVX2 branch, strict mode
  (the same bits for any number of threads);
- `ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN, where PyTorch uses it;
- `OPENBLAS_CORETYPE=Haswell`: OpenBLAS (numpy's and scipy's) uses its AVX2 kernels;
- `NPY_DISABLE_CPU_FEATURES`: numpy's AVX-512 loops, those this machine has, are turned off.

Measured on a Xeon with AVX-512 and AMX, with all-mpnet-base-v2 in PyTorch fp32: pinned
embeddings came out bit for bit the same with 1, 2, 3 or 4 threads, in batches of 1 or 8, and
with MKL and oneDNN limited to AVX2 as on an AVX2-only processor; unpinned, each of those changed
the last bits. It costs speed on AVX-512 processors (on the benchmark's Xeon the embed stage
encodes 11.0 corpus paragraphs/s, the unpinned OpenVINO scoring path 17.0: reports/benchmark.json,
`retraining_run`), so only the stages that make committed results pin; scoring does not.

**Not on AMD processors.** MKL runs its AVX2 branch on Intel processors only: on an AMD EPYC
(Zen 4, 2026-12-07) MKL_VERBOSE showed `MKL_CBWR=AVX2,STRICT` running as `CNR:AUTO` (MKL's own
dispatch), and a pinned `dvc repro` there rewrote the committed embeddings in their last bits,
and so the model and the predictions (sixth decimal); the metrics, to four decimals, came out the
same. MKL's one branch for every vendor, `COMPATIBLE` (SSE2), is no way out: measured on
that EPYC, it made the embed stage 2.9 times slower (3.8 against 10.9 paragraphs/s), and its
results depend on the number of rows in a product (a paragraph embedded alone or in a batch of 8
came out with other last bits), which an incremental embed cannot allow. So on a non-Intel
processor the stage's closing line says that its last bits may differ from the committed ones.

The variables only work before the libraries load, so `pin()` sets them only in a process that
has not imported numpy, scipy or torch yet (the `stance` commands import them lazily), and a
variable the user has set is left as it is. On a processor that is not x86-64 with AVX2 (ARM, for
one) nothing is pinned and the stage's closing line says so.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
NUMPY_VARIABLE = "NPY_DISABLE_CPU_FEATURES"
PINNED_LINE = ("numerics: AVX2 code paths in PyTorch, MKL, OpenBLAS and numpy (the same bits on every Intel x86-64 "
               "processor)")
NOT_INTEL_LINE = ("numerics: AVX2 code paths in PyTorch, OpenBLAS and numpy; MKL runs its own on this non-Intel "
                  "processor, so the last bits may differ from the committed ones")
LOADED_TOO_EARLY = ("numpy", "scipy", "torch")
# Asked of numpy in a child process, because asking in this one would load it before the pin.
_PROBE = ("import numpy as np\n"
          "try:\n    from numpy._core import _multiarray_umath as m\n"
          "except ImportError:\n    from numpy.core import _multiarray_umath as m\n"
          "print(' '.join(f for f in m.__cpu_dispatch__ if m.__cpu_features__.get(f)))\n")


def above_avx2(features: list[str]) -> list[str]:
    """The numpy dispatch targets beyond AVX2 (AVX-512 in its forms; numpy 2.4 names the level X86_V4)."""
    return [f for f in features if f.startswith("AVX512") or f == "X86_V4"]


def numpy_features_to_disable() -> str:
    """The AVX-512 features numpy dispatches to on this machine, as NPY_DISABLE_CPU_FEATURES wants
    them ("" when none, or when numpy cannot be asked)."""
    try:
        found = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **{k: v for k, v in PINNED.items() if k not in os.environ}})
    except (OSError, subprocess.SubprocessError):
        return ""
    return " ".join(above_avx2(found.stdout.split())) if found.returncode == 0 else ""


def has_avx2(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this is an x86-64 processor with AVX2, the paths `pin()` asks for (OpenBLAS would
    fault on a forced Haswell kernel without it; elsewhere, e.g. on ARM, the variables mean nothing)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = _cpuinfo_field("flags", cpuinfo)
    if flags is None:
        return True  # no /proc (macOS, Windows): every x86-64 Mac or PC of the last decade has AVX2
    return "avx2" in flags.split()


def _cpuinfo_field(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first `name : value` line of /proc/cpuinfo ("" when absent), or None without the file."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def pin() -> str:
    """Set the variables of the module docstring for this process; one line saying what holds."""
    if os.environ.get("STANCE_NUMERICS", "").strip().lower() == "native":
        return "numerics: the processor's fastest code paths (STANCE_NUMERICS=native); results may differ by processor"
    early = [name for name in LOADED_TOO_EARLY if name in sys.modules]
    if early:
        return f"numerics: not pinned ({', '.join(early)} already loaded in this process)"
    if not has_avx2():
        return ("numerics: not pinned (not an x86-64 processor with AVX2); results may differ in the last bits "
                "from the committed ones")
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    if NUMPY_VARIABLE not in os.environ and "NPY_ENABLE_CPU_FEATURES" not in os.environ:
        disabled = numpy_features_to_disable()
        if disabled:
            os.environ[NUMPY_VARIABLE] = disabled
    return pin_line()


def pin_line() -> str:
    """The closing line of a pinned stage on this processor."""
    return PINNED_LINE if is_intel() else NOT_INTEL_LINE


def is_intel(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether MKL will run the AVX2 branch `pin()` asks for: on Intel processors only (elsewhere its
    CNR mode falls back to AUTO, its own dispatch). Without /proc it is assumed, as in `has_avx2`."""
    vendor = _cpuinfo_field("vendor_id", cpuinfo)
    return vendor is None or vendor == "GenuineIntel"


def is_pinned() -> bool:
    """Whether this process computes with the pinned PyTorch/MKL paths (so its embeddings are reproducible)."""
    return all(os.environ.get(name) == value for name, value in PINNED.items())


def signature() -> str:
    """The numerics this process computes with, as one line: pinned, the variables; otherwise the
    processor, since its own code paths then decide the last bits (caches key on this)."""
    names = [*PINNED, NUMPY_VARIABLE]
    if is_pinned():
        return "pinned " + " ".join(f"{name}={os.environ.get(name, '')}" for name in names)
    model = _cpuinfo_field("model name")
    settings = " ".join(f"{name}={os.environ[name]}" for name in names if name in os.environ)
    return f"native {platform.machine()} {model or platform.processor()} {settings}".strip()
