"""`raqib feedback …`: moderators' verdicts from the serving store, exported as training data."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.schema import DEFAULT_LABELS
from training.cli.common import aware_datetime, console, fail

app = typer.Typer(no_args_is_help=True)


def parse_since(value: str | None) -> datetime | None:
    """`--since` as an aware datetime: a date or ISO 8601 time, UTC unless it carries an offset."""
    if value is None:
        return None
    try:
        return aware_datetime(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None


def _write_atomically(path: Path, lines: list[str]) -> None:
    # A training run reading data/labeled/ meanwhile sees the old file or the new one, never half.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@app.command("export")
def export_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSONL file to write, e.g. data/labeled/feedback.jsonl.")
    ],
    since: Annotated[
        str | None,
        typer.Option(help="Only comments whose latest verdict came at or after DATE (UTC unless an offset)."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", envvar="RAQIB_STATE_DIR", help="The server's state_dir.")
    ] = Path("var"),
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            envvar="RAQIB_STORE_URL",
            help="SQLAlchemy URL of the store; replaces --state-dir.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write canonical labelled records (latest verdict per site and comment) and count them per label."""
    from rich.table import Table

    from serving.store.engine import DB_FILE, default_store_url, redacted
    from serving.store.errors import StoreError
    from serving.store.store import Store
    from training.data.contract import ContractError, validate_record

    cutoff = parse_since(since)
    if store_url is None:
        if not (state_dir / DB_FILE).is_file():
            fail(f"no store at {state_dir / DB_FILE} (is --state-dir the server's state_dir?)")
        store_url = default_store_url(state_dir)
    try:
        store = Store.open(store_url)
    except StoreError as exc:
        fail(f"{redacted(store_url)}: {exc}")
    skipped: Counter[str] = Counter()
    lines: list[str] = []
    counts: Counter[str] = Counter()
    try:
        for number, record in enumerate(store.export_labels(since=cutoff, skipped=skipped), start=1):
            # The data contract, checked before anything is written.
            validate_record(dict(record), path=output, line=number)
            counts[str(record["label"])] += 1
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    except StoreError as exc:
        fail(str(exc))
    except ContractError as exc:
        fail(f"a feedback record breaks the data contract: {exc}")
    finally:
        store.close()
    _write_atomically(output, lines)
    table = Table(title=f"feedback → {output}", show_footer=True)
    table.add_column("label", footer="total")
    table.add_column("records", justify="right", footer=f"{sum(counts.values()):,}")
    for label in [
        *[lab for lab in DEFAULT_LABELS if lab in counts],
        *sorted(set(counts) - set(DEFAULT_LABELS)),
    ]:
        table.add_row(label, f"{counts[label]:,}")
    out = console()
    out.print(table)
    for reason, count in sorted(skipped.items()):
        out.print(f"skipped {count:,}: {reason}")
