"""`stance score-archive` (pipeline/scoring/archive.py): partitions in memory, then on Dask worker processes.

The trained model is the tiny project's (fake embedder, passed to the workers pickled). Cluster
tests share one local cluster of two worker processes (by `address`) except the one that checks
the default local cluster; the e2e test compares the command with `stance score` on the packaged
embedding model. Dask comes with the `distributed` extra; without it the cluster tests are skipped.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import AGAINST, FAVOR, NONE, FakeEmbedder, write_project
from pipeline.cli import app
from pipeline.corpus.documents import record_documents, text_document
from pipeline.corpus.prepare import paragraph_id
from pipeline.errors import StanceError
from pipeline.scoring import archive
from pipeline.scoring.archive import list_partitions, read_partition, run_archive, score_partition
from pipeline.scoring.score import CHUNK_PARAGRAPHS, load_scorer, score_documents

ROOT = Path(__file__).parent.parent
SENTENCES = FAVOR + AGAINST + NONE


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> dict:
    """The tiny project trained with the fake embedder (its params, with absolute paths)."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    params = write_project(tmp_path_factory.mktemp("archive"))
    prepare.run(params)
    embed.run(params, embedder=FakeEmbedder())
    train.run(params)
    return params


@pytest.fixture(scope="module")
def scorer(params):
    return load_scorer(params, embedder=FakeEmbedder())


