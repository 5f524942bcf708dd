"""Label files <-> annotation tools: `stance labels import` and `stance labels export`.

Import inputs:  a Label Studio JSON export (the "JSON" export: a list of tasks with `data` and
                `annotations`) or a doccano JSONL export of a text-classification project (one
                object per line with `text` and `label`); `paths.paragraphs` (to match paragraphs).
Import outputs: `paths.labels_dir`/<annotator>.csv, rewritten atomically with the new rows
                appended (rows already there keep their bytes).
Export inputs:  `paths.paragraphs`, `paths.sources` (titles), `paths.labels_dir`, and for
                `--predictions` the trained model (see `pipeline.labelling.label_session.model_guesses`).
Export outputs: Label Studio tasks JSON (a list of `{"data": {...}}`, optionally with predictions).
Params:         `seed` (export in random order).

Paragraphs are matched by id (`data.paragraph_id` / `paragraph_id`, as written by the export),
else by text: the id is a hash of the normalised text (`pipeline.corpus.prepare.paragraph_id`), so
whitespace, quote style and case do not matter. Label names are mapped case-insensitively:
DEFAULT_NAMES, then `--map NAME=LABEL` options (LABEL may be `skip`). Anything that cannot be
imported in full (unknown label names, unmatched paragraphs, conflicting annotations, a file from
another tool) is an error that names the file and the records, and nothing is written.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.terminal import snippet

FORMATS = ("auto", "label-studio", "doccano")
SKIP = "skip"
DEFAULT_NAMES = {
    **{label: label for label in LABELS},
    "favour": "favor", "pro": "favor", "support": "favor", "positive": "favor",
    "anti": "against", "oppose": "against", "con": "against", "negative": "against",
    "neutral": "none", "neither": "none", "no stance": "none", "irrelevant": "none",
}
# The labelling configuration the exported tasks are made for (paste it into Label Studio).
LABEL_STUDIO_CONFIG = """<View>
  <Header value="$title"/>
  <Text name="text" value="$text"/>
  <Choices name="stance" toName="text" choice="single" showInline="true">
    <Choice value="favor"/>
    <Choice value="against"/>
    <Choice value="none"/>
  </Choices>
</View>
"""
SHOWN = 5  # records named in an error message


@dataclass
class Annotated:
    """One labelled record of an export file, before matching."""
    where: str  # "task 12" / "line 5", for messages
    name: str  # the tool's label name, as written
    text: str = ""
    paragraph_id: str = ""


def parse_mapping(options: list[str] | None) -> dict[str, str]:
    """`["Positive=favor", "Mixed=skip"]` -> {"positive": "favor", "mixed": "skip"}, over the defaults."""
    mapping = dict(DEFAULT_NAMES)
    for option in options or []:
        name, sep, label = option.partition("=")
        label = label.strip().lower()
        if not sep or not name.strip() or label not in (*LABELS, SKIP):
            raise StanceError(f"--map {option!r}: expected NAME=LABEL with LABEL one of {', '.join(LABELS)} or {SKIP}")
        mapping[name.strip().casefold()] = label
    return mapping


# --- reading export files ----------------------------------------------------------------------

def read_export(path: str | Path, fmt: str = "auto") -> tuple[str, list[Annotated], int]:
    """(format, labelled records, count of records without a label) of an export file."""
    from pipeline.files import read_text_file

    path = Path(path)
    if fmt not in FORMATS:
        raise StanceError(f"unknown --format {fmt!r} (expected one of {', '.join(FORMATS)})")
    text = read_text_file(path)
    records = _parse_json(text, path)
    if not records:
        raise StanceError(f"{path}: no records")
    if fmt == "auto":
        fmt = _detect(records, path)
    reader = _label_studio if fmt == "label-studio" else _doccano
    labelled, unlabelled = [], 0
    for where, record in records:
        if not isinstance(record, dict):
            raise StanceError(f"{path}: {where} is not a JSON object; not a {fmt} export")
        found = reader(record, where, path)
        if found is None:
            unlabelled += 1
        else:
            labelled.append(found)
    return fmt, labelled, unlabelled


def _parse_json(text: str, path: Path) -> list[tuple[str, object]]:
    """A JSON array (-> tasks) or JSON lines (-> lines) as (where, record) pairs."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise StanceError(f"{path}:{number}: not JSON or JSON lines ({exc.msg}); expected a Label Studio "
                                  f"JSON export or a doccano JSONL export") from None
        return records
    if isinstance(data, dict):  # JSON lines with a single line
        return [("line 1", data)]
    if not isinstance(data, list):
        raise StanceError(f"{path}: expected a JSON list of tasks (Label Studio) or JSON lines (doccano)")
    return [(f"task {record.get('id', n)}" if isinstance(record, dict) else f"record {n}", record)
            for n, record in enumerate(data, start=1)]


