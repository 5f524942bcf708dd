"""`stance labels check`: validate every label file, then list labels that look wrong.

Inputs:  `paths.labels_dir`, `paths.paragraphs`, `paths.embeddings`.
Params:  `seed`, `train.*`, `labels.priority`, `paths.fit_cache` (the fits `dvc repro` left, reused).

Schema problems (unknown labels, conflicts, bad headers) and labels of paragraphs no longer in the
corpus (a document was edited or removed) are errors (non-zero exit); every such label is listed
with its file and line, and every file is checked, before the command fails.
Suspected label issues come from cleanlab's `find_label_issues` on out-of-fold predicted
probabilities (the evaluate stage's nested grouped CV) and are reported, not fatal: three lines
each (paragraph id and document; the label and the model's; the text), every stdout line within
the terminal's width (80 columns when stdout is not a terminal; at least 60), long document names
and file paths cut in the middle, texts at a word boundary.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.files import read_jsonl
from pipeline.terminal import MIN_WIDTH, shorten_middle, snippet, terminal_width

PARAGRAPH_ID = re.compile(r"^p[0-9a-f]{16}$")  # pipeline.corpus.prepare.paragraph_id


def issue_lines(paragraph_id: str, document: str, label: str, suggested: str, probability: float, text: str,
                width: int) -> list[str]:
    """The three lines of one suspected label issue, each within `width` cells."""
    head = f"  {paragraph_id}  "
    return [head + shorten_middle(document, max(width - len(head), 1)),
            f"    labelled {label}, model says {suggested} ({probability:.2f})",
            "    " + snippet(text, width - 4)]


def ok_lines(path: str, n: int, counts: str, width: int) -> list[str]:
    """`path: ok, n labels (counts)`, the counts on a line of their own when the path is long."""
    from rich.cells import cell_len

    line = f"{path}: ok, {n} labels ({counts})"
    if cell_len(line) <= width:
        return [line]
    tail = f": ok, {n} labels"
    return [shorten_middle(path, width - len(tail)) + tail, f"  ({counts})"]


def suspected_issues(y: np.ndarray, probabilities: np.ndarray) -> list[int]:
    """Indices of likely mislabelled rows, most suspicious first."""
    from cleanlab.filter import find_label_issues

    present = [label for label in LABELS if label in set(y.tolist())]
    columns = [LABELS.index(label) for label in present]
    probs = probabilities[:, columns]
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = np.array([present.index(label) for label in y])
    return [int(i) for i in find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")]


def orphan_message(row) -> str:
    """One line for a label whose paragraph is not in the corpus, naming its file and line."""
    if PARAGRAPH_ID.match(row.paragraph_id):
        return f"{row.source}: {row.paragraph_id} no longer in the corpus (document edited or removed)"
    return f"{row.source}: paragraph id {row.paragraph_id} is not in the corpus (not a paragraph id)"


def stale_prepared_warning(paths: dict) -> None:
    """Warn when a raw document or the sources table changed after the paragraphs were prepared:
    the corpus checked against would then be out of date."""
    prepared = Path(paths["paragraphs"]).stat().st_mtime
    raw = [*Path(paths["raw_dir"]).glob("*.txt"), Path(paths["sources"])]
    if any(p.exists() and p.stat().st_mtime > prepared for p in raw):
        print(f"warning: {paths['raw_dir']} changed after {paths['paragraphs']} was written; run `stance prepare` "
              "(or `dvc repro prepare`) to check against the current corpus", file=sys.stderr)


def run_check(params: dict, limit: int = 20, width: int | None = None) -> list[int]:
    from pipeline.corpus.labels import read_label_file
    from pipeline.model.out_of_fold import oof_probabilities
    from pipeline.model.train import training_set

    paths = params["paths"]
    width = max(width or terminal_width(), MIN_WIDTH)
    if not Path(paths["paragraphs"]).exists():
        raise StanceError(f"{paths['paragraphs']}: not found (run `stance prepare` first)")
    records = {r["id"]: r for r in read_jsonl(paths["paragraphs"])}
    files = sorted(Path(paths["labels_dir"]).glob("*.csv"))
    if not files:
        raise StanceError(f"{paths['labels_dir']}: no label files (*.csv)")
    stale_prepared_warning(paths)
    problems = []
    for path in files:
        try:
            rows = read_label_file(path)  # the schema; the corpus is checked below, every row of it
        except StanceError as exc:
            problems.append(str(exc))
            continue
        orphans = [orphan_message(r) for r in rows if r.paragraph_id not in records]
        problems.extend(orphans)
        if not orphans:
            counts = Counter(r.label for r in rows)
            for line in ok_lines(str(path), len(rows), ", ".join(f"{k} {counts[k]}" for k in LABELS), width):
                print(line)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        raise StanceError(f"{len(problems)} problems in the label files (listed above); for a paragraph no longer "
                          "in the corpus, remove its row and label the new text (`stance label`)")
    rows, X, y, groups, _ = training_set(params)
    probabilities = oof_probabilities(X, y, groups, params["train"], int(params["seed"]),
                                      cache_dir=paths.get("fit_cache"))  # after `dvc repro`: every fit is there
    issues = suspected_issues(y, probabilities)
    title = f"{len(issues)} suspected label issues (out-of-fold, cleanlab)"
    top = f"top {min(limit, len(issues))}:"
    print("\n" + (f"{title}; {top}" if len(title) + len(top) + 2 <= width else f"{title};\n{top}"))
    for i in issues[:limit]:
        suggested = LABELS[int(probabilities[i].argmax())]
        for line in issue_lines(rows[i]["id"], rows[i]["doc"], y[i], suggested, float(probabilities[i].max()),
                                records[rows[i]["id"]]["text"], width):
            print(line)
    return issues
