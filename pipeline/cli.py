"""The `stance` command line. Parses arguments and calls the stage functions; nothing else.

Heavy libraries (torch, sentence-transformers, sklearn) are imported inside the commands, so
`stance --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand

from pipeline.errors import StanceError
from pipeline.numerics import pin
from pipeline.scoring.output import FORMATS  # plain Python, no rich: keeps `stance --help` fast


class PlainUsage(TyperCommand):
    """Usage lines name arguments as the help lists them (`PATHS...`), without the braces Typer 0.28
    puts around required ones (`{PATHS...}`), which read as literal text."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


class StanceTyper(typer.Typer):
    """A Typer whose commands all print `PlainUsage` usage lines."""

    def command(self, *args, cls=PlainUsage, **kwargs):
        return super().command(*args, cls=cls, **kwargs)


app = StanceTyper(help="Stance of op-eds on China–US cooperation: favor, against or none, per paragraph.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
labels_app = StanceTyper(help="Check, import, export and compare label files.", no_args_is_help=True)
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
    from pipeline.corpus import prepare as stage

    def action():
        corpus = stage.run(_params(params))
        typer.echo(f"prepared {len(corpus)} paragraphs from {len({p.doc for p in corpus})} documents", err=True)

    _run(action)


@app.command()
def embed(params: Path = ParamsOption) -> None:
    """Embed the prepared paragraphs (cached: only new or changed paragraphs are encoded)."""
    numerics = pin()  # before numpy and torch load
    from pipeline.encoder import embed as stage

    def action():
        written = stage.run(_params(params))
        typer.echo(f"wrote {written} ({stage.identity_path(written).read_text(encoding='utf-8').strip()}); {numerics}",
                   err=True)

    _run(action)
    if _console_process:
        exit_now(0)


@app.command()
def train(params: Path = ParamsOption) -> None:
    """Train the classifier, selecting hyper-parameters by document-grouped cross-validation."""
    numerics = pin()  # before numpy loads
    from pipeline.model import train as stage

    def action():
        meta = stage.run(_params(params))
        typer.echo(f"trained on {meta['training_data']['paragraphs']} paragraphs; grouped-CV "
                   f"{meta['cv']['selection_metric']} {meta['cv']['best_score']} with {meta['cv']['best_params']}; "
                   f"{numerics}", err=True)

    _run(action)


@app.command()
def evaluate(params: Path = ParamsOption,
             check: bool = typer.Option(False, "--check", help="Quality gate (CI): print a summary of the metrics (the full "
                                        "report is reports/evaluation.md) and exit non-zero when f_avg is below "
                                        "evaluate.f_avg_floor. Evaluates nothing."),
             external: bool = typer.Option(False, "--external", help="Score the hydrated real development set "
                                           "(`stance hydrate`) with the shipped model: writes reports/external.md "
                                           "and .json.")) -> None:
    """Out-of-fold evaluation (nested, grouped by document): writes metrics, plots and reports/evaluation.md."""
    def action():
        settings = _params(params)
        if external:
            from pipeline.evaluation.external_eval import run_external

            results = run_external(settings)
            for name in ("all", "select", "report"):
                if name in results:
                    m = results[name]
                    low, high = m["f_avg_interval"]
                    typer.echo(f"{name}: {m['pages']} pages, {m['paragraphs']} paragraphs: f_avg {m['f_avg']:.3f} "
                               f"({low:.2f}-{high:.2f}), page verdicts {m['page_accuracy']:.3f}", err=True)
            typer.echo(f"report in {Path(settings['paths']['reports_dir']) / 'external.md'}", err=True)
            return
        if check:
            from pipeline.evaluation.quality_gate import check_gate
            check_gate(settings)
            return
        numerics = pin()  # before numpy loads
        from pipeline.evaluation import evaluate as stage

        metrics = stage.run(settings)
        typer.echo(f"f_avg {metrics['f_avg']}  macro_f1 {metrics['macro_f1']}  accuracy {metrics['accuracy']}  "
                   f"ece {metrics['ece']}; report in {Path(settings['paths']['reports_dir']) / 'evaluation.md'}; "
                   f"{numerics}", err=True)

    _run(action)


@app.command()
def hydrate(
    source: Optional[Path] = typer.Option(None, "--from", help="A folder of saved pages named <key>.txt or "
                                          "<key>.html (default: the pages already in paths.real_dir)."),
    fetch: bool = typer.Option(False, "--fetch", help="Download pages that are not saved (needs a network)."),
    private_hosts: bool = typer.Option(False, "--private-hosts", help="Let --fetch reach private and loopback "
                                       "addresses (a mirror on an intranet); refused by default."),
    params: Path = ParamsOption,
) -> None:
    """Rebuild the real development set's text from saved pages (or the network), checked by hash."""
    from pipeline.corpus.real_set import hydrate as run_hydrate

    def action():
        settings = _params(params)
        summary = run_hydrate(settings["paths"]["real_manifest"], settings["paths"]["real_dir"], source, fetch,
                                  private_hosts)
        for line in summary["notes"] + summary["problems"]:
            typer.echo(line, err=True)
        typer.echo(f"hydrated {summary['hydrated']} of {summary['paragraphs']} paragraphs from "
                   f"{summary['pages_found']} of {summary['pages']} pages into {summary['path']}; "
                   f"{len(summary['problems'])} problems", err=True)
        if summary["problems"]:
            raise typer.Exit(1)

    _run(action)


@app.command()
def score(
    paths: List[str] = typer.Argument(..., metavar="PATHS...", help="Text, Markdown or HTML files, directories, "
                                      ".jsonl or .csv records, or - for stdin."),
    # no square brackets in help strings: Typer's rich markup would swallow them
    format: Optional[str] = typer.Option(None, "--format", "-f", show_default=False,
                                         help=f"Output format: {' | '.join(FORMATS)}. Default: the format the "
                                              "--output file's extension names, else table."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
    explain: bool = typer.Option(False, "--explain", help="Show each paragraph's most similar labelled "
                                 "training paragraphs (label, document, similarity)."),
    wide: bool = typer.Option(False, "--wide", help="Show each paragraph whole, wrapped under its label row, "
                              "instead of a one-line snippet (table format)."),
    project: Optional[Path] = typer.Option(None, "--project", help="The stance project to use (default: "
                                           "$STANCE_PROJECT, else the nearest folder upwards with params.yaml, "
                                           "else the installed one)."),
    model: Optional[Path] = typer.Option(None, "--model", help="A trained model folder (model.joblib, "
                                         "model.json, reference.npz) copied anywhere."),
    params: Optional[Path] = typer.Option(None, "--params", help="Settings file (default: the project's)."),
    precision: Optional[str] = typer.Option(None, help="Embedding precision: auto | fp32 | bf16 (default: "
                                            "embedding.precision); auto = bf16 where the CPU has it natively."),
    backend: Optional[str] = typer.Option(None, help="Embedding backend: auto | torch | openvino (default: "
                                          "score.backend); auto = openvino (fast start) when installed."),
) -> None:
    """Score documents: a stance per paragraph and an overall verdict per document.

    Paragraphs far from everything the model was trained on are flagged off-topic (out_of_domain).

    Each input that cannot be read is reported on stderr, and the rest are still scored.

    The exit code is non-zero only when nothing could be scored.
    """
    # (each paragraph above is one line: Typer keeps single line breaks as they are)
    from pipeline.scoring.output import choose_format

    fmt = choose_format(format, output)
    if fmt not in FORMATS:
        fail(f"unknown --format {format!r} (expected one of {', '.join(FORMATS)})", 2)
    try:
        from pipeline.project import project_params
        from pipeline.scoring.scoring_run import run_score

        settings = project_params(params, project, model)
        if backend is not None:  # the command-line choice overrides params.yaml
            settings["score"] = {**(settings.get("score") or {}), "backend": backend}
        code = run_score(paths, fmt, output, settings, precision=precision, explain=explain, wide=wide)
    except StanceError as exc:
        fail(str(exc))
    if _console_process:
        exit_now(code)
    raise typer.Exit(code)


@app.command()
def label(
    annotator: str = typer.Option(..., "--annotator", "-a", envvar="STANCE_ANNOTATOR",
                                  help="Your name: answers go to <labels_dir>/<annotator>.csv."),
    order: str = typer.Option("margin", help="margin | entropy (least sure first) | random | document. All but "
                              "document offer paragraphs nobody labelled first, then disagreements, then the rest."),
    guess: bool = typer.Option(True, "--guess/--no-guess", help="Show the model's guess (hide it for independent double labelling)."),
    embed: bool = typer.Option(True, "--embed/--no-embed", envvar="STANCE_LABEL_EMBED",
                               help="Embed paragraphs the embed stage has not seen (loads the embedding model)."),
    params: Path = ParamsOption,
) -> None:
    """Label paragraphs one at a time in the terminal, unlabelled and least sure first."""
    from pipeline.labelling.label_session import run_session

    def action():
        summary = run_session(_params(params), annotator, order=order, show_guess=guess, embed=embed)
        typer.echo(f"{summary['saved']} labels saved this session; {summary['path']} has {summary['labelled']} "
                   f"labels by {annotator}, {summary['remaining']} paragraphs to go. Retrain with `dvc repro`.",
                   err=True)

    _run(action)


@app.command()
def add(
    paths: Optional[List[str]] = typer.Argument(None, help=".txt, .md or .html files, or directories (searched "
                                                "recursively). None: only complete an interrupted `stance add`."),
    title: Optional[str] = typer.Option(None, help="Title (default: the page's <title> or first heading, else "
                                        "the file name)."),
    author: Optional[str] = typer.Option(None, help="Author."),
    outlet: Optional[str] = typer.Option(None, help="Outlet (newspaper, site, agency)."),
    date: Optional[str] = typer.Option(None, help="Publication date: YYYY or YYYY-MM-DD (sets the year)."),
    kind: str = typer.Option("added", help="Kind of document (lower-case, hyphens): evaluation reports by kind."),
    genre: Optional[str] = typer.Option(None, help="Genre, e.g. op-ed, news-report, blog-post."),
    voice: Optional[str] = typer.Option(None, help="Who speaks, e.g. 'US foreign-policy columnist'."),
    params: Path = ParamsOption,
) -> None:
    """Add documents to the corpus (paths.raw_dir and sources.csv); exit 1 if any input was refused."""
    from pipeline.corpus.add_documents import add_documents, summary_line

    def action():
        settings = _params(params)
        result = add_documents(settings, paths or [], {"title": title, "author": author, "outlet": outlet,
                                                        "date": date, "kind": kind, "genre": genre, "voice": voice})
        for line in result.messages:
            typer.echo(line, err=True)
        if not paths and not result.recovered:
            fail("nothing to add: give .txt, .md or .html files or directories", 2)
        if paths:
            typer.echo(summary_line(result, settings), err=True)
        if result.refused:
            raise typer.Exit(1)

    _run(action)


@labels_app.command("check")
def labels_check(params: Path = ParamsOption,
                 limit: int = typer.Option(20, help="How many suspected label issues to list.")) -> None:
    """Validate every label file; list paragraphs whose labels look wrong (cleanlab)."""
    from pipeline.labelling.label_issues import run_check

    _run(lambda: run_check(_params(params), limit))


@labels_app.command("import")
def labels_import(
    file: Path = typer.Argument(..., help="A Label Studio JSON export or a doccano JSONL export."),
    annotator: str = typer.Option(..., "--annotator", "-a", envvar="STANCE_ANNOTATOR",
                                  help="Whose labels these are: they go to <labels_dir>/<annotator>.csv."),
    map: List[str] = typer.Option([], "--map", help='Label name mapping, e.g. --map "Positive=favor" (repeatable; NAME=skip leaves a name out).'),
    format: str = typer.Option("auto", "--format", help="auto | label-studio | doccano"),
    replace: bool = typer.Option(False, "--replace", help="Imported labels replace this annotator's different existing ones."),
    skip_unmatched: bool = typer.Option(False, "--skip-unmatched", help="Leave out records that match no paragraph (instead of failing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and report, write nothing."),
    params: Path = ParamsOption,
) -> None:
    """Import labels from Label Studio or doccano (all or nothing)."""
    from pipeline.labelling.label_exchange import import_labels

    def action():
        s = import_labels(_params(params), file, annotator, map, format, replace, skip_unmatched, dry_run)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())) or "none"
        typer.echo(f"{'would write' if s['dry_run'] else 'wrote'} {s['written']} labels to {s['path']} ({counts}; "
                   f"{s['replaced']} replaced) from a {s['format']} export; {s['unchanged']} already there, "
                   f"{s['unlabelled']} records without a label, {s['skipped']} mapped to skip, "
                   f"{s['unmatched']} unmatched left out", err=True)

    _run(action)


