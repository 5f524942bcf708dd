"""`stance score --format html`: one self-contained page for analysts.

The page is a single file with inline CSS and no script, fonts, images or links outside itself
(a Content-Security-Policy meta tag forbids them, so it can be mailed or opened from disk).
Per document: a verdict banner with the figures that decide it, a bar of the length-weighted
probability mass, then every paragraph tinted by its label, darker the surer the model is, with
the label, probability and the uncertain / off-topic / decisive marks written in words (colour is
never the only signal); the evidence (the most similar labelled training paragraphs, with
--explain) opens from a <details> element. Several documents get an index first.

Each paragraph element carries `data-label` (off-topic paragraphs: "none", plus
`data-off-topic`) and `data-strength` (1-3), so tests can compare the rendered colours with
`PALETTE`. All tints are light with dark text: every text/background pair here is above WCAG AA
4.5:1 (tests/test_html_report.py checks them).
"""

from __future__ import annotations

from html import escape

from pipeline import LABELS

# Background tints by strength (top probability below STRENGTH_STEPS[0], below [1], above) and
# an accent for borders and label chips (white text on it).
PALETTE = {
    "favor": {"accent": "#1d6b34", "tints": ("#f0f8f2", "#dcf1e2", "#c2e7cc")},
    "against": {"accent": "#a32a20", "tints": ("#fdf2f1", "#fbe0dd", "#f6c9c4")},
    "none": {"accent": "#4b5563", "tints": ("#f6f7f9", "#eceef2", "#e0e4ea")},
}
OFF_TOPIC = {"accent": "#7f4c00", "tint": "#fbf1d3"}
TEXT = "#1b1d21"
MUTED = "#4a5059"  # secondary text; still above 4.5:1 on every tint
STRENGTH_STEPS = (0.5, 0.75)
MEANING = {"favor": "argues for China–US cooperation", "against": "argues against China–US cooperation",
           "none": "takes no position on China–US cooperation"}


def strength(paragraph: dict) -> int:
    """1 (weak), 2 or 3 (strong) from the paragraph's top probability."""
    top = max(paragraph["probabilities"].values())
    return 1 + sum(top >= step for step in STRENGTH_STEPS)


def background(paragraph: dict) -> str:
    """The tint a paragraph is drawn on (what the browser test expects)."""
    if paragraph.get("out_of_domain"):
        return OFF_TOPIC["tint"]
    return PALETTE[paragraph["label"]]["tints"][strength(paragraph) - 1]


def _css() -> str:
    rules = []
    for label, colours in PALETTE.items():
        rules.append(f".accent-{label}{{--accent:{colours['accent']}}}")
        rules += [f".para.{label}.s{i}{{background:{tint}}}" for i, tint in enumerate(colours["tints"], 1)]
        rules.append(f".verdict.{label}{{background:{colours['tints'][2]};border-color:{colours['accent']}}}")
        rules.append(f".bar .{label}{{background:{colours['accent']}}}")
    rules.append(f".accent-off{{--accent:{OFF_TOPIC['accent']}}}")
    rules.append(f".para.off,.para.off.s1,.para.off.s2,.para.off.s3{{background:{OFF_TOPIC['tint']};"
                 "border-left-style:dashed}")
    return _BASE_CSS.replace("$TEXT", TEXT).replace("$MUTED", MUTED) + "\n".join(rules) + "\n"


