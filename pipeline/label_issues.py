"""`stance labels check`: validate every label file, then list labels that look wrong.

Inputs:  `paths.labels_dir`, `paths.paragraphs`, `paths.embeddings`.
Params:  `seed`, `train.*`, `labels.priority`.

Schema problems (unknown labels, orphan ids, conflicts, bad headers) are errors (non-zero exit).
Suspected label issues come from cleanlab's `find_label_issues` on out-of-fold predicted
probabilities (the evaluate stage's nested grouped CV) and are reported, not fatal.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.files import read_jsonl


def suspected_issues(y: np.ndarray, probabilities: np.ndarray) -> list[int]:
    """Indices of likely mislabelled rows, most suspicious first."""
    from cleanlab.filter import find_label_issues

    present = [label for label in LABELS if label in set(y.tolist())]
    columns = [LABELS.index(label) for label in present]
    probs = probabilities[:, columns]
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = np.array([present.index(label) for label in y])
    return [int(i) for i in find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")]


def run_check(params: dict, limit: int = 20) -> list[int]:
    from pipeline.evaluate import oof_probabilities
    from pipeline.labels import read_label_file
    from pipeline.train import training_set

    paths = params["paths"]
    if not Path(paths["paragraphs"]).exists():
        raise StanceError(f"{paths['paragraphs']}: not found (run `stance prepare` first)")
    records = {r["id"]: r for r in read_jsonl(paths["paragraphs"])}
    files = sorted(Path(paths["labels_dir"]).glob("*.csv"))
    if not files:
        raise StanceError(f"{paths['labels_dir']}: no label files (*.csv)")
    for path in files:
        rows = read_label_file(path, set(records))
        counts = Counter(r.label for r in rows)
        print(f"{path}: ok, {len(rows)} labels ({', '.join(f'{k} {counts[k]}' for k in LABELS)})")
    rows, X, y, groups, _ = training_set(params)
    probabilities = oof_probabilities(X, y, groups, params["train"], int(params["seed"]))
    issues = suspected_issues(y, probabilities)
    print(f"\n{len(issues)} suspected label issues (out-of-fold, cleanlab); top {min(limit, len(issues))}:")
    for i in issues[:limit]:
        suggested = LABELS[int(probabilities[i].argmax())]
        text = records[rows[i]["id"]]["text"]
        print(f"  {rows[i]['id']}  {rows[i]['doc']}  labelled {y[i]}, model says {suggested} "
              f"({probabilities[i].max():.2f}): {text[:100]}{'…' if len(text) > 100 else ''}")
    return issues
