"""`raqib datasets …`: build the public-corpus training file and inspect canonical files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from serving.schema import DEFAULT_LABELS
from training.cli.common import EXIT_FAILED, EXIT_USAGE, console

if TYPE_CHECKING:
    from training.data.datasets.registry import BuildResult, SourceSpec

app = typer.Typer(no_args_is_help=True)

DEFAULT_OUTPUT = Path("data/build/public.jsonl")
SCRIPTS = ("arabic", "latin", "mixed", "none")


def _labels_in(counts: dict[str, dict[str, int]]) -> list[str]:
    seen = {label for row in counts.values() for label in row}
    return [*[lab for lab in DEFAULT_LABELS if lab in seen], *sorted(seen - set(DEFAULT_LABELS))]


def _counts_table(title: str, counts: dict[str, dict[str, int]]) -> Any:
    from rich.table import Table

    labels = _labels_in(counts)
    table = Table(title=title, show_footer=True)
    totals = {lab: sum(row.get(lab, 0) for row in counts.values()) for lab in labels}
    table.add_column("source", footer="total")
    for lab in labels:
        table.add_column(lab or "(none)", justify="right", footer=f"{totals[lab]:,}")
    table.add_column("total", justify="right", footer=f"{sum(totals.values()):,}")
    for source in sorted(counts):
        row = counts[source]
        table.add_row(
            source or "(none)",
            *[f"{row.get(lab, 0):,}" if row.get(lab) else "-" for lab in labels],
            f"{sum(row.values()):,}",
        )
    return table


@app.command("build")
def build_command(
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            file_okay=False,
            help="Folder of public corpora (default: $RAQIB_DATASETS, else ../shared/datasets "
            "relative to the working directory).",
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Canonical JSONL to write.",
        ),
    ] = DEFAULT_OUTPUT,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            metavar="SOURCE",
            help="Add a non-default source (e.g. omp). Repeatable.",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="SOURCE",
            help="Leave out a source. Repeatable.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed for the constructed aoc_repaired pairs.",
        ),
    ] = 13,
) -> None:
    """Turn every public corpus into ONE canonical, deterministic JSONL file."""
    import time

    include, exclude = include or [], exclude or []
    root = _corpus_root(from_dir)
    present = _present_sources(root, include, exclude)
    started = time.perf_counter()
    result = _build_with_progress(root, output, include, exclude, seed, [s.name for s in present])
    elapsed = time.perf_counter() - started
    out = console()
    out.print(_counts_table(f"Public corpora → {output}", result.counts()))
    if result.skipped:
        out.print("[yellow]skipped (files missing):[/yellow] " + ", ".join(sorted(result.skipped)))
    out.print(f"records: {len(result.records):,}   time: {elapsed:.1f}s")
    out.print(f"sha256: {result.sha256}")


def _corpus_root(from_dir: Path | None) -> Path:
    """--from, else $RAQIB_DATASETS, else ../shared/datasets; exit code 2 when it is not a folder."""
    from training.data.datasets.common import default_root

    root = from_dir if from_dir is not None else default_root()
    if not root.is_dir():
        console(stderr=True).print(
            f"[red]Public corpora not found at {root.resolve()}[/red]\n"
            "Pass --from DIR or set RAQIB_DATASETS to the folder that holds the corpora."
        )
        raise typer.Exit(EXIT_USAGE)
    return root


def _present_sources(root: Path, include: list[str], exclude: list[str]) -> list[SourceSpec]:
    """The selected sources whose files are all there; a warning for each one that is not."""
    from training.data.datasets.registry import UnknownSource, select_sources

    err = console(stderr=True)
    try:
        specs = select_sources(include, exclude)
    except UnknownSource as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    present = [s for s in specs if not s.missing_files(root)]
    for spec in specs:
        if spec not in present:
            missing = ", ".join(spec.missing_files(root))
            err.print(f"[yellow]warning:[/yellow] skipping {spec.name}: missing {missing}")
    if not present:
        err.print(f"[red]None of the corpora were found under {root.resolve()}.[/red]")
        raise typer.Exit(EXIT_USAGE)
    return present


def _build_with_progress(
    root: Path, output: Path, include: list[str], exclude: list[str], seed: int, names: list[str]
) -> BuildResult:
    """Run the build with one progress line per source (records counted as they are loaded)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from training.data.datasets.registry import build

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<20}"),
        BarColumn(),
        TextColumn("{task.completed:>7,} records"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=False,
    ) as progress:
        tasks = {name: progress.add_task(name, total=None, start=False) for name in names}

        def on_start(name: str) -> None:
            progress.start_task(tasks[name])

        def on_record(name: str) -> None:
            progress.advance(tasks[name])

        def on_done(name: str, n: int) -> None:
            progress.update(tasks[name], total=n, completed=n)

        return build(
            root,
            output,
            include=include,
            exclude=exclude,
            seed=seed,
            on_start=on_start,
            on_record=on_record,
            on_done=on_done,
        )


@app.command("stats")
def stats_command(
    file: Annotated[Path, typer.Argument(help="Canonical JSONL or CSV file.")],
) -> None:
    """Counts per source × label, text lengths and scripts per source."""
    import statistics
    from collections import Counter, defaultdict

    from rich.table import Table

    from serving.text.normalize import dominant_script
    from training.data.contract import ContractError, read_records

    out, err = console(), console(stderr=True)
    try:
        records = read_records(file, require_label=False)
    except ContractError as exc:
        err.print(f"[red]{_escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_FAILED) from None

    counts: dict[str, dict[str, int]] = defaultdict(dict)
    lengths: dict[str, list[int]] = defaultdict(list)
    scripts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        source = record.source or "(none)"
        label = record.label or "(none)"
        counts[source][label] = counts[source].get(label, 0) + 1
        lengths[source].append(len(record.text))
        scripts[source][dominant_script(record.text)] += 1

    out.print(_counts_table(f"{file}: {len(records):,} records", dict(counts)))

    length_table = Table(title="text length (characters)")
    for column in ("source", "n", "min", "median", "p95", "max"):
        length_table.add_column(column, justify="left" if column == "source" else "right")
    for source in sorted(lengths):
        values = sorted(lengths[source])
        p95 = values[max(0, -(-95 * len(values) // 100) - 1)]  # nearest-rank percentile
        length_table.add_row(
            source,
            f"{len(values):,}",
            f"{values[0]:,}",
            f"{statistics.median(values):,.0f}",
            f"{p95:,}",
            f"{values[-1]:,}",
        )
    out.print(length_table)

    script_table = Table(title="dominant script of the text")
    script_table.add_column("source")
    for script in SCRIPTS:
        script_table.add_column(script, justify="right")
    for source in sorted(scripts):
        row = scripts[source]
        script_table.add_row(source, *[f"{row.get(s, 0):,}" for s in SCRIPTS])
    out.print(script_table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
