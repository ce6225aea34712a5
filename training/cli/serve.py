"""`raqib serve`: the scoring API (serving/ owns it; this only starts it)."""

from __future__ import annotations

import os
import tempfile
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
    proxy_headers: Annotated[
        bool,
        typer.Option(help="Take the client's address and scheme from X-Forwarded-* of trusted proxies."),
    ] = True,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies trusted for X-Forwarded-*: comma-separated addresses or networks, or '*' "
            "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the scoring API (uvicorn, serving.api.app:create_app); settings from RAQIB_* env or --settings."""
    from serving.api.app import run
    from serving.runtime.metrics import MULTIPROC_DIR_ENV

    def start() -> None:
        run(
            host=host,
            port=port,
            workers=workers,
            settings_file=settings,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
        )

    if workers <= 1:
        start()
        return
    # Each worker counts in its own process; /metrics must show the server's totals whichever worker
    # answers the scrape. The workers share their values through files in this directory: fresh for
    # every start (values left by an earlier server would be summed in) and removed at exit. The
    # environment is how it reaches the workers, which uvicorn starts after this.
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="raqib-metrics-") as metrics_dir:
        os.environ[MULTIPROC_DIR_ENV] = metrics_dir
        try:
            start()
        finally:
            if previous is None:
                os.environ.pop(MULTIPROC_DIR_ENV, None)
            else:
                os.environ[MULTIPROC_DIR_ENV] = previous
