"""`raqib serve`: the scoring API (serving/ owns it; this only starts it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    settings: Annotated[
        Path | None, typer.Option("--settings", help="Settings TOML (RAQIB_SETTINGS_FILE).")
    ] = None,
) -> None:
    """Run the scoring API (uvicorn, serving.api.app:create_app); settings from RAQIB_* env or --settings."""
    from serving.api.app import run

    run(host=host, port=port, workers=workers, settings_file=settings)
