"""The `raqib` command: the Typer app assembled from one module per command group.

Each command lives in its group's module (experiment, registry, labels, score, serve, feedback,
datasets) and imports what it needs when it runs, so `raqib --help` stays fast.
"""

from __future__ import annotations

import typer

from training.cli import datasets, experiment, feedback, labels, registry, score, serve

app = typer.Typer(
    name="raqib",
    help="Raqib: moderation of reader comments on Arabic news sites, scored against the article.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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

if __name__ == "__main__":  # pragma: no cover
    app()
