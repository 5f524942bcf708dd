"""notebooks/exploration.ipynb is executed (nbmake), so it never rots; it writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.evaluation import evaluate
from test_evaluate import make_project

nb_run = pytest.importorskip("nbmake.nb_run", reason="nbmake is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "notebooks" / "exploration.ipynb"


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.rglob("*") if p.is_file()}


def execute(monkeypatch, project: Path | None):
    if project is None:
        monkeypatch.delenv("STANCE_PROJECT", raising=False)
    else:
        monkeypatch.setenv("STANCE_PROJECT", str(project))
    return nb_run.NotebookRun(NOTEBOOK, default_timeout=300).execute()


def outputs(result) -> str:
    return "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in result.nb.cells if cell.cell_type == "code" for output in cell.outputs)


def test_runs_on_a_small_evaluated_project_and_writes_nothing(tmp_path, fake_embedder, monkeypatch):
    params = make_project(tmp_path, fake_embedder)
    evaluate.run(params)
    before, notebooks_before = snapshot(tmp_path), snapshot(NOTEBOOK.parent)
    result = execute(monkeypatch, tmp_path)
    assert result.error is None, result.error.trace
    assert snapshot(tmp_path) == before
    assert snapshot(NOTEBOOK.parent) == notebooks_before
    text = outputs(result)
    assert "36 labelled paragraphs from 12 documents" in text
    images = [o for cell in result.nb.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 3  # label distribution, projection, learning curve


def test_fails_clearly_before_dvc_repro(tmp_path, fake_embedder, monkeypatch):
    make_project(tmp_path, fake_embedder)  # embedded, but never evaluated
    result = execute(monkeypatch, tmp_path)
    assert result.error is not None
    assert "StanceError" in result.error.summary and "run `dvc repro` first (or `dvc pull` from a configured remote)" in result.error.summary
    assert "reports/metrics.json" in result.error.summary


def test_runs_on_the_real_project(monkeypatch):
    missing = [p for p in ("data/embeddings/paragraphs.parquet", "reports/metrics.json", "reports/predictions.csv",
                           "reports/learning_curve.json") if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"real project outputs absent ({', '.join(missing)}): run `dvc repro` to test "
                    "the notebook on the real corpus")
    data_before = snapshot(ROOT / "data")
    result = execute(monkeypatch, None)
    assert result.error is None, result.error.trace
    assert snapshot(ROOT / "data") == data_before
