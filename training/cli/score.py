"""`raqib score`: score a CMS export (CSV, JSONL, Parquet) with a model bundle, in bounded memory.

`--engine dask` spreads the same work over a Dask cluster (training/dask_engine.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

# Shared by `raqib score` and `raqib train`: the same two options choose the Dask cluster.
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        help="With --engine dask: a running scheduler, e.g. tcp://scheduler-host:8786 (default: local)."
    ),
]
DaskWorkersOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="With --engine dask and no --scheduler: local worker processes (default: cores)."
    ),
]

# Exit codes: 1 = the input cannot be read (the message names the line), 2 = a usage problem
# (missing mapped column, unknown format, bad mapping file).
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2


def _console(stderr: bool = False):
    from rich.console import Console

    # A wide console keeps tables readable when output is captured (CI logs, CliRunner).
    width = None if os.isatty(1) else 160
    return Console(stderr=stderr, width=width, highlight=False)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def score(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", exists=True, dir_okay=False, help="CMS export: .csv, .tsv, .jsonl or .parquet."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Scored file (with --engine dask: a directory of part files); its suffix picks the format "
            "(default: <input stem>.scored.<suffix>).",
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="Bundle dir or models:/NAME@ALIAS URI.")] = "models/champion",
    input_format: Annotated[
        str | None,
        typer.Option("--format", help="Input format when the suffix does not say: csv, tsv, jsonl, parquet."),
    ] = None,
    text_col: Annotated[str | None, typer.Option(help="Column with the comment text.")] = None,
    article_title_col: Annotated[str | None, typer.Option(help="Column with the article headline.")] = None,
    article_text_col: Annotated[str | None, typer.Option(help="Column with the article body.")] = None,
    article_id_col: Annotated[str | None, typer.Option(help="Column with the article id.")] = None,
    id_col: Annotated[str | None, typer.Option(help="Column with the comment id.")] = None,
    site_col: Annotated[str | None, typer.Option(help="Column with the site.")] = None,
    author_col: Annotated[str | None, typer.Option(help="Column with the author (never a feature).")] = None,
    mapping: Annotated[
        str | None,
        typer.Option(help="Load a saved column mapping: a site name (experiments/mappings/) or a .toml."),
    ] = None,
    save_mapping: Annotated[
        str | None,
        typer.Option(metavar="SITE", help="Save the column mapping as experiments/mappings/SITE.toml."),
    ] = None,
    sort: Annotated[
        str | None, typer.Option(help="'risk': likeliest rejects first (external sort, flat memory).")
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows scored per model call.")] = 5_000,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help="Explain each row (about 3× slower).")
    ] = True,
    skip_bad_rows: Annotated[
        bool,
        typer.Option(help="Skip unreadable rows and list them in <output>.errors.jsonl instead of failing."),
    ] = False,
    prefix: Annotated[
        str, typer.Option(help="Prefix for the added columns (when the export already has e.g. 'label').")
    ] = "",
    engine: Annotated[
        str,
        typer.Option(
            help="'local': one process. 'dask': parts scored in parallel on a Dask cluster, written as "
            "OUTPUT/part-NNNNN.<suffix>."
        ),
    ] = "local",
    scheduler: SchedulerOption = None,
    workers: DaskWorkersOption = None,
) -> None:
    """Score a CMS export in chunks: adds label, p_<label>, action, reasons and model_version."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from serving.model.bundle import BundleError
    from training.batch.dask_engine import (
        DaskEngineError,
        check_engine_options,
        check_output_dir,
        read_bundle,
    )
    from training.batch.scoring import (
        MAPPINGS_DIR,
        ColumnError,
        ScoreInputError,
        ScoreJob,
        default_output,
        format_of,
        load_mapping,
        load_model,
        mapping_path,
        parse_model_uri,
        resolve_mapping,
        run_score,
    )
    from training.batch.scoring import save_mapping as write_mapping

    console = _console()
    if sort not in (None, "risk"):
        _fail(f"--sort {sort!r}: only 'risk' is supported", EXIT_USAGE)
    try:
        check_engine_options(engine, scheduler, workers)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    if engine == "dask" and sort:
        _fail(
            "--sort risk is not available with --engine dask: it writes part files in input order, and a "
            "global sort would bring every row back to one machine; use --engine local to sort",
            EXIT_USAGE,
        )
    options = {
        "text": text_col,
        "article_title": article_title_col,
        "article_text": article_text_col,
        "article_id": article_id_col,
        "comment_id": id_col,
        "site": site_col,
        "author": author_col,
    }
    try:
        fmt = format_of(input_path, input_format)
        output = output or default_output(input_path, fmt)
        output_format = format_of(output)
        saved = load_mapping(mapping_path(mapping, MAPPINGS_DIR)) if mapping else None
        columns = resolve_mapping(options, saved)
        if model.startswith("models:/"):
            parse_model_uri(model)
        if engine == "local" and output.is_dir():
            raise ColumnError(f"{output}: is a directory; --engine local writes one file")
        if engine == "dask":
            check_output_dir(output)  # before a cluster is started only to refuse
    except ColumnError as exc:
        _fail(str(exc), EXIT_USAGE)
    bundle = None
    try:
        with console.status(f"loading model {model}"):
            if engine == "dask":
                scorer, bundle = read_bundle(model)
            else:
                scorer = load_model(model)
    except BundleError as exc:
        _fail(str(exc))
    except Exception as exc:  # mlflow raises its own exception types for unknown names and aliases
        _fail(f"cannot load model {model}: {exc}")
    job = ScoreJob(
        input=input_path,
        output=output,
        input_format=fmt,
        output_format=output_format,
        mapping=columns,
        chunk_size=chunk_size,
        explain=explain,
        sort_risk=sort == "risk",
        skip_bad=skip_bad_rows,
        prefix=prefix,
    )
    by_bytes = fmt != "parquet"
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>10,} rows  {task.fields[rate]:>8,.0f} rows/s"),
        TextColumn("[dim]{task.fields[unit]}[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
    )
    with progress:
        task = progress.add_task("reading columns", total=None, rows=0, rate=0.0, unit="")

        def report(phase: str, done: int, total: int, rows: int) -> None:
            elapsed = progress.tasks[task].elapsed or 0.0
            unit = ""
            if phase == "scoring":
                unit = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB" if by_bytes else f"{done:,}/{total:,} rows"
            progress.update(
                task,
                description=phase,
                completed=done,
                total=total or None,
                rows=rows,
                rate=rows / elapsed if elapsed else 0.0,
                unit=unit,
            )

        try:
            if engine == "dask":
                summary = _run_on_dask(job, scorer, bundle, scheduler, workers, report)
            else:
                summary = run_score(job, scorer, progress=report)
        except ScoreInputError as exc:
            progress.stop()
            _fail(f"{exc}\n(nothing written; --skip-bad-rows skips such rows and lists them)")
        except ColumnError as exc:
            progress.stop()
            _fail(str(exc), EXIT_USAGE)
        except DaskEngineError as exc:  # no scheduler, no workers, or files the workers cannot see
            progress.stop()
            _fail(str(exc))
    if save_mapping:
        try:
            named = {name: columns.column(name) for name in columns.explicit}
            saved_path = write_mapping(save_mapping, named, MAPPINGS_DIR)
        except ColumnError as exc:
            _fail(str(exc), EXIT_USAGE)
        console.print(f"saved the column mapping as {saved_path} (reuse it with --mapping {save_mapping})")
    console.print(_summary_table(summary))
    spread = ""
    if engine == "dask":
        spread = f" on {summary.workers} Dask worker(s), {summary.parts} part file(s)"
    console.print(
        f"scored {summary.rows_out:,} of {summary.rows_in:,} rows in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s) with {scorer.name} version {scorer.version}{spread} "
        f"→ {output}"
    )
    if skip_bad_rows:
        console.print(f"{summary.errors:,} row(s) skipped, listed in {job.errors_path}")


def _run_on_dask(
    job: Any, scorer: Any, bundle: Any, scheduler: str | None, workers: int | None, report: Any
) -> Any:
    from training.batch.dask_engine import dask_client, run_dask_score

    report("starting the Dask cluster" if not scheduler else f"connecting to {scheduler}", 0, 0, 0)
    with dask_client(scheduler, workers) as client:
        return run_dask_score(job, scorer, bundle, client, progress=report)


def _summary_table(summary):  # type: ignore[no-untyped-def]
    from rich.table import Table

    from serving.model.decisions import ACTIONS

    table = Table(title="Scored rows by action × predicted label", show_footer=True)
    table.add_column("action", footer="total")
    for label in summary.labels:
        column_total = sum(summary.counts[(action, label)] for action in ACTIONS)
        table.add_column(label, justify="right", footer=f"{column_total:,}")
    table.add_column("total", justify="right", footer=f"{summary.rows_out:,}")
    for action in ACTIONS:
        cells = [summary.counts[(action, label)] for label in summary.labels]
        table.add_row(action, *[f"{c:,}" if c else "-" for c in cells], f"{sum(cells):,}")
    return table