def _detect(records: list[tuple[str, object]], path: Path) -> str:
    first = records[0][1]
    if not isinstance(first, dict):
        raise StanceError(f"{path}: records are not JSON objects; expected a Label Studio JSON or doccano JSONL export")
    annotations = first.get("annotations")
    if isinstance(first.get("data"), dict) or (
            isinstance(annotations, list) and any(isinstance(a, dict) and "result" in a for a in annotations)):
        return "label-studio"
    if "text" in first and any(key in first for key in ("label", "labels", "cats", "annotations")):
        return "doccano"
    if "annotation_id" in first or "annotator" in first:
        raise StanceError(f"{path}: looks like Label Studio's JSON-MIN or CSV-style export; export as \"JSON\" instead")
    raise StanceError(f"{path}: not a Label Studio JSON export or a doccano JSONL export (the first record "
                      f"has keys {', '.join(sorted(map(str, first))) or 'none'})")


def _label_studio(task: dict, where: str, path: Path) -> Annotated | None:
    data = task.get("data")
    if not isinstance(data, dict):
        raise StanceError(f"{path}: {where} has no \"data\" object; not a Label Studio JSON export")
    names: dict[str, str] = {}  # label name -> who gave it
    for annotation in task.get("annotations") or []:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled") or not annotation.get("result"):
            continue
        choices = [choice for result in annotation["result"] if isinstance(result, dict) and result.get("type") == "choices"
                   for choice in (result.get("value") or {}).get("choices") or []]
        if not choices:
            raise StanceError(f"{path}: {where} has an annotation without a \"choices\" result; the project must "
                              f"label each text with one choice (see docs/labelling.md for the configuration)")
        if len(set(choices)) > 1:
            raise StanceError(f"{path}: {where}: one annotation gives {len(set(choices))} choices "
                              f"({', '.join(map(str, choices))}); a paragraph takes one label")
        names.setdefault(str(choices[0]), str(annotation.get("completed_by", "?")))
    if not names:
        return None
    if len(names) > 1:
        who = ", ".join(f"{name!r} by user {user}" for name, user in names.items())
        raise StanceError(f"{path}: {where}: its annotations disagree ({who}); import one annotator's "
                          f"annotations at a time")
    return Annotated(where, next(iter(names)), str(data.get("text") or ""), str(data.get("paragraph_id") or ""))


def _doccano(record: dict, where: str, path: Path) -> Annotated | None:
    if "text" not in record:
        raise StanceError(f"{path}: {where} has no \"text\"; not a doccano JSONL export")
    if "label" in record:
        value = record["label"]
    elif "cats" in record:
        value = record["cats"]
    elif "labels" in record:
        value = record["labels"]
    else:  # doccano before 1.6: "annotations": [{"label": 3, "user": 1}]
        value = [a.get("label") for a in record.get("annotations") or [] if isinstance(a, dict)]
    names = [value] if isinstance(value, (str, int)) else list(value or [])
    if any(isinstance(name, (list, dict)) for name in names):
        raise StanceError(f"{path}: {where}: labels are spans, not categories; export a text-classification project")
    names = list(dict.fromkeys(str(name) for name in names))
    if not names:
        return None
    if len(names) > 1:
        raise StanceError(f"{path}: {where}: {len(names)} labels ({', '.join(names)}); a paragraph takes one label")
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return Annotated(where, names[0], str(record["text"] or ""),
                     str(record.get("paragraph_id") or meta.get("paragraph_id") or ""))


