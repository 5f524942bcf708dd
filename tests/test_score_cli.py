"""`stance score` through Typer's CliRunner: inputs, formats, bad input, exit codes, clean stdout.

The trained model is the tiny project's (fake embedder); `pipeline.encoder.embed.make_embedder` is replaced
by a counting factory of fake embedders. One e2e test trains on part of the real corpus with the
packaged model and scores examples/.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import AGAINST, FAVOR, NONE, FakeEmbedder, write_project
from pipeline.cli import app

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
ARTICLE = "\n\n".join(["Washington Must Keep Talking to Beijing", "By A. Columnist", f"{FAVOR[0]} Report 1.",
                       f"{AGAINST[1]} Report 1.", f"{NONE[0]} Report 1.", "Share on Facebook"]) + "\n"
FOOTBALL = ("The striker scored twice in the derby, and the goalkeeper saved a penalty as the crowd sang "
            "through the final whistle.")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained tiny project (fake embedder), shared by the tests of this module; its params path."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    root = tmp_path_factory.mktemp("scoring")
    params = write_project(root)
    prepare.run(params)
    embed.run(params, embedder=FakeEmbedder())
    train.run(params)
    return root / "params.yaml"


@pytest.fixture
def loads(monkeypatch) -> list[dict]:
    """Replace the real encoder by the fake one; the list records each model load."""
    calls: list[dict] = []

    def make_embedder(params, **overrides):
        calls.append(overrides)
        return FakeEmbedder()

    monkeypatch.setattr("pipeline.encoder.embed.make_embedder", make_embedder)
    # Each sentence of the tiny project sits in several documents, so its calibrated threshold is
    # ~1 (everything would be off-topic); calibration has its own tests in test_score.py.
    monkeypatch.setattr("pipeline.model.reference.Reference.threshold", lambda self, percentile=None: 0.8)
    return calls


def score(project: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(app, ["score", *args, "--params", str(project)], input=input)


def make_inputs(folder: Path) -> Path:
    (folder / "nested").mkdir(parents=True)
    (folder / "article.txt").write_text(ARTICLE, encoding="utf-8")
    (folder / "nested" / "note.md").write_text(f"# Note\n\n{AGAINST[2]} **Really.**\n\n{FOOTBALL}\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "saved-page-beijing-hedges.html", folder / "nested" / "page.html")
    (folder / "nested" / "records.jsonl").write_text(
        json.dumps({"id": "r1", "text": FAVOR[3]}) + "\n" + json.dumps({"id": "r2", "text": NONE[1]}) + "\n",
        encoding="utf-8")
    (folder / "nested" / "ignored.pdf").write_bytes(b"%PDF-1.4")
    return folder


def test_one_run_scores_text_markdown_html_and_records_with_one_model_load(project, loads, tmp_path):
    result = score(project, str(make_inputs(tmp_path / "in")), "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    documents = json.loads(result.stdout)
    names = [Path(d["document"]).name for d in documents]
    assert names == ["article.txt", "note.md", "page.html", "records.jsonl"]
    assert len(loads) == 1
    article, note, page, records = documents
    assert [p["label"] for p in article["paragraphs"]] == ["favor", "against", "none"]
    assert article["verdict"] in ("favor", "against", "none") and article["decisive"]
    assert note["paragraphs"][0]["text"] == f"{AGAINST[2]} Really."
    assert note["paragraphs"][1]["out_of_domain"] is True and note["paragraphs"][1]["label"] == "none"
    assert page["title"] == "Don't Outsource North Korea to Beijing" and len(page["paragraphs"]) == 6
    assert [p["id"] for p in records["paragraphs"]] == ["r1", "r2"]


def test_jsonl_records_in_jsonl_out(project, loads, tmp_path):
    path = tmp_path / "paras.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"x{i}", "text": t}) for i, t in enumerate([FAVOR[0], AGAINST[0]])),
                    encoding="utf-8")
    result = score(project, str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["label"]) for r in records] == [("x0", "favor"), ("x1", "against")]
    assert all(set(r["probabilities"]) == {"favor", "against", "none"} for r in records)


def test_bad_inputs_are_reported_one_line_each_and_the_rest_is_scored(project, loads, tmp_path):
    (tmp_path / "good.txt").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (tmp_path / "latin.txt").write_bytes(b"\x81\x8d bytes neither UTF-8 nor cp1252 \xff\xfe")
    (tmp_path / "menu.html").write_text("<html><body><nav>Home | World | Sport</nav></body></html>")
    with open(tmp_path / "huge.txt", "wb") as handle:
        handle.truncate(50 * 2**20)
    (tmp_path / "scans").mkdir()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "a", "text": FAVOR[1]}) + "\n" + json.dumps({"id": "b"}) + "\n")
    args = ["good.txt", "empty.txt", "image.png", "latin.txt", "menu.html", "huge.txt", "scans", "bad.jsonl",
            "missing.txt", "https://example.com/oped"]
    result = score(project, *[str(tmp_path / a) if not a.startswith("http") else a for a in args], "-f", "json")
    assert result.exit_code == 0, result.output
    scored = [Path(d["document"]).name for d in json.loads(result.stdout)]
    assert scored == ["good.txt", "bad.jsonl"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    expected = ["scans: directory has no readable files", "empty.txt: empty document", "image.png: binary file",
                "latin.txt: not UTF-8 or cp1252 text", "menu.html: no article", "huge.txt: 50 MB is too large",
                "bad.jsonl:2: record without a non-empty string `text` field", "missing.txt: no such file",
                "https://example.com/oped: URLs are not fetched"]
    assert len(errors) == len(expected)
    for line, fragment in zip(errors, expected):
        assert fragment in line
    assert "input problem(s) reported above" in result.stderr.splitlines()[-1]


def test_nothing_scorable_exits_non_zero_without_loading_the_model(project, loads, tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "nothing").mkdir()
    result = score(project, str(tmp_path / "empty.txt"), str(tmp_path / "nothing"), "-f", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == "error: nothing could be scored (2 input problem(s) above)"
    assert loads == []


def test_unknown_format_is_refused(project, loads, tmp_path):
    result = score(project, "-", "--format", "yaml", input=ARTICLE)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().startswith("error: unknown --format 'yaml' (expected one of table, json, jsonl, "
                                            "csv, markdown")


def test_output_file_format_from_its_extension_and_clean_stdout(project, loads, tmp_path):
    out = tmp_path / "reports" / "scores.csv"
    result = score(project, "-", "--output", str(out), input=ARTICLE)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote {out}" in result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["label"] for r in rows] == ["favor", "against", "none"] and rows[0]["document"] == "<stdin>"
    assert [p.name for p in out.parent.iterdir()] == ["scores.csv"]  # no temporary file left


def test_unwritable_output_is_a_clear_error(project, loads, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = score(project, "-", "-o", str(tmp_path / "file.txt" / "out.json"), input=ARTICLE)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {tmp_path / 'file.txt' / 'out.json'}: cannot write (")


def test_default_table_is_plain_80_columns_off_a_terminal(project, loads):
    result = score(project, "-", "--explain", input=ARTICLE + "\n" + FOOTBALL + "\n")
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "<stdin>" in result.stdout and "verdict " in result.stdout
    assert "↳ favor" in result.stdout and "off-topic" in result.stdout
    assert result.stderr == ""  # no progress bars or notes off a terminal


def test_explain_evidence_in_json(project, loads):
    result = score(project, "-", "--explain", "-f", "json", input=ARTICLE)
    [doc] = json.loads(result.stdout)
    for p in doc["paragraphs"]:
        assert len(p["evidence"]) == 3
        assert {"label", "document", "similarity", "id", "text"} <= set(p["evidence"][0])


def test_progress_bars_do_not_touch_stdout(project, loads, tmp_path, capsys):
    from pipeline.files import load_params
    from pipeline.scoring.scoring_run import run_score

    folder = tmp_path / "many"
    folder.mkdir()
    for d in range(25):
        (folder / f"op-ed-{d:02}.txt").write_text(
            "\n\n".join(f"{s} Item {d}-{i}." for i, s in enumerate(FAVOR + AGAINST + NONE)) + "\n", encoding="utf-8")
    assert run_score([str(folder)], "jsonl", None, load_params(project), progress=True) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 25 * 12
    assert all(line.startswith("{") for line in out.splitlines())


def test_the_console_command_ends_a_finished_score_at_once_after_flushing(project, loads, monkeypatch):
    from pipeline import cli

    class Ended(Exception):
        pass

    codes = []

    def end(code):
        codes.append(code)
        raise Ended

    monkeypatch.setattr("os._exit", end)
    monkeypatch.setattr(cli, "_console_process", True)  # as under `main`, the `stance` command
    result = score(project, str(EXAMPLES / "oped-joint-pressure.txt"), "-f", "json")
    assert isinstance(result.exception, Ended) and codes == [0]
    assert json.loads(result.stdout)[0]["paragraphs"]  # the whole output was written first
    monkeypatch.setattr(cli, "_console_process", False)  # in-process callers (tests) are never ended
    assert score(project, str(EXAMPLES / "oped-joint-pressure.txt"), "-f", "json").exit_code == 0
    assert codes == [0]


def test_missing_model_is_a_clear_error(loads, tmp_path):
    write_project(tmp_path / "fresh")
    result = score(tmp_path / "fresh" / "params.yaml", "-", input=ARTICLE)
    assert result.exit_code == 1
    assert "no trained model (run `dvc repro` first)" in result.stderr


def test_score_help_does_not_import_heavy_libraries():
    code = ("import sys; from typer.testing import CliRunner; from pipeline.cli import app; "
            "r = CliRunner().invoke(app, ['score', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--explain' in r.output; "
            "print(sorted(m for m in ('torch', 'sklearn', 'sentence_transformers', 'trafilatura', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# --- end to end with the packaged model -------------------------------------------------------------

def _leaves(value, path: str = "") -> list[tuple[str, object]]:
    """(path, value) of every scalar in a JSON document, in order."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, f"{path}[{index}]")]
    return [(path, value)]


