"""`raqib import FORMAT PATH`: labelled exports → a new canonical JSONL file under data/labeled/."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

EXIT_INVALID = 1  # bad rows (nothing written) or an unreadable input
EXIT_USAGE = 2  # options that do not fit the input
PROBLEMS_SHOWN = 50
CONFLICTS_SHOWN = 20


class ImportFormat(StrEnum):
    """The export formats `raqib import` reads."""

    labelstudio = "labelstudio"
    argilla = "argilla"
    doccano = "doccano"
    csv = "csv"
    feedback = "feedback"


def _console(stderr: bool = False):
    from rich.console import Console

    # A wide console keeps tables readable when output is captured (CI logs, CliRunner).
    width = None if os.isatty(1) else 160
    return Console(stderr=stderr, width=width, highlight=False)


def _fail(message: str, code: int = EXIT_INVALID) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


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
    ] = "on_topic,off_topic,spam,abusive",
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
    from rich.table import Table

    from training.batch.scoring import ColumnError, load_mapping, mapping_path
    from training.data.contract import ContractError
    from training.labels.importers import (
        ImportInputError,
        ImportOptions,
        ImportUsageError,
        import_export,
        parse_label_map,
    )

    fmt = export_format.value
    console = _console()
    known = [label.strip() for label in labels.split(",") if label.strip()]
    # (canonical field, option name, value) of the csv-only column options
    csv_options = [
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
    named = {name: column for name, _, column in csv_options if column}
    if fmt != "csv":
        given = [flag for _, flag, column in csv_options if column]
        given += ["--decided-col"] * bool(decided_col) + ["--mapping"] * bool(mapping)
        if given:
            _fail(f"{', '.join(given)}: column options apply to `raqib import csv` only", EXIT_USAGE)
    if fmt == "csv" and (text_field or choice_field):
        _fail("--text-field/--choice-field do not apply to csv; use --text-col/--label-col", EXIT_USAGE)
    try:
        saved = load_mapping(mapping_path(mapping)) if mapping else {}
        label_names = parse_label_map(label_map or [], known)
    except (ColumnError, ImportUsageError) as exc:
        _fail(str(exc), EXIT_USAGE)
    columns = {**saved, **named}
    options = ImportOptions(
        text_field=text_field or "text",
        choice_field=choice_field,
        columns=columns,
        explicit_columns=frozenset(columns),
        decided_column=decided_col,
    )
    try:
        with console.status(f"importing {path}"):
            report = import_export(
                fmt,
                path,
                out_dir=out_dir,
                options=options,
                label_map=label_names,
                known_labels=known,
                skip_invalid=skip_invalid,
            )
    except ImportUsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ImportInputError as exc:
        _fail(str(exc))
    except ContractError as exc:  # only the files already in out_dir are read through the contract
        _fail(f"{exc} (a file already in {out_dir}: fix it before importing more)")

    table = Table(title=f"raqib import {fmt} {path}")
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
    console.print(table)
    for title, lines in (
        ("annotator disagreements", report.annotation_conflicts),
        ("conflicts (loser → winner)", report.conflicts),
    ):
        if lines:
            console.print(f"[bold]{title}[/] ({len(lines)}):", soft_wrap=True)
            for line in lines[:CONFLICTS_SHOWN]:
                console.print(f"  {line}", soft_wrap=True)
            if len(lines) > CONFLICTS_SHOWN:
                console.print(f"  … {len(lines) - CONFLICTS_SHOWN} more in the .meta.json")
    for earlier in report.already_imported:
        console.print(
            f"[yellow]note:[/] the same input file was imported before as {earlier}", soft_wrap=True
        )
    if report.problems:
        err = _console(stderr=True)
        shown = report.problems[:PROBLEMS_SHOWN]
        for problem in shown:
            err.print(f"  {problem}", soft_wrap=True)
        if len(report.problems) > len(shown):
            err.print(f"  … and {len(report.problems) - len(shown)} more")
        if not skip_invalid:
            _fail(
                f"{len(report.problems)} invalid row(s) in {path}; nothing written "
                "(fix them, map labels with --map, or pass --skip-invalid)"
            )
        err.print(f"[yellow]{len(report.problems)} invalid row(s) skipped[/] (listed in the .meta.json)")
    console.print(f"wrote {report.written:,} record(s) to {report.output} (provenance in {report.meta})")
