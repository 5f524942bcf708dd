"""`stance score --format html` (pipeline/scoring/html_report.py): the page's content, and the page in a
real headless browser (Debian's chromium; those tests skip when it is not installed).

The browser tests render results made by the tiny trained project (fake embedder) through the CLI,
as tests/test_score_cli.py does, and compare what chromium draws with the JSON output.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import AGAINST, FAVOR, NONE, FakeEmbedder, write_project
from pipeline.cli import app
from pipeline.scoring.html_report import MUTED, OFF_TOPIC, PALETTE, TEXT, background, strength, to_html
from pipeline.scoring.output import choose_format, render

SCRIPT_TEXT = "Officials said <script>alert('x')</script> & left."
FOOTBALL = ("The striker scored twice in the derby, and the goalkeeper saved a penalty as the crowd sang "
            "through the final whistle.")
CHROMIUM_TIMEOUT = 60


def paragraph(index, label, probs, text, **extra):
    return {"index": index, "label": label, "probabilities": dict(zip(("favor", "against", "none"), probs)),
            "uncertain": max(probs) < 0.5, "out_of_domain": False, **extra, "text": text}


def results(n_docs: int = 1, optional: bool = True) -> list[dict]:
    evidence = [{"label": "against", "document": "2019-coal", "similarity": 0.73, "id": "p1", "text": "Coal <b>runs</b>."}]
    strongest = {"label": "favor", "probabilities": {"favor": 0.9, "against": 0.05, "none": 0.05},
                 "text": "Pressure <works>."}
    paras = [paragraph(0, "favor", (0.8, 0.1, 0.1), "Joint pressure works.", evidence=evidence,
                       strongest_sentence=strongest),
             paragraph(1, "against", (0.3, 0.45, 0.25), SCRIPT_TEXT),
             paragraph(2, "none", (0.2, 0.1, 0.7), "The derby went to extra time.", out_of_domain=True)]
    doc = {"document": 'examples/"quoted" & <odd>.txt', "title": "A <title>", "verdict": "favor",
           "verdict_reason": "favor mass 0.60 (length-weighted), against 0.30: favor leads and holds >= 0.25",
           "mass": {"favor": 0.6, "against": 0.3, "none": 0.1}, "shares": {"favor": 1 / 3, "against": 1 / 3, "none": 1 / 3},
           "out_of_domain_paragraphs": 1, "decisive": [0, 1], "agreement": 0.5, "paragraphs": paras}
    if not optional:
        doc = {k: v for k, v in doc.items() if k not in ("title", "verdict_reason", "agreement")}
        doc["paragraphs"] = [{k: v for k, v in p.items() if k not in ("evidence", "strongest_sentence")} for p in paras]
    return [{**doc, "document": f"doc-{n}.txt"} if n else doc for n in range(n_docs)]


class Paragraphs(HTMLParser):
    """The attributes of every [data-label] element and the text of its `p.text`."""

    def __init__(self):
        super().__init__()
        self.found: list[dict] = []
        self._in_text = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-label" in attrs:
            self.found.append({**attrs, "text": ""})
        self._in_text = tag == "p" and attrs.get("class") == "text"

    def handle_endtag(self, tag):
        self._in_text = self._in_text and tag != "p"

    def handle_data(self, data):
        if self._in_text:
            self.found[-1]["text"] += data


def parse(page: str) -> list[dict]:
    parser = Paragraphs()
    parser.feed(page)
    return parser.found


def luminance(colour: str) -> float:
    rgb = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# --- the page, without a browser ---------------------------------------------------------------

def test_self_contained_no_network_references():
    page = to_html(results(2), 0.5)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "default-src 'none'" in page  # the browser itself refuses anything external


def test_text_is_escaped_everywhere():
    page = to_html(results(1), 0.5)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; left." in page
    assert "<script" not in page and "<b>runs" not in page and "<odd>" not in page
    assert "A &lt;title&gt;" in page and "examples/&quot;quoted&quot; &amp; &lt;odd&gt;.txt" in page
    [_, against, _] = parse(page)
    assert against["text"] == SCRIPT_TEXT  # read back as the very text, not markup


def test_index_only_with_several_documents():
    one, three = to_html(results(1), 0.5), to_html(results(3), 0.5)
    assert '<nav class="index"' not in one
    assert three.count('<nav class="index"') == 1
    assert all(f'<a href="#d{n}">' in three for n in range(3))
    assert three.count('class="document"') == 3 and len(parse(three)) == 9


def test_labels_and_marks_are_written_in_words():
    page = to_html(results(1), 0.5)
    items = page.split('<li id="d0-p')[1:]
    assert len(items) == 3
    favor, against, off = items
    assert ">favor</span>" in favor and "decisive" in favor
    assert ">against</span>" in against and "uncertain (top probability below 0.5)" in against
    assert ">off-topic</span> counted as none" in off and "uncertain" not in off
    assert "Verdict: FAVOR" in page and "argues for China–US cooperation" in page


def test_data_attributes_follow_the_results():
    found = parse(to_html(results(1), 0.5))
    assert [(p["data-label"], p.get("data-off-topic")) for p in found] == [("favor", None), ("against", None),
                                                                           ("none", "true")]
    assert [int(p["data-strength"]) for p in found] == [3, 1, 2]
    assert [p["id"] for p in found] == ["d0-p0", "d0-p1", "d0-p2"]


def test_optional_keys_are_optional_and_shown_when_present():
    bare = to_html(results(1, optional=False), None)
    assert "<details>" not in bare and "leads and holds" not in bare and "decisive paragraphs are" not in bare
    assert "length-weighted probability mass: favor 60% · against 30% · none 10%" in bare
    assert "paragraphs: favor 1 (33%) · against 1 (33%) · none 1 (33%)" in bare
    full = to_html(results(1), 0.5)
    assert "favor mass 0.60 (length-weighted), against 0.30: favor leads and holds &gt;= 0.25" in full
    assert "50% of the decisive paragraphs are labelled favor" in full
    assert "<details><summary>Evidence: the 1 most similar labelled training paragraph</summary>" in full
    assert "Strongest sentence" not in bare
    assert ('Strongest sentence, read on its own: <span class="chip accent-favor">favor</span> 0.90 '
            "<q>Pressure &lt;works&gt;.</q>") in full


def test_accessible_structure():
    page = to_html(results(2), 0.5)
    assert '<html lang="en">' in page
    assert re.search(r"<title>Stance report: 2 documents</title>", page)
    assert page.count("<h1>") == 1 and page.count("<h2") == 3  # index + one per document
    assert re.search(r"<title>Stance: A &lt;title&gt;</title>", to_html(results(1), 0.5))


def test_colours_have_aa_contrast():
    for colours in PALETTE.values():
        for tint in colours["tints"]:
            assert contrast(TEXT, tint) >= 4.5 and contrast(MUTED, tint) >= 4.5
        assert contrast("#ffffff", colours["accent"]) >= 4.5  # label chips: white on the accent
    assert contrast(TEXT, OFF_TOPIC["tint"]) >= 4.5 and contrast(MUTED, OFF_TOPIC["tint"]) >= 4.5
    assert contrast("#ffffff", OFF_TOPIC["accent"]) >= 4.5
    assert contrast(MUTED, "#ffffff") >= 4.5


def test_strength_and_background():
    assert [strength(paragraph(0, "favor", probs, "")) for probs in ((.4, .3, .3), (.5, .3, .2), (.75, .2, .05))] == [1, 2, 3]
    assert background(paragraph(0, "against", (.1, .8, .1), "")) == PALETTE["against"]["tints"][2]
    assert background(paragraph(0, "none", (.1, .1, .8), "", out_of_domain=True)) == OFF_TOPIC["tint"]


def test_registered_as_an_output_format():
    assert choose_format(None, "out/report.html") == "html" and choose_format(None, "r.HTM") == "html"
    assert render(results(1), "html", uncertain_below=0.5) == to_html(results(1), 0.5)


# --- through the CLI, then in chromium ---------------------------------------------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict:
    """The tiny trained project scores one article (with a `<script>` paragraph and an off-topic
    one) to JSON on stdout and to HTML both on stdout and in `-o report.html`."""
    from pipeline.corpus import prepare
    from pipeline.encoder import embed
    from pipeline.model import train

    root = tmp_path_factory.mktemp("html")
    params = write_project(root)
    prepare.run(params)
    embed.run(params, embedder=FakeEmbedder())
    train.run(params)
    article = root / "article.txt"
    article.write_text("\n\n".join([f"{FAVOR[0]} Report 1.", f"{AGAINST[1]} Report 1.", f"{NONE[0]} Report 1.",
                                    f"{AGAINST[2]} {SCRIPT_TEXT}", FOOTBALL]) + "\n", encoding="utf-8")
    second = root / "second.md"
    second.write_text(f"# Second\n\n{FAVOR[2]} Again.\n\n{NONE[1]} Again.\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pipeline.encoder.embed.make_embedder", lambda params, **overrides: FakeEmbedder())
        # as in test_score_cli.py: the tiny project's calibrated threshold would make all off-topic
        mp.setattr("pipeline.model.reference.Reference.threshold", lambda self, percentile=None: 0.8)
        runs = {}
        for name, extra in (("json", ["-f", "json"]), ("html", ["-f", "html"]),
                            ("file", ["-o", str(root / "out" / "report.html")])):
            result = CliRunner().invoke(app, ["score", str(article), str(second), "--explain", *extra,
                                              "--params", str(root / "params.yaml")])
            assert result.exit_code == 0, result.output
            runs[name] = result
    return {"results": json.loads(runs["json"].stdout), "html": runs["html"].stdout,
            "file": root / "out" / "report.html", "stderr": runs["file"].stderr}


def test_cli_writes_the_page_to_stdout_and_atomically_to_a_file(scored):
    assert scored["file"].read_text(encoding="utf-8") == scored["html"]
    assert [p.name for p in scored["file"].parent.iterdir()] == ["report.html"]  # no temporary file left
    assert "wrote" in scored["stderr"] and scored["html"].startswith("<!DOCTYPE html>")
    labels = [p["label"] for doc in scored["results"] for p in doc["paragraphs"]]
    assert {"favor", "against", "none"} <= set(labels)
    assert any(p["out_of_domain"] for doc in scored["results"] for p in doc["paragraphs"])
    assert [p["data-label"] for p in parse(scored["html"])] == labels


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the browser checks need it")
    return path


def browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
                           "--v=0", *args, page.as_uri()], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT,
                          cwd=page.parent)


def test_chromium_loads_the_page_without_console_errors_and_shows_every_paragraph(scored):
    run = browse(scored["file"], "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    # the page has no script: any console message (an error, a refused resource) is a fault
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    found = {p["id"]: p for p in parse(run.stdout)}
    for n, doc in enumerate(scored["results"]):
        for p in doc["paragraphs"]:
            shown = found[f"d{n}-p{p['index']}"]
            assert shown["data-label"] == p["label"]
            assert shown["text"] == p["text"]
            assert ("data-off-topic" in shown) == bool(p["out_of_domain"])
    assert len(found) == sum(len(doc["paragraphs"]) for doc in scored["results"])
    assert "<script" not in run.stdout  # the `<script>` paragraph stayed text


def test_rendered_colours_match_the_labels(scored, tmp_path):
    # The page needs no script; this copy appends one (and lets it run past the page's CSP) to
    # read the colours chromium actually computed.
    probe = """<script>
