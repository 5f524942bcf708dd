"""The CI quality gate: `stance evaluate --check`.

Reads `paths.metrics` and `evaluate.f_avg_floor`; prints the Markdown report (if the evaluate
stage wrote one) to stdout either way, then fails with a clear message when f_avg is below the floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.errors import StanceError


def read_metrics(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: no metrics (run `dvc repro` first)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StanceError(f"{path}: corrupt metrics file (not JSON); re-run `dvc repro`") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("f_avg"), (int, float)):
        raise StanceError(f"{path}: metrics file has no numeric f_avg; re-run `dvc repro`")
    return metrics


def gate_failure(f_avg: float, floor: float) -> str | None:
    """The failure message, or None when the model passes."""
    if f_avg < floor:
        return f"quality gate failed: f_avg {f_avg:.4f} is below the floor {floor:.4f} (evaluate.f_avg_floor)"
    return None


def check_gate(params: dict) -> None:
    paths = params["paths"]
    metrics = read_metrics(paths["metrics"])
    report = Path(paths["reports_dir"]) / "evaluation.md"
    if report.exists():
        sys.stdout.write(report.read_text(encoding="utf-8") + "\n")
    floor = float(params.get("evaluate", {}).get("f_avg_floor", 0.0))
    message = gate_failure(float(metrics["f_avg"]), floor)
    if message:
        raise StanceError(message)
    print(f"quality gate passed: f_avg {metrics['f_avg']:.4f} >= floor {floor:.4f}", file=sys.stderr)
