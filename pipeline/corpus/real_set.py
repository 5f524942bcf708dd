"""The real development set: its manifest (facts only, committed) and `stance hydrate` (text, ignored).

The manifest (`paths.real_manifest`, `data/real/manifest.csv`) holds, per paragraph of a public
page, `url, paragraph_index, sha256, label, rationale, genre, origin, page_verdict, annotator`:
never a sentence of the page. `stance hydrate` turns it back into text in the ignored folder
`paths.real_dir` (`data/external/`): it takes each page from a folder of saved pages (files named
`<page_key(url)>.txt` or `.html`, see `pipeline.corpus.real_pages`) or, with `--fetch`, from the network
with trafilatura; splits it with the fixed paragraph rule; checks every paragraph against its
sha256; and writes the paragraphs that match to `<real_dir>/paragraphs.jsonl` (page key, index and
text only: the facts about them stay in the manifest). Every problem (a bad
manifest row, a missing page, a page that changed, a paragraph whose hash no longer matches) is one
line, and checking goes on past it: a page whose text changed is reported, never re-labelled. A
paragraph whose text is unchanged but now sits at another position (the page gained or lost a
block before it) is found by its hash, hydrated, and noted in one line.

Pages are split into two fixed halves by their key (`half_of`): model choices are made on the
`select` half and reported on the `report` half, so the reported figure is not tuned.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pipeline.corpus.real_pages import (HTML_SUFFIXES, html_main_text, page_key, page_paragraphs, paragraph_sha,
                                        saved_page_text)
from pipeline.errors import StanceError
from pipeline.files import write_jsonl_atomic

COLUMNS = ["url", "paragraph_index", "sha256", "label", "rationale", "genre", "origin", "page_verdict", "annotator"]
LABELS = ("favor", "against", "none")
GENRES = ("news", "oped", "editorial", "analysis", "briefing")
ORIGINS = ("us", "china", "korea", "japan", "europe", "other")
HALVES = ("select", "report")
_SHA = re.compile(r"^[0-9a-f]{64}$")
SAVED_SUFFIXES = (".txt", *HTML_SUFFIXES)


@dataclass
class Manifest:
    rows: list[dict]
    problems: list[str] = field(default_factory=list)

    def pages(self) -> dict[str, list[dict]]:
        """Rows grouped by url, in manifest order, each page's rows by paragraph index."""
        grouped: dict[str, list[dict]] = {}
        for row in self.rows:
            grouped.setdefault(row["url"], []).append(row)
        return {url: sorted(rows, key=lambda r: r["paragraph_index"]) for url, rows in grouped.items()}


def half_of(url: str) -> str:
    """`select` or `report`: a fixed split of the pages by their key (about half each)."""
    return HALVES[int(page_key(url)[-1], 16) % 2]


def _row_problem(row: dict) -> str | None:
    parsed = urlparse(row["url"])
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"bad url {row['url']!r}"
    if not row["paragraph_index"].isdigit():
        return f"paragraph_index must be a whole number >= 0, got {row['paragraph_index']!r}"
    if not _SHA.match(row["sha256"]):
        return f"malformed sha256 {row['sha256']!r} (expected 64 lower-case hex digits)"
    for column, allowed in (("label", LABELS), ("page_verdict", LABELS), ("genre", GENRES), ("origin", ORIGINS)):
        if row[column] not in allowed:
            return f"unknown {column} {row[column]!r} (expected one of {', '.join(allowed)})"
    return None


