"""score-archive: score a whole partitioned archive on a Dask cluster, restartably.

Inputs:  INPUT, a directory (searched recursively; names starting with `.` or `_` skipped) of
         partitions: Parquet (`.parquet`) or JSONL (`.jsonl`, `.ndjson`) files, one partition
         each, with `id` and `text` columns. With a `document` column each row is a paragraph of
         that document (not re-split, like `.jsonl` records in `stance score`; a row without a
         document value belongs to one named after the partition); without the column each
         row is a whole document, split with the prepare rules (`pipeline.corpus.documents.text_document`,
         paragraph ids as in prepare). The trained model, loaded exactly as `stance score` does.
Outputs: under OUTPUT, one Parquet file per input partition (`<name>` = its path without suffix):
           paragraphs/<name>.parquet  partition, id, document, index, label, p_favor, p_against,
                                      p_none, uncertain, out_of_domain, sentence_label and
                                      sentence_p_* (the strongest sentence; null when read whole)
           documents/<name>.parquet   partition, document, verdict, mass_*, share_*, paragraphs,
                                      out_of_domain_paragraphs, decisive (paragraph indices)
           errors/<name>.parquet      partition, row (JSONL line / Parquet row, from 1), id, reason:
                                      rows without a usable `id` or `text`, documents left with no
                                      paragraphs, an unreadable file (row and id null)
           _done/<name>.json          the marker, written last (see Restart)
Params:  `archive.workers` (local worker processes, default 2), `archive.connect_timeout` (seconds
         to reach `--address`, default 5), and what `stance score` reads: `prepare.min_words`,
         `score.*`, `embedding.*`, `paths.model`, `paths.model_meta`.

Engine: Dask distributed (the `distributed` extra): by default a local cluster of `--workers`
single-threaded worker processes started in-process; with `--address` the scheduler of a running
cluster (reached within `archive.connect_timeout`). One task per partition.

Scoring: `score_partition` turns one partition's rows into `pipeline.corpus.documents.Document`s and
calls `pipeline.scoring.score.score_documents` once on all of them (the encoder gets full batches), with
the scorer `pipeline.scoring.score.load_scorer` builds: the numbers are those of `stance score`. Each
worker process loads the scorer once (`worker_scorer`, a per-process cache keyed by params and
model) and then scores partition after partition. Workers must see INPUT, OUTPUT and the model at
the same paths (a shared file system); paths in params are made absolute for them.

Restart: every file is written under a temporary name and renamed (`pipeline.files.atomic_path`),
the marker last. A partition is done when its marker records the input file's current size and
mtime, the same job (model sha256, embedding identity, scoring settings), and its output files
have the recorded sizes and readable Parquet footers; a re-run scores only the others (and
removes temporary files a killed run left). A partition whose task failed (an exception, a
worker that died) gets no marker, the run exits non-zero, and a re-run retries it; an unreadable
partition is reported in errors/ and retried on every run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from pipeline import LABELS
from pipeline.corpus.documents import Document, _record_text, text_document
from pipeline.corpus.prepare import DEFAULT_MIN_WORDS, paragraph_id
from pipeline.errors import StanceError
from pipeline.files import atomic_path, json_error, write_json_atomic

SUFFIXES = (".jsonl", ".ndjson", ".parquet")
KINDS = ("paragraphs", "documents", "errors")
DEFAULTS = {"workers": 2, "connect_timeout": 5}
_WORKER: dict = {"key": None, "scorer": None}  # this process's scorer (see `worker_scorer`)
_LOCK = threading.Lock()  # one partition at a time through a worker's encoder


def schemas() -> dict:
    import pyarrow as pa

    s, i32 = pa.string(), pa.int32()
    per_label = lambda prefix: [(f"{prefix}_{label}", pa.float64()) for label in LABELS]  # noqa: E731
    return {
        "paragraphs": pa.schema([("partition", s), ("id", s), ("document", s), ("index", i32), ("label", s),
                                 *per_label("p"), ("uncertain", pa.bool_()), ("out_of_domain", pa.bool_()),
                                 ("sentence_label", s), *per_label("sentence_p")]),
        "documents": pa.schema([("partition", s), ("document", s), ("verdict", s), *per_label("mass"),
                                *per_label("share"), ("paragraphs", i32), ("out_of_domain_paragraphs", i32),
                                ("decisive", pa.list_(i32))]),
        "errors": pa.schema([("partition", s), ("row", pa.int64()), ("id", s), ("reason", s)]),
    }


# --- one partition, in memory ------------------------------------------------------------------

def list_partitions(root: Path) -> dict[str, Path]:
    """{name: file} of every partition under `root`, sorted by name."""
    if not root.is_dir():
        raise StanceError(f"{root}: not a directory (expected a directory of .parquet or .jsonl partitions)")
    partitions: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.suffix.lower() not in SUFFIXES or any(p.startswith((".", "_")) for p in relative.parts):
            continue
        name = relative.with_suffix("").as_posix()
        if name in partitions:
            raise StanceError(f"{root}: {partitions[name].name} and {path.name} are the same partition {name!r}")
        partitions[name] = path
    if not partitions:
        raise StanceError(f"{root}: no partitions (looked for {', '.join(SUFFIXES)} files)")
    return partitions


def read_partition(path: Path) -> list[tuple[int, object]]:
    """(row number from 1, record) of a partition file; a JSONL line that is not JSON is a
    ValueError in place of its record. Raises StanceError when the file cannot be used at all."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            file = pq.ParquetFile(path)
            names = file.schema_arrow.names
            if "id" not in names or "text" not in names:
                raise StanceError(f"no `id` and `text` columns (columns: {', '.join(names)})")
            rows = file.read(columns=[c for c in ("id", "text", "document") if c in names]).to_pylist()
            return list(enumerate(rows, start=1))
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise StanceError("not UTF-8 text") from None
    except StanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise StanceError(f"cannot read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    records: list[tuple[int, object]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                records.append((number, ValueError(json_error(exc))))
    return records


def _row_id(record) -> str | None:
    rid = record.get("id") if isinstance(record, dict) else None
    return None if rid in (None, "") else str(rid)


def _row_problem(record) -> str | None:
    """Why a record cannot be scored, or None (text is checked as `stance score` checks records)."""
    if isinstance(record, ValueError):
        return str(record)
    if not isinstance(record, dict):
        return "not a JSON object"
    if _row_id(record) is None:
        return "missing or null `id`"
    return "missing, null, empty or non-string `text`" if _record_text(record) is None else None


def _sentence_columns(sentence: dict | None) -> dict:
    """The strongest sentence's label and probabilities; null for a paragraph read whole."""
    if not sentence:
        return {}
    return {"sentence_label": sentence["label"],
            **{f"sentence_p_{label}": v for label, v in sentence["probabilities"].items()}}


def score_partition(records: list[tuple[int, object]], scorer, partition: str, min_words: int = DEFAULT_MIN_WORDS):
    """The (paragraphs, documents, errors) pyarrow tables of one partition's records, scored with
    `scorer` (a `pipeline.scoring.score.Scorer`); see the module docstring for the columns."""
    import pyarrow as pa

    from pipeline.scoring.score import score_documents

    grouped = any(isinstance(r, dict) and "document" in r for _, r in records)
    docs: list[Document] = []
    groups: dict[str, Document] = {}
    errors: list[dict] = []
    for row, record in records:
        rid, reason = _row_id(record), _row_problem(record)
        if reason is None and grouped:
            name = str(record.get("document") or partition)
            if name not in groups:
                docs.append(groups.setdefault(name, Document(name, [], [], records=True)))
            groups[name].paragraphs.append(_record_text(record))
            groups[name].ids.append(rid)
        elif reason is None:
            try:
                doc = text_document(rid, record["text"], "text", min_words)
            except StanceError as exc:
                reason = str(exc).removeprefix(f"{rid}: ")
            else:
                doc.ids = [paragraph_id(p) for p in doc.paragraphs]
                docs.append(doc)
        if reason is not None:
            errors.append({"partition": partition, "row": row, "id": rid, "reason": reason})
    paragraphs, summaries = [], []
    for doc, result in zip(docs, score_documents(docs, scorer) if docs else []):
        for p in result["paragraphs"]:
            paragraphs.append({"partition": partition, "id": doc.ids[p["index"]], "document": doc.name,
                               "index": p["index"], "label": p["label"], "uncertain": p["uncertain"],
                               "out_of_domain": p["out_of_domain"],
                               **{f"p_{label}": v for label, v in p["probabilities"].items()},
                               **_sentence_columns(p.get("strongest_sentence"))})
        summaries.append({"partition": partition, "document": doc.name, "verdict": result["verdict"],
                          **{f"mass_{label}": v for label, v in result["mass"].items()},
                          **{f"share_{label}": v for label, v in result["shares"].items()},
                          "paragraphs": len(doc.paragraphs), "decisive": result["decisive"],
                          "out_of_domain_paragraphs": result["out_of_domain_paragraphs"]})
    tables = schemas()
    return tuple(pa.Table.from_pylist(rows, schema=tables[kind])
                 for kind, rows in zip(KINDS, (paragraphs, summaries, errors)))


# --- one partition, on a worker ------------------------------------------------------------------

def fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_done(output: Path, name: str, path: Path, job: str) -> bool:
    """True when the partition's marker matches its input file and the job, and each output file
    it lists has the recorded size and a readable Parquet footer with the recorded row count."""
    import pyarrow.parquet as pq

    try:
        marker = json.loads((output / "_done" / f"{name}.json").read_text(encoding="utf-8"))
        if marker["input"] != fingerprint(path) or marker["job"] != job:
            return False
        return all((output / f).stat().st_size == size and pq.read_metadata(output / f).num_rows == rows
                   for f, (size, rows) in marker["files"].items())
    except Exception:  # noqa: BLE001 - a missing, damaged or foreign marker or file: not done
        return False


def worker_scorer(params: dict, key: str, embedder=None):
    """(this process's scorer for `key`, whether it was loaded just now): loaded once per worker."""
    from pipeline.scoring.score import load_scorer

    if _WORKER["key"] != key:
        _WORKER.update(key=None, scorer=None)  # free the old one first
        _WORKER.update(scorer=load_scorer(params, embedder=embedder), key=key)
        return _WORKER["scorer"], True
    return _WORKER["scorer"], False


def run_partition(name: str, path: str, output: str, params: dict, job: str, key: str, embedder=None) -> dict:
    """Read, score and write one partition (the Dask task); returns counts for the report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, output, loaded, readable = Path(path), Path(output), False, True
    marker = output / "_done" / f"{name}.json"
    marker.unlink(missing_ok=True)
    stamp = fingerprint(path)  # taken before reading: a file changed meanwhile is rescored next run
    try:
        records = read_partition(path)
    except StanceError as exc:
        readable, empty = False, schemas()
        problem = pa.Table.from_pylist([{"partition": name, "reason": str(exc)}], schema=empty["errors"])
        tables = (empty["paragraphs"].empty_table(), empty["documents"].empty_table(), problem)
    else:
        with _LOCK:
            scorer, loaded = worker_scorer(params, key, embedder)
            min_words = int((params.get("prepare") or {}).get("min_words", DEFAULT_MIN_WORDS))
            tables = score_partition(records, scorer, name, min_words)
    files = {}
    for kind, table in zip(KINDS, tables):
        target = output / kind / f"{name}.parquet"
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
        files[target.relative_to(output).as_posix()] = [target.stat().st_size, table.num_rows]
    if readable:  # an unreadable partition gets no marker: it is tried again on the next run
        write_json_atomic(marker, {"input": stamp, "job": job, "files": files})
    return {"partition": name, "pid": os.getpid(), "loaded": loaded, "readable": readable,
            **{kind: table.num_rows for kind, table in zip(KINDS, tables)}}


# --- the whole archive -------------------------------------------------------------------------

def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def absolute_paths(params: dict) -> dict:
    """A copy of `params` whose file paths are absolute, for workers that run elsewhere."""
    params = copy.deepcopy(params)
    params["paths"] = {k: str(Path(v).resolve()) if isinstance(v, str) else v for k, v in params["paths"].items()}
    embedding = params.get("embedding") or {}
    if embedding.get("export_dir"):
        embedding["export_dir"] = str(Path(embedding["export_dir"]).resolve())
    return params


@contextmanager
def dask_client(address: str | None, workers: int, timeout: float):
    """A Dask client: of the scheduler at `address`, else of a new local cluster of processes."""
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise StanceError("score-archive needs Dask: pip install '.[distributed]'") from None
    if address:
        try:
            client = Client(address, timeout=timeout)
        except (OSError, ValueError, TypeError) as exc:
            raise StanceError(f"cannot connect to the Dask scheduler at {address} ({str(exc).splitlines()[0]})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


def _collect(futures: dict, report: dict, advance=None) -> None:
    """Add each task's outcome to `report` as it finishes (a failed task does not stop the others)."""
    from distributed import as_completed

    for future in as_completed(futures):
        name = futures[future]
        if future.status != "finished":
            exc = future.exception()
            report["failed"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            result = future.result()
            report["scored" if result["readable"] else "unreadable"].append(name)
            report["loads"][result["pid"]] += result["loaded"]
            report["tasks"][result["pid"]] += 1
            for count in ("paragraphs", "documents", "errors"):
                report[count] += result[count]
        if advance:
            advance()


def run_archive(input: Path, output: Path, params: dict, workers: int | None = None, address: str | None = None,
                embedder=None, progress: bool | None = None) -> dict:
    """Score every partition of `input` not yet done in `output` on a Dask cluster; returns a report.
    `embedder` replaces the configured encoder in every worker (tests). Raises StanceError for bad
    arguments and, once the other partitions are written, when some failed."""
    from pipeline.scoring.score import load_scorer, score_settings
    from pipeline.scoring.scoring_run import progress_on_stderr, say

    settings = {**DEFAULTS, **(params.get("archive") or {})}
    input, output = Path(input), Path(output)
    partitions = list_partitions(input)
    if output.resolve().is_relative_to(input.resolve()) or (output.exists() and not output.is_dir()):
        raise StanceError(f"{output}: the output must be a directory outside the input {input}")
    params = absolute_paths(params)
    scorer = load_scorer(params, embedder=embedder)  # the same checks and errors as `stance score`
    for note in scorer.notes:
        say(f"note: {note}")
    # The output columns are part of the job: partitions written before a column was added are re-scored.
    job = _digest({"model": scorer.meta.get("model_sha256"), "embedding": scorer.embedder.identity,
                   "score": score_settings(params), "prepare": params.get("prepare"),
                   "columns": {kind: schema.names for kind, schema in schemas().items()}})
    key = _digest({"job": job, "params": params, "embedder": type(embedder).__qualname__ if embedder else None})
    pending = {n: p for n, p in partitions.items() if not is_done(output, n, p, job)}
    for stray in output.rglob(".*.tmp"):  # temporary files of a run killed mid-write
        stray.unlink(missing_ok=True)
    report = {"partitions": len(partitions), "skipped": sorted(set(partitions) - set(pending)), "scored": [],
              "unreadable": [], "failed": {}, "paragraphs": 0, "documents": 0, "errors": 0, "workers": 0,
              "loads": Counter(), "tasks": Counter(), "startup_seconds": 0.0, "seconds": 0.0}
    if not pending:
        say(f"nothing to do: all {len(partitions)} partitions are already scored in {output}")
        return report
    start = time.perf_counter()
    with dask_client(address, int(workers or settings["workers"]), float(settings["connect_timeout"])) as client, \
            progress_on_stderr(progress) as bars:
        report["workers"] = len(client.scheduler_info()["workers"])
        report["startup_seconds"], start = time.perf_counter() - start, time.perf_counter()
        futures = {client.submit(run_partition, name, str(path), str(output), params, job, key, embedder,
                                 pure=False): name for name, path in pending.items()}
        _collect(futures, report, bars.task("scoring partitions", len(futures)))
        report["seconds"] = time.perf_counter() - start
    report["scored"].sort()
    report["unreadable"].sort()
    rate = report["paragraphs"] / report["seconds"] if report["seconds"] else 0.0
    say(f"scored {len(report['scored'])} partitions ({report['paragraphs']} paragraphs, {report['documents']} documents) "
        f"on {report['workers']} workers in {report['seconds']:.1f} s ({rate:.0f} paragraphs/s); "
        f"{len(report['skipped'])} already done, skipped; {report['errors']} errors in {output / 'errors'}")
    if report["failed"]:
        name, reason = sorted(report["failed"].items())[0]
        raise StanceError(f"{len(report['failed'])} partition(s) failed (first: {name}: {reason}); run again to "
                          "retry them (finished partitions are skipped)")
    return report
