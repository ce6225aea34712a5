"""`python -m training.cli`: the same Typer app as the `raqib` command."""

from training.cli.main import app

app()