def read_manifest(path: str | Path, required: bool = True) -> Manifest:
    """The manifest's valid rows, and one `file:line: problem` for each bad one (the rest still read)."""
    path = Path(path)
    if not path.exists():
        if required:
            raise StanceError(f"{path}: real-set manifest not found")
        return Manifest([])
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StanceError(f"{path}: missing columns {', '.join(missing)}")
        rows, problems, seen, verdicts = [], [], {}, {}
        for line, raw in enumerate(reader, start=2):
            row = {c: (raw.get(c) or "").strip() for c in COLUMNS}
            problem = _row_problem(row)
            key = (row["url"], row["paragraph_index"])
            if problem is None and key in seen:
                problem = f"duplicate ({row['url']}, {row['paragraph_index']}) (first on line {seen[key]})"
            if problem is None and verdicts.setdefault(row["url"], row["page_verdict"]) != row["page_verdict"]:
                problem = f"page_verdict {row['page_verdict']!r} differs from the page's earlier rows"
            if problem:
                problems.append(f"{path}:{line}: {problem}")
                continue
            seen[key] = line
            rows.append({**row, "paragraph_index": int(row["paragraph_index"]), "line": line})
    return Manifest(rows, problems)


def find_saved(folder: Path, url: str) -> Path | None:
    for suffix in SAVED_SUFFIXES:
        candidate = folder / f"{page_key(url)}{suffix}"
        if candidate.exists():
            return candidate
    return None


def fetch_page(url: str, pages_dir: Path, private_hosts: bool = False) -> Path | None:
    """Download a page with trafilatura and save its HTML as `<key>.html`; None when it fails.

    trafilatura refuses private and loopback addresses (SSRF protection) unless `private_hosts`:
    a mirror of the pages on an intranet, or a test server on 127.0.0.1."""
    import trafilatura
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "SSRF_PROTECTION", "False" if private_hosts else "True")
    html = trafilatura.fetch_url(url, config=config)
    if not html:
        return None
    target = pages_dir / f"{page_key(url)}.html"
    from pipeline.files import write_text_atomic

    write_text_atomic(target, html)
    return target


def check_page(url: str, rows: list[dict], text: str) -> tuple[list[dict], list[str], list[str]]:
    """The manifest rows whose paragraph is on the page (with the text), one line per paragraph
    that is not, and one note per paragraph found at another position than its index.

    A stored page can gain or lose a block before a labelled paragraph (a new caption line, say):
    the paragraph's text, and so its hash and its label, are unchanged, so it is found by its hash
    and hydrated, and the move is noted. A paragraph whose text changed is never matched."""
    paragraphs = page_paragraphs(text)
    positions: dict[str, int] = {}
    for position, paragraph in enumerate(paragraphs):
        positions.setdefault(paragraph_sha(paragraph), position)
    good, problems, notes = [], [], []
    for row in rows:
        index = row["paragraph_index"]
        position = positions.get(row["sha256"])
        if position is None:
            problems.append(f"{url}: paragraph {index} is missing (the page now has {len(paragraphs)})"
                            if index >= len(paragraphs) else
                            f"{url}: paragraph {index} changed (its sha256 no longer matches)")
            continue
        if position != index:
            notes.append(f"{url}: paragraph {index} is now at position {position} (same text, hydrated)")
        # Only the text and where it sits: the facts about it stay in the manifest.
        good.append({"page": page_key(url), "paragraph_index": index, "text": paragraphs[position]})
    return good, problems, notes


def hydrate(manifest_path: str | Path, real_dir: str | Path, source: str | Path | None = None,
            fetch: bool = False, private_hosts: bool = False) -> dict:
    """Fill `real_dir` from saved pages (`source`, default `<real_dir>/pages`) or, with `fetch`,
    the network. Returns counts, the problems and the notes (paragraphs that moved); writes
    `<real_dir>/paragraphs.jsonl`."""
    manifest = read_manifest(manifest_path)
    real_dir = Path(real_dir)
    pages_dir = real_dir / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    source = Path(source) if source else pages_dir
    if not source.is_dir():
        raise StanceError(f"{source}: not a folder of saved pages")
    problems = list(manifest.problems)
    notes: list[str] = []
    hydrated: list[dict] = []
    pages = manifest.pages()
    found = 0
    for url, rows in pages.items():
        saved = find_saved(source, url)
        if saved is not None and source.resolve() != pages_dir.resolve():
            target = pages_dir / saved.name
            shutil.copyfile(saved, target)
            saved = target
        if saved is None and fetch:
            try:
                saved = fetch_page(url, pages_dir, private_hosts)
            except Exception as exc:  # noqa: BLE001 - any fetch failure is one reported line
                problems.append(f"{url}: fetch failed ({type(exc).__name__})")
                continue
        if saved is None:
            problems.append(f"{url}: page missing (no {page_key(url)}.txt/.html in {source}"
                            f"{'' if fetch else '; --fetch downloads it'})")
            continue
        found += 1
        good, page_problems, page_notes = check_page(url, rows, saved_page_text(saved))
        hydrated.extend(good)
        problems.extend(page_problems)
        notes.extend(page_notes)
    write_jsonl_atomic(real_dir / "paragraphs.jsonl", hydrated)
    return {"pages": len(pages), "pages_found": found, "paragraphs": len(manifest.rows) + len(manifest.problems),
            "hydrated": len(hydrated), "problems": problems, "notes": notes, "path": str(real_dir / "paragraphs.jsonl")}