@labels_app.command("export")
def labels_export(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
    annotator: Optional[str] = typer.Option(None, "--annotator", "-a",
                                            help="Paragraphs this annotator has not labelled (default: those nobody has)."),
    order: str = typer.Option("document", help="document | random | margin | entropy."),
    limit: Optional[int] = typer.Option(None, help="At most this many tasks."),
    predictions: bool = typer.Option(False, "--predictions", help="Include the model's guesses as Label Studio predictions."),
    params: Path = ParamsOption,
) -> None:
    """Write unlabelled paragraphs as Label Studio tasks (JSON)."""
    from pipeline.labelling.label_exchange import export_tasks, write_tasks

    def action():
        tasks = export_tasks(_params(params), annotator, order, limit, predictions)
        text = write_tasks(tasks, output)
        if output is None:
            sys.stdout.write(text)
        typer.echo(f"exported {len(tasks)} unlabelled paragraphs as Label Studio tasks"
                   f"{f' to {output}' if output else ''}", err=True)

    _run(action)


@labels_app.command("agreement")
def labels_agreement(
    limit: int = typer.Option(20, help="Disagreements listed per pair of independent annotators (0 = all)."),
    disagreements: Optional[Path] = typer.Option(None, "--disagreements", help="Also write every disagreement between "
                                                 "independent annotators to this CSV file (with the adjudicator's label)."),
    params: Path = ParamsOption,
) -> None:
    """Cohen's kappa between independent annotators, their disagreements, and what the adjudicator settled."""
    from pipeline.labelling.agreement import run_agreement

    _run(lambda: run_agreement(_params(params), limit, disagreements))


