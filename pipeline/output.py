"""Rendering score results: table (people), json, jsonl, csv, markdown."""

from __future__ import annotations

import csv
import io
import json

from pipeline import LABELS

FORMATS = ("table", "json", "jsonl", "csv", "markdown")
COLORS = {"favor": "green", "against": "red", "none": "bright_black"}


def paragraph_rows(results: list[dict]):
    for doc in results:
        for p in doc["paragraphs"]:
            yield doc, p


def to_jsonl(results: list[dict]) -> str:
    lines = []
    for doc, p in paragraph_rows(results):
        record = {"document": doc["document"], **p}
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def to_csv(results: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["document", "index", "id", "label", *[f"p_{label}" for label in LABELS], "uncertain",
                     "document_verdict", "text"])
    for doc, p in paragraph_rows(results):
        writer.writerow([doc["document"], p["index"], p.get("id", ""), p["label"],
                         *[p["probabilities"][label] for label in LABELS], p["uncertain"], doc["verdict"], p["text"]])
    return buffer.getvalue()


def _snippet(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def to_markdown(results: list[dict]) -> str:
    lines = []
    for doc in results:
        shares = ", ".join(f"{label} {doc['shares'][label]:.0%}" for label in LABELS)
        lines += [f"## {doc['document']}", "", f"**Verdict: {doc['verdict']}** ({shares})", "",
                  "| # | label | favor | against | none | paragraph |", "|---|---|---|---|---|---|"]
        for p in doc["paragraphs"]:
            flag = " (uncertain)" if p["uncertain"] else ""
            probs = " | ".join(f"{p['probabilities'][label]:.2f}" for label in LABELS)
            text = _snippet(p["text"], 160).replace("|", "\\|")
            lines.append(f"| {p['index']} | {p['label']}{flag} | {probs} | {text} |")
        lines.append("")
    return "\n".join(lines)


def to_table(results: list[dict], color: bool, width: int = 80) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=io.StringIO(), width=width, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False)
    for doc in results:
        verdict = doc["verdict"]
        shares = "  ".join(f"{label} {doc['shares'][label]:.0%}" for label in LABELS)
        console.print(Text.assemble((doc["document"], "bold"), "  verdict: ",
                                    (verdict.upper(), f"bold {COLORS[verdict]}"), f"  ({shares})"))
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, expand=False)
        table.add_column("#", justify="right", width=3)
        table.add_column("label", width=8)
        table.add_column("fav/agn/non", width=14)
        table.add_column("paragraph", overflow="ellipsis", no_wrap=True, max_width=max(width - 32, 20))
        for p in doc["paragraphs"]:
            label = Text(p["label"] + ("?" if p["uncertain"] else ""), style=COLORS[p["label"]])
            probs = "/".join(f"{p['probabilities'][lab]:.2f}" for lab in LABELS)
            table.add_row(str(p["index"]), label, probs, p["text"])
        console.print(table)
        console.print()
    console.print("? = uncertain (top probability below score.uncertain_below)", style="dim")
    return console.file.getvalue()


def render(results: list[dict], fmt: str, color: bool = False) -> str:
    if fmt == "json":
        return json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return to_jsonl(results)
    if fmt == "csv":
        return to_csv(results)
    if fmt == "markdown":
        return to_markdown(results)
    return to_table(results, color)
