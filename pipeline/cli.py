"""The `stance` command line. Parses arguments and calls the stage functions; nothing else.

Heavy libraries (torch, sentence-transformers, sklearn) are imported inside the commands, so
`stance --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.errors import StanceError

app = typer.Typer(help="Stance of op-eds on China–US cooperation: favor, against or none, per paragraph.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
labels_app = typer.Typer(help="Check label files.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

ParamsOption = typer.Option(Path("params.yaml"), "--params", help="Settings file.")


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _params(path: Path) -> dict:
    from pipeline.files import load_params

    return load_params(path)


def _run(action) -> None:
    try:
        action()
    except StanceError as exc:
        fail(str(exc))


@app.command()
def prepare(params: Path = ParamsOption) -> None:
    """Split raw documents into paragraphs with stable ids (drops web boilerplate)."""
    from pipeline import prepare as stage

    def action():
        corpus = stage.run(_params(params))
        typer.echo(f"prepared {len(corpus)} paragraphs from {len({p.doc for p in corpus})} documents", err=True)

    _run(action)


@app.command()
def embed(params: Path = ParamsOption) -> None:
    """Embed the prepared paragraphs (cached: only new or changed paragraphs are encoded)."""
    from pipeline import embed as stage

    _run(lambda: typer.echo(f"wrote {stage.run(_params(params))}", err=True))


@app.command()
def train(params: Path = ParamsOption) -> None:
    """Train the classifier, selecting hyper-parameters by document-grouped cross-validation."""
    from pipeline import train as stage

    def action():
        meta = stage.run(_params(params))
        typer.echo(f"trained on {meta['training_data']['paragraphs']} paragraphs; grouped-CV "
                   f"{meta['cv']['selection_metric']} {meta['cv']['best_score']} with {meta['cv']['best_params']}",
                   err=True)

    _run(action)


@app.command()
def evaluate(params: Path = ParamsOption,
             check: bool = typer.Option(False, "--check", help="Exit non-zero when f_avg is below evaluate.f_avg_floor.")) -> None:
    """Out-of-fold evaluation (nested, grouped by document): writes the metrics and report."""
    from pipeline import evaluate as stage

    def action():
        settings = _params(params)
        if check:
            from pipeline.quality_gate import check_gate
            check_gate(settings)
            return
        metrics = stage.run(settings)
        typer.echo(f"f_avg {metrics['f_avg']}  macro_f1 {metrics['macro_f1']}  accuracy {metrics['accuracy']}",
                   err=True)

    _run(action)


@app.command()
def score(
    paths: List[str] = typer.Argument(..., help="Text/Markdown/HTML files, directories, .jsonl/.csv records, or - for stdin."),
    format: str = typer.Option("table", "--format", "-f", help="table | json | jsonl | csv | markdown"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
    params: Path = ParamsOption,
    precision: Optional[str] = typer.Option(None, help="Embedding precision: auto | fp32 | bf16."),
) -> None:
    """Score documents: a stance per paragraph and an overall verdict per document."""
    from pipeline.output import FORMATS

    if format not in FORMATS:
        fail(f"unknown --format {format!r} (expected one of {', '.join(FORMATS)})", 2)
    try:
        from pipeline.scoring_run import run_score

        code = run_score(paths, format, output, _params(params), precision=precision)
    except StanceError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@labels_app.command("check")
def labels_check(params: Path = ParamsOption,
                 limit: int = typer.Option(20, help="How many suspected label issues to list.")) -> None:
    """Validate every label file; list paragraphs whose labels look wrong (cleanlab)."""
    from pipeline.label_issues import run_check

    _run(lambda: run_check(_params(params), limit))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