@app.command("export-dataset")
def export_dataset(
    directory: Path = typer.Argument(..., help="Output folder (created, or replaced if it holds a previous export)."),
    params: Path = ParamsOption,
) -> None:
    """Write the labelled paragraphs as a Hugging Face DatasetDict (train, and test = the evaluation's first fold)."""
    from pipeline.evaluation.dataset_export import export_dataset as run_export

    def action():
        s = run_export(_params(params), directory)
        train, test = s["splits"]["train"], s["splits"]["test"]
        typer.echo(f"wrote {s['paragraphs']} labelled paragraphs to {directory}: train {train['paragraphs']} "
                   f"({train['documents']} documents), test {test['paragraphs']} ({test['documents']} documents, "
                   f"the evaluation's first outer fold); load with datasets.load_from_disk", err=True)

    _run(action)


@app.command("score-archive")
def score_archive(
    input: Path = typer.Argument(..., help="A directory of partitions: .parquet or .jsonl files with id and text "
                                 "columns (and document, when rows are paragraphs)."),
    output: Path = typer.Argument(..., help="Where results go: paragraphs/, documents/ and errors/ (one Parquet "
                                  "file per partition)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Local worker processes "
                                          "(default: archive.workers in params, else 2)."),
    address: Optional[str] = typer.Option(None, "--address", help="Use the running Dask cluster whose scheduler "
                                          "is here (tcp://host:port) instead of starting local workers."),
    params: Path = ParamsOption,
) -> None:
    """Score a whole archive on Dask (needs the `distributed` extra); a re-run skips finished partitions."""
    def action():
        from pipeline.scoring.archive import run_archive

        run_archive(input, output, _params(params), workers=workers, address=address)

    _run(action)


_console_process = False  # True when `main` runs this process (not under a test's CliRunner)


def exit_now(code: int) -> None:
    """End a finished `stance score` or `stance embed` process at once: its output is written
    (atomically) and flushed, and all that is left is freeing the model (OpenVINO's teardown:
    ~0.1 s of a ~1 s cold start)."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return  # e.g. a closed pipe: let the usual shutdown report it
    os._exit(code)


def main() -> None:
    """The `stance` console command."""
    global _console_process
    _console_process = True
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
