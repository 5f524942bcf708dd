"""`stance labels agreement`: how far annotators agree, and where they do not.

Inputs:  `paths.labels_dir` (every label file, validated as in training), `paths.paragraphs`
         (texts for the disagreement list; optional).
Outputs: a report on stdout; with `--disagreements FILE`, every disagreement as CSV
         (paragraph_id, doc, the two annotators' labels, text), written atomically.
Params:  `labels.priority` (the order of annotators in the report).

For each pair of annotators that labelled at least one paragraph in common: the number of
shared paragraphs, the observed agreement and Cohen's kappa (sklearn's `cohen_kappa_score`
over favor/against/none; undefined, shown as n/a, when both used one and the same label only),
then the paragraphs on which they disagree.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections import defaultdict
from pathlib import Path

from pipeline import LABELS
from pipeline.errors import StanceError


def by_annotator(rows) -> dict[str, dict[str, str]]:
    """{annotator: {paragraph id: label}} from validated label rows."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        table[row.annotator][row.paragraph_id] = row.label
    return dict(table)


def annotator_order(annotators, priority: list[str] | None) -> list[str]:
    priority = list(priority or [])
    return sorted(annotators, key=lambda a: (priority.index(a) if a in priority else len(priority), a))


def kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa over LABELS; NaN when undefined."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(cohen_kappa_score(first, second, labels=list(LABELS)))
        except (ValueError, ZeroDivisionError):
            return math.nan


def pair_agreement(first: dict[str, str], second: dict[str, str], order: list[str] | None = None) -> dict:
    """Agreement of two annotators over the paragraphs both labelled (in `order`, if given)."""
    shared = [pid for pid in (order or sorted(first)) if pid in first and pid in second]
    shared += sorted(set(first) & set(second) - set(shared))
    a = [first[pid] for pid in shared]
    b = [second[pid] for pid in shared]
    agree = sum(x == y for x, y in zip(a, b))
    return {
        "shared": len(shared),
        "agreement": agree / len(shared) if shared else math.nan,
        "kappa": kappa(a, b) if shared else math.nan,
        "disagreements": [(pid, first[pid], second[pid]) for pid in shared if first[pid] != second[pid]],
    }


def agreement_report(rows, priority: list[str] | None = None, order: list[str] | None = None) -> list[dict]:
    """One entry per annotator pair with shared paragraphs (pairs without any are listed too)."""
    table = by_annotator(rows)
    report = []
    for one, two in itertools.combinations(annotator_order(table, priority), 2):
        report.append({"annotators": (one, two), **pair_agreement(table[one], table[two], order)})
    return report


def _snippet(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "..."


def format_report(report: list[dict], table: dict[str, dict[str, str]], texts: dict[str, dict],
                  limit: int = 20) -> str:
    lines = ["Annotators: " + ", ".join(f"{a} ({len(table[a])} labels)" for a in table)]
    if not report:
        lines.append("Only one annotator: agreement needs at least two label files with different annotators.")
    for entry in report:
        one, two = entry["annotators"]
        lines.append("")
        if not entry["shared"]:
            lines.append(f"{one} vs {two}: no paragraphs labelled by both")
            continue
        value = "n/a (both used a single label)" if math.isnan(entry["kappa"]) else f"{entry['kappa']:.3f}"
        lines.append(f"{one} vs {two}: {entry['shared']} shared paragraphs, agreement "
                     f"{entry['agreement']:.1%}, Cohen's kappa {value}")
        disagreements = entry["disagreements"]
        if not disagreements:
            lines.append("  no disagreements")
            continue
        shown = disagreements if limit <= 0 else disagreements[:limit]
        lines.append(f"  {len(disagreements)} disagreement{'s' if len(disagreements) > 1 else ''}" +
                     (f" (first {len(shown)}; --limit 0 lists all)" if len(shown) < len(disagreements) else "") + ":")
        for pid, label_one, label_two in shown:
            record = texts.get(pid, {})
            where = f"  {record['doc']}" if record.get("doc") else ""
            lines.append(f"  {pid}  {one}={label_one}  {two}={label_two}{where}")
            if record.get("text"):
                lines.append(f"      {_snippet(record['text'], 110)}")
    return "\n".join(lines)


def disagreements_csv(report: list[dict], texts: dict[str, dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["paragraph_id", "doc", "annotator_1", "label_1", "annotator_2", "label_2", "text"])
    for entry in report:
        one, two = entry["annotators"]
        for pid, label_one, label_two in entry["disagreements"]:
            record = texts.get(pid, {})
            writer.writerow([pid, record.get("doc", ""), one, label_one, two, label_two, record.get("text", "")])
    return buffer.getvalue()


def run_agreement(params: dict, limit: int = 20, disagreements: str | Path | None = None) -> list[dict]:
    """Print the agreement report; optionally write every disagreement to a CSV file."""
    from pipeline.files import read_jsonl, write_text_atomic
    from pipeline.labels import load_labels

    paths = params["paths"]
    records = read_jsonl(paths["paragraphs"]) if Path(paths["paragraphs"]).exists() else []
    texts = {r["id"]: r for r in records}
    rows = load_labels(paths["labels_dir"], set(texts) or None)
    priority = params.get("labels", {}).get("priority")
    report = agreement_report(rows, priority, [r["id"] for r in records] or None)
    table = by_annotator(rows)
    print(format_report(report, {a: table[a] for a in annotator_order(table, priority)}, texts, limit))
    if disagreements is not None:
        if Path(disagreements).resolve().parent == Path(paths["labels_dir"]).resolve() and \
                str(disagreements).endswith(".csv"):
            raise StanceError(f"{disagreements}: would be read as a label file; write it outside {paths['labels_dir']}")
        write_text_atomic(disagreements, disagreements_csv(report, texts))
        print(f"\nwrote {sum(len(e['disagreements']) for e in report)} disagreements to {disagreements}")
    return report
