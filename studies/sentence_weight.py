"""How much a paragraph's strongest sentence counts (`score.sentence_weight`), chosen on real pages.

    python studies/sentence_weight.py     # needs the trained model and the hydrated real set

Each real page is scored as `stance score` scores a document (the shipped model and verdict rule),
once per weight below; `pipeline.scoring.sentences` says what the weight does. The weight with the
best paragraph f_avg on the `select` half wins (ties: the smaller weight); the `report` half,
untouched by the choice, gives the figure, with a 95% interval resampling pages. Writes
`reports/sentence_weight.md` and `.json` (figures only, no text).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.encoder.embed import EmbeddingCache  # noqa: E402
from pipeline.evaluation.external_eval import bootstrap_interval, score_pages  # noqa: E402
from pipeline.files import write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.model.train import f_avg  # noqa: E402
from pipeline.project import project_params  # noqa: E402
from pipeline.scoring.score import load_scorer  # noqa: E402

WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0]


def main() -> None:
    params = project_params(ROOT / "params.yaml")
    seed = int(params["seed"])
    records = load_hydrated(params["paths"]["real_dir"], params["paths"]["real_manifest"])
    gold = np.array([r["label"] for r in records])
    pages = np.array([r["url"] for r in records])
    halves = np.array([r["half"] for r in records])
    page_gold = {r["url"]: r["page_verdict"] for r in records}
    page_half = {r["url"]: r["half"] for r in records}
    scorer = load_scorer(params, precision=(params.get("embedding") or {}).get("precision") or "fp32")
    # Every weight reads the same vectors: encoded once, kept like the embed stage's (git-ignored).
    scorer.cache = EmbeddingCache(ROOT / params["paths"]["embedding_cache"], scorer.embedder.identity)
    table = []
    for weight in WEIGHTS:
        scorer.sentence_weight = weight
        predicted, verdicts = score_pages(records, scorer)
        predicted = np.array(predicted)
        row = {"weight": weight}
        for half in ("select", "report"):
            mask = halves == half
            row[half] = round(f_avg(gold[mask], predicted[mask]), 4)
            urls = [u for u in verdicts if page_half[u] == half]
            row[f"{half}_page_accuracy"] = round(float(np.mean([verdicts[u] == page_gold[u] for u in urls])), 4)
        mask = halves == "report"
        row["report_interval"] = bootstrap_interval(pages[mask], lambda i, g=gold[mask], p=predicted[mask]:
                                                    f_avg(g[i], p[i]), 1000, seed)
        table.append(row)
        print(row, flush=True)
    best = max(table, key=lambda r: (r["select"], -r["weight"]))
    out = {"chosen": best, "table": table, "model": scorer.meta.get("embedding_model"),
           "verdict_rule": [scorer.verdict_rule, scorer.document_min_share]}
    write_json_atomic(ROOT / "reports" / "sentence_weight.json", out)
    low, high = best["report_interval"]
    lines = ["# The strongest sentence's weight, chosen on real pages", "",
             f"Model: `{out['model']}`; verdict rule {scorer.verdict_rule} at {scorer.document_min_share}. Paragraph "
             "f_avg on the real development set; choice on the select half, figure on the report half. Made by "
             "`python studies/sentence_weight.py`.", "",
             f"Chosen: **{best['weight']}**: select f_avg {best['select']:.3f}, report f_avg **{best['report']:.3f}** "
             f"(95% CI {low:.2f}–{high:.2f}).", "",
             "| weight | select f_avg | report f_avg (95% CI) | page verdicts, select | page verdicts, report |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['weight']} | {r['select']:.3f} | {r['report']:.3f} ({r['report_interval'][0]:.2f}–"
              f"{r['report_interval'][1]:.2f}) | {r['select_page_accuracy']:.3f} | {r['report_page_accuracy']:.3f} |"
              for r in table]
    write_text_atomic(ROOT / "reports" / "sentence_weight.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