@pytest.fixture(scope="module")
def cluster():
    """The scheduler address of a local cluster of two single-threaded worker processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                                  silence_logs=logging.CRITICAL) as local:
        yield local.scheduler_address


def records(k: int, n: int = 12) -> list[dict]:
    """Partition k: n paragraphs (training sentences, so in domain) in 3 documents, in order."""
    return [{"id": f"{k}-{i}", "document": f"doc-{k}-{i * 3 // n}", "text": f"{SENTENCES[i % 12]} Report number {i % 8}."}
            for i in range(n)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# --- one partition, in memory ------------------------------------------------------------------

def test_paragraph_rows_are_scored_as_stance_score_scores_their_records(scorer, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", records(0))
    paragraphs, documents, errors = score_partition(read_partition(path), scorer, "p")
    expected = score_documents(record_documents("p", path.read_text(), ".jsonl")[0], scorer)
    assert errors.num_rows == 0
    assert [d["document"] for d in documents.to_pylist()] == [d["document"] for d in expected] == \
        ["doc-0-0", "doc-0-1", "doc-0-2"]
    assert [d["verdict"] for d in documents.to_pylist()] == [d["verdict"] for d in expected]
    assert documents.column("decisive").to_pylist() == [d["decisive"] for d in expected]
    rows = paragraphs.to_pylist()
    flat = [p for d in expected for p in d["paragraphs"]]
    assert [(r["id"], r["index"], r["label"], r["uncertain"], r["out_of_domain"]) for r in rows] == \
        [(p["id"], p["index"], p["label"], p["uncertain"], p["out_of_domain"]) for p in flat]
    assert [[r["p_favor"], r["p_against"], r["p_none"]] for r in rows] == [list(p["probabilities"].values()) for p in flat]
    assert {r["label"] for r in rows} == {"favor", "against", "none"}


def test_the_strongest_sentence_has_columns_null_when_a_paragraph_is_read_whole(scorer):
    reading = copy.copy(scorer)
    reading.sentence_weight = 0.5
    rows = [{"id": "two", "document": "d", "text": f"{FAVOR[0]} {AGAINST[0]}"}, {"id": "one", "document": "d", "text": FAVOR[1]}]
    paragraphs, _, _ = score_partition(list(enumerate(rows, 1)), reading, "p")
    expected = score_documents(record_documents("p", "".join(json.dumps(r) + "\n" for r in rows), ".jsonl")[0], reading)
    two, one = paragraphs.to_pylist()
    sentence = expected[0]["paragraphs"][0]["strongest_sentence"]
    assert two["sentence_label"] == sentence["label"]
    assert [two[f"sentence_p_{label}"] for label in ("favor", "against", "none")] == list(sentence["probabilities"].values())
    assert one["sentence_label"] is None and one["sentence_p_favor"] is None


def test_whole_documents_are_split_with_the_prepare_rules(scorer):
    text = "Headline\n\nBy Jane Reporter\n\n" + "\n\n".join(SENTENCES[:3]) + "\n\nShare on Facebook\n"
    paragraphs, documents, errors = score_partition([(1, {"id": 7, "text": text})], scorer, "whole")
    expected = text_document("7", text).paragraphs
    assert len(expected) == 3
    assert paragraphs.column("id").to_pylist() == [paragraph_id(p) for p in expected]
    assert paragraphs.column("document").to_pylist() == ["7"] * 3
    assert documents.column("paragraphs").to_pylist() == [3] and errors.num_rows == 0


def test_malformed_rows_are_reported_with_their_ids_and_the_rest_scored(scorer, tmp_path):
    good = records(0, 2)
    lines = [json.dumps(good[0]), json.dumps({"id": "no-text", "document": "d"}), "{not json",
             json.dumps({"id": "null", "document": "d", "text": None}), json.dumps({"id": 5, "document": "d", "text": 5}),
             json.dumps({"id": "blank", "document": "d", "text": "  "}), json.dumps({"text": FAVOR[0], "document": "d"}),
             json.dumps(["a", "list"]), "", json.dumps(good[1])]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    paragraphs, _, errors = score_partition(read_partition(tmp_path / "bad.jsonl"), scorer, "bad")
    assert paragraphs.column("id").to_pylist() == ["0-0", "0-1"]
    text = "missing, null, empty or non-string `text`"
    assert [(e["partition"], e["row"], e["id"], e["reason"]) for e in errors.to_pylist()] == [
        ("bad", 2, "no-text", text), ("bad", 3, None, "invalid JSON at column 2 (Expecting property name enclosed in double quotes: "
                             "line 1 column 2 (char 1))"),
        ("bad", 4, "null", text), ("bad", 5, "5", text), ("bad", 6, "blank", text),
        ("bad", 7, None, "missing or null `id`"), ("bad", 8, None, "not a JSON object")]
    _, _, errors = score_partition([(1, {"id": "menu", "text": "Share on Facebook"})], scorer, "whole")
    assert errors.to_pylist() == [{"partition": "whole", "row": 1, "id": "menu",
                                   "reason": "no article paragraphs left after boilerplate removal"}]


def test_empty_partitions_give_empty_tables(scorer, tmp_path):
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    write_parquet(tmp_path / "empty.parquet", [])
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), tmp_path / "e.parquet")
    assert read_partition(tmp_path / "empty.jsonl") == [] and read_partition(tmp_path / "e.parquet") == []
    tables = score_partition([], scorer, "empty")
    assert [t.num_rows for t in tables] == [0, 0, 0]
    assert "p_favor" in tables[0].column_names and "verdict" in tables[1].column_names
    with pytest.raises(StanceError, match=r"no `id` and `text` columns \(columns: \)"):
        read_partition(tmp_path / "empty.parquet")


def test_unreadable_partition_files_are_clear_errors(tmp_path):
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all")
    write_parquet(tmp_path / "no-text.parquet", [{"id": "a", "body": "text"}])
    (tmp_path / "latin.jsonl").write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
    with pytest.raises(StanceError, match=r"^cannot read \(ArrowInvalid: "):
        read_partition(tmp_path / "corrupt.parquet")
    with pytest.raises(StanceError, match=r"^no `id` and `text` columns \(columns: id, body\)$"):
        read_partition(tmp_path / "no-text.parquet")
    with pytest.raises(StanceError, match=r"^not UTF-8 text$"):
        read_partition(tmp_path / "latin.jsonl")


def test_partitions_are_the_parquet_and_jsonl_files_of_a_directory(params, tmp_path):
    write_jsonl(tmp_path / "in" / "b.jsonl", [])
    write_parquet(tmp_path / "in" / "year=2020" / "a.parquet", records(0, 1))
    for skipped in ("notes.txt", "_SUCCESS.jsonl", ".hidden.jsonl"):
        (tmp_path / "in" / skipped).write_text("")
    assert list(list_partitions(tmp_path / "in")) == ["b", "year=2020/a"]
    with pytest.raises(StanceError, match="in/b.jsonl: not a directory"):
        run_archive(tmp_path / "in" / "b.jsonl", tmp_path / "out", params)
    (tmp_path / "none").mkdir()
    with pytest.raises(StanceError, match=r"none: no partitions \(looked for .jsonl, .ndjson, .parquet files\)"):
        run_archive(tmp_path / "none", tmp_path / "out", params)
    with pytest.raises(StanceError, match="the output must be a directory outside the input"):
        run_archive(tmp_path / "in", tmp_path / "in" / "out", params, embedder=FakeEmbedder())
    write_jsonl(tmp_path / "in" / "b.ndjson", [])
    with pytest.raises(StanceError, match=r"b.jsonl and b.ndjson are the same partition 'b'"):
        list_partitions(tmp_path / "in")


def test_missing_model_is_the_stance_score_error(tmp_path):
    write_project(tmp_path / "fresh")
    write_jsonl(tmp_path / "in" / "p.jsonl", records(0))
    result = CliRunner().invoke(app, ["score-archive", str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--params", str(tmp_path / "fresh" / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("no trained model (run `dvc repro` first)")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_help_does_not_import_dask():
    code = ("import sys; from typer.testing import CliRunner; from pipeline.cli import app; "
            "r = CliRunner().invoke(app, ['score-archive', '--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('dask', 'distributed', 'pyarrow', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# --- on Dask workers -----------------------------------------------------------------------------

def test_same_answers_as_stance_score_and_one_model_load_per_worker(params, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    for k in range(6):  # three JSONL and three Parquet partitions
        (write_jsonl if k % 2 else write_parquet)(tmp_path / "in" / f"part-{k}.{'jsonl' if k % 2 else 'parquet'}",
                                                  records(k))
        write_jsonl(tmp_path / "records" / f"part-{k}.jsonl", records(k))
    report = run_archive(tmp_path / "in", tmp_path / "out", params, workers=2, embedder=FakeEmbedder())
    assert report["scored"] == [f"part-{k}" for k in range(6)] and report["workers"] == 2
    assert sum(report["tasks"].values()) == 6 and os.getpid() not in report["tasks"]
    assert set(report["loads"].values()) == {1}  # each worker process loaded the model once, for 2+ partitions

    monkeypatch.setattr("pipeline.encoder.embed.make_embedder", lambda params, **overrides: FakeEmbedder())
    result = CliRunner().invoke(app, ["score", str(tmp_path / "records"), "--format", "jsonl",
                                      "--params", str(Path(params["paths"]["model"]).parent.parent / "params.yaml")])
    assert result.exit_code == 0, result.output
    expected = {(r["document"], r["id"]): r for r in map(json.loads, result.stdout.splitlines())}
    scored = {(r["document"], r["id"]): r for r in rows_of(tmp_path / "out" / "paragraphs")}
    assert len(scored) == len(expected) == 72
    for key, want in expected.items():
        got = scored[key]
        assert (got["label"], got["index"], got["uncertain"], got["out_of_domain"]) == \
            (want["label"], want["index"], want["uncertain"], want["out_of_domain"])
        for label, value in want["probabilities"].items():
            assert got[f"p_{label}"] == pytest.approx(value, abs=1e-6)
    verdicts = {d["document"]: d["verdict"] for d in rows_of(tmp_path / "out" / "documents")}
    assert verdicts == {doc: r["document_verdict"] for (doc, _), r in expected.items()}


def test_bad_partitions_are_reported_and_the_rest_scored(params, cluster, tmp_path):
    write_jsonl(tmp_path / "in" / "good.jsonl", records(0))
    write_jsonl(tmp_path / "in" / "rows.jsonl", records(1, 3) + [{"id": "x", "document": "d", "text": None}])
    write_jsonl(tmp_path / "in" / "empty.jsonl", [])
    (tmp_path / "in" / "corrupt.parquet").write_bytes(b"not parquet")
    report = run_archive(tmp_path / "in", tmp_path / "out", params, address=cluster, embedder=FakeEmbedder())
    assert report["scored"] == ["empty", "good", "rows"] and report["unreadable"] == ["corrupt"]
    assert (report["paragraphs"], report["errors"]) == (15, 2)
    errors = sorted(rows_of(tmp_path / "out" / "errors"), key=lambda e: e["partition"])
    assert [(e["partition"], e["id"]) for e in errors] == [("corrupt", None), ("rows", "x")]
    assert errors[0]["reason"].startswith("cannot read (ArrowInvalid")
    again = run_archive(tmp_path / "in", tmp_path / "out", params, address=cluster, embedder=FakeEmbedder())
    assert again["unreadable"] == ["corrupt"] and again["skipped"] == ["empty", "good", "rows"]


class FlakyEmbedder(FakeEmbedder):
    """Fails on a paragraph mentioning EXPLODE while the flag file exists (a worker's crash)."""

    def __init__(self, flag: Path):
        super().__init__()
        self.flag = flag

    def encode(self, texts):
        if self.flag.exists() and any("EXPLODE" in t for t in texts):
            raise RuntimeError("simulated crash")
        return super().encode(texts)


def test_a_rerun_scores_only_failed_missing_damaged_and_changed_partitions(params, cluster, tmp_path, monkeypatch):
    inputs = [write_jsonl(tmp_path / "in" / f"p{k}.jsonl", records(k)) for k in range(6)]
    write_jsonl(inputs[3], records(3) + [{"id": "boom", "document": "d", "text": f"EXPLODE {FAVOR[0]}"}])
    flag = tmp_path / "fail-once"
    flag.touch()
    out = tmp_path / "out"
    with pytest.raises(StanceError, match=r"^1 partition\(s\) failed \(first: p3: RuntimeError: simulated crash\); "
                                          r"run again to retry them"):
        run_archive(tmp_path / "in", out, params, address=cluster, embedder=FlakyEmbedder(flag))
    assert not list(out.rglob("p3*")) and not list(out.rglob(".*"))  # nothing half-written
    before = {kind: rows_of(out / kind / "p0.parquet") for kind in ("paragraphs", "documents")}

    flag.unlink()
    (out / "paragraphs" / "p0.parquet").unlink()
    damaged = out / "documents" / "p1.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    write_jsonl(inputs[2], records(2, 13))
    (out / "paragraphs" / ".p4.parquet.killed.tmp").write_bytes(b"half")  # a run killed mid-write
    report = run_archive(tmp_path / "in", out, params, address=cluster, embedder=FlakyEmbedder(flag))
    assert report["scored"] == ["p0", "p1", "p2", "p3"] and report["skipped"] == ["p4", "p5"]
    assert {kind: rows_of(out / kind / "p0.parquet") for kind in ("paragraphs", "documents")} == before
    assert pq.read_table(out / "paragraphs").num_rows == 6 * 12 + 1 + 1 and not list(out.rglob(".*"))
    assert len(list((out / "_done").iterdir())) == 6
    changed = {**params, "score": {**params["score"], "uncertain_below": 1.0}}  # other settings: all rescored
    report = run_archive(tmp_path / "in", out, changed, address=cluster, embedder=FlakyEmbedder(flag))
    assert report["scored"] == [f"p{k}" for k in range(6)] and all(pq.read_table(out / "paragraphs")["uncertain"])
    shipped = archive.schemas()  # outputs written before a column was added: all rescored
    monkeypatch.setattr(archive, "schemas", lambda: {**shipped, "paragraphs": shipped["paragraphs"].append(
        pa.field("added", pa.string()))})
    report = run_archive(tmp_path / "in", out, changed, address=cluster, embedder=FlakyEmbedder(flag))
    assert report["scored"] == [f"p{k}" for k in range(6)]


def test_an_unreachable_scheduler_is_a_one_line_error_within_seconds(params, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    write_jsonl(tmp_path / "in" / "p.jsonl", records(0))
    with socket.socket() as probe:  # a free port on this machine: nothing listens there
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr("pipeline.encoder.embed.make_embedder", lambda params, **overrides: FakeEmbedder())
    params_file = Path(params["paths"]["model"]).parent.parent / "params.yaml"
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["score-archive", str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--address", address, "--params", str(params_file)])
    assert time.perf_counter() - start < 10
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (f"error: cannot connect to the Dask scheduler at {address} "
                             f"(Timed out trying to connect to {address} after 5 s)\n")


# --- end to end with the packaged model ----------------------------------------------------------

@pytest.mark.e2e
def test_two_worker_processes_give_stance_score_answers_with_the_packaged_model(project, tmp_path):
    """Partitions of CHUNK_PARAGRAPHS paragraphs, so the encoder sees the same batches in both runs."""
    pytest.importorskip("distributed")
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    prepare.run(project)
    embed.run(project)
    assert train.run(project)["embedding_model"].startswith("all-MiniLM-L6-v2@")
    rows = [{"id": f"r{i}", "document": f"doc-{i // 16}", "text": f"{SENTENCES[i % 12]} Item {i}, week {i % 7}."}
            for i in range(2 * CHUNK_PARAGRAPHS)]
    for k in range(2):
        write_jsonl(tmp_path / "in" / f"part-{k}.jsonl", rows[k * CHUNK_PARAGRAPHS:(k + 1) * CHUNK_PARAGRAPHS])
    write_jsonl(tmp_path / "all.jsonl", rows)
    params_file = str(tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["score-archive", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "2",
                                      "--params", params_file])
    assert result.exit_code == 0, result.output
    assert "scored 2 partitions (256 paragraphs, 16 documents) on 2 workers" in result.stderr
    result = CliRunner().invoke(app, ["score", str(tmp_path / "all.jsonl"), "--format", "jsonl", "--params", params_file])
    assert result.exit_code == 0, result.output
    expected = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    scored = {r["id"]: r for r in rows_of(tmp_path / "out" / "paragraphs")}
    assert scored.keys() == expected.keys()
    for rid, want in expected.items():
        assert scored[rid]["label"] == want["label"] and scored[rid]["out_of_domain"] == want["out_of_domain"]
        for label, value in want["probabilities"].items():
            assert scored[rid][f"p_{label}"] == pytest.approx(value, abs=1e-6)