_BASE_CSS = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:$TEXT;font:16px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:50rem;margin:0 auto;padding:2rem 1.25rem 4rem}
h1{font-size:1.75rem;line-height:1.2;margin:0 0 .25rem}
h2{font-size:1.35rem;line-height:1.3;margin:0}
h3{font-size:1rem;margin:1.5rem 0 .5rem}
a{color:#1a4fa0}
.sub,.muted,.source{color:$MUTED}
.sub{margin:0 0 1.5rem}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1rem;font-size:.85rem;color:$MUTED;margin:0 0 2rem;
padding:.75rem 1rem;border:1px solid #d5d9e0;border-radius:6px;list-style:none}
.legend li{display:flex;align-items:center;gap:.35rem}
.swatch{display:inline-block;width:1.1rem;height:1.1rem;border:1px solid #aab1bb;border-radius:3px}
nav.index{margin:0 0 2.5rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e1e4e9;vertical-align:top}
th{font-weight:600;border-bottom:2px solid #c4c9d1}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.document{margin:0 0 3.5rem;padding-top:1rem;border-top:3px solid #1b1d21}
.source{font-size:.85rem;margin:.15rem 0 1rem;overflow-wrap:anywhere}
.verdict{border-left:8px solid;border-radius:6px;padding:1rem 1.25rem;margin:0 0 1.5rem}
.verdict .word{font-size:1.5rem;font-weight:700;letter-spacing:.02em;margin:0}
.verdict .word span{font-weight:400;font-size:1rem;letter-spacing:0}
.verdict p{margin:.35rem 0 0}
.verdict .reason{font-weight:600}
.figures{font-size:.9rem;font-variant-numeric:tabular-nums}
.bar{display:flex;height:.6rem;border-radius:3px;overflow:hidden;margin:.6rem 0 .2rem;background:#fff}
.bar span{display:block;height:100%}
ol.paragraphs{list-style:none;margin:0;padding:0}
.para{border-left:5px solid var(--accent);border-radius:4px;padding:.6rem 1rem .7rem;margin:0 0 .75rem;
scroll-margin-top:1rem}
.para .text{margin:.3rem 0 0;font-family:Charter,"Bitstream Charter","Sitka Text",Cambria,Georgia,serif;
font-size:1.05rem;line-height:1.65;max-width:42rem;overflow-wrap:anywhere}
.meta{display:flex;flex-wrap:wrap;align-items:baseline;gap:.3rem .6rem;font-size:.82rem;color:$MUTED;
font-variant-numeric:tabular-nums}
.meta .idx{font-weight:600;color:$TEXT}
.meta .probs{margin-left:auto}
.chip{display:inline-block;padding:0 .45rem;border-radius:3px;background:var(--accent);color:#fff;
font-weight:600;font-size:.8rem;letter-spacing:.03em;text-transform:uppercase;white-space:nowrap}
.flag{border:1px solid currentColor;border-radius:3px;padding:0 .35rem;font-size:.75rem;color:$TEXT}
details{margin:.5rem 0 0;font-size:.88rem}
summary{cursor:pointer;color:$MUTED}
details ol{margin:.4rem 0 0;padding-left:1.2rem}
details li{margin:0 0 .5rem}
details q{display:block;color:$TEXT;quotes:none;font-family:Charter,"Bitstream Charter","Sitka Text",Cambria,
Georgia,serif;font-size:.95rem}
.sentence{margin:.4rem 0 0;font-size:.88rem;color:$MUTED}
.sentence q{color:$TEXT;font-style:italic}
footer{font-size:.85rem;color:$MUTED;border-top:1px solid #d5d9e0;padding-top:1rem}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _chip(label: str, text: str | None = None) -> str:
    cls = "accent-off" if label == "off-topic" else f"accent-{label}"
    return f'<span class="chip {cls}">{escape(text or label)}</span>'


def _figures(doc: dict) -> str:
    mass = " · ".join(f"{label} {_pct(doc['mass'][label])}" for label in LABELS)
    counts = [p["label"] for p in doc["paragraphs"]]
    shares = " · ".join(f"{label} {counts.count(label)} ({_pct(doc['shares'][label])})" for label in LABELS)
    return f"length-weighted probability mass: {mass}<br>paragraphs: {shares}"


def _verdict(doc: dict, anchor: str) -> str:
    verdict = doc["verdict"]
    lines = [f'<p class="word">Verdict: {escape(verdict.upper())} <span>— {escape(MEANING.get(verdict, ""))}</span></p>']
    if doc.get("verdict_reason"):
        lines.append(f'<p class="reason">{escape(str(doc["verdict_reason"]))}</p>')
    lines.append(f'<p class="figures">{_figures(doc)}</p>')
    extra = []
    if doc.get("out_of_domain_paragraphs"):
        extra.append(f"{doc['out_of_domain_paragraphs']} off-topic paragraph(s), counted as none and left out")
    if doc.get("decisive"):
        links = ", ".join(f'<a href="#{anchor}-p{int(i)}">¶ {int(i)}</a>' for i in doc["decisive"])
        extra.append(f"most decisive: {links}")
    if doc.get("agreement") is not None:  # the share of the decisive paragraphs labelled with the verdict
        extra.append(f"{float(doc['agreement']):.0%} of the decisive paragraphs are labelled {escape(verdict)}")
    if extra:
        lines.append(f'<p class="figures">{"; ".join(extra)}</p>')
    bar = "".join(f'<span class="{label}" style="width:{100 * doc["mass"][label]:.1f}%"></span>' for label in LABELS)
    lines.append(f'<div class="bar" aria-hidden="true" title="probability mass: favor, against, none">{bar}</div>')
    return f'<div class="verdict {escape(verdict)}" role="group" aria-label="verdict">{"".join(lines)}</div>'


def _evidence(evidence: list[dict]) -> str:
    items = []
    for e in evidence:
        where = escape(str(e.get("document", "")))
        ident = f" · {escape(str(e['id']))}" if e.get("id") else ""
        items.append(f"<li>{_chip(e['label'])} similarity {float(e['similarity']):.2f} · {where}{ident}"
                     f"<q>{escape(str(e.get('text', '')))}</q></li>")
    noun = "paragraph" if len(evidence) == 1 else "paragraphs"
    return (f"<details><summary>Evidence: the {len(evidence)} most similar labelled training {noun}</summary>"
            f"<ol>{''.join(items)}</ol></details>")


def _paragraph(p: dict, doc: dict, anchor: str, uncertain_below: float | None) -> str:
    index, label, off = int(p["index"]), p["label"], bool(p.get("out_of_domain"))
    meta = [f'<span class="idx">¶ {index}</span>', _chip("off-topic") + " counted as none" if off else _chip(label)]
    if p.get("uncertain") and not off:
        below = f" (top probability below {uncertain_below:g})" if uncertain_below is not None else ""
        meta.append(f'<span class="flag">uncertain{below}</span>')
    if index in doc.get("decisive", []):
        meta.append('<span class="flag">decisive</span>')
    if p.get("id"):
        meta.append(f"id {escape(str(p['id']))}")
    meta.append('<span class="probs">' + " · ".join(f"{lab} {p['probabilities'][lab]:.2f}" for lab in LABELS)
                + "</span>")
    classes = f"para {escape(label)} s{strength(p)} accent-{escape(label)}" + (" off accent-off" if off else "")
    attrs = f'id="{anchor}-p{index}" class="{classes}" data-label="{escape(label)}" data-strength="{strength(p)}"'
    if off:
        attrs += ' data-off-topic="true"'
    body = f'<div class="meta">{" ".join(meta)}</div><p class="text">{escape(p["text"])}</p>'
    if p.get("strongest_sentence"):
        sentence = p["strongest_sentence"]
        body += (f'<p class="sentence">Strongest sentence, read on its own: {_chip(sentence["label"])} '
                 f'{float(sentence["probabilities"][sentence["label"]]):.2f} <q>{escape(sentence["text"])}</q></p>')
    if p.get("evidence"):
        body += _evidence(p["evidence"])
    return f"<li {attrs}>{body}</li>"


def _document(doc: dict, n: int, uncertain_below: float | None) -> str:
    anchor = f"d{n}"
    heading = doc.get("title") or doc["document"]
    parts = [f'<section class="document" id="{anchor}" aria-labelledby="{anchor}-h">',
             f'<h2 id="{anchor}-h">{escape(heading)}</h2>',
             f'<p class="source">{escape(doc["document"])}</p>' if doc.get("title") else "",
             _verdict(doc, anchor),
             f'<h3>Paragraphs ({len(doc["paragraphs"])})</h3><ol class="paragraphs">',
             *(_paragraph(p, doc, anchor, uncertain_below) for p in doc["paragraphs"]),
             "</ol></section>"]
    return "\n".join(part for part in parts if part)


def _index(results: list[dict]) -> str:
    rows = []
    for n, doc in enumerate(results):
        name = escape(doc.get("title") or doc["document"])
        source = f'<br><span class="muted">{escape(doc["document"])}</span>' if doc.get("title") else ""
        masses = "".join(f'<td class="num">{_pct(doc["mass"][label])}</td>' for label in LABELS)
        rows.append(f'<tr><td class="num">{n + 1}</td><td><a href="#d{n}">{name}</a>{source}</td>'
                    f'<td>{_chip(doc["verdict"])}</td>{masses}<td class="num">{len(doc["paragraphs"])}</td></tr>')
    head = ('<tr><th class="num">#</th><th>document</th><th>verdict</th><th class="num">favor</th>'
            '<th class="num">against</th><th class="num">none</th><th class="num">paragraphs</th></tr>')
    return (f'<nav class="index" aria-labelledby="index-h"><h2 id="index-h">Documents</h2>'
            f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="muted">favor / against / none: length-weighted probability mass.</p></nav>')


def _legend(uncertain_below: float | None) -> str:
    items = []
    for label, colours in PALETTE.items():
        swatches = "".join(f'<span class="swatch" style="background:{tint}"></span>' for tint in colours["tints"])
        items.append(f"<li>{swatches} {_chip(label)}</li>")
    items.append("<li>lighter → darker: top probability under "
                 f"{_pct(STRENGTH_STEPS[0])}, under {_pct(STRENGTH_STEPS[1])}, above</li>")
    items.append(f'<li><span class="swatch" style="background:{OFF_TOPIC["tint"]}"></span> '
                 f"{_chip('off-topic')} far from every training paragraph; counted as none</li>")
    if uncertain_below is not None:
        items.append(f"<li>uncertain: top probability below {uncertain_below:g}</li>")
    items.append("<li>decisive: weighs most in the verdict</li>")
    return f'<ul class="legend" aria-label="key">{"".join(items)}</ul>'


def to_html(results: list[dict], uncertain_below: float | None) -> str:
    """The whole page for `results` (a list of document dicts from score_documents)."""
    n_paragraphs = sum(len(doc["paragraphs"]) for doc in results)
    title = (f"Stance: {results[0].get('title') or results[0]['document']}" if len(results) == 1
             else f"Stance report: {len(results)} documents")
    verdicts = " · ".join(f"{sum(d['verdict'] == label for d in results)} {label}" for label in LABELS)
    summary = (f"{len(results)} document{'s' if len(results) != 1 else ''}, {n_paragraphs} paragraphs"
               + (f"; verdicts: {verdicts}" if len(results) > 1 else ""))
    body = [_legend(uncertain_below)]
    if len(results) > 1:
        body.append(_index(results))
    body += [_document(doc, n, uncertain_below) for n, doc in enumerate(results)]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_css()}</style>
</head>
<body>
<main>
<header><h1>Stance on China–US cooperation</h1>
<p class="sub">{escape(summary)}. Each paragraph is labelled favor, against or none by the stance model;
off-topic paragraphs count as none and stay out of the verdict.</p></header>
{chr(10).join(body)}
<footer>Made by <code>stance score --format html</code>. Probabilities are the model's, calibrated on
its training data; read the paragraphs before quoting a verdict.</footer>
</main>
</body>
</html>
"""
