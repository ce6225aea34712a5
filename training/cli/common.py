"""What every `raqib` command shares: the console, failing with an exit code, common options.

Rich and everything heavy are imported inside functions: `raqib --help` must stay fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

# Exit codes: 1 = the input cannot be read or the work failed (the message says where),
# 2 = a usage problem (options that do not fit, a missing mapped column, an unknown format).
EXIT_FAILED = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Experiment TOML (e.g. experiments/starter.toml)."),
]
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


def console(stderr: bool = False) -> Console:
    """A console for tables and messages; wide when output is captured (CI logs, CliRunner)."""
    from rich.console import Console

    width = None if os.isatty(1) else 160
    return Console(stderr=stderr, width=width, highlight=False)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print the error on stderr and leave with `code`."""
    console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def percent(value: float | None) -> str:
    """A share as `12.3 %`, or a dash when there is none."""
    return "—" if value is None else f"{100 * value:.1f} %"


def per_class_table(
    title: str, per_class: dict[str, dict[str, Any]], thresholds: dict[str, dict[str, float]] | None = None
) -> Any:
    """Rich table of per-label precision/recall/F1/PR-AUC/support (and thresholds when given)."""
    from rich.table import Table

    table = Table(title=title)
    columns = ["label", "precision", "recall", "F1", "PR-AUC", "support"]
    for column in columns + (["reject_at", "review_at"] if thresholds else []):
        table.add_column(column)
    for label, m in per_class.items():
        cells = [label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['pr_auc']:.3f}"]
        cells.append(str(m["support"]))
        if thresholds:
            cells += [str(thresholds[kind].get(label, "—")) for kind in ("reject_at", "review_at")]
        table.add_row(*cells)
    return table


def aware_datetime(value: str) -> datetime:
    """A date or ISO 8601 time, made aware (UTC unless it carries an offset); ValueError if unreadable."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
