"""The Markdown evaluation report (`reports/evaluation.md`), rendered from in-memory results.

Inputs:  the results of `pipeline.evaluation.evaluate.evaluate` (metrics, baselines, calibration, learning
         curve, confident mistakes, setup), the previous metrics ({source, metrics, changes} or
         {note}) and links to the plot PNGs relative to the report. Output: Markdown text. No params.

The report is plain enough to read in a CI log and renders as tables on a code-hosting site.
It holds no timestamps or timings, so the same inputs give the same text.
"""

from __future__ import annotations

import re

from pipeline import LABELS

_ESCAPE = re.compile(r"([\\`*_\[\]<>|])")


def escape(text: str) -> str:
    """Paragraph text as one Markdown line: whitespace collapsed, markup characters escaped."""
    text = _ESCAPE.sub(r"\\\1", " ".join(str(text).split()))
    return "\\" + text if text[:1] in "#+-=" and text else text


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:"}
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |",
            *["| " + " | ".join(row) + " |" for row in rows]]


def headline_lines(results: dict, previous: dict) -> list[str]:
    metrics, setup = results["metrics"], results["setup"]
    counts = ", ".join(f"{label} {setup['label_counts'].get(label, 0)}" for label in LABELS)
    lines = [
        f"**f_avg {metrics['f_avg']:.4f}** · macro-F1 {metrics['macro_f1']:.4f} · accuracy {metrics['accuracy']:.4f}"
        f" · expected calibration error {metrics['ece']:.4f}",
        "",
        f"Model: {results['model']}"
        f"{' on ' + setup['embedding'] + ' embeddings' if setup.get('embedding') else ''}. "
        f"{setup['paragraphs']} labelled paragraphs ({counts}) from "
        f"{setup['documents']} documents; every number is out-of-fold from {setup['folds']}-fold cross-validation "
        f"grouped by document (seed {setup['seed']}), with hyper-parameters chosen by {setup['selection_metric']} "
        "inside each training part. f_avg is the mean F1 of favor and against.",
        "",
    ]
    if "metrics" in previous:
        change = previous.get("changes", {})
        if "f_avg" in change:
            others = ", ".join(f"{name} {_signed(change[key])}" for key, name in
                               (("macro_f1", "macro-F1"), ("accuracy", "accuracy")) if key in change)
            lines.append(f"Change versus {previous['source']}: **f_avg {_signed(change['f_avg'])}** "
                         f"(was {previous['metrics']['f_avg']:.4f}){'; ' + others if others else ''}.")
        else:
            lines.append(f"Change versus {previous['source']}: no comparable f_avg.")
    else:
        lines.append(f"Change in f_avg: {previous.get('note', 'no previous metrics')}.")
    return lines + [""]


def baseline_lines(results: dict) -> list[str]:
    rows = []
    for name, m in results["metrics"]["baselines"].items():
        cells = [_num(m["f_avg"]), _num(m["macro_f1"]), _num(m["accuracy"]), _num(m["ece"])]
        if name == results["model"]:
            name, cells = f"**{results.get('model_description', name)}**", [f"**{c}**" for c in cells]
        rows.append([name, *cells])
    notes = [f"- {name}: not evaluated ({reason})." for name, reason in results.get("baseline_notes", {}).items()]
    return ["## Baselines on the same folds", "",
            "Every model is trained (and tuned, where it has settings) and scored on the very same outer "
            "document-grouped folds; ECE is the expected calibration error of its probabilities.", "",
            *_table(["model", "f_avg", "macro-F1", "accuracy", "ECE"], rows), "", *notes, *([""] if notes else [])]


def per_class_lines(results: dict, plot_links: dict) -> list[str]:
    metrics = results["metrics"]
    rows = [[label, _num(c["precision"]), _num(c["recall"]), _num(c["f1"]), _num(c.get("average_precision")),
             str(c["support"])] for label, c in metrics["per_class"].items()]
    matrix = metrics["confusion_matrix"]
    matrix_rows = [[f"**{t}**", *[str(matrix[t][p]) for p in matrix[t]]] for t in matrix]
    lines = ["## Per class", "", *_table(["label", "precision", "recall", "F1", "average precision", "support"], rows),
             "", "Confusion matrix (rows: true label, columns: predicted label):", "",
             *_table(["true \\ predicted", *list(matrix)], matrix_rows), ""]
    for key, title in (("confusion_matrix", "Confusion matrix"), ("precision_recall", "Precision-recall curves")):
        if key in plot_links:
            lines += [f"![{title}]({plot_links[key]})", ""]
    return lines