# --- import ------------------------------------------------------------------------------------

def match_labels(annotated: list[Annotated], corpus_ids: set[str], mapping: dict[str, str], source: str,
                 skip_unmatched: bool = False) -> tuple[dict[str, tuple[str, str]], list[Annotated], int]:
    """({paragraph id: (label, where)}, unmatched records, records mapped to skip).

    Errors for unknown label names, unmatched records (unless `skip_unmatched`) and a paragraph
    given two different labels."""
    from pipeline.corpus.prepare import paragraph_id

    unknown = Counter(a.name for a in annotated if a.name.strip().casefold() not in mapping)
    if unknown:
        names = ", ".join(f"{name!r} ({count} records)" for name, count in unknown.most_common())
        example = unknown.most_common(1)[0][0]
        raise StanceError(f"{source}: unknown label names {names}; map them with e.g. --map \"{example}=none\" "
                          f"(known: {', '.join(LABELS)} and their usual synonyms)")
    labels: dict[str, tuple[str, str]] = {}
    unmatched, skipped = [], 0
    for record in annotated:
        label = mapping[record.name.strip().casefold()]
        if label == SKIP:
            skipped += 1
            continue
        pid = record.paragraph_id if record.paragraph_id in corpus_ids else paragraph_id(record.text)
        if pid not in corpus_ids:
            unmatched.append(record)
            continue
        earlier = labels.setdefault(pid, (label, record.where))
        if earlier[0] != label:
            raise StanceError(f"{source}: {record.where} labels paragraph {pid} {label!r} but {earlier[1]} "
                              f"labels it {earlier[0]!r}")
    if unmatched and not skip_unmatched:
        shown = "; ".join(f"{r.where}: {snippet(r.text, 60) or r.paragraph_id or '(no text)'}" for r in unmatched[:SHOWN])
        more = f" and {len(unmatched) - SHOWN} more" if len(unmatched) > SHOWN else ""
        raise StanceError(f"{source}: {len(unmatched)} records match no paragraph of the corpus by id or text "
                          f"({shown}{more}); re-run `stance prepare`, or pass --skip-unmatched to leave them out")
    return labels, unmatched, skipped


def import_labels(params: dict, path: str | Path, annotator: str, mapping: list[str] | None = None,
                  fmt: str = "auto", replace: bool = False, skip_unmatched: bool = False,
                  dry_run: bool = False) -> dict:
    """Import an export file into <labels_dir>/<annotator>.csv; returns a summary."""
    from pipeline.corpus.labels import edit_label_file, read_label_file
    from pipeline.labelling.label_session import annotator_lock, label_file_path, read_paragraphs

    path = Path(path)
    names = parse_mapping(mapping)
    target = label_file_path(params, annotator)
    corpus_ids = {r["id"] for r in read_paragraphs(params)}
    fmt, annotated, unlabelled = read_export(path, fmt)
    labels, unmatched, skipped = match_labels(annotated, corpus_ids, names, str(path), skip_unmatched)
    with annotator_lock(target, annotator):
        existing = {}
        if target.exists() and target.read_bytes().replace(b"\xef\xbb\xbf", b"").strip():
            existing = {r.paragraph_id: r for r in read_label_file(target) if r.annotator == annotator}
        conflicts = [(pid, row, labels[pid]) for pid, row in existing.items() if pid in labels and row.label != labels[pid][0]]
        if conflicts and not replace:
            shown = "; ".join(f"{pid} is {row.label!r} at {row.source}, {where} says {label!r}"
                              for pid, row, (label, where) in conflicts[:SHOWN])
            raise StanceError(f"{path}: {len(conflicts)} labels differ from {target} ({shown}"
                              f"{' ...' if len(conflicts) > SHOWN else ''}); pass --replace to take the imported ones")
        _check_other_files(params, target, annotator, labels)
        new = {pid: value for pid, value in labels.items() if pid not in existing or existing[pid].label != value[0]}
        replaced = {pid for pid, _, _ in conflicts}

        def edit(rows: list[dict]):
            drop = [i for i, row in enumerate(rows) if (row.get("paragraph_id") or "").strip() in replaced
                    and (row.get("annotator") or "").strip() == annotator]
            add = [{"paragraph_id": pid, "label": label, "annotator": annotator,
                    "note": f"imported from {path.name} ({fmt}, {where})"} for pid, (label, where) in new.items()]
            return drop, add

        if not dry_run:
            edit_label_file(target, edit)
    return {"path": str(target), "format": fmt, "written": len(new), "replaced": len(replaced),
            "unchanged": len(labels) - len(new), "unlabelled": unlabelled, "skipped": skipped,
            "unmatched": len(unmatched), "counts": dict(Counter(label for label, _ in new.values())),
            "dry_run": dry_run}


