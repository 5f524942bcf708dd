"""`stance labels agreement`: how far annotators agree, and where they do not.

Inputs:  `paths.labels_dir` (every label file, validated as in training), `paths.paragraphs`
         (texts for the disagreement list; optional).
Outputs: a report on stdout; with `--disagreements FILE`, every disagreement between independent
         passes as CSV (paragraph_id, doc, the two annotators' labels, text, and `settled`: the
         adjudicator's label, empty while unsettled), written atomically.
Params:  `labels.priority` (the order of annotators in the report; its first entry is the
         adjudicator when its name contains "adjudicator", else the annotator named "adjudicator").

Independent passes: for each pair of annotators other than the adjudicator, the number of shared
paragraphs, the observed agreement and Cohen's kappa (sklearn's `cohen_kappa_score` over
favor/against/none; undefined, shown as n/a, when both used one and the same label only), then
the paragraphs on which they disagree, each with the adjudicator's label once settled.

Adjudication: the adjudicator labels only paragraphs on which the others disagree, so a kappa
between the adjudicator and anyone would measure that selection, not agreement (with two passes
that agree 98% of the time it comes out negative). It is reported as what it is: how many
disagreements were settled and whose label each settlement kept.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections import defaultdict
from pathlib import Path

from pipeline.corpus.labels import kappa
from pipeline.errors import StanceError
from pipeline.terminal import snippet

ADJUDICATOR = "adjudicator"


def adjudicator_name(priority: list[str] | None) -> str:
    """The first entry of `labels.priority` when it names an adjudicator, else "adjudicator"."""
    first = (priority or [None])[0]
    return first if first and ADJUDICATOR in first.lower() else ADJUDICATOR


def by_annotator(rows) -> dict[str, dict[str, str]]:
    """{annotator: {paragraph id: label}} from validated label rows."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        table[row.annotator][row.paragraph_id] = row.label
    return dict(table)


def annotator_order(annotators, priority: list[str] | None) -> list[str]:
    priority = list(priority or [])
    return sorted(annotators, key=lambda a: (priority.index(a) if a in priority else len(priority), a))


def disagreements_among(table: dict[str, dict[str, str]], adjudicator: str = ADJUDICATOR) -> set[str]:
    """Paragraphs two or more annotators other than the adjudicator labelled differently."""
    seen: dict[str, set[str]] = defaultdict(set)
    for annotator, labels in table.items():
        if annotator != adjudicator:
            for pid, label in labels.items():
                seen[pid].add(label)
    return {pid for pid, labels in seen.items() if len(labels) > 1}


def unsettled_disagreements(table: dict[str, dict[str, str]], adjudicator: str = ADJUDICATOR) -> set[str]:
    """Disagreements the adjudicator has not labelled yet."""
    return disagreements_among(table, adjudicator) - set(table.get(adjudicator, {}))


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


def agreement_report(rows, priority: list[str] | None = None, order: list[str] | None = None,
                     adjudicator: str | None = None) -> list[dict]:
    """One entry per pair of independent annotators (pairs without shared paragraphs are listed
    too); pairs with the adjudicator (default: `adjudicator_name(priority)`) are left out."""
    table = by_annotator(rows)
    adjudicator = adjudicator or adjudicator_name(priority)
    independent = [a for a in annotator_order(table, priority) if a != adjudicator]
    return [{"annotators": (one, two), **pair_agreement(table[one], table[two], order)}
            for one, two in itertools.combinations(independent, 2)]


def adjudication(table: dict[str, dict[str, str]], priority: list[str] | None = None,
                 adjudicator: str | None = None) -> dict:
    """What the adjudicator did: the disagreements settled, whose label each settlement took
    (the first annotator in priority order with the adjudicator's label; "kept" for the first of
    all, whose label a tie would otherwise give), and how often it matches each annotator."""
    adjudicator = adjudicator or adjudicator_name(priority)
    decided = table.get(adjudicator, {})
    others = [a for a in annotator_order(table, priority) if a != adjudicator]
    disputed = disagreements_among(table, adjudicator)
    settled = [pid for pid in decided if pid in disputed]
    took = {a: 0 for a in others}
    other = 0
    for pid in settled:
        match = next((a for a in others if table[a].get(pid) == decided[pid]), None)
        if match is None:
            other += 1
        else:
            took[match] += 1
    matches = {}
    for annotator in others:
        both = [pid for pid in decided if pid in table[annotator]]
        if both:
            matches[annotator] = (sum(table[annotator][pid] == decided[pid] for pid in both), len(both))
    return {"adjudicator": adjudicator, "labels": len(decided), "settled": len(settled), "took": took,
            "other": other, "matches": matches, "undisputed": len(decided) - len(settled),
            "unsettled": sorted(disputed - set(decided))}


