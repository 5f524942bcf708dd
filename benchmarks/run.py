"""The performance benchmark: one command, one run, every number the README quotes.

    .venv/bin/python benchmarks/run.py            # full run, about 40 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # a smoke run with small numbers
    .venv/bin/python benchmarks/run.py --retraining-only   # the training path and retraining (about 12 minutes)

Measures, on a generated corpus of realistic op-ed paragraphs (benchmarks/corpus.py):
  1. raw `encode` throughput of every precision/backend (torch/openvino x fp32/bf16) and each
     path's cosine to PyTorch fp32; the useful GFLOP/s of each path (the model's multiply-adds for
     the real token counts) against a large fp32 matrix product on all cores, this CPU's ceiling;
  2. the default path's throughput for several batch sizes (texts sorted by length);
  3. the scoring path (bf16 where the CPU has AMX) against the fp32 embeddings the model trained
     on: label agreement and probability differences on the labelled corpus;
  4. retraining (prepare, embed, train, evaluate) from scratch and after adding 10 labelled
     paragraphs, in a temporary copy of the project (never in the project's own data/);
  5. end-to-end `stance score` throughput over 100 documents of the same paragraphs, and its
     ratio to raw encode throughput of the same path;
  6. cold start of `stance score` on one short document, and `stance --help`.
Prints a Markdown table and writes reports/benchmark.json.

Timings are wall-clock, repeated (--repeats) with the best kept: other work on the machine only
ever makes a run slower, so the best repeat is the closest estimate of what the hardware does.
Measurements are interleaved across paths, and the load average is recorded at each step.
The OpenVINO export is shared with the project (`embedding.export_dir`) and made first if
missing; its one-time cost is reported separately (from its manifest).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402  (benchmarks/corpus.py)

from pipeline.encoder import embed  # noqa: E402
from pipeline.encoder.fast_encoder import exportable  # noqa: E402
from pipeline.encoder.identity import cpu_has_native_bf16, resolve_model  # noqa: E402
from pipeline.errors import StanceError  # noqa: E402
from pipeline.files import load_params, merge_json_atomic  # noqa: E402

STANCE = str(Path(sys.executable).parent / "stance")
PATHS = [("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")]
HEAVY = ("torch", "sentence_transformers", "transformers", "sklearn", "joblib", "datasets")
SHORT_DOCUMENT = ("China and the United States must keep working together on North Korea, because sanctions "
                  "only bite when Beijing enforces them at the border.\n\n"
                  "The talks in Beijing ended on Tuesday without a joint statement.\n")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", file=sys.stderr, flush=True)


# -- machine --------------------------------------------------------------------------------
def machine() -> dict:
    info = {"cores": os.cpu_count(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "cpu family", "model", "stepping") and key not in info:
            info[key] = value
        if key == "flags" and "flags" not in info:
            present = set(value.split())
            info["flags"] = {f: f in present for f in ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                                        "amx_bf16", "amx_int8", "hypervisor")}
    info["native_bf16 (AMX)"] = cpu_has_native_bf16()
    from pipeline.model.model_store import library_versions

    info["versions"] = library_versions()
    return info


def best_of(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def run_command(args: list[str], cwd: Path, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{result.stderr[-2000:]}")
    return elapsed, result


# -- 1 + 2: raw encode ------------------------------------------------------------------------
def token_stats(texts: list[str]) -> dict:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(resolve_model("default")) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(texts)])
    return {"paragraphs": len(texts), "mean_tokens": round(float(lengths.mean()), 1),
            "median_tokens": int(np.median(lengths)), "p95_tokens": int(np.percentile(lengths, 95)),
            "max_tokens": int(lengths.max())}


def make(params: dict, backend: str, precision: str, batch_size: int | None = None):
    # Raw encode: the encoder reading each paragraph whole, whatever `embedding.paragraph_vector` says.
    overrides = {"backend": backend, "precision": precision, "paragraph_vector": "whole"}
    if batch_size:
        overrides["batch_size"] = batch_size
    return embed.make_embedder(params, **overrides)


def raw_throughput(params: dict, texts: list[str], repeats: int) -> tuple[list[dict], dict]:
    embedders = {}
    for backend, precision in PATHS:
        if backend == "openvino" and not exportable(params["embedding"].get("model") or "default"):
            continue
        # PyTorch rows use batch 32 (the sentence-transformers default, the baseline); OpenVINO rows
        # use embedding.batch_size, the value the sweep below supports.
        try:
            embedders[(backend, precision)] = make(params, backend, precision, 32 if backend == "torch" else None)
        except StanceError as exc:  # e.g. OpenVINO bf16, disabled: its AMX kernels fail on this model
            log(f"raw encode {backend}-{precision}: refused ({exc})")
            continue
        embedders[(backend, precision)].encode(texts[:16])  # load and warm up
    best = {key: float("inf") for key in embedders}
    vectors = {}
    for repeat in range(repeats):
        for key, embedder in embedders.items():
            started = time.perf_counter()
            vectors[key] = embedder.encode(texts)
            best[key] = min(best[key], time.perf_counter() - started)
            log(f"raw encode {key[0]}-{key[1]} repeat {repeat + 1}: {len(texts) / best[key]:.1f} p/s (best so far)")
    reference = vectors[("torch", "fp32")]
    from pipeline.encoder.openvino_export import cosines

    rows = []
    for (backend, precision), seconds in best.items():
        cos = cosines(vectors[(backend, precision)], reference)
        rows.append({"backend": backend, "precision": precision, "identity": embedders[(backend, precision)].identity,
                     "batch_size": embedders[(backend, precision)].batch_size,
                     "paragraphs_per_s": round(len(texts) / seconds, 1),
                     "speedup_vs_torch_fp32": round(best[("torch", "fp32")] / seconds, 2),
                     "cosine_to_fp32_min": round(float(cos.min()), 6), "cosine_to_fp32_mean": round(float(cos.mean()), 6)})
    return rows, embedders


def batch_sweep(params: dict, backend: str, precision: str, texts: list[str], repeats: int, sizes) -> list[dict]:
    embedders = {size: make(params, backend, precision, size) for size in sizes}
    for embedder in embedders.values():
        embedder.encode(texts[:8])
    best = {size: float("inf") for size in sizes}
    for repeat in range(repeats):
        for size, embedder in embedders.items():
            best[size] = min(best[size], best_of(1, lambda e=embedder: e.encode(texts)))
        log(f"batch sweep repeat {repeat + 1}: " + ", ".join(f"{s}: {len(texts) / best[s]:.0f}" for s in sizes))
    return [{"batch_size": size, "paragraphs_per_s": round(len(texts) / best[size], 1)} for size in sizes]


# -- what the processor allows ------------------------------------------------------------------
def encoder_flops(texts: list[str], model: str | None = None) -> dict:
    """Multiply-add work of the default model per paragraph (2 FLOPs per multiply-add), from its
    config and the real (truncated) token counts: per layer the Q/K/V/output projections
    (8 n H^2), the feed-forward (4 n H I) and the attention products (4 n^2 H). Padding excluded."""
    from pipeline.encoder.openvino_runtime import encoder_layout, load_tokenizer

    model = model or load_params(ROOT / "params.yaml")["embedding"].get("model") or "default"
    location = Path(resolve_model(model))
    config = json.loads((location / "config.json").read_text(encoding="utf-8"))
    layers, hidden, inner = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    tokenizer = load_tokenizer(location / "tokenizer.json", encoder_layout(location).max_length)
    n = np.array([len(e.ids) for e in tokenizer.encode_batch(texts)], dtype=np.float64)
    per_paragraph = layers * (8 * n * hidden**2 + 4 * n * hidden * inner + 4 * n**2 * hidden)
    return {"layers": layers, "hidden": hidden, "intermediate": inner,
            "gflop_per_paragraph": round(float(per_paragraph.mean()) / 1e9, 3)}


def fp32_matmul_peak(repeats: int = 30, size: int = 2048) -> float:
    """GFLOP/s of a large fp32 matrix product on all cores (numpy's BLAS): a practical ceiling
    for any fp32 inference on this CPU, which spends most of its time in such products. Other
    work on a shared machine only ever lowers it: many repeats, the best kept (`main` also takes
    it twice, before and after the encoders run, and keeps the higher)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    with threadpool_limits(limits=os.cpu_count()):
        a @ b
        seconds = best_of(repeats, lambda: a @ b)
    return round(2 * size**3 / seconds / 1e9, 1)


def compute_bound(raw_rows: list[dict], flops: dict, peak: float) -> dict:
    """Each raw-encode path's useful GFLOP/s and its share of the fp32 matmul peak, and what
    3x PyTorch fp32 would need."""
    per = flops["gflop_per_paragraph"]
    rows = {f"{r['backend']}-{r['precision']}": {"gflop_per_s": round(r["paragraphs_per_s"] * per, 1),
                                                 "share_of_fp32_peak": round(r["paragraphs_per_s"] * per / peak, 2)}
            for r in raw_rows}
    torch_fp32 = next(r["paragraphs_per_s"] for r in raw_rows if (r["backend"], r["precision"]) == ("torch", "fp32"))
    return {**flops, "fp32_matmul_peak_gflop_per_s": peak, "paths": rows,
            "three_times_torch_fp32_needs_gflop_per_s": round(3 * torch_fp32 * per, 1),
            "three_times_torch_fp32_share_of_fp32_peak": round(3 * torch_fp32 * per / peak, 2)}


# -- 3: scoring precision against the fp32 the model was trained on ------------------------------
def precision_check(params: dict, default, sample: int | None = None, seed: int = 0) -> dict:
    """The shipped model's labels and probabilities on every labelled corpus paragraph, from the
    fp32 embeddings it was trained on (the embed stage's output) and from the scoring path's
    embeddings (`score.precision`: bf16 where the CPU has AMX): label agreement and probability
    differences. bf16 is only a scoring-time speed-up, so this is what it may cost."""
    from pipeline.encoder.embed import load_embeddings
    from pipeline.encoder.openvino_export import cosines
    from pipeline.scoring.score import load_scorer

    embeddings = ROOT / params["paths"]["embeddings"]
    if not embeddings.exists() or not (ROOT / params["paths"]["model"]).exists():
        return {"skipped": "no embeddings or model (run `dvc repro` in the project first)"}
    rows, fp32, identity = load_embeddings(embeddings)
    if sample and sample < len(rows):  # a seeded sample of the labelled corpus
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), sample, replace=False))
        rows, fp32 = [rows[i] for i in keep], fp32[keep]
    texts = [r["text"] for r in rows]
    scorer = load_scorer(params, embedder=default)
    started = time.perf_counter()
    scoring = default.encode(texts)
    seconds = time.perf_counter() - started
    zeros = np.zeros_like(fp32)
    p32 = scorer.classify(texts, fp32, zeros)
    pdef = scorer.classify(texts, scoring, zeros)
    diff = np.abs(p32 - pdef)
    cos = cosines(scoring, fp32)
    out = {"paragraphs": len(texts), "trained_on": identity, "scoring_path": default.identity,
           "label_agreement": round(float((p32.argmax(1) == pdef.argmax(1)).mean()), 4),
           "labels_changed": int((p32.argmax(1) != pdef.argmax(1)).sum()),
           "probability_difference_max": round(float(diff.max()), 4),
           "probability_difference_mean": round(float(diff.mean()), 5),
           "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
           "scoring_path_paragraphs_per_s": round(len(texts) / seconds, 1)}
    log(f"precision check: {out}")
    return out


