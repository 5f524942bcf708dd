"""The CI quality gate: `stance evaluate --check`.

Inputs:  `paths.metrics` (written by the evaluate stage; `<paths.reports_dir>/evaluation.md` is only
         named, not read).
Params:  `evaluate.f_avg_floor` (required; a number between 0 and 1).
Outputs: on stdout (either way) a summary of the metrics that fits the terminal (80 columns when
         stdout is not one): headline, baselines, per-class figures, f_avg by document kind, the
         verdict and where the full report is; the verdict on stderr; a StanceError (non-zero exit
         from the CLI) when f_avg is below the floor or the metrics are missing or corrupt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline import LABELS
from pipeline.errors import StanceError
from pipeline.terminal import MIN_WIDTH, shorten_middle, terminal_width


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
        return f"quality gate failed: f_avg {f_avg:.4f} < floor {floor:.4f} (evaluate.f_avg_floor)"
    return None


def _num(value, digits: int = 4) -> str:
    # metrics.json from an older evaluate stage may lack a figure: show a dash, not a crash
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return "–"


def _fill(fields: list[str], width: int, sep: str = "  ") -> list[str]:
    """`fields` on as few lines of at most `width` as they take, broken only between fields."""
    lines, line = [], ""
    for field in fields:
        if line and len(line) + len(sep) + len(field) > width:
            lines.append(line)
            line = field
        else:
            line = f"{line}{sep}{field}" if line else field
    return lines + [line] if line else lines


def _table(header: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Rows under a header, numbers right-aligned; the first column (a name) is cut with an ellipsis
    so that the whole fits `width`, the numbers never are."""
    import io

    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    numbers = [max(cell_len(str(row[k])) for row in [header, *rows]) for k in range(1, len(header))]
    name_width = min(max(cell_len(row[0]) for row in [header, *rows]), width - sum(numbers) - 2 * len(numbers))
    table = Table(box=None, pad_edge=False, show_header=True, header_style=None, expand=False)
    table.add_column(header[0], width=max(name_width, 1), no_wrap=True, overflow="ellipsis")
    for title, number_width in zip(header[1:], numbers):
        table.add_column(title, width=number_width, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=width, no_color=True, color_system=None, highlight=False,
                      emoji=False, markup=False, soft_wrap=False)
    console.print(table)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def _shown_path(path: Path, width: int) -> str:
    """`path` relative to the working directory when it is under it, cut in the middle to `width`."""
    try:
        path = path.resolve().relative_to(Path.cwd().resolve()) if path.is_absolute() else path
    except ValueError:
        pass
    return shorten_middle(str(path), width)


def summary(metrics: dict, floor: float, report: Path | None, width: int = 80) -> str:
    """The terminal summary of `metrics`: every line within `width` columns (at least 60)."""
    width = max(width, MIN_WIDTH)
    lines = ["Stance model evaluation (out-of-fold, grouped by document)"]
    lines += _fill([f"f_avg {_num(metrics.get('f_avg'))}", f"macro-F1 {_num(metrics.get('macro_f1'))}",
                    f"accuracy {_num(metrics.get('accuracy'))}", f"ECE {_num(metrics.get('ece'))}",
                    f"paragraphs {_num(metrics.get('paragraphs'), 0)}"], width)
    baselines = metrics.get("baselines")
    if isinstance(baselines, dict) and baselines:
        rows = [[str(name), _num(m.get("f_avg")), _num(m.get("macro_f1")), _num(m.get("accuracy"))]
                for name, m in baselines.items() if isinstance(m, dict)]
        lines += ["", *_table(["baseline (same folds)", "f_avg", "macro-F1", "accuracy"], rows, width)]
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        names = [label for label in LABELS if label in per_class] + sorted(set(per_class) - set(LABELS))
        rows = [[name, _num(per_class[name].get("precision")), _num(per_class[name].get("recall")),
                 _num(per_class[name].get("f1")), _num(per_class[name].get("support"), 0)]
                for name in names if isinstance(per_class[name], dict)]
        lines += ["", *_table(["class", "precision", "recall", "F1", "support"], rows, width)]
    by_kind = metrics.get("by_kind")
    if isinstance(by_kind, dict) and by_kind:
        rows = [[str(kind), _num(m.get("documents"), 0), _num(m.get("paragraphs"), 0), _num(m.get("f_avg"))]
                for kind, m in by_kind.items() if isinstance(m, dict)]
        lines += ["", *_table(["document kind", "documents", "paragraphs", "f_avg"], rows, width)]
    f_avg = float(metrics["f_avg"])
    verdict = (f"gate FAILED: f_avg {f_avg:.4f} < {floor:.4f}" if gate_failure(f_avg, floor)
               else f"gate passed: f_avg {f_avg:.4f} >= {floor:.4f}")
    lines += ["", f"{verdict} (evaluate.f_avg_floor)"]  # at most 59 columns
    if report is not None:
        lines.append("full report: " + _shown_path(report, width - len("full report: ")))
    return "\n".join(lines) + "\n"


def check_gate(params: dict, width: int | None = None) -> float:
    """Print the summary, then pass (returning f_avg) or raise StanceError when below the floor."""
    paths = params["paths"]
    floor = read_floor(params)
    metrics = read_metrics(paths["metrics"])
    report = Path(paths["reports_dir"]) / "evaluation.md"
    sys.stdout.write(summary(metrics, floor, report if report.exists() else None, width or terminal_width()))
    sys.stdout.flush()
    if not report.exists():
        print(f"note: {report} not found (run `dvc repro` to write the report)", file=sys.stderr)
    message = gate_failure(float(metrics["f_avg"]), floor)
    if message:
        raise StanceError(message)
    print(f"quality gate passed: f_avg {metrics['f_avg']:.4f} >= floor {floor:.4f} (evaluate.f_avg_floor)",
          file=sys.stderr)
    return float(metrics["f_avg"])
