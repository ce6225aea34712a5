"""`raqib import FORMAT PATH` and `raqib retrain`: labelled data in, a retrained champion out."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from serving.schema import DEFAULT_BUNDLE_DIR, DEFAULT_LABELS
from training.cli.common import EXIT_FAILED, EXIT_USAGE, ConfigOption, aware_datetime, console, fail

if TYPE_CHECKING:
    from training.labels.importers import ImportOptions, ImportReport
    from training.labels.retrain import RetrainReport

PROBLEMS_SHOWN = 50
CONFLICTS_SHOWN = 20
EXIT_NOT_PROMOTED = 2


class ImportFormat(StrEnum):
    """The export formats `raqib import` reads."""

    labelstudio = "labelstudio"
    argilla = "argilla"
    doccano = "doccano"
    csv = "csv"
    feedback = "feedback"


def import_command(
    export_format: Annotated[
        ImportFormat, typer.Argument(metavar="FORMAT", help="Which tool made the export.")
    ],
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The export file.")],
    out_dir: Annotated[Path, typer.Option(help="Where the canonical JSONL goes.")] = Path("data/labeled"),
    label_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="Rename export labels: ham=on_topic,irrelevant=off_topic (repeatable)."),
    ] = None,
    labels: Annotated[
        str, typer.Option(help="Known labels, comma-separated; others must be mapped.")
    ] = ",".join(DEFAULT_LABELS),
    skip_invalid: Annotated[
        bool, typer.Option(help="Write the good rows and report the bad ones (default: write nothing).")
    ] = False,
    text_field: Annotated[
        str | None, typer.Option(help="labelstudio/argilla/doccano: the field with the comment text.")
    ] = None,
    choice_field: Annotated[
        str | None,
        typer.Option(help="labelstudio: the choices control (from_name/column); argilla: the question."),
    ] = None,
    mapping: Annotated[
        str | None, typer.Option(help="csv: start from a `raqib score --save-mapping` column mapping.")
    ] = None,
    text_col: Annotated[str | None, typer.Option(help="csv: comment text column.")] = None,
    label_col: Annotated[str | None, typer.Option(help="csv: label column.")] = None,
    article_id_col: Annotated[str | None, typer.Option(help="csv: article id column.")] = None,
    article_title_col: Annotated[str | None, typer.Option(help="csv: article headline column.")] = None,
    article_text_col: Annotated[str | None, typer.Option(help="csv: article body column.")] = None,
    id_col: Annotated[str | None, typer.Option(help="csv: comment id column.")] = None,
    site_col: Annotated[str | None, typer.Option(help="csv: site column.")] = None,
    author_col: Annotated[str | None, typer.Option(help="csv: author column (never a feature).")] = None,
    created_col: Annotated[str | None, typer.Option(help="csv: when the comment was posted.")] = None,
    decided_col: Annotated[
        str | None, typer.Option(help="csv: when the moderator decided (for conflicts).")
    ] = None,
) -> None:
    """Import a labelled export as canonical JSONL: validated, de-duplicated, latest decision wins."""
    fmt = export_format.value
    known = [label.strip() for label in labels.split(",") if label.strip()]
    # (canonical field, option name, value) of the csv-only column options
    column_options = [
        ("text", "--text-col", text_col),
        ("label", "--label-col", label_col),
        ("article_id", "--article-id-col", article_id_col),
        ("article_title", "--article-title-col", article_title_col),
        ("article_text", "--article-text-col", article_text_col),
        ("comment_id", "--id-col", id_col),
        ("site", "--site-col", site_col),
        ("author", "--author-col", author_col),
        ("created_at", "--created-col", created_col),
    ]
    _check_format_options(fmt, column_options, decided_col, mapping, text_field, choice_field)
    named = {name: column for name, _, column in column_options if column}
    options, label_names = _import_options(
        named, mapping, label_map, known, text_field, choice_field, decided_col
    )
    report = _run_import(fmt, path, out_dir, options, label_names, known, skip_invalid)
    out = console()
    out.print(_counts_table(report, f"raqib import {fmt} {path}"))
    _print_conflicts(report)
    for earlier in report.already_imported:
        out.print(f"[yellow]note:[/] the same input file was imported before as {earlier}", soft_wrap=True)
    if report.problems:
        _report_problems(report, path, skip_invalid)
    out.print(f"wrote {report.written:,} record(s) to {report.output} (provenance in {report.meta})")


def _check_format_options(
    fmt: str,
    column_options: list[tuple[str, str, str | None]],
    decided_col: str | None,
    mapping: str | None,
    text_field: str | None,
    choice_field: str | None,
) -> None:
    """Refuse options that belong to another format (exit code 2)."""
    if fmt != "csv":
        given = [flag for _, flag, column in column_options if column]
        given += ["--decided-col"] * bool(decided_col) + ["--mapping"] * bool(mapping)
        if given:
            fail(f"{', '.join(given)}: column options apply to `raqib import csv` only", EXIT_USAGE)
    if fmt == "csv" and (text_field or choice_field):
        fail("--text-field/--choice-field do not apply to csv; use --text-col/--label-col", EXIT_USAGE)


def _import_options(
    named: dict[str, str],
    mapping: str | None,
    label_map: list[str] | None,
    known: list[str],
    text_field: str | None,
    choice_field: str | None,
    decided_col: str | None,
) -> tuple[ImportOptions, dict[str, str]]:
    """The parser options (a saved column mapping overridden by named columns) and the --map labels."""
    from training.batch.scoring import ColumnError, load_mapping, mapping_path
    from training.labels.importers import ImportOptions, ImportUsageError, parse_label_map

    try:
        saved = load_mapping(mapping_path(mapping)) if mapping else {}
        label_names = parse_label_map(label_map or [], known)
    except (ColumnError, ImportUsageError) as exc:
        fail(str(exc), EXIT_USAGE)
    columns = {**saved, **named}
    options = ImportOptions(
        text_field=text_field or "text",
        choice_field=choice_field,
        columns=columns,
        explicit_columns=frozenset(columns),
        decided_column=decided_col,
    )
    return options, label_names


def _run_import(
    fmt: str,
    path: Path,
    out_dir: Path,
    options: ImportOptions,
    label_names: dict[str, str],
    known: list[str],
    skip_invalid: bool,
) -> ImportReport:
    from training.data.contract import ContractError
    from training.labels.importers import ImportInputError, ImportUsageError, import_export

    try:
        with console().status(f"importing {path}"):
            return import_export(
                fmt,
                path,
                out_dir=out_dir,
                options=options,
                label_map=label_names,
                known_labels=known,
                skip_invalid=skip_invalid,
            )
    except ImportUsageError as exc:
        fail(str(exc), EXIT_USAGE)
    except ImportInputError as exc:
        fail(str(exc))
    except ContractError as exc:  # only the files already in out_dir are read through the contract
        fail(f"{exc} (a file already in {out_dir}: fix it before importing more)")


def _counts_table(report: ImportReport, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    table.add_column("rows", justify="right")
    counts = report.counts()
    for key, name in (
        ("read", "read"),
        ("unlabelled", "unlabelled (skipped)"),
        ("invalid", "invalid"),
        ("duplicates_dropped", "duplicates dropped"),
        ("conflicts_resolved", "conflicts resolved"),
        ("superseded_existing", "  earlier records superseded"),
        ("lost_to_later_decision", "  rows that lost to a later decision"),
        ("annotation_conflicts", "annotator disagreements (latest taken)"),
        ("written", "written"),
    ):
        table.add_row(name, f"{counts[key]:,}")
    return table


def _print_conflicts(report: ImportReport) -> None:
    out = console()
    for title, lines in (
        ("annotator disagreements", report.annotation_conflicts),
        ("conflicts (loser → winner)", report.conflicts),
    ):
        if lines:
            out.print(f"[bold]{title}[/] ({len(lines)}):", soft_wrap=True)
            for line in lines[:CONFLICTS_SHOWN]:
                out.print(f"  {line}", soft_wrap=True)
            if len(lines) > CONFLICTS_SHOWN:
                out.print(f"  … {len(lines) - CONFLICTS_SHOWN} more in the .meta.json")


def _report_problems(report: ImportReport, path: Path, skip_invalid: bool) -> None:
    """List the invalid rows on stderr; without --skip-invalid nothing was written and this fails."""
    err = console(stderr=True)
    shown = report.problems[:PROBLEMS_SHOWN]
    for problem in shown:
        err.print(f"  {problem}", soft_wrap=True)
    if len(report.problems) > len(shown):
        err.print(f"  … and {len(report.problems) - len(shown)} more")
    if not skip_invalid:
        fail(
            f"{len(report.problems)} invalid row(s) in {path}; nothing written "
            "(fix them, map labels with --map, or pass --skip-invalid)",
            EXIT_FAILED,
        )
    err.print(f"[yellow]{len(report.problems)} invalid row(s) skipped[/] (listed in the .meta.json)")


def retrain(
    config: ConfigOption = None,
    since: Annotated[str | None, typer.Option(help="Only feedback from this date on (ISO 8601).")] = None,
    state_dir: Annotated[Path, typer.Option(help="The server's state dir (feedback store).")] = Path("var"),
    store_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the store (overrides --state-dir).")
    ] = None,
    export_dir: Annotated[
        Path, typer.Option("--export", help="Where the new champion bundle goes.")
    ] = DEFAULT_BUNDLE_DIR,
    notify: Annotated[list[str] | None, typer.Option(help="Server base URL to reload (repeatable).")] = None,
) -> None:
    """Retrain on labelled data + moderators' feedback; promote only if not worse; reload servers."""
    import os

    from serving.store.engine import default_store_url
    from training.data.contract import ContractError
    from training.experiment.config import ConfigError, load_config
    from training.labels.retrain import retrain as run_retrain

    if config is None:
        public = Path("data/build/public.jsonl").is_file()
        config = Path("experiments/public.toml" if public else "experiments/starter.toml")
    try:
        experiment = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    try:
        cutoff = aware_datetime(since) if since else None
    except ValueError:
        fail(f"--since {since!r} is not an ISO 8601 date")
    out = console()
    with out.status(f"retraining with {config}"):
        try:
            report = run_retrain(
                experiment,
                store_url=store_url or default_store_url(state_dir),
                since=cutoff,
                export_dir=export_dir,
                notify=notify or [],
                admin_key=os.environ.get("RAQIB_ADMIN_KEY"),
                config_path=str(config),
            )
        except (ContractError, ValueError) as exc:
            fail(str(exc))
    out.print(_comparison_table(report))
    out.print(
        f"feedback: {report.feedback_total} ({report.feedback_trained} trained on, "
        f"{report.feedback_held_out} most recent held out)"
    )
    verdict = "[green]promoted[/]" if report.promoted else "[yellow]not promoted[/]"
    out.print(f"{verdict}: {report.reason}")
    if report.exported_to:
        out.print(f"exported to {report.exported_to}")
    for server, outcome in report.notified.items():
        out.print(f"{server}: {outcome}")
    if not report.promoted:
        raise typer.Exit(EXIT_NOT_PROMOTED)


def _comparison_table(report: RetrainReport) -> Any:
    from rich.table import Table

    table = Table(
        title=f"challenger v{report.challenger_version} vs champion "
        f"{'v' + report.champion_version if report.champion_version else '(none)'}"
    )
    for column in ("evaluation", "metric", "n", "champion", "challenger", "delta", "tolerance", "ok"):
        table.add_column(column)
    for c in report.comparisons:
        table.add_row(
            c.evaluation,
            c.metric,
            str(c.n),
            "—" if c.champion is None else f"{c.champion:.4f}",
            f"{c.challenger:.4f}",
            "—" if c.delta is None else f"{c.delta:+.4f}",
            "—" if c.tolerance is None else str(c.tolerance),
            "yes" if c.passes else "[red]NO[/]",
        )
    return table
