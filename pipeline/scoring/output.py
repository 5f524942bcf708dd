"""Rendering score results (the list of document dicts from `pipeline.scoring.score.score_documents`).

Formats:
- `table` (people): per document the verdict, its `verdict_reason` (else the label shares) and a
  table of paragraphs that fits the given width (80 columns by default), labels coloured on a
  terminal; `?` marks uncertain paragraphs, `*` the decisive ones, `off-topic` the out-of-domain
  ones; with --explain each paragraph is followed by its strongest sentence (when it has two or
  more) and its most similar training paragraphs (label, similarity, document); with --wide each
  paragraph is shown whole, wrapped under its label row.
- `json`: the full results, a list of documents each with its paragraphs.
- `jsonl`: one record per paragraph (document, document_verdict, index, id for record inputs,
  label, probabilities, uncertain, out_of_domain, strongest_sentence, evidence with --explain, text).
- `csv`: one row per paragraph, with its strongest sentence's `sentence_label`, `sentence_p_*` and
  `sentence_text` (empty when it was read whole); with --explain, `n1_*`..`nK_*` columns for the neighbours.
- `markdown`: a section per document with a paragraph table (and an evidence list).
- `html`: one self-contained page for analysts (pipeline/scoring/html_report.py).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline import LABELS
from pipeline.terminal import shorten_middle, snippet

FORMATS = ("table", "json", "jsonl", "csv", "markdown", "html")
SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".md": "markdown",
                  ".markdown": "markdown", ".txt": "table", ".html": "html", ".htm": "html"}
COLORS = {"favor": "green", "against": "red", "none": "bright_black", "off-topic": "yellow"}


def choose_format(fmt: str | None, output: str | Path | None) -> str:
    """The requested format, else the one the output file's extension names, else table."""
    if fmt:
        return fmt.lower()
    if output is not None:
        return SUFFIX_FORMATS.get(Path(output).suffix.lower(), "table")
    return "table"


def paragraph_rows(results: list[dict]):
    for doc in results:
        for p in doc["paragraphs"]:
            yield doc, p


def _explained(results: list[dict]) -> bool:
    return any("evidence" in p for _, p in paragraph_rows(results))


def to_json(results: list[dict]) -> str:
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"


def to_jsonl(results: list[dict]) -> str:
    lines = [json.dumps({"document": doc["document"], "document_verdict": doc["verdict"], **p}, ensure_ascii=False)
             for doc, p in paragraph_rows(results)]
    return "".join(line + "\n" for line in lines)


def to_csv(results: list[dict]) -> str:
    neighbours = max((len(p.get("evidence", [])) for _, p in paragraph_rows(results)), default=0)
    evidence_columns = [f"n{k}_{field}" for k in range(1, neighbours + 1)
                        for field in ("label", "similarity", "document", "id")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["document", "index", "id", "label", *[f"p_{label}" for label in LABELS], "uncertain",
                     "out_of_domain", "document_verdict", "sentence_label", *[f"sentence_p_{label}" for label in LABELS],
                     "sentence_text", *evidence_columns, "text"])
    for doc, p in paragraph_rows(results):
        evidence = []
        for k in range(neighbours):
            e = p.get("evidence", [])[k] if k < len(p.get("evidence", [])) else {}
            evidence += [e.get("label", ""), e.get("similarity", ""), e.get("document", ""), e.get("id", "")]
        ood = "" if p.get("out_of_domain") is None else p["out_of_domain"]
        sentence = p.get("strongest_sentence") or {}  # empty cells for a paragraph read whole
        writer.writerow([doc["document"], p["index"], p.get("id") or "", p["label"],
                         *[p["probabilities"][label] for label in LABELS], p["uncertain"], ood, doc["verdict"],
                         sentence.get("label", ""), *[(sentence.get("probabilities") or {}).get(label, "") for label in LABELS],
                         sentence.get("text", ""), *evidence, p["text"]])
    return buffer.getvalue()


def _flags(p: dict) -> str:
    return "".join([" (off-topic)" if p.get("out_of_domain") else "", " (uncertain)" if p["uncertain"] else ""])


def _shares(doc: dict, sep: str = "  ") -> str:
    return sep.join(f"{label} {doc['shares'][label]:.0%}" for label in LABELS)


