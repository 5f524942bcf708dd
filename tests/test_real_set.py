"""The real development set's manifest and `stance hydrate`: saved pages, fetching, every problem reported."""

from __future__ import annotations

import csv
import http.server
import threading
from pathlib import Path

import pytest

from pipeline.corpus.real_pages import page_key, page_paragraphs, paragraph_sha
from pipeline.corpus.real_set import COLUMNS, half_of, hydrate, load_hydrated, read_manifest
from pipeline.errors import StanceError

PAGE_A = "\n".join([
    "Headline of the first page",
    "The two governments agreed on Tuesday to press ahead with a joint plan for the talks next month.",
    "Officials in the capital said the talks would resume after the holiday, although no date was set yet.",
])
PAGE_B = "\n".join([
    "Analysts doubted that the plan would survive the coming quarrel over trade and naval patrols in the region.",
    "A spokesman declined to comment on the report, saying only that the matter was under careful study.",
])
URL_A, URL_B = "https://news.example/a", "https://news.example/b"


def rows_for(url: str, text: str, labels: list[str]) -> list[dict]:
    return [{"url": url, "paragraph_index": i, "sha256": paragraph_sha(p), "label": label, "rationale": "ours",
             "genre": "news", "origin": "us", "page_verdict": labels[0], "annotator": "t"}
            for i, (p, label) in enumerate(zip(page_paragraphs(text), labels))]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    return write_manifest(tmp_path / "manifest.csv", rows_for(URL_A, PAGE_A, ["favor", "none"])
                          + rows_for(URL_B, PAGE_B, ["against", "none"]))


def save(folder: Path, url: str, text: str, suffix: str = ".txt") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{page_key(url)}{suffix}").write_text(text, encoding="utf-8")


def test_hydrate_from_saved_pages_checks_every_hash(manifest, tmp_path):
    saved = tmp_path / "saved"
    save(saved, URL_A, PAGE_A)
    save(saved, URL_B, PAGE_B)
    summary = hydrate(manifest, tmp_path / "external", saved)
    assert summary["problems"] == [] and summary["hydrated"] == 4
    records = load_hydrated(tmp_path / "external", manifest)
    assert [r["text"] for r in records] == page_paragraphs(PAGE_A) + page_paragraphs(PAGE_B)
    assert {r["half"] for r in records} <= {"select", "report"}
    assert (tmp_path / "external" / "pages" / f"{page_key(URL_A)}.txt").exists()


def test_missing_and_changed_pages_are_reported_one_line_each_and_the_rest_hydrated(manifest, tmp_path):
    saved = tmp_path / "saved"
    save(saved, URL_B, PAGE_B.replace("declined to comment", "refused to comment"))
    summary = hydrate(manifest, tmp_path / "external", saved)
    assert summary["hydrated"] == 1
    assert summary["problems"] == [
        f"{URL_A}: page missing (no {page_key(URL_A)}.txt/.html in {saved}; --fetch downloads it)",
        f"{URL_B}: paragraph 1 changed (its sha256 no longer matches)"]


def test_a_paragraph_that_moved_is_found_by_its_hash_hydrated_and_noted(manifest, tmp_path):
    saved = tmp_path / "saved"
    new_first = "A caption line added to the stored page, long enough to be kept as a paragraph of its own."
    save(saved, URL_A, PAGE_A)
    save(saved, URL_B, new_first + "\n" + PAGE_B)
    summary = hydrate(manifest, tmp_path / "external", saved)
    assert summary["problems"] == [] and summary["hydrated"] == 4
    assert summary["notes"] == [f"{URL_B}: paragraph 0 is now at position 1 (same text, hydrated)",
                                f"{URL_B}: paragraph 1 is now at position 2 (same text, hydrated)"]
    records = load_hydrated(tmp_path / "external", manifest)
    b = [r for r in records if r["url"] == URL_B]
    assert [(r["paragraph_index"], r["label"], r["text"]) for r in b] == [
        (0, "against", page_paragraphs(PAGE_B)[0]), (1, "none", page_paragraphs(PAGE_B)[1])]


