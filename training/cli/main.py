"""The `raqib` command: the Typer app assembled from one module per command group.

Each command lives in its group's module (experiment, registry, labels, score, serve, feedback,
datasets) and imports what it needs when it runs, so `raqib --help` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from training.cli import datasets, db, experiment, feedback, labels, registry, score, serve

# Packages a serving install (`pip install 'raqib[serve]'`) leaves out, and the extra that brings each.
EXTRA_OF_PACKAGE = {
    "mlflow": "train",
    "matplotlib": "train",
    "pandas": "train",
    "pyarrow": "train",
    "dask": "dask",
    "distributed": "dask",
    "fasttext": "bench",
}


class RaqibGroup(TyperGroup):
    """The command group: a command whose extra is not installed says which one, not an ImportError."""

    # Any: typer's own copy of click's Context, which typer does not export under a public name.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            package = (exc.name or "").split(".")[0]
            extra = EXTRA_OF_PACKAGE.get(package)
            if extra is None:
                raise
            command = f"raqib {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "this command"
            typer.echo(
                f"Error: {command} needs {package}, which this installation does not have: "
                f"pip install 'raqib[{extra}]'",
                err=True,
            )
            raise typer.Exit(code=1) from exc


def installed_version() -> str:
    try:
        return version("raqib")
    except PackageNotFoundError:  # a checkout on sys.path that pip never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"raqib {installed_version()}")
        raise typer.Exit()


def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the installed version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


app = typer.Typer(
    name="raqib",
    help="Raqib: moderation of reader comments on Arabic news sites, scored against the article.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=RaqibGroup,
)
app.callback()(_options)
app.add_typer(datasets.app, name="datasets", help="Build and inspect training data.")
app.command()(experiment.train)
app.command()(registry.promote)
app.command()(registry.export)
app.command()(experiment.evaluate)
app.command()(labels.retrain)
app.command()(serve.serve)
app.command()(experiment.anchors)
app.command(name="score")(score.score)
app.command(name="import")(labels.import_command)
app.add_typer(feedback.app, name="feedback", help="Moderator feedback: export as training data.")
app.add_typer(db.app, name="db", help="The store's schema: show its revision, migrate it.")

if __name__ == "__main__":  # pragma: no cover
    app()
