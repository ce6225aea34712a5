"""`raqib promote` and `raqib export`: move the champion through the gate, write its serving bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.schema import DEFAULT_BUNDLE_DIR, DEFAULT_MODEL_NAME
from training.cli.common import console, fail

EXIT_NOT_PROMOTED = 2

ModelNameOption = Annotated[str, typer.Option("--name", help="Registered model name.")]


def promote(
    version: Annotated[str | None, typer.Option(help="Promote this version (default: challenger).")] = None,
    force: Annotated[bool, typer.Option(help="Skip the gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on the version.")] = None,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
    tolerance: Annotated[float, typer.Option(help="Allowed macro-F1 drop.")] = 0.01,
) -> None:
    """Move `champion` to the challenger only if it is not worse on the frozen evaluation set."""
    from training.registry.gate import promote as run_gate

    try:
        decision = run_gate(model_name, version=version, force=force, reason=reason, tolerance=tolerance)
    except ValueError as exc:
        fail(str(exc))
    if decision.promoted:
        console().print(
            f"[green]promoted[/] version {decision.challenger_version} to champion ({decision.reason})"
        )
        return
    console().print(
        f"[yellow]not promoted[/]: version {decision.challenger_version} "
        f"({decision.reason}); champion stays {decision.champion_version}"
    )
    raise typer.Exit(EXIT_NOT_PROMOTED)


def export(
    output: Annotated[Path, typer.Option("--output", "-o")] = DEFAULT_BUNDLE_DIR,
    alias: Annotated[str, typer.Option(help="Alias to export.")] = "champion",
    version: Annotated[str | None, typer.Option(help="Export this version instead.")] = None,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
) -> None:
    """Write a serving bundle (pickle + metadata with sha256) that loads without mlflow."""
    from training.registry.export import export_bundle

    try:
        metadata = export_bundle(model_name, output, alias=None if version else alias, version=version)
    except Exception as exc:  # mlflow raises its own exception types for missing aliases
        fail(f"cannot export {model_name}@{version or alias}: {exc}")
    console().print(
        f"exported {metadata['name']} version {metadata['version']} to {output} "
        f"(sha256 {metadata['sha256'][:16]}…)"
    )