def real_corpus_subset(root: Path, every: int = 4) -> dict:
    """A project with every `every`-th document of the repository's corpus and its labels.

    About 200 labelled paragraphs: fewer make the out-of-domain threshold (a low percentile of
    the training paragraphs' similarities) too noisy for the assertions below."""
    from pipeline.corpus import prepare

    raw = root / "data" / "raw"
    labels_dir = root / "data" / "labels"
    raw.mkdir(parents=True)
    labels_dir.mkdir(parents=True)
    with open(ROOT / "data" / "raw" / "sources.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, sources = reader.fieldnames, list(reader)[::every]
    for source in sources:
        shutil.copy(ROOT / "data" / "raw" / f"{source['slug']}.txt", raw)
    with open(raw / "sources.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(sources)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["paths"] = {key: str(root / value) for key, value in params["paths"].items()}
    params["train"].update(cv_folds=3, grid={"C": [1.0]}, calibration="none")
    params["embedding"]["model"] = "default"  # the fast packaged encoder keeps this end-to-end test quick
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    ids = {p.id for p in prepare.run(params)}
    for path in sorted((ROOT / "data" / "labels").glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [row for row in reader if row["paragraph_id"] in ids]
            fields = reader.fieldnames
        with open(labels_dir / path.name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return params


@pytest.mark.e2e
def test_examples_scored_with_the_packaged_model(tmp_path):
    from pipeline.encoder import embed
    from pipeline.model import train

    params = real_corpus_subset(tmp_path / "project")
    embed.run(params)
    meta = train.run(params)
    assert meta["embedding_model"].startswith("all-MiniLM-L6-v2@")
    assert 0.2 < meta["reference"]["out_of_domain"]["threshold"] < 0.8
    result = CliRunner().invoke(app, ["score", str(EXAMPLES), "--explain", "-f", "json",
                                      "--params", str(tmp_path / "project" / "params.yaml")])
    assert result.exit_code == 0, result.output
    documents = {Path(d["document"]).name: d for d in json.loads(result.stdout)}
    for name in ("oped-joint-pressure.txt", "saved-page-beijing-hedges.html", "asia-desk-digest.md", "misc",
                 "briefing-notes"):
        assert name in documents
    training_docs = {p.stem for p in (tmp_path / "project" / "data" / "raw").glob("*.txt")}
    paragraphs = [p for d in documents.values() for p in d["paragraphs"]]
    for p in paragraphs:
        assert len(p["evidence"]) == 3 and {e["document"] for e in p["evidence"]} <= training_docs
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    off_topic = [p["text"][:30] for p in paragraphs if p["out_of_domain"]]
    digest = documents["asia-desk-digest.md"]["paragraphs"]
    assert [p["out_of_domain"] for p in digest if p["text"].startswith(("In the weekend's derby", "For the office"))] == [True, True]
    assert documents["misc"]["paragraphs"][0]["out_of_domain"] is True
    assert len(off_topic) <= 5, off_topic  # the op-eds themselves are in domain
    for name in ("oped-joint-pressure.txt", "saved-page-beijing-hedges.html"):
        assert documents[name]["verdict"] in ("favor", "against") and documents[name]["out_of_domain_paragraphs"] == 0
    # The `stance` command in its own process (background model load, immediate exit) prints the same.
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "score", str(EXAMPLES), "--explain",
               "-f", "json", "--params", str(tmp_path / "project" / "params.yaml")]
    process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert process.returncode == 0, process.stderr
    # Equal up to the last printed digit: float sums in another process (thread scheduling) can land
    # a value such as 0.65095 on the other side of a rounding step.
    console, in_process = _leaves(json.loads(process.stdout)), _leaves(json.loads(result.stdout))
    assert [path for path, _ in console] == [path for path, _ in in_process]
    for (path, got), (_, expected) in zip(console, in_process):
        assert got == (pytest.approx(expected, abs=2e-4) if isinstance(expected, float) else expected), path


def test_wide_table_shows_whole_paragraphs_within_80_columns(project, loads, tmp_path):
    long_paragraph = " ".join([FAVOR[0]] * 4)
    name = tmp_path / ("a-folder-with-a-long-name-" * 3) / ("an-op-ed-file-name-that-is-much-too-long-" * 2 + ".txt")
    name.parent.mkdir()
    name.write_text(f"{long_paragraph}\n\n{AGAINST[1]} Report 1.\n\n{FOOTBALL}\n", encoding="utf-8")
    for extra in ([], ["--explain"]):
        wide = score(project, str(name), "--wide", *extra)
        assert wide.exit_code == 0, wide.output
        lines = wide.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80
        assert long_paragraph in " ".join(line.strip() for line in lines)
        assert "…" in lines[0] and lines[0].endswith(".txt")
        plain = score(project, str(name), *extra)
        assert max(len(line) for line in plain.stdout.splitlines()) <= 80
        assert long_paragraph not in " ".join(line.strip() for line in plain.stdout.splitlines())
    assert ("↳" in wide.stdout) and "verdict " in wide.stdout
    as_json = score(project, str(name), "--wide", "-f", "json")  # other formats ignore --wide
    assert json.loads(as_json.stdout)[0]["paragraphs"][0]["text"] == long_paragraph


def test_the_table_header_states_why_the_verdict_was_reached(project, loads):
    result = score(project, "-", input=ARTICLE)
    header = next(line for line in result.stdout.splitlines() if line.startswith("verdict "))
    assert "mass" in header or "paragraphs" in header  # the verdict_reason, not the label shares
    assert "favor 33%" not in result.stdout


def test_windows_1252_files_are_scored_with_one_note_each(project, loads, tmp_path):
    old = tmp_path / "old.txt"
    old.write_bytes(ARTICLE.replace("Washington Must", "\u201cWashington\u201d Must").encode("cp1252")
                    + f"\n\u201c{FAVOR[2]}\u201d \u2013 again.\n".encode("cp1252"))
    records = tmp_path / "old.jsonl"
    records.write_bytes("\n".join(json.dumps({"id": i, "text": f"\u201c{t}\u201d"}, ensure_ascii=False)
                                  for i, t in enumerate(FAVOR)).encode("cp1252"))
    (tmp_path / "new.txt").write_text(ARTICLE, encoding="utf-8")
    result = score(project, str(old), str(records), str(tmp_path / "new.txt"), "-f", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3
    assert result.stderr.splitlines() == [f"note: {old}: not UTF-8; read as Windows-1252",
                                          f"note: {records}: not UTF-8; read as Windows-1252"]


def test_a_broken_json_line_is_reported_whole(project, loads, tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"text": FAVOR[0]}) + "\n" + json.dumps({"text": AGAINST[0]}) + "\n"
                    + '{"id": 3, "text": "Unfinish\n', encoding="utf-8")
    result = score(project, str(path), "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert f"error: {path}:3: invalid JSON at column 19 (Unterminated string starting at: line 1 column 19 " \
           "(char 18)); record skipped" in result.stderr.splitlines()


def test_score_usage_names_paths():
    result = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "80"})
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert usage.split()[-3:] == ["score", "[OPTIONS]", "PATHS..."]  # no braces around it
    assert "--wide" in result.output
    archive = CliRunner().invoke(app, ["score-archive", "--help"], env={"COLUMNS": "80"})
    usage = next(line for line in archive.output.splitlines() if "Usage:" in line)
    assert usage.split()[-4:] == ["score-archive", "[OPTIONS]", "input", "output"]
