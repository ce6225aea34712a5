"""`raqib db …`: the store's schema revision, and migrating a store made by an older Raqib."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import console, fail

app = typer.Typer(no_args_is_help=True)

StateDirOption = Annotated[
    Path, typer.Option("--state-dir", envvar="RAQIB_STATE_DIR", help="The server's state_dir.")
]
StoreUrlOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="RAQIB_STORE_URL",
        help="SQLAlchemy URL of the store; replaces --state-dir. Default: the server's own settings "
        "(raqib_store_url in RAQIB_SECRETS_DIR, RAQIB_SETTINGS_FILE), else --state-dir.",
        show_default=False,
    ),
]


def _server_store_url(store_url: str | None) -> str | None:
    """The store the server would open: --store-url, else its settings' (RAQIB_SECRETS_DIR, TOML file)."""
    if store_url is not None:
        return store_url
    from serving.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:
        fail(f"the server's settings cannot be read: {exc}")
    return settings.store_url.get_secret_value() if settings.store_url is not None else None


def _describe(revision: str | None) -> str:
    return "an empty database" if revision is None else revision


@app.command("upgrade")
def upgrade_command(state_dir: StateDirOption = Path("var"), store_url: StoreUrlOption = None) -> None:
    """Migrate the store to the schema this Raqib needs (stop the servers using it first)."""
    from serving.store.engine import default_store_url, redacted
    from serving.store.errors import StoreError
    from serving.store.migrate import upgrade
    from serving.store.schema_version import BASELINE_REVISION

    # An empty database is fine here: it is created at the newest revision, as the server would.
    store_url = _server_store_url(store_url)
    url = store_url if store_url is not None else default_store_url(state_dir)
    try:
        done = upgrade(url)
    except StoreError as exc:
        fail(f"{redacted(url)}: {exc}")
    out = console()
    if not done.changed:
        out.print(f"{redacted(url)}: already at {done.after}, nothing to do")
        return
    if done.stamped_baseline:
        out.print(f"{redacted(url)}: {done.before} has the tables of {BASELINE_REVISION}; marked as such")
    out.print(f"{redacted(url)}: upgraded {_describe(done.before)} → {done.after}")


@app.command("current")
def current_command(state_dir: StateDirOption = Path("var"), store_url: StoreUrlOption = None) -> None:
    """Print the store's schema revision and whether this Raqib can use it as it is."""
    from serving.store.engine import DB_FILE, default_store_url, redacted
    from serving.store.errors import StoreError
    from serving.store.migrate import current_revision
    from serving.store.schema_version import HEAD_REVISION, SchemaOutdated, check_revision

    store_url = _server_store_url(store_url)
    if store_url is None:
        if not (state_dir / DB_FILE).is_file():
            fail(f"no store at {state_dir / DB_FILE} (is --state-dir the server's state_dir?)")
        store_url = default_store_url(state_dir)
    try:
        revision = current_revision(store_url)
    except StoreError as exc:
        fail(f"{redacted(store_url)}: {exc}")
    out = console()
    out.print(f"{redacted(store_url)}: {_describe(revision)}")
    if revision is None:
        out.print(f"the server creates it at {HEAD_REVISION} when it starts")
        return
    try:
        check_revision(revision)
    except SchemaOutdated:
        out.print(f"this Raqib needs {HEAD_REVISION}: run `raqib db upgrade`")
    except StoreError as exc:
        fail(str(exc))
    else:
        out.print("up to date (head)")
