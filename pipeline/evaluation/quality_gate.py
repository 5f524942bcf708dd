"""The CI quality gate: `stance evaluate --check`.

Inputs:  `paths.metrics` and `<paths.reports_dir>/evaluation.md` (both written by the evaluate stage).
Params:  `evaluate.f_avg_floor` (required; a number between 0 and 1).
Outputs: the Markdown report on stdout (either way), the verdict on stderr; a StanceError (non-zero
         exit from the CLI) when f_avg is below the floor or the metrics are missing or corrupt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.errors import StanceError


def parse_metrics(text: str, source: str, hint: str = "re-run `dvc repro`") -> dict:
    """A metrics mapping with a numeric f_avg, or a StanceError naming `source` and what to do."""
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError:
        raise StanceError(f"{source}: corrupt metrics file (not JSON); {hint}") from None
    f_avg = metrics.get("f_avg") if isinstance(metrics, dict) else None
    if not isinstance(f_avg, (int, float)) or isinstance(f_avg, bool) or not 0 <= f_avg <= 1:
        raise StanceError(f"{source}: metrics file has no f_avg between 0 and 1; {hint}")
    return metrics


def read_metrics(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: no metrics (run `dvc repro` first)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StanceError(f"{path}: corrupt metrics file (not UTF-8 text); re-run `dvc repro`") from None
    return parse_metrics(text, str(path))


def read_floor(params: dict) -> float:
    floor = (params.get("evaluate") or {}).get("f_avg_floor")
    if not isinstance(floor, (int, float)) or isinstance(floor, bool) or not 0 <= floor <= 1:
        raise StanceError(f"params.yaml: evaluate.f_avg_floor must be a number between 0 and 1, got {floor!r}")
    return float(floor)


def gate_failure(f_avg: float, floor: float) -> str | None:
    """The failure message, or None when the model passes."""
    if f_avg < floor:
        return f"quality gate failed: f_avg {f_avg:.4f} is below the floor {floor:.4f} (evaluate.f_avg_floor)"
    return None


def check_gate(params: dict) -> float:
    """Print the report, then pass (returning f_avg) or raise StanceError when below the floor."""
    paths = params["paths"]
    floor = read_floor(params)
    metrics = read_metrics(paths["metrics"])
    report = Path(paths["reports_dir"]) / "evaluation.md"
    if report.exists():
        sys.stdout.write(report.read_text(encoding="utf-8").rstrip("\n") + "\n")
        sys.stdout.flush()
    else:
        print(f"note: {report} not found (run `dvc repro` to write the report)", file=sys.stderr)
    message = gate_failure(float(metrics["f_avg"]), floor)
    if message:
        raise StanceError(message)
    print(f"quality gate passed: f_avg {metrics['f_avg']:.4f} >= floor {floor:.4f} (evaluate.f_avg_floor)",
          file=sys.stderr)
    return float(metrics["f_avg"])