def test_a_moved_paragraph_whose_text_also_changed_is_not_matched(manifest, tmp_path):
    saved = tmp_path / "saved"
    new_first = "A caption line added to the stored page, long enough to be kept as a paragraph of its own."
    save(saved, URL_B, new_first + "\n" + PAGE_B.replace("declined to comment", "refused to comment"))
    summary = hydrate(manifest, tmp_path / "external", saved)
    assert f"{URL_B}: paragraph 1 changed (its sha256 no longer matches)" in summary["problems"]
    assert summary["notes"] == [f"{URL_B}: paragraph 0 is now at position 1 (same text, hydrated)"]


def test_bad_manifest_rows_name_file_and_line_and_the_rest_is_checked(manifest, tmp_path):
    rows = list(csv.DictReader(open(manifest, encoding="utf-8")))
    rows.append({**rows[0], "url": "not a url"})
    rows.append({**rows[1], "label": "maybe"})
    rows.append(dict(rows[0]))
    rows.append({**rows[1], "paragraph_index": "7", "sha256": "abc"})
    bad = write_manifest(tmp_path / "bad.csv", rows)
    result = read_manifest(bad)
    assert len(result.rows) == 4
    assert [p.split(": ", 1)[0] for p in result.problems] == [f"{bad}:{n}" for n in (6, 7, 8, 9)]
    assert "bad url" in result.problems[0] and "unknown label 'maybe'" in result.problems[1]
    assert "duplicate" in result.problems[2] and "malformed sha256" in result.problems[3]
    save(tmp_path / "saved", URL_A, PAGE_A)
    save(tmp_path / "saved", URL_B, PAGE_B)
    summary = hydrate(bad, tmp_path / "external", tmp_path / "saved")
    assert summary["hydrated"] == 4 and len(summary["problems"]) == 4


def test_a_manifest_without_its_columns_is_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("url,label\nhttps://a.example/,favor\n")
    with pytest.raises(StanceError, match=r"m\.csv: missing columns paragraph_index, sha256"):
        read_manifest(path)


def test_evaluating_an_unhydrated_set_says_so_in_one_line(manifest, tmp_path):
    with pytest.raises(StanceError, match=r"not hydrated \(run `stance hydrate`"):
        load_hydrated(tmp_path / "nowhere", manifest)


def test_halves_are_fixed_and_both_used():
    urls = [f"https://site.example/{i}" for i in range(200)]
    halves = [half_of(u) for u in urls]
    assert halves == [half_of(u) for u in urls]
    assert 70 < halves.count("select") < 130


class _Pages(http.server.BaseHTTPRequestHandler):
    pages: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - the http.server interface
        body = self.pages.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write((body or "not found").encode("utf-8"))

    def log_message(self, *args):
        pass


def test_fetch_hydrates_from_pages_served_on_localhost(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        html_paragraphs = page_paragraphs(PAGE_A)
        _Pages.pages = {"/a": ("<html><head><title>T</title></head><body><nav>Home | World | Sport</nav>"
                               "<article><h1>Headline of the first page</h1>"
                               + "".join(f"<p>{p}</p>" for p in html_paragraphs)
                               + "</article><footer>Copyright</footer></body></html>")}
        rows = rows_for(f"{base}/a", PAGE_A, ["favor", "none"]) + rows_for(f"{base}/gone", PAGE_B, ["none", "none"])
        manifest = write_manifest(tmp_path / "manifest.csv", rows)
        summary = hydrate(manifest, tmp_path / "external", fetch=True, private_hosts=True)
        assert summary["hydrated"] == 2
        assert len(summary["problems"]) == 1 and summary["problems"][0].startswith(f"{base}/gone: ")
        assert (tmp_path / "external" / "pages" / f"{page_key(base + '/a')}.html").exists()
    finally:
        server.shutdown()