# -- 3b: the training path (pinned PyTorch fp32, pipeline/numerics.py) ----------------------------
PINNED_ENCODE = ("import json, sys, time\n"
                 "from pipeline.numerics import pin\n"
                 "pin()\n"
                 "from pipeline.encoder import embed\n"
                 "from pipeline.files import load_params\n"
                 "params = load_params('params.yaml')\n"
                 "texts = json.load(sys.stdin)\n"
                 "embedder = embed.make_embedder(params)\n"
                 "embedder.encode(texts[:8])\n"
                 "best = float('inf')\n"
                 "for _ in range(int(sys.argv[1])):\n"
                 "    started = time.perf_counter(); embedder.encode(texts)\n"
                 "    best = min(best, time.perf_counter() - started)\n"
                 "print(json.dumps({'identity': embedder.identity, 'batch_size': embedder.batch_size,\n"
                 "                  'paragraphs': len(texts), 'paragraphs_per_s': round(len(texts) / best, 1)}))\n")


def training_path_throughput(params: dict, repeats: int, paragraphs: int = 300) -> dict:
    """The embed stage's encoder as the stage runs it (a fresh process that pins its code paths
    before numpy loads), on a seeded sample of the corpus paragraphs: paragraphs/s, best repeat."""
    from pipeline.files import read_jsonl

    records = read_jsonl(ROOT / params["paths"]["paragraphs"])
    keep = np.sort(np.random.default_rng(0).choice(len(records), min(paragraphs, len(records)), replace=False))
    texts = [records[i]["text"] for i in keep]
    from pipeline.numerics import NUMPY_VARIABLE, PINNED

    env = {k: v for k, v in os.environ.items() if k not in (*PINNED, NUMPY_VARIABLE)}  # the stage's own pin decides
    done = subprocess.run([sys.executable, "-c", PINNED_ENCODE, str(repeats)], input=json.dumps(texts), text=True,
                          capture_output=True, cwd=ROOT, env=env, check=True)
    out = json.loads(done.stdout)
    log(f"training path: {out}")
    return out


