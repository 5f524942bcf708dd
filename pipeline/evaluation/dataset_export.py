"""`stance export-dataset DIR`: the labelled corpus as a Hugging Face `DatasetDict` on disk.

Inputs:  `paths.paragraphs` (texts, from prepare), `paths.labels_dir`, `paths.sources`.
Outputs: DIR, written with `DatasetDict.save_to_disk` (load it with `datasets.load_from_disk`),
         plus `stance_export.json` (what was exported, and from which settings).
Params:  `seed`, `train.cv_folds`, `labels.priority`.

The rows are the labelled paragraphs with their resolved labels, exactly as training sees them
(`load_labels` + `resolve_labels`), in corpus order: id, text, label (a `ClassLabel` named as
`pipeline.LABELS`), document, genre, kind, year (from the sources table) and second_agrees
(whether the independent second pass, annotator `second`, gave the resolved label; None where
it did not label the paragraph). The test split is the first outer fold of the evaluation
(`pipeline.model.out_of_fold.outer_folds`), so a model fitted on `train` and scored on `test` is measured
on the same held-out documents as the shipped model's first fold; no document is in both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipeline import LABELS
from pipeline.errors import StanceError

SECOND_ANNOTATOR = "second"  # the blind second pass of data/labels/README.md
MARKER = "stance_export.json"  # tells a previous export (safe to replace) from any other folder
COLUMNS = ("id", "text", "label", "document", "genre", "kind", "year", "second_agrees")


def features():
    """The dataset's schema: `label` is a ClassLabel whose integer i is `pipeline.LABELS[i]`."""
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"), "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(LABELS)),
        "document": datasets.Value("string"), "genre": datasets.Value("string"), "kind": datasets.Value("string"),
        "year": datasets.Value("int32"), "second_agrees": datasets.Value("bool"),
    })


def _year(value: str, slug: str, sources: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise StanceError(f"{sources}: year {value!r} of {slug} is not a whole number") from None


def labelled_rows(params: dict) -> list[dict]:
    """One dict per labelled paragraph (the COLUMNS, label as a name), in the prepared corpus's order."""
    from pipeline.corpus.labels import load_labels, resolve_labels
    from pipeline.corpus.prepare import read_sources
    from pipeline.files import read_jsonl

    paths = params["paths"]
    if not Path(paths["paragraphs"]).is_file():
        raise StanceError(f"{paths['paragraphs']}: not found (run `stance prepare` or `dvc repro` first)")
    paragraphs = read_jsonl(paths["paragraphs"])
    rows = load_labels(paths["labels_dir"], {p["id"] for p in paragraphs})
    resolved = resolve_labels(rows, (params.get("labels") or {}).get("priority"))
    second = {row.paragraph_id: row.label for row in rows if row.annotator == SECOND_ANNOTATOR}
    sources = {s["slug"]: s for s in read_sources(paths["sources"])}
    out = []
    for paragraph in paragraphs:
        pid = paragraph["id"]
        if pid not in resolved:
            continue
        source = sources.get(paragraph["doc"])
        if source is None:
            raise StanceError(f"{paths['sources']}: no row for document {paragraph['doc']} of "
                              f"{paths['paragraphs']} (run `stance prepare` again)")
        out.append({"id": pid, "text": paragraph["text"], "label": resolved[pid], "document": paragraph["doc"],
                    "genre": source["genre"], "kind": source["kind"],
                    "year": _year(source["year"], source["slug"], paths["sources"]),
                    "second_agrees": (second[pid] == resolved[pid]) if pid in second else None})
    if not out:
        raise StanceError(f"{paths['labels_dir']}: no labelled paragraphs in {paths['paragraphs']}")
    return out


def split_indices(rows: list[dict], params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: the evaluation's first outer fold (same function, seed and order)."""
    from pipeline.model.out_of_fold import outer_folds

    y = np.array([r["label"] for r in rows])
    groups = np.array([r["document"] for r in rows])
    train_idx, test_idx = outer_folds(y, groups, params["train"], int(params["seed"]))[0]
    return train_idx, test_idx


def is_previous_export(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "dataset_dict.json").is_file()


def _check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise StanceError(f"{target}: exists and is not a folder; choose another output folder")
    if target.is_dir() and any(target.iterdir()) and not is_previous_export(target):
        raise StanceError(f"{target}: exists and is not a previous `stance export-dataset` output "
                          f"(no {MARKER}); choose another folder or remove it")


def _replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`. A folder cannot be renamed over a non-empty one, so the old export is
    moved aside first and put back if the swap fails; readers never see a half-written export."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / "export")
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old / "export", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_dataset(params: dict, target: str | Path) -> dict:
    """Write the labelled corpus to `target` as a DatasetDict (train, test); returns the summary
    also saved there as `stance_export.json`."""
    target = Path(target).expanduser()
    _check_target(target)  # before the (slower) reading, and again before the swap
    rows = labelled_rows(params)
    train_idx, test_idx = split_indices(rows, params)

    import datasets

    schema = features()

    def split(indices: np.ndarray):
        chosen = [rows[i] for i in indices]
        columns = {c: [r[c] for r in chosen] for c in COLUMNS}
        columns["label"] = [LABELS.index(label) for label in columns["label"]]
        return datasets.Dataset.from_dict(columns, features=schema)

    corpus = datasets.DatasetDict({"train": split(train_idx), "test": split(test_idx)})
    summary = {
        "paragraphs": len(rows),
        "splits": {name: {"paragraphs": len(idx), "documents": len({rows[i]["document"] for i in idx})}
                   for name, idx in (("train", train_idx), ("test", test_idx))},
        "test_split": f"outer fold 1 of {int(params['train'].get('cv_folds', 5))} of the evaluation "
                      f"(pipeline.model.out_of_fold.outer_folds, seed {int(params['seed'])})",
        "seed": int(params["seed"]), "cv_folds": int(params["train"].get("cv_folds", 5)),
        "labels": list(LABELS), "labels_priority": list((params.get("labels") or {}).get("priority") or []),
        "second_annotator": SECOND_ANNOTATOR,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        new = work / "export"
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # the CLI prints one summary line; no bars on stderr
        try:
            corpus.save_to_disk(str(new))
        finally:
            if bars:
                datasets.enable_progress_bars()
        (new / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _check_target(target)  # something may have appeared there while we wrote
        _replace_folder(new, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary
