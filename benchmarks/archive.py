"""Scaling figures for `stance score-archive`: one command, local Dask clusters of 1 and 2 workers.

    .venv/bin/python benchmarks/archive.py                                   # about 2-3 minutes on 2 cores
    .venv/bin/python benchmarks/archive.py --paragraphs 200 --partitions 4   # a smoke run

Generates an archive of realistic op-ed paragraphs (benchmarks/corpus.py, seeded) as Parquet
partitions (id, document, text) in a temporary directory, and scores it with the project's
trained model (params.yaml; run `dvc repro` first) on a new local cluster of 1, then 2 worker
processes, each pinned to its own core so that a worker means one core on any machine, through
`pipeline.scoring.archive.run_archive` as `stance score-archive --address` runs it. Reported per run:
cluster start-up, scoring time (first task to last result, including each worker's model load)
and paragraphs/s, in all and per worker. (Unpinned, one OpenVINO worker already uses every core
of this machine, so 2 workers on 2 cores would measure the machine twice, not the scaling.)

The cost of a 10-million-paragraph archive on N = 1, 2, 8, 32 workers is projected from the
per-worker rate of the run with the most workers (one core per worker):
hours = 1e7 / (rate per worker x N). That assumes each added worker brings its own core, which
is how the archive scales: partitions are independent (no shuffle, one task each), so workers
only share the scheduler and the file system. It leaves out per-worker start-up (seconds) and
any slower storage. Prints a Markdown table and merges an "archive" section into
reports/benchmark.json (the other keys are kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402  (benchmarks/corpus.py)

from pipeline.files import load_params, merge_json_atomic  # noqa: E402

ARCHIVE_PARAGRAPHS = 10_000_000
PROJECTED_WORKERS = (1, 2, 8, 32)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")


def write_archive(folder: Path, paragraphs: int, partitions: int, per_document: int) -> None:
    """`paragraphs` generated paragraphs in documents of `per_document`, dealt into `partitions` files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = corpus.generate(paragraphs)
    documents = corpus.documents(texts, max(1, paragraphs // per_document))
    folder.mkdir(parents=True)
    for k, chunk in enumerate(corpus.documents(list(range(len(documents))), partitions)):
        rows = [{"id": f"d{d}-p{i}", "document": f"d{d}", "text": text}
                for d in chunk for i, text in enumerate(documents[d])]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{k:03d}.parquet")


def pin_to_core(core: int) -> None:
    """Give every thread of this process (a Dask worker) one CPU core; threads started later inherit it."""
    for thread in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(thread), {core})


def measure(archive: Path, work: Path, params: dict, workers: int, expected: int) -> dict:
    """Score the archive on a new local cluster of `workers` processes, each pinned to its own core
    (a worker = one core, whatever the machine has), through `--address` to that cluster."""
    import logging

    from distributed import Client, LocalCluster

    from pipeline.scoring.archive import run_archive

    log(f"scoring {expected} paragraphs on a local cluster of {workers} worker(s), one core each ...")
    started = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        for i, worker in enumerate(sorted(client.scheduler_info()["workers"])):
            client.run(pin_to_core, i % os.cpu_count(), workers=[worker])
        startup = time.perf_counter() - started
        report = run_archive(archive, work / f"out-{workers}", params, address=cluster.scheduler_address, progress=False)
    if report["paragraphs"] != expected or report["errors"] or set(report["loads"].values()) != {1}:
        raise SystemExit(f"unexpected run: {report}")
    rate = report["paragraphs"] / report["seconds"]
    return {"workers": workers, "paragraphs": report["paragraphs"], "partitions": report["partitions"],
            "startup_s": round(startup, 2), "scoring_s": round(report["seconds"], 2),
            "paragraphs_per_s": round(rate, 1), "paragraphs_per_s_per_worker": round(rate / workers, 1)}


def markdown(section: dict) -> str:
    lines = [f"Archive: {section['paragraphs']} generated paragraphs in {section['partitions']} Parquet partitions, "
             f"{section['cores']} cores ({section['cpu']}); each worker is a process of a local Dask cluster pinned to one core.", "",
             "| workers | cluster start-up | scoring | paragraphs/s | paragraphs/s per worker |", "|---|---|---|---|---|"]
    for run in section["runs"]:
        lines.append(f"| {run['workers']} | {run['startup_s']} s | {run['scoring_s']} s | {run['paragraphs_per_s']} | "
                     f"{run['paragraphs_per_s_per_worker']} |")
    cost = section["projection"]
    lines += ["", f"{cost['paragraphs']:,} paragraphs at {cost['paragraphs_per_s_per_worker']} paragraphs/s per worker "
              f"(the {cost['from_workers']}-worker run; one core per worker, linear scaling):", "",
              "| workers | hours |", "|---|---|"]
    lines += [f"| {n} | {hours} |" for n, hours in cost["hours"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=2000, help="generated paragraphs (default 2000)")
    parser.add_argument("--partitions", type=int, default=20, help="Parquet partitions (default 20)")
    parser.add_argument("--per-document", type=int, default=10, help="paragraphs per document (default 10)")
    parser.add_argument("--workers", default="1,2", help="local cluster sizes to run (default 1,2)")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmark.json")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    load_at_start = list(os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="stance-archive-bench-"))
    try:
        write_archive(work / "archive", args.paragraphs, args.partitions, args.per_document)
        runs = [measure(work / "archive", work, params, int(n), args.paragraphs) for n in args.workers.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    widest = max(runs, key=lambda run: run["workers"])
    per_worker = widest["paragraphs_per_s_per_worker"]
    section = {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_at_start": load_at_start,
               "load_average_at_end": list(os.getloadavg()), "cpu": cpu_model(), "cores": os.cpu_count(),
               "paragraphs": args.paragraphs,
               "partitions": args.partitions, "paragraphs_per_document": args.per_document, "runs": runs,
               "projection": {"paragraphs": ARCHIVE_PARAGRAPHS, "from_workers": widest["workers"],
                              "paragraphs_per_s_per_worker": per_worker,
                              "hours": {str(n): round(ARCHIVE_PARAGRAPHS / (per_worker * n) / 3600, 1)
                                        for n in PROJECTED_WORKERS}}}
    section["markdown"] = markdown(section)
    merge_json_atomic(args.output, {"archive": section})
    print(section["markdown"])
    print(f"merged the archive section into {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
