"""The document verdict rule, chosen by page-verdict accuracy on real pages.

    python studies/verdict_rule.py        # needs the trained model and the hydrated real set

Each real page is scored as `stance score` scores a document (the shipped model); every rule of
`pipeline.scoring.score.VERDICT_RULES` with every threshold below is applied to the same paragraph
probabilities. The rule and threshold with the best page-verdict accuracy on the `select` half win
(ties: the threshold nearest the current one); the `report` half, untouched by the choice, gives
the figure. Writes `reports/verdict_rule.md` and `.json` (figures only, no text).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import LABELS  # noqa: E402
from pipeline.corpus.documents import Document  # noqa: E402
from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.evaluation.external_eval import bootstrap_interval  # noqa: E402
from pipeline.files import write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.project import project_params  # noqa: E402
from pipeline.scoring.score import VERDICT_RULES, document_verdict, load_scorer, score_documents  # noqa: E402

THRESHOLDS = [round(t, 3) for t in np.arange(0.05, 0.55, 0.05)]


def main() -> None:
    params = project_params(ROOT / "params.yaml")
    current = (params.get("score") or {}).get("document_min_share", 0.25)
    seed = int(params["seed"])
    records = load_hydrated(params["paths"]["real_dir"], params["paths"]["real_manifest"])
    pages: dict[str, list[dict]] = {}
    for record in records:
        pages.setdefault(record["url"], []).append(record)
    urls = list(pages)
    scorer = load_scorer(params, precision=(params.get("embedding") or {}).get("precision") or "fp32")
    results = score_documents([Document(url, [r["text"] for r in pages[url]]) for url in urls], scorer)
    gold = np.array([pages[url][0]["page_verdict"] for url in urls])
    halves = np.array([pages[url][0]["half"] for url in urls])
    inputs = []
    for result in results:
        probabilities = np.array([[p["probabilities"][label] for label in LABELS] for p in result["paragraphs"]])
        in_domain = np.array([not p["out_of_domain"] for p in result["paragraphs"]])
        inputs.append(([p["text"] for p in result["paragraphs"]], probabilities, in_domain))

    table = []
    for rule in VERDICT_RULES:
        for threshold in THRESHOLDS:
            verdicts = np.array([document_verdict(texts, probs, threshold, ok, rule=rule)["verdict"]
                                 for texts, probs, ok in inputs])
            right = (verdicts == gold).astype(float)
            row = {"rule": rule, "threshold": threshold}
            for half in ("select", "report"):
                mask = halves == half
                row[half] = round(float(right[mask].mean()), 4)
            row["_right"] = right
            table.append(row)
    best = max(table, key=lambda r: (r["select"], -abs(r["threshold"] - current)))
    right = best.pop("_right")
    report_mask = halves == "report"
    best["report_interval"] = bootstrap_interval(np.array(urls)[report_mask], lambda i: right[report_mask][i].mean(),
                                                 1000, seed)
    by_rule = {rule: max((r for r in table if r["rule"] == rule), key=lambda r: (r["select"], -abs(r["threshold"] - current)))
               for rule in VERDICT_RULES}
    out = {"chosen": best, "best_per_rule": {k: {kk: vv for kk, vv in v.items() if kk != "_right"}
                                              for k, v in by_rule.items()},
           "table": [{k: v for k, v in r.items() if k != "_right"} for r in table],
           "pages": {"select": int((halves == "select").sum()), "report": int(report_mask.sum())},
           "model": scorer.meta.get("embedding_model")}
    write_json_atomic(ROOT / "reports" / "verdict_rule.json", out)
    low, high = best["report_interval"]
    lines = ["# The document verdict rule, chosen on real pages", "",
             f"Model: `{out['model']}`. Page verdicts of the real development set; choice on the select half "
             f"({out['pages']['select']} pages), figure on the report half ({out['pages']['report']} pages). "
             "Made by `python studies/verdict_rule.py`.", "",
             f"Chosen: **{best['rule']}** with threshold **{best['threshold']}**: select accuracy {best['select']:.3f}, "
             f"report accuracy **{best['report']:.3f}** (95% CI {low:.2f}–{high:.2f}).", "",
             "Best threshold of each rule (by the select half):", "", "| rule | threshold | select | report |",
             "|---|---|---|---|"]
    lines += [f"| {r['rule']} | {r['threshold']} | {r['select']:.3f} | {r['report']:.3f} |" for r in by_rule.values()]
    write_text_atomic(ROOT / "reports" / "verdict_rule.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