const rows = [...document.querySelectorAll('[data-label]')].map(el => [el.id, getComputedStyle(el).backgroundColor,
  getComputedStyle(el.querySelector('p.text')).color]);
const pre = document.createElement('pre'); pre.id = 'computed'; pre.textContent = JSON.stringify(rows);
document.body.appendChild(pre);
</script>"""
    page = scored["html"].replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    run = browse(copy, "--dump-dom")
    match = re.search(r'<pre id="computed">(.*?)</pre>', run.stdout, re.S)
    assert match, run.stderr[-2000:]
    computed = {pid: (bg, fg) for pid, bg, fg in json.loads(html.unescape(match.group(1)))}

    def rgb(colour: str) -> str:
        return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))

    tints = {label: {rgb(t) for t in c["tints"]} for label, c in PALETTE.items()}
    paragraphs = [(n, p) for n, doc in enumerate(scored["results"]) for p in doc["paragraphs"]]
    assert len(computed) == len(paragraphs)
    for n, p in paragraphs:
        bg, fg = computed[f"d{n}-p{p['index']}"]
        assert bg == rgb(background(p))
        assert bg == rgb(OFF_TOPIC["tint"]) if p["out_of_domain"] else bg in tints[p["label"]]
        assert fg == rgb(TEXT)


def test_screenshot(scored, tmp_path):
    shot = tmp_path / "report.png"
    run = browse(scored["file"], f"--screenshot={shot}", "--window-size=1200,2000")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