def to_markdown(results: list[dict]) -> str:
    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|")

    lines = []
    for doc in results:
        decisive = ", ".join(str(i) for i in doc["decisive"]) or "none"
        off = doc.get("out_of_domain_paragraphs", 0)
        lines += [f"## {cell(doc['document'])}", ""]
        if doc.get("title"):
            lines += [f"*{cell(doc['title'])}*", ""]
        lines += [f"**Verdict: {doc['verdict']}** ({_shares(doc, ', ')}; decisive paragraphs: {decisive}"
                  + (f"; off-topic paragraphs: {off}" if off else "") + ")", "",
                  "| # | label | favor | against | none | paragraph |", "|---:|---|---:|---:|---:|---|"]
        for p in doc["paragraphs"]:
            probs = " | ".join(f"{p['probabilities'][label]:.2f}" for label in LABELS)
            mark = "*" if p["index"] in doc["decisive"] else ""
            lines.append(f"| {p['index']}{mark} | {p['label']}{_flags(p)} | {probs} | {cell(snippet(p['text'], 200))} |")
        if any("evidence" in p for p in doc["paragraphs"]):
            lines += ["", "Most similar labelled training paragraphs (after the strongest sentence, where one was read):", ""]
            for p in doc["paragraphs"]:
                items = "; ".join(f"{e['label']} {e['similarity']:.2f} `{e['document']}` ({cell(snippet(e['text'], 80))})"
                                  for e in p.get("evidence", []))
                sentence = p.get("strongest_sentence")
                if sentence:
                    items = f"sentence {sentence['label']} ({cell(snippet(sentence['text'], 80))}); {items}"
                lines.append(f"- **{p['index']}**: {items}")
        lines.append("")
    keys = []  # a key only for the marks the tables show
    if any(p["index"] in doc["decisive"] for doc, p in paragraph_rows(results)):
        keys.append("`*` decisive for the verdict.")
    if any(p.get("out_of_domain") for _, p in paragraph_rows(results)):
        keys.append("Off-topic: far from every training paragraph, counted as none.")
    if keys:
        lines.append(" ".join(keys))
    return "\n".join(lines) + "\n"


def _row_fields(doc: dict, p: dict) -> tuple[str, str, str, str, str]:
    """(index with its mark, label as shown, its colour, probabilities, text) of a paragraph row."""
    shown = "off-topic" if p.get("out_of_domain") else p["label"] + ("?" if p["uncertain"] else "")
    style = COLORS["off-topic"] if p.get("out_of_domain") else COLORS[p["label"]]
    mark = "*" if p["index"] in doc["decisive"] else ""
    probs = "/".join(f"{p['probabilities'][lab]:.2f}" for lab in LABELS)
    text = f"[{p['id']}] {p['text']}" if p.get("id") else p["text"]
    return f"{p['index']}{mark}", shown, style, probs, text


TABLE_COLUMNS = {"#": 5, "label": 9, "probs": 14}  # widths; columns are 2 spaces apart