def format_adjudication(summary: dict) -> list[str]:
    name = summary["adjudicator"]
    if not summary["labels"]:
        unsettled = len(summary["unsettled"])
        return [f"No {name} labels yet: {unsettled} disagreement{'s' if unsettled != 1 else ''} to settle."] \
            if unsettled else []
    took = list(summary["took"].items())
    parts = [f"{n} {'kept' if i == 0 else 'took'} {who}'s{' label' if i == 0 else ''}" for i, (who, n) in enumerate(took)]
    settled = summary["settled"]
    lines = [f"{name} settled {settled} disagreement{'s' if settled != 1 else ''}: "
             + ", ".join(parts + [f"{summary['other']} other"]) if settled else f"{name} settled no disagreements"]
    if summary["matches"]:
        lines.append(f"  {name}'s label matches " + ", ".join(f"{who}'s on {k} of {n}"
                                                            for who, (k, n) in summary["matches"].items()))
    if summary["undisputed"]:
        lines.append(f"  {summary['undisputed']} more {name} label{'s' if summary['undisputed'] != 1 else ''} "
                     f"on paragraphs without a disagreement")
    unsettled = summary["unsettled"]
    if unsettled:
        lines.append(f"  {len(unsettled)} disagreement{'s' if len(unsettled) != 1 else ''} not settled yet: "
                     + " ".join(unsettled[:5]) + (" ..." if len(unsettled) > 5 else ""))
    return lines


def format_report(report: list[dict], table: dict[str, dict[str, str]], texts: dict[str, dict],
                  limit: int = 20, adjudicator: str = ADJUDICATOR, summary: dict | None = None) -> str:
    lines = ["Annotators: " + ", ".join(f"{a} ({len(table[a])} labels)" for a in table)]
    if len(table) < 2:
        lines.append("Only one annotator: agreement needs at least two label files with different annotators.")
    elif not report:
        lines.append(f"Only one independent pass: Cohen's kappa needs two annotators besides {adjudicator}.")
    decided = table.get(adjudicator, {})
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
            settled = f"  settled: {adjudicator}={decided[pid]}" if pid in decided else ""
            lines.append(f"  {pid}  {one}={label_one}  {two}={label_two}{where}{settled}")
            if record.get("text"):
                lines.append(f"      {snippet(record['text'], 110)}")
    adjudicated = format_adjudication(summary) if summary else []
    if adjudicated:
        lines += ["", *adjudicated]
    return "\n".join(lines)


def disagreements_csv(report: list[dict], texts: dict[str, dict], settled: dict[str, str] | None = None) -> str:
    settled = settled or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["paragraph_id", "doc", "annotator_1", "label_1", "annotator_2", "label_2", "text", "settled"])
    for entry in report:
        one, two = entry["annotators"]
        for pid, label_one, label_two in entry["disagreements"]:
            record = texts.get(pid, {})
            writer.writerow([pid, record.get("doc", ""), one, label_one, two, label_two, record.get("text", ""),
                             settled.get(pid, "")])
    return buffer.getvalue()


def run_agreement(params: dict, limit: int = 20, disagreements: str | Path | None = None) -> dict:
    """Print the agreement report; optionally write every disagreement to a CSV file."""
    from pipeline.corpus.labels import load_labels
    from pipeline.files import read_jsonl, write_text_atomic

    paths = params["paths"]
    records = read_jsonl(paths["paragraphs"]) if Path(paths["paragraphs"]).exists() else []
    texts = {r["id"]: r for r in records}
    rows = load_labels(paths["labels_dir"], set(texts) or None)
    priority = params.get("labels", {}).get("priority")
    adjudicator = adjudicator_name(priority)
    report = agreement_report(rows, priority, [r["id"] for r in records] or None, adjudicator)
    table = by_annotator(rows)
    summary = adjudication(table, priority, adjudicator)
    print(format_report(report, {a: table[a] for a in annotator_order(table, priority)}, texts, limit,
                        adjudicator, summary))
    if disagreements is not None:
        if Path(disagreements).resolve().parent == Path(paths["labels_dir"]).resolve() and \
                str(disagreements).endswith(".csv"):
            raise StanceError(f"{disagreements}: would be read as a label file; write it outside {paths['labels_dir']}")
        write_text_atomic(disagreements, disagreements_csv(report, texts, table.get(adjudicator)))
        print(f"\nwrote {sum(len(e['disagreements']) for e in report)} disagreements to {disagreements}")
    return {"pairs": report, "adjudication": summary}