# -- 4: retraining in a temporary copy ---------------------------------------------------------
def temporary_project(params: dict) -> Path:
    work = Path(tempfile.mkdtemp(prefix="stance-bench-"))
    (work / "data").mkdir()
    shutil.copytree(ROOT / params["paths"]["raw_dir"], work / "data" / "raw")
    shutil.copytree(ROOT / params["paths"]["labels_dir"], work / "data" / "labels")
    local = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    export_dir = Path(local["embedding"].get("export_dir") or ".cache/openvino")
    local["embedding"]["export_dir"] = str(export_dir if export_dir.is_absolute() else ROOT / export_dir)
    (work / "params.yaml").write_text(yaml.safe_dump(local, sort_keys=False), encoding="utf-8")
    return work


STAGES = ("prepare", "embed", "train", "evaluate")


def run_stages(work: Path) -> dict:
    times = {}
    for stage in STAGES:
        times[stage] = round(run_command([STANCE, stage], work)[0], 2)
        log(f"  stance {stage}: {times[stage]} s")
    times["total"] = round(sum(times[s] for s in STAGES), 2)
    times["total_without_evaluate"] = round(times["total"] - times["evaluate"], 2)
    return times


def cached_vectors(cache_root: Path) -> int:
    count = 0
    for shard in cache_root.rglob("*.npz"):
        with np.load(shard) as data:
            count += len(data["hashes"])
    return count