def _snippet_table(doc: dict, text_width: int):
    """One row per paragraph, its text cut to one line (the default view)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, expand=False)
    table.add_column("#", justify="right", width=TABLE_COLUMNS["#"], no_wrap=True)
    table.add_column("label", width=TABLE_COLUMNS["label"], no_wrap=True)
    table.add_column("fav/agn/non", width=TABLE_COLUMNS["probs"], no_wrap=True)
    table.add_column("paragraph", width=text_width, no_wrap=True, overflow="ellipsis")
    for p in doc["paragraphs"]:
        index, shown, style, probs, text = _row_fields(doc, p)
        table.add_row(index, Text(shown, style=style), probs, Text(snippet(text, text_width)))
        for arrow, style, note, shown in _explanation_rows(p):
            table.add_row("", Text(arrow, style=style), Text(note, style="dim"), Text(snippet(shown, text_width), style="dim"))
    return table


def _explanation_rows(p: dict) -> list[tuple[str, str, str, str]]:
    """--explain lines under a paragraph: (arrow and label, its colour, note, text) for its strongest
    sentence, if it was read, then for each of its nearest training paragraphs."""
    if "evidence" not in p:
        return []
    rows = []
    if p.get("strongest_sentence"):
        sentence = p["strongest_sentence"]
        rows.append((f"› {sentence['label']}", COLORS[sentence["label"]], "sentence", sentence["text"]))
    rows += [(f"↳ {e['label']}", COLORS[e["label"]], f"sim {e['similarity']:.2f}", f"{e['document']}: {e['text']}")
             for e in p["evidence"]]
    return rows


def _wide_table(doc: dict, width: int):
    """--wide: each paragraph whole, wrapped at word boundaries under its label row; the label,
    probability and evidence fields sit where the snippet table has them."""
    from rich.table import Table
    from rich.text import Text

    label_w, probs_w = TABLE_COLUMNS["label"], TABLE_COLUMNS["probs"]
    body_width = width - TABLE_COLUMNS["#"] - 2
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, expand=False)
    table.add_column("#", justify="right", width=TABLE_COLUMNS["#"], no_wrap=True)
    # fold only splits a "word" longer than a whole line (a URL, say); wrapping is at spaces
    table.add_column(f"{'label':<{label_w}}  fav/agn/non", width=body_width, overflow="fold")
    evidence_width = body_width - label_w - probs_w - 4
    for n, p in enumerate(doc["paragraphs"]):
        index, shown, style, probs, text = _row_fields(doc, p)
        if n:
            table.add_row("", "")
        table.add_row(index, Text.assemble((shown, style), " " * (label_w - len(shown) + 2), probs))
        table.add_row("", Text(" ".join(text.split())))
        for arrow, style, note, shown in _explanation_rows(p):
            table.add_row("", Text.assemble((arrow, style), " " * (label_w - len(arrow) + 2),
                                            (f"{note:<{probs_w}}  ", "dim"), (snippet(shown, evidence_width), "dim")))
    return table


def to_table(results: list[dict], color: bool = False, width: int = 80, uncertain_below: float | None = None,
             wide: bool = False) -> str:
    """The people's view, within `width` columns; `wide` shows each paragraph whole (wrapped)
    instead of a one-line snippet."""
    from rich.console import Console
    from rich.text import Text

    width = max(width, 60)
    console = Console(file=io.StringIO(), width=width, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False, emoji=False, soft_wrap=False)
    explained = _explained(results)
    text_width = width - sum(TABLE_COLUMNS.values()) - 2 * len(TABLE_COLUMNS)
    for doc in results:
        verdict = doc["verdict"]
        console.print(Text(shorten_middle(doc["document"], width), style="bold"), no_wrap=True, overflow="ellipsis")
        if doc.get("title"):
            console.print(Text(snippet(doc["title"], width), style="italic"))
        # the figures that decide the verdict when the scorer states them, else the label shares
        line = Text.assemble("verdict ", (verdict.upper(), f"bold {COLORS[verdict]}"), "  ",
                             doc.get("verdict_reason") or _shares(doc))
        if doc.get("out_of_domain_paragraphs"):
            line.append(f"  off-topic {doc['out_of_domain_paragraphs']}", style=COLORS["off-topic"])
        console.print(line, overflow="fold")
        console.print(_wide_table(doc, width) if wide else _snippet_table(doc, text_width))
        console.print()
    if results:  # a key only for the marks the table shows
        paragraphs = [p for doc in results for p in doc["paragraphs"]]
        below = f" (top probability < {uncertain_below:g})" if uncertain_below is not None else ""
        keys = []
        if any(p["uncertain"] and not p.get("out_of_domain") for p in paragraphs):  # off-topic rows show no "?"
            keys.append(f"? uncertain{below}")
        if any(p["index"] in doc["decisive"] for doc, p in paragraph_rows(results)):
            keys.append("* decisive for the verdict")
        if keys:
            console.print("   ".join(keys), style="dim")
        if any(p.get("out_of_domain") for p in paragraphs):
            console.print("off-topic: far from all training paragraphs; counted as none, not in the verdict",
                          style="dim", overflow="fold")
        if explained and any(p.get("strongest_sentence") for p in paragraphs):
            console.print("› the paragraph's strongest sentence, read on its own (it counts in the paragraph's "
                          "probabilities)", style="dim", overflow="fold")
        if explained:
            console.print("↳ most similar labelled training paragraphs (cosine similarity, document)",
                          style="dim", overflow="fold")
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())


def prepare(fmt: str) -> None:
    """Import what rendering `fmt` needs ahead of time (rich, for the table: ~0.05 s that
    `stance score` spends while its model is still loading in the background)."""
    if fmt == "table":
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401


def render(results: list[dict], fmt: str, color: bool = False, width: int = 80,
           uncertain_below: float | None = None) -> str:
    if fmt == "json":
        return to_json(results)
    if fmt == "jsonl":
        return to_jsonl(results)
    if fmt == "csv":
        return to_csv(results)
    if fmt == "markdown":
        return to_markdown(results)
    if fmt == "table":
        return to_table(results, color, width, uncertain_below)
    if fmt == "html":
        from pipeline.scoring.html_report import to_html

        return to_html(results, uncertain_below)
    raise ValueError(f"unknown format {fmt!r}")