def kind_lines(results: dict) -> list[str]:
    rows = [[kind, str(m["documents"]), str(m["paragraphs"]), _num(m["f_avg"]), _num(m["macro_f1"]),
             _num(m["accuracy"])] for kind, m in results["metrics"]["by_kind"].items()]
    return ["## By document kind", "",
            *_table(["kind", "documents", "paragraphs", "f_avg", "macro-F1", "accuracy"], rows), ""]


def genre_lines(results: dict) -> list[str]:
    by_genre = results.get("by_genre") or {}
    if not by_genre:
        return []
    rows = []
    for genre, m in by_genre.items():
        shares = "/".join(f"{m[label] / m['paragraphs']:.0%}" for label in LABELS)
        rows.append([genre, str(m["documents"]), str(m["paragraphs"]), *[str(m[label]) for label in LABELS], shares,
                     _num(m["f_avg"])])
    return ["## Labels by genre", "",
            "Paragraphs per label in each genre of document (`data/raw/sources.csv`), and the out-of-fold f_avg "
            "there. A genre whose paragraphs nearly all carry one label teaches the model genre, not stance.", "",
            *_table(["genre", "documents", "paragraphs", *LABELS, "shares", "f_avg"], rows), ""]


def calibration_lines(results: dict, plot_links: dict) -> list[str]:
    c = results["calibration"]
    verdict = ("within what sampling noise gives a perfectly calibrated model"
               if c["ece"] <= c["ece_if_calibrated"] else
               "above what sampling noise alone explains: consider train.calibration temperature, sigmoid or isotonic")
    method = ("not recalibrated (train.calibration: none)" if c["method"] == "none"
              else f"recalibrated with {c['method']} scaling on document-grouped folds")
    rows = [[f"{row['low']:.1f}–{row['high']:.1f}", str(row["count"]), _num(row["confidence"], 3),
             _num(row["accuracy"], 3)] for row in c["table"] if row["count"]]
    lines = ["## Calibration", "",
             f"Probabilities are {method}. Expected calibration error (top label, {c['bins']} equal-width bins): "
             f"**{c['ece']:.4f}**; a perfectly calibrated model with the same confidences would show up to "
             f"{c['ece_if_calibrated']:.4f} (95th percentile of resampling), so the error is {verdict}.", "",
             *_table(["confidence", "paragraphs", "mean confidence", "accuracy"], rows), ""]
    if "reliability" in plot_links:
        lines += [f"![Reliability diagram]({plot_links['reliability']})", ""]
    return lines


def learning_curve_lines(results: dict, plot_links: dict) -> list[str]:
    rows, notes = [], []
    for p in results["learning_curve"]:
        if "f_avg" in p:
            size = f"{p['paragraphs']} (all)" if p.get("all") else str(p["paragraphs"])
            rows.append([size, str(p.get("documents", "–")), _num(p["f_avg"]), _num(p["macro_f1"]),
                         _num(p["accuracy"])])
        else:
            notes.append(f"- {p['paragraphs']} paragraphs: skipped ({p['skipped']}).")
    lines = ["## Learning curve", "",
             "Training uses a nested, label-stratified subsample of the labelled paragraphs (seeded); every point "
             "is scored on all held-out paragraphs of the same outer folds.", "",
             *_table(["labelled paragraphs", "documents", "f_avg", "macro-F1", "accuracy"], rows), ""]
    if notes:
        lines += [*notes, ""]
    if "learning_curve" in plot_links:
        lines += [f"![Learning curve]({plot_links['learning_curve']})", ""]
    return lines


def mistake_lines(results: dict) -> list[str]:
    mistakes = results["mistakes"]
    lines = [f"## The {len(mistakes)} most confident mistakes", ""]
    if not mistakes:
        return lines + ["No out-of-fold mistakes.", ""]
    for number, m in enumerate(mistakes, start=1):
        lines += [f"{number}. labelled **{m['label']}**, predicted **{m['predicted']}** ({m['confidence']:.2f}) — "
                  f"document `{m['doc']}` ({m['kind'] or 'unknown kind'}), paragraph `{m['id']}`", "",
                  f"    > {escape(m['text'])}", ""]
    return lines


def render_report(results: dict, previous: dict, plot_links: dict | None = None) -> str:
    plot_links = plot_links or {}
    lines = ["# Stance model evaluation", "", *headline_lines(results, previous), *baseline_lines(results),
             *per_class_lines(results, plot_links), *kind_lines(results), *genre_lines(results),
             *calibration_lines(results, plot_links),
             *learning_curve_lines(results, plot_links), *mistake_lines(results)]
    return "\n".join(lines).rstrip() + "\n"
