"""Pinned code paths: the DVC stages compute the same bits on any Intel x86-64 processor."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import numerics

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = [*numerics.PINNED, numerics.NUMPY_VARIABLE, "NPY_ENABLE_CPU_FEATURES", "STANCE_NUMERICS",
             "MKL_ENABLE_INSTRUCTIONS"]


def clean_environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return {**env, **extra}


def run_python(code: str, env: dict, timeout: int = 120) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_only_numpy_targets_beyond_avx2_are_disabled():
    found = ["X86_V2", "X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX2", "FMA3", "AVX512F", "AVX512_SKX"]
    assert numerics.above_avx2(found) == ["X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX512F", "AVX512_SKX"]


def test_pin_sets_the_variables_before_the_libraries_load():
    probe = ("import json, os, sys\n"
             "from pipeline.numerics import pin, is_pinned, NUMPY_VARIABLE, PINNED\n"
             "line = pin()\n"
             "loaded = [m for m in ('numpy', 'torch') if m in sys.modules]\n"
             "import numpy\n"
             "from threadpoolctl import threadpool_info\n"
             "print(json.dumps({'line': line, 'loaded': loaded, 'pinned': is_pinned(),\n"
             "                  'env': {k: os.environ.get(k) for k in [*PINNED, NUMPY_VARIABLE]},\n"
             "                  'openblas': [i.get('architecture') for i in threadpool_info()\n"
             "                               if i.get('internal_api') == 'openblas']}))\n")
    seen = json.loads(run_python(probe, clean_environment()))
    assert seen["line"] == numerics.pin_line() and seen["loaded"] == [] and seen["pinned"]
    assert {k: seen["env"][k] for k in numerics.PINNED} == numerics.PINNED
    assert seen["openblas"] and set(seen["openblas"]) == {"Haswell"}  # not SkylakeX or Zen: the same kernels
    from numpy._core import _multiarray_umath as umath

    beyond = numerics.above_avx2([f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)])
    assert (seen["env"][numerics.NUMPY_VARIABLE] or "").split() == beyond  # on this machine, whatever it has


def test_a_users_own_setting_is_kept_and_native_turns_the_pin_off():
    code = "import os; from pipeline.numerics import pin; print(pin()); print(os.environ.get('OPENBLAS_CORETYPE'))"
    line, coretype = run_python(code, clean_environment(OPENBLAS_CORETYPE="Zen")).splitlines()
    assert coretype == "Zen"
    line, coretype = run_python(code, clean_environment(STANCE_NUMERICS="native")).splitlines()
    assert "STANCE_NUMERICS=native" in line and coretype == "None"


def test_only_x86_64_processors_with_avx2_are_pinned(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n", encoding="utf-8")
    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    assert numerics.has_avx2(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n", encoding="utf-8")
    assert not numerics.has_avx2(cpuinfo)
    assert numerics.has_avx2(tmp_path / "missing")  # no /proc: an x86-64 Mac or PC
    monkeypatch.setattr(numerics.platform, "machine", lambda: "aarch64")
    assert not numerics.has_avx2(tmp_path / "missing")
    code = ("import os, platform; platform.machine = lambda: 'aarch64'; from pipeline.numerics import pin; "
            "print(pin()); print(os.environ.get('OPENBLAS_CORETYPE'))")
    line, coretype = run_python(code, clean_environment()).splitlines()
    assert line.startswith("numerics: not pinned (not an x86-64 processor with AVX2)") and coretype == "None"


def test_pin_changes_nothing_once_numpy_is_loaded(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "numpy" in sys.modules
    assert re.fullmatch(r"numerics: not pinned \((numpy|scipy|torch)(, (numpy|scipy|torch))* already loaded in this "
                        r"process\)", numerics.pin())
    assert not numerics.is_pinned() and "MKL_CBWR" not in os.environ


def test_pinned_torch_embeddings_are_named_apart(monkeypatch):
    from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder

    for name in numerics.PINNED:
        monkeypatch.delenv(name, raising=False)
    assert SentenceTransformerEmbedder("default", precision="fp32").identity.endswith("/fp32")
    for name, value in numerics.PINNED.items():
        monkeypatch.setenv(name, value)
    assert SentenceTransformerEmbedder("default", precision="fp32").identity.endswith("/avx2-fp32")
    assert SentenceTransformerEmbedder("default", precision="bf16").identity.endswith("/bf16")


def test_mkl_runs_the_avx2_branch_on_intel_and_its_own_elsewhere():
    """MKL honours the AVX2 branch on Intel processors only; elsewhere `MKL_CBWR=AVX2` silently
    becomes `AUTO` (seen on an AMD EPYC), and the closing line must say so. MKL_VERBOSE prints the
    branch a matrix product actually ran on."""
    code = ("from pipeline.numerics import pin; print(pin())\n"
            "import torch\n"
            "torch.nn.functional.linear(torch.ones(16, 32), torch.ones(24, 32))\n")
    printed = run_python(code, clean_environment(MKL_VERBOSE="1"))  # MKL_VERBOSE writes to stdout
    branches = set(re.findall(r"CNR:([A-Z0-9_]+)", printed))
    if numerics.is_intel():
        assert branches == {"AVX2"} and numerics.PINNED_LINE in printed
    else:
        assert branches == {"AUTO"} and numerics.NOT_INTEL_LINE in printed


def test_the_vendor_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: avx2\n", encoding="utf-8")
    assert not numerics.is_intel(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: avx2\n", encoding="utf-8")
    assert numerics.is_intel(cpuinfo)
    assert numerics.is_intel(tmp_path / "missing")


EMBED = ("import sys, numpy as np, torch\n"
         "torch.set_num_threads(int(sys.argv[1]))\n"
         "from pipeline.encoder.torch_encoder import SentenceTransformerEmbedder\n"
         "texts = ['Beijing and Washington agreed to tighten sanctions together.',\n"
         "         'The talks collapsed and both sides blamed each other for the failure to agree.',\n"
         "         'Seoul hosted the summit.', 'Cooperation with China is the only road to a nuclear-free peninsula, '\n"
         "         'and Washington should stop treating every step by Beijing as a rival move.'] * 3\n"
         "vectors = SentenceTransformerEmbedder('default', batch_size=int(sys.argv[2]), precision='fp32').encode(texts)\n"
         "np.save(sys.argv[3], np.asarray(vectors, dtype=np.float32))\n")


@pytest.mark.e2e
def test_pinned_embeddings_are_the_same_bits_across_threads_batches_and_instruction_sets(tmp_path):
    """The real packaged model, pinned: 1 or 2 threads, batches of 1 or 8, and MKL limited to AVX2
    as on a processor without AVX-512 (MKL_ENABLE_INSTRUCTIONS) all give identical embeddings."""
    pinned = clean_environment(**numerics.PINNED)
    runs = {"2 threads, batch 8": (pinned, "2", "8"), "1 thread, batch 1": (pinned, "1", "1"),
            "AVX2-only MKL": ({**pinned, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "2", "8")}
    vectors = {}
    for name, (env, threads, batch) in runs.items():
        out = tmp_path / f"{len(vectors)}.npy"
        subprocess.run([sys.executable, "-c", EMBED, threads, batch, str(out)], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=300)
        vectors[name] = np.load(out)
    first = vectors["2 threads, batch 8"]
    for name, other in vectors.items():
        assert np.array_equal(first, other), f"{name}: max difference {np.abs(first - other).max():.2e}"


def run_stage(command: str, params: Path) -> subprocess.CompletedProcess:
    """A DVC stage as DVC runs it: a fresh `stance` process (which pins before numpy loads)."""
    code = "import sys; from pipeline.cli import main; sys.argv = ['stance', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, command, "--params", str(params)], capture_output=True,
                          text=True, timeout=300, env=clean_environment(), cwd=ROOT)


@pytest.mark.e2e
def test_an_incremental_embed_writes_what_a_run_from_scratch_writes(tmp_path):
    """Two documents added after a first embed run are encoded on their own (the rest comes from
    the cache); the table is byte for byte the one a run from an empty cache writes."""
    import shutil

    from conftest import write_project

    params = write_project(tmp_path / "project", n_docs=4)
    config = tmp_path / "project" / "params.yaml"
    for command in ("prepare", "embed"):
        assert run_stage(command, config).returncode == 0
    larger = write_project(tmp_path / "larger", n_docs=6)  # the same four documents and two more
    shutil.copytree(larger["paths"]["raw_dir"], params["paths"]["raw_dir"], dirs_exist_ok=True)
    assert run_stage("prepare", config).returncode == 0
    step = run_stage("embed", config)
    assert step.returncode == 0, step.stderr
    assert numerics.pin_line() in step.stderr and "/avx2-fp32" in step.stderr
    embeddings = Path(params["paths"]["embeddings"])
    incremental = embeddings.read_bytes()
    shutil.rmtree(params["paths"]["embedding_cache"])
    embeddings.unlink()
    assert run_stage("embed", config).returncode == 0
    assert embeddings.read_bytes() == incremental
    for command in ("train", "evaluate"):  # they pin too: numpy must not load before their pin
        step = run_stage(command, config)
        assert step.returncode == 0, step.stderr
        assert step.stderr.strip().endswith(numerics.pin_line()), step.stderr
