"""`stance evaluate --external`: figures on the hydrated real set, intervals over pages, no text written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import AGAINST, FAVOR, NONE
from pipeline.cli import app
from pipeline.corpus.real_pages import page_key
from pipeline.evaluation.external_eval import bootstrap_interval, external_results, markdown_report
from test_real_set import rows_for, write_manifest


def records(pages: int = 8) -> list[dict]:
    out = []
    for p in range(pages):
        for i, (label, text) in enumerate((("favor", FAVOR[p % 4]), ("against", AGAINST[p % 4]), ("none", NONE[p % 4]))):
            out.append({"url": f"https://site.example/{p}", "paragraph_index": i, "label": label, "text": text,
                        "genre": "news" if p % 2 else "oped", "origin": "us", "page_verdict": "favor" if p % 2 else "none",
                        "half": "select" if p < 4 else "report"})
    return out


def test_perfect_predictions_score_one_everywhere():
    rows = records()
    verdicts = {r["url"]: r["page_verdict"] for r in rows}
    results = external_results(rows, [r["label"] for r in rows], verdicts, draws=200)
    for half in ("all", "select", "report"):
        assert results[half]["f_avg"] == 1.0 and results[half]["page_accuracy"] == 1.0
        assert results[half]["f_avg_interval"] == [1.0, 1.0]
    assert results["mistakes"] == [] and results["by_genre"]["news"]["paragraphs"] == 12


def test_mistakes_are_listed_by_url_and_index_only():
    rows = records()
    predicted = ["none"] * len(rows)
    results = external_results(rows, predicted, {r["url"]: "none" for r in rows}, draws=200)
    assert results["all"]["f_avg"] == 0.0
    assert {tuple(m) for m in results["mistakes"]} == {("url", "paragraph_index", "label", "predicted", "genre")}
    text = json.dumps(results) + markdown_report(results, {})
    assert not any(r["text"] in text for r in rows)


def test_the_interval_resamples_whole_pages():
    pages = np.repeat(np.arange(10), 5)
    values = np.repeat(np.arange(10, dtype=float), 5)  # each page is constant: page means are the data
    low, high = bootstrap_interval(pages, lambda i: values[i].mean(), 500, 0)
    assert 2.0 < low < 4.5 < high < 7.0


def test_external_evaluation_end_to_end_on_a_tiny_project(trained_project, tmp_path, monkeypatch, fake_embedder):
    import pipeline.encoder.embed as embed

    monkeypatch.setattr(embed, "make_embedder", lambda *args, **kwargs: fake_embedder)
    params = trained_project
    page = "\n".join([FAVOR[0], AGAINST[0], NONE[0]])
    url = "https://news.example/story"
    manifest = Path(params["paths"]["real_manifest"])
    manifest.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, rows_for(url, page, ["favor", "against", "none"]))
    runner = CliRunner()
    params_file = str(Path(params["paths"]["model"]).parent.parent / "params.yaml")
    missing = runner.invoke(app, ["evaluate", "--external", "--params", params_file])
    assert missing.exit_code == 1 and "not hydrated" in missing.output
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / f"{page_key(url)}.txt").write_text(page, encoding="utf-8")
    hydrated = runner.invoke(app, ["hydrate", "--from", str(saved), "--params", params_file])
    assert hydrated.exit_code == 0, hydrated.output
    result = runner.invoke(app, ["evaluate", "--external", "--params", params_file])
    assert result.exit_code == 0, result.output
    report = json.loads((Path(params["paths"]["reports_dir"]) / "external.json").read_text())
    assert report["all"]["paragraphs"] == 3 and 0 <= report["all"]["f_avg"] <= 1
    markdown = (Path(params["paths"]["reports_dir"]) / "external.md").read_text()
    assert "page verdict accuracy" in markdown and FAVOR[0] not in markdown