def add_labelled_document(work: Path, params: dict, texts: list[str]) -> None:
    slug = "benchmark-added-document"
    (work / params["paths"]["raw_dir"] / f"{slug}.txt").write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    with open(work / params["paths"]["sources"], "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow([slug, "Benchmark addition", "Benchmark", "Benchmark", "2024-01-01", "2024",
                                     "authored", "op-ed", "benchmark"])
    run_command([STANCE, "prepare"], work)
    from pipeline.files import read_jsonl

    ids = [r["id"] for r in read_jsonl(work / params["paths"]["paragraphs"]) if r["doc"] == slug]
    if len(ids) != len(texts):
        raise SystemExit(f"prepare kept {len(ids)} of the {len(texts)} added paragraphs")
    with open(work / params["paths"]["labels_dir"] / "benchmark.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["paragraph_id", "label", "annotator", "note"])
        for i, pid in enumerate(ids):
            writer.writerow([pid, ("favor", "against", "none")[i % 3], "benchmark", "added by benchmarks/run.py"])


def retraining(work: Path, params: dict, new_texts: list[str]) -> dict:
    log("retraining from scratch (empty embedding cache) ...")
    scratch = run_stages(work)
    cache = work / params["paths"]["embedding_cache"]
    before = cached_vectors(cache)
    add_labelled_document(work, params, new_texts)
    log("retraining after adding 10 labelled paragraphs ...")
    incremental = run_stages(work)
    return {"from_scratch_s": scratch, "after_10_new_labels_s": incremental,
            "paragraphs_encoded_from_scratch": before,
            "paragraphs_encoded_incrementally": cached_vectors(cache) - before,
            "ratio_total": round(incremental["total"] / scratch["total"], 3),
            "ratio_without_evaluate": round(incremental["total_without_evaluate"] / scratch["total_without_evaluate"], 3),
            "ratio_embed_stage": round(incremental["embed"] / scratch["embed"], 3)}


# -- 5 + 6: scoring from the shell --------------------------------------------------------------
def end_to_end(work: Path, params: dict, texts: list[str], n_docs: int, repeats: int) -> dict:
    """`stance score` on `texts` spread over `n_docs` files, from the shell, against raw encode of
    the same texts with the same (default) path; the two alternate so both see the same noise."""
    documents = work / "bench-documents"
    documents.mkdir()
    for i, paragraphs in enumerate(corpus.documents(texts, n_docs)):
        (documents / f"oped-{i:03d}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    # The path `stance score` takes, reading each paragraph whole: the "raw encode rate".
    encoder = embed.make_embedder(params, scoring=True, paragraph_vector="whole")
    encoder.encode(texts[:16])
    raw, e2e, ratios, scored = float("inf"), float("inf"), [], 0
    for repeat in range(repeats):
        started = time.perf_counter()
        encoder.encode(texts)
        raw_once = time.perf_counter() - started
        elapsed, _ = run_command([STANCE, "score", str(documents), "--format", "jsonl", "-o", "scores.jsonl"], work)
        scored = sum(1 for line in (work / "scores.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
        raw, e2e = min(raw, raw_once), min(e2e, elapsed)
        ratios.append(raw_once / elapsed * scored / len(texts))
        log(f"repeat {repeat + 1}: raw encode {len(texts) / raw_once:.1f} p/s, stance score {scored / elapsed:.1f} p/s "
            f"({scored} paragraphs, {elapsed:.2f} s)")
    if scored != len(texts):
        raise SystemExit(f"stance score scored {scored} paragraphs, expected {len(texts)}")
    return {"documents": n_docs, "paragraphs": scored, "path": encoder.identity, "batch_size": encoder.batch_size,
            "seconds": round(e2e, 2), "paragraphs_per_s": round(scored / e2e, 1),
            "raw_encode_paragraphs_per_s": round(len(texts) / raw, 1),
            "ratio": round((scored / e2e) / (len(texts) / raw), 3),
            "ratio_per_repeat_median": round(float(np.median(ratios)), 3)}


def cold_start(work: Path, repeats: int) -> dict:
    (work / "one-short-oped.txt").write_text(SHORT_DOCUMENT, encoding="utf-8")
    args = [STANCE, "score", "one-short-oped.txt"]
    run_command(args, work)  # first use: compiled-model cache, page cache
    times = [run_command(args, work)[0] for _ in range(repeats)]
    _, traced = run_command([sys.executable, "-X", "importtime", "-m", "pipeline.cli", "score", "one-short-oped.txt"], work)
    imported = {line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(name for name in HEAVY if name in imported)
    help_times = [run_command([STANCE, "--help"], work)[0] for _ in range(repeats)]
    return {"score_one_document_s_best": round(min(times), 3), "score_one_document_s_median": round(float(np.median(times)), 3),
            "heavy_imports_on_that_path": heavy,
            "help_s_best": round(min(help_times), 3), "help_s_median": round(float(np.median(help_times)), 3)}


# -- report ---------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Processor: {m.get('model name', '?')} (family {m.get('cpu family')}, model {m.get('model')}), "
             f"{m['cores']} cores; AVX-512 BF16 {'yes' if m['flags'].get('avx512_bf16') else 'no'}, "
             f"AMX {'yes' if m['flags'].get('amx_bf16') else 'no'}. Corpus: {report['corpus']['paragraphs']} generated "
             f"paragraphs, mean {report['corpus']['mean_tokens']} tokens. Best of {report['repeats']} repeats.", "",
             "| path | batch | paragraphs/s | × PyTorch fp32 | cosine to fp32 (min) |", "|---|---|---|---|---|"]
    default = report["default_path"]
    for row in report["raw_encode"]:
        name = f"{row['backend']} {row['precision']}" + (" **(default here)**" if f"{row['backend']}-{row['precision']}" == default else "")
        lines.append(f"| {name} | {row['batch_size']} | {row['paragraphs_per_s']} | {row['speedup_vs_torch_fp32']} | {row['cosine_to_fp32_min']} |")
    b = report.get("compute_bound")
    if b:
        lines += ["", f"Useful work: {b['gflop_per_paragraph']} GFLOP per paragraph ({b['layers']} layers, hidden "
                  f"{b['hidden']}, real token counts, padding excluded). A large fp32 matrix product reaches "
                  f"{b['fp32_matmul_peak_gflop_per_s']} GFLOP/s on this CPU; "
                  + ", ".join(f"{k} {v['gflop_per_s']} GFLOP/s ({v['share_of_fp32_peak']:.0%})" for k, v in b["paths"].items())
                  + f". 3x PyTorch fp32 would need {b['three_times_torch_fp32_needs_gflop_per_s']} GFLOP/s = "
                  f"{b['three_times_torch_fp32_share_of_fp32_peak']:.0%} of that fp32 peak."]
    lines += ["", "| measurement | value |", "|---|---|"]
    sweep = ", ".join(f"{r['batch_size']}: {r['paragraphs_per_s']}" for r in report["batch_sweep"])
    lines.append(f"| default path, paragraphs/s by batch size | {sweep} |")
    t = (report.get("retraining_run") or {}).get("training_path")
    if t:
        lines.append(f"| training path (embed stage, pinned: {t['identity']}), {t['paragraphs']} corpus paragraphs, "
                     f"batch {t['batch_size']} | {t['paragraphs_per_s']} paragraphs/s |")
    for key in ("precision_check", "precision_check_bf16"):
        f = report.get(key) or {}
        if f and "skipped" not in f:
            lines.append(f"| {f['scoring_path']} vs the fp32 embeddings the model trained on, {f['paragraphs']} corpus "
                         f"paragraphs | labels agree on {f['label_agreement']:.2%} ({f['labels_changed']} changed); "
                         f"probability difference max {f['probability_difference_max']}, mean "
                         f"{f['probability_difference_mean']}; min cosine {f['cosine_min']} |")
    e = report["end_to_end"]
    lines.append(f"| `stance score`, {e['documents']} documents / {e['paragraphs']} paragraphs, from the shell | "
                 f"{e['seconds']} s = {e['paragraphs_per_s']} paragraphs/s; raw encode of the same paragraphs "
                 f"{e['raw_encode_paragraphs_per_s']} p/s; ratio {e['ratio']} (median per repeat {e['ratio_per_repeat_median']}) |")
    c = report["cold_start"]
    lines.append(f"| `stance score` one short document, from the shell | {c['score_one_document_s_best']} s best, "
                 f"{c['score_one_document_s_median']} s median; heavy imports: {', '.join(c['heavy_imports_on_that_path']) or 'none'} |")
    lines.append(f"| `stance --help` | {c['help_s_best']} s best, {c['help_s_median']} s median |")
    r = report["retraining"]
    if r:
        s, i = r["from_scratch_s"], r["after_10_new_labels_s"]
        lines.append(f"| retrain from scratch: prepare / embed / train / evaluate | {s['prepare']} / {s['embed']} / "
                     f"{s['train']} / {s['evaluate']} s = {s['total']} s ({r['paragraphs_encoded_from_scratch']} paragraphs encoded) |")
        lines.append(f"| retrain after adding 10 labelled paragraphs | {i['prepare']} / {i['embed']} / {i['train']} / "
                     f"{i['evaluate']} s = {i['total']} s ({r['paragraphs_encoded_incrementally']} paragraphs encoded) |")
        lines.append(f"| incremental / from scratch | embed stage {r['ratio_embed_stage']}, without evaluate "
                     f"{r['ratio_without_evaluate']}, all stages {r['ratio_total']} |")
    if report.get("export"):
        x = report["export"]
        lines.append(f"| one-time OpenVINO export (made on first use, cached) | {x.get('export_seconds')} s; agreement "
                     f"min cosine {x.get('agreement_min_cosine')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=1000, help="generated paragraphs (default 1000)")
    parser.add_argument("--documents", type=int, default=100, help="documents for the end-to-end run (default 100)")
    parser.add_argument("--e2e-paragraphs", type=int, default=2000,
                        help="paragraphs spread over those documents (default 2000, 20 per op-ed)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per timing; the best is kept (default 3)")
    parser.add_argument("--batch-sizes", default="4,8,16,32,64", help="batch sizes to sweep on the default path")
    parser.add_argument("--quick", action="store_true", help="small smoke run (200 paragraphs, 1 repeat)")
    parser.add_argument("--skip-retraining", action="store_true", help="skip the (slow) evaluate-heavy retraining runs")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmark.json")
    parser.add_argument("--retraining-only", action="store_true",
                        help="measure only the training path, the scoring path against it and retraining; merged "
                             "into the report (the other sections stay as their run left them)")
    parser.add_argument("--scoring-only", action="store_true",
                        help="measure only `stance score` (many documents, and one cold) with the committed model, "
                             "with and without the strongest-sentence reading; merged into the report")
    args = parser.parse_args(argv)
    if args.retraining_only:
        return retraining_only(args)
    if args.scoring_only:
        return scoring_only(args)
    if args.quick:
        args.paragraphs, args.repeats, args.documents, args.batch_sizes, args.e2e_paragraphs = 200, 1, 20, "16,64", 200
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    texts = corpus.generate(args.paragraphs)
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_at_start": list(os.getloadavg()),
              "repeats": args.repeats, "machine": machine(), "corpus": token_stats(texts)}
    default = embed.make_embedder(params, scoring=True)  # the path `stance score` takes
    default_key = (default.backend, default.precision)
    report["default_path"] = f"{default_key[0]}-{default_key[1]}"
    report["batch_size"] = int(params["embedding"].get("batch_size", 32))
    log(f"default path: {report['default_path']} ({default.identity}); preparing the export if needed")
    default.encode(texts[:2])
    if getattr(default, "export_path", None):
        manifest = json.loads((default.export_path / "manifest.json").read_text(encoding="utf-8"))
        report["export"] = {k: manifest.get(k) for k in ("export_seconds", "agreement_min_cosine", "agreement_floor", "openvino")}

    log("fp32 matrix-product peak of this CPU ...")
    peak = fp32_matmul_peak()
    report["raw_encode"], embedders = raw_throughput(params, texts, args.repeats)
    log("fp32 matrix-product peak of this CPU, again ...")
    peak = max(peak, fp32_matmul_peak())
    report["compute_bound"] = compute_bound(report["raw_encode"], encoder_flops(texts), peak)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    report["batch_sweep"] = batch_sweep(params, *default_key, texts[: max(len(texts) // 2, 64)], args.repeats, sizes)
    report["precision_check"] = precision_check(params, default)
    if cpu_has_native_bf16():  # the opt-in bf16 path (PyTorch), against the fp32 the model trained on
        report["precision_check_bf16"] = precision_check(params, make(params, "torch", "bf16", 32), sample=1000)
    del embedders

    work = temporary_project(params)
    try:
        new_texts = corpus.generate(10, seed=7)
        if args.skip_retraining:
            log("setting up the temporary project without timing retraining ...")
            run_stages(work)
            report["retraining"] = {}
        else:
            report["retraining"] = retraining(work, params, new_texts)
        report["end_to_end"] = end_to_end(work, params, corpus.generate(args.e2e_paragraphs, seed=11), args.documents,
                                          args.repeats)
        report["cold_start"] = cold_start(work, max(args.repeats, 5))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_at_end"] = list(os.getloadavg())
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["markdown"] = markdown(report)
    merge_json_atomic(args.output, report)  # keeps sections other benchmarks wrote ("archive")
    print(report["markdown"])
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def retraining_only(args) -> int:
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_at_start": list(os.getloadavg()),
           "machine": machine()}
    run["training_path"] = training_path_throughput(params, args.repeats)
    run["precision_check"] = precision_check(params, embed.make_embedder(params, scoring=True))
    work = temporary_project(params)
    try:
        run["retraining"] = retraining(work, params, corpus.generate(10, seed=7))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    merged = merge_json_atomic(args.output, {"retraining_run": run, "retraining": run["retraining"],
                                             "precision_check": run["precision_check"]})
    if all(key in merged for key in ("machine", "corpus", "raw_encode", "batch_sweep", "end_to_end", "cold_start")):
        merged = merge_json_atomic(args.output, {"markdown": markdown(merged)})
    print(json.dumps(run, indent=1))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def scoring_only(args) -> int:
    """`stance score` as shipped and with `score.sentence_weight: 0`, against raw encode, on the
    committed model (no training: the model and its reference set are copied)."""
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_at_start": list(os.getloadavg()),
           "machine": machine(), "sentence_weight": (params.get("score") or {}).get("sentence_weight", 0.0)}
    texts = corpus.generate(args.e2e_paragraphs, seed=11)
    run["corpus"] = token_stats(texts)
    for name, weight in (("shipped", None), ("paragraphs_only", 0.0)):
        work = temporary_project(params)
        try:
            shutil.copytree(ROOT / Path(params["paths"]["model"]).parent, work / Path(params["paths"]["model"]).parent)
            if weight is not None:
                local = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
                local["score"]["sentence_weight"] = weight
                (work / "params.yaml").write_text(yaml.safe_dump(local, sort_keys=False), encoding="utf-8")
            log(f"stance score, {name} ...")
            run[f"end_to_end_{name}"] = end_to_end(work, params, texts, args.documents, args.repeats)
            run[f"cold_start_{name}"] = cold_start(work, max(args.repeats, 5))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    run["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    merge_json_atomic(args.output, {"scoring_run": run})
    print(json.dumps(run, indent=1))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