def load_hydrated(real_dir: str | Path, manifest_path: str | Path) -> list[dict]:
    """The hydrated paragraphs, refused in one line when the set is not hydrated (or is stale)."""
    from pipeline.files import read_jsonl

    path = Path(real_dir) / "paragraphs.jsonl"
    if not path.exists():
        raise StanceError(f"{path}: the real development set is not hydrated (run `stance hydrate` "
                          f"with the saved pages, or `stance hydrate --fetch` where a network exists)")
    texts = {(r["page"], r["paragraph_index"]): r["text"] for r in read_jsonl(path)}
    records = []
    for row in read_manifest(manifest_path).rows:  # the manifest's facts, with each paragraph's text
        text = texts.get((page_key(row["url"]), row["paragraph_index"]))
        if text is not None and paragraph_sha(text) == row["sha256"]:
            records.append({**{k: v for k, v in row.items() if k != "line"}, "text": text, "half": half_of(row["url"])})
    if not records:
        raise StanceError(f"{path}: no hydrated paragraph matches {manifest_path} (run `stance hydrate` again)")
    return records


SECOND_PASS_COLUMNS = ["url", "paragraph_index", "sha256", "label", "page_verdict", "annotator"]


def second_pass_agreement(manifest_path: str | Path, second_dir: str | Path) -> dict:
    """Cohen's kappa between the manifest's labels and the blind second passes (`<second_dir>/*.csv`,
    rows keyed by url, paragraph index and sha256), for paragraphs and for page verdicts."""
    from pipeline.corpus.labels import kappa

    manifest = read_manifest(manifest_path, required=False)
    first = {(r["url"], r["paragraph_index"], r["sha256"]): r for r in manifest.rows}
    pairs, pages = [], {}
    for path in sorted(Path(second_dir).glob("*.csv")):
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in SECOND_PASS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StanceError(f"{path}: missing columns {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                key = (row["url"].strip(), int(row["paragraph_index"]) if row["paragraph_index"].strip().isdigit() else -1,
                       row["sha256"].strip())
                if row["label"] not in LABELS or row["page_verdict"] not in LABELS:
                    raise StanceError(f"{path}:{line}: unknown label {row['label']!r} or page_verdict {row['page_verdict']!r}")
                if key in first:
                    pairs.append((first[key]["label"], row["label"]))
                    pages[key[0]] = (first[key]["page_verdict"], row["page_verdict"])
    if not pairs:
        return {"paragraphs": 0, "pages": 0}
    a, b = zip(*pairs)
    pa, pb = zip(*pages.values())
    return {"paragraphs": len(pairs), "paragraph_agreement": round(sum(x == y for x, y in pairs) / len(pairs), 4),
            "paragraph_kappa": round(kappa(list(a), list(b)), 4), "pages": len(pages),
            "page_agreement": round(sum(x == y for x, y in zip(pa, pb)) / len(pa), 4),
            "page_kappa": round(kappa(list(pa), list(pb)), 4)}