def _check_other_files(params: dict, target: Path, annotator: str, labels: dict[str, tuple[str, str]]) -> None:
    """The same annotator must not label a paragraph differently in another label file."""
    from pipeline.corpus.labels import read_label_file

    for other in sorted(Path(params["paths"]["labels_dir"]).glob("*.csv")):
        if other.resolve() == target.resolve():
            continue
        try:
            rows = read_label_file(other)
        except StanceError:
            continue
        for row in rows:
            if row.annotator == annotator and row.paragraph_id in labels and labels[row.paragraph_id][0] != row.label:
                label, where = labels[row.paragraph_id]
                raise StanceError(f"{where} labels {row.paragraph_id} {label!r} but {row.source} has "
                                  f"{annotator}'s label {row.label!r}; settle that first")


# --- export ------------------------------------------------------------------------------------

def export_tasks(params: dict, annotator: str | None = None, order: str = "document", limit: int | None = None,
                 predictions: bool = False, embed: bool = True) -> list[dict]:
    """Label Studio tasks for the paragraphs nobody has labelled (or `annotator` has not)."""
    from pipeline.corpus.labels import read_label_file
    from pipeline.labelling.label_session import (check_annotator, document_titles, model_guesses, order_paragraphs,
                                                  read_paragraphs)

    if annotator is not None:
        check_annotator(annotator)
    records = read_paragraphs(params)
    labelled: set[str] = set()
    for path in sorted(Path(params["paths"]["labels_dir"]).glob("*.csv")):
        labelled.update(r.paragraph_id for r in read_label_file(path) if annotator is None or r.annotator == annotator)
    todo = [r for r in records if r["id"] not in labelled]
    guesses: dict = {}
    if predictions or order in ("margin", "entropy"):
        guesses, _ = model_guesses(params, todo, embed=embed)
        if predictions and not guesses:
            raise StanceError(f"{params['paths']['model']}: no model guesses available for --predictions "
                              f"(train first with `dvc repro`)")
    ids = order_paragraphs([r["id"] for r in todo], guesses, order, int(params["seed"]))
    by_id = {r["id"]: r for r in todo}
    titles = document_titles(params)
    tasks = []
    for pid in ids[:limit] if limit else ids:
        record = by_id[pid]
        task = {"data": {"text": record["text"], "paragraph_id": pid, "doc": record["doc"],
                         "title": titles.get(record["doc"], record["doc"]), "position": record["position"]}}
        if predictions and pid in guesses:
            probabilities = guesses[pid]
            best = int(probabilities.argmax())
            task["predictions"] = [{"model_version": "stance", "score": round(float(probabilities[best]), 4),
                                    "result": [{"from_name": "stance", "to_name": "text", "type": "choices",
                                                "value": {"choices": [LABELS[best]]}}]}]
        tasks.append(task)
    return tasks


def write_tasks(tasks: list[dict], output: str | Path | None) -> str:
    """JSON text of the tasks; written atomically to `output` when given."""
    from pipeline.files import write_text_atomic

    text = json.dumps(tasks, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        write_text_atomic(output, text)
    return text
