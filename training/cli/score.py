"""`raqib score`: score a CMS export (CSV, JSONL, Parquet) with a model bundle, in bounded memory.

`--engine dask` spreads the same work over a Dask cluster (training/batch/dask_engine.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from serving.schema import DEFAULT_BUNDLE_DIR
from training.cli.common import EXIT_USAGE, DaskWorkersOption, SchedulerOption, console, fail

if TYPE_CHECKING:
    from rich.progress import Progress

    from training.batch.dask_engine import BundleFiles
    from training.batch.scoring import ColumnMapping, ProgressHook, ScoreJob, ScoreSummary


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
    model: Annotated[str, typer.Option(help="Bundle dir or models:/NAME@ALIAS URI.")] = str(
        DEFAULT_BUNDLE_DIR
    ),
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
    _check_engine_options(engine, scheduler, workers, sort)
    named_columns = {
        "text": text_col,
        "article_title": article_title_col,
        "article_text": article_text_col,
        "article_id": article_id_col,
        "comment_id": id_col,
        "site": site_col,
        "author": author_col,
    }
    job = replace(
        _plan_job(input_path, output, input_format, model, named_columns, mapping, engine),
        chunk_size=chunk_size,
        explain=explain,
        sort_risk=sort == "risk",
        skip_bad=skip_bad_rows,
        prefix=prefix,
    )
    scorer, bundle = _load_scorer(model, engine)
    summary = _run_with_progress(job, scorer, bundle, engine, scheduler, workers)
    out = console()
    if save_mapping:
        out.print(_save_mapping(save_mapping, job.mapping))
    out.print(_summary_table(summary))
    spread = ""
    if engine == "dask":
        spread = f" on {summary.workers} Dask worker(s), {summary.parts} part file(s)"
    out.print(
        f"scored {summary.rows_out:,} of {summary.rows_in:,} rows in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s) with {scorer.name} version {scorer.version}{spread} "
        f"→ {job.output}"
    )
    if skip_bad_rows:
        out.print(f"{summary.errors:,} row(s) skipped, listed in {job.errors_path}")


def _check_engine_options(engine: str, scheduler: str | None, workers: int | None, sort: str | None) -> None:
    """Refuse an unknown sort, engine options that do not fit together, and a sort the engine cannot do."""
    from training.batch.dask_engine import check_engine_options

    if sort not in (None, "risk"):
        fail(f"--sort {sort!r}: only 'risk' is supported", EXIT_USAGE)
    try:
        check_engine_options(engine, scheduler, workers)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if engine == "dask" and sort:
        fail(
            "--sort risk is not available with --engine dask: it writes part files in input order, and a "
            "global sort would bring every row back to one machine; use --engine local to sort",
            EXIT_USAGE,
        )


def _plan_job(
    input_path: Path,
    output: Path | None,
    input_format: str | None,
    model: str,
    named_columns: dict[str, str | None],
    mapping: str | None,
    engine: str,
) -> ScoreJob:
    """Formats, output path and column mapping, checked before any model is loaded (usage errors exit 2)."""
    from serving.schema import ModelUriError, is_model_uri, parse_model_uri
    from training.batch.dask_engine import check_output_dir
    from training.batch.scoring import (
        MAPPINGS_DIR,
        ColumnError,
        ScoreJob,
        default_output,
        format_of,
        load_mapping,
        mapping_path,
        resolve_mapping,
    )

    try:
        fmt = format_of(input_path, input_format)
        output = output or default_output(input_path, fmt)
        output_format = format_of(output)
        saved = load_mapping(mapping_path(mapping, MAPPINGS_DIR)) if mapping else None
        columns = resolve_mapping(named_columns, saved)
        if is_model_uri(model):
            parse_model_uri(model)
        if engine == "local" and output.is_dir():
            raise ColumnError(f"{output}: is a directory; --engine local writes one file")
        if engine == "dask":
            check_output_dir(output)  # before a cluster is started only to refuse
    except (ColumnError, ModelUriError) as exc:
        fail(str(exc), EXIT_USAGE)
    return ScoreJob(
        input=input_path, output=output, input_format=fmt, output_format=output_format, mapping=columns
    )


def _load_scorer(model: str, engine: str) -> tuple[Any, BundleFiles | None]:
    """The model (and, for the Dask engine, its bundle's files for the workers)."""
    from serving.model.bundle import BundleError
    from training.batch.dask_engine import read_bundle
    from training.batch.scoring import load_model

    try:
        with console().status(f"loading model {model}"):
            if engine == "dask":
                return read_bundle(model)
            return load_model(model), None
    except BundleError as exc:
        fail(str(exc))
    except Exception as exc:  # mlflow raises its own exception types for unknown names and aliases
        fail(f"cannot load model {model}: {exc}")


def _run_with_progress(
    job: ScoreJob,
    scorer: Any,
    bundle: BundleFiles | None,
    engine: str,
    scheduler: str | None,
    workers: int | None,
) -> Any:
    """Score the export under a progress bar; an unreadable row or a failed cluster exits 1."""
    from training.batch.dask_engine import DaskEngineError
    from training.batch.scoring import ColumnError, run_score
    from training.data.tables import TableInputError

    progress = _progress_bar()
    with progress:
        report = _progress_hook(progress, by_bytes=job.input_format != "parquet")
        try:
            if engine == "dask" and bundle is not None:
                return _run_on_dask(job, scorer, bundle, scheduler, workers, report)
            return run_score(job, scorer, progress=report)
        except TableInputError as exc:
            progress.stop()
            fail(f"{exc}\n(nothing written; --skip-bad-rows skips such rows and lists them)")
        except ColumnError as exc:
            progress.stop()
            fail(str(exc), EXIT_USAGE)
        except DaskEngineError as exc:  # no scheduler, no workers, or files the workers cannot see
            progress.stop()
            fail(str(exc))


def _progress_bar() -> Progress:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>10,} rows  {task.fields[rate]:>8,.0f} rows/s"),
        TextColumn("[dim]{task.fields[unit]}[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console(stderr=True),
    )


def _progress_hook(progress: Progress, by_bytes: bool) -> ProgressHook:
    """The scoring engines' progress callback, drawn as one task of the bar."""
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

    return report


def _save_mapping(site: str, columns: ColumnMapping) -> str:
    """Save the explicitly named columns as the site's mapping; the line to print."""
    from training.batch.scoring import MAPPINGS_DIR, ColumnError, save_mapping

    try:
        named = {name: columns.column(name) for name in columns.explicit}
        saved_path = save_mapping(site, named, MAPPINGS_DIR)
    except ColumnError as exc:
        fail(str(exc), EXIT_USAGE)
    return f"saved the column mapping as {saved_path} (reuse it with --mapping {site})"


def _run_on_dask(
    job: ScoreJob,
    scorer: Any,
    bundle: BundleFiles,
    scheduler: str | None,
    workers: int | None,
    report: ProgressHook,
) -> ScoreSummary:
    from training.batch.dask_engine import dask_client, run_dask_score

    report("starting the Dask cluster" if not scheduler else f"connecting to {scheduler}", 0, 0, 0)
    with dask_client(scheduler, workers) as client:
        return run_dask_score(job, scorer, bundle, client, progress=report)


def _summary_table(summary: ScoreSummary) -> Any:
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
