"""The `raqib` command: every user-facing action lives here; heavy imports stay inside commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from training.cli.datasets import app as datasets_app
from training.cli.feedback import app as feedback_app
from training.cli.labels import import_command
from training.cli.score import DaskWorkersOption, SchedulerOption
from training.cli.score import score as score_command

app = typer.Typer(
    name="raqib",
    help="Raqib: moderation of reader comments on Arabic news sites, scored against the article.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(datasets_app, name="datasets", help="Build and inspect training data.")

DEFAULT_MODEL_NAME = "raqib-moderator"
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Experiment TOML (e.g. experiments/starter.toml)."),
]


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


@app.command()
def train(
    config: ConfigOption = Path("experiments/starter.toml"),
    register: Annotated[bool, typer.Option(help="Log to MLflow and register a challenger.")] = True,
    engine: Annotated[
        str, typer.Option(help="Where the candidate × fold fits run: 'local' processes or 'dask'.")
    ] = "local",
    scheduler: SchedulerOption = None,
    workers: DaskWorkersOption = None,
) -> None:
    """Train candidates, pick the best, evaluate it honestly, register it as `challenger`."""
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from training.batch.dask_engine import DaskEngineError, check_engine_options, dask_client
    from training.data.contract import ContractError
    from training.experiment.config import ConfigError, load_config
    from training.experiment.train import run_experiment

    console = Console()
    try:
        experiment = load_config(config)
        check_engine_options(engine, scheduler, workers)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
        contextlib.ExitStack() as cluster,
    ):
        task = progress.add_task("training", total=1.0)

        def report(message: str, fraction: float) -> None:
            progress.update(task, description=message, completed=fraction)

        try:
            if engine == "dask":
                report("starting the Dask cluster" if not scheduler else f"connecting to {scheduler}", 0.0)
                cluster.enter_context(dask_client(scheduler, workers))
            result = run_experiment(
                experiment, Path("."), progress=report, search_backend="dask" if engine == "dask" else None
            )
        except (ContractError, ValueError, DaskEngineError) as exc:
            _fail(str(exc))
    for source, note in result.notes.items():
        console.print(f"[dim]{source}: {note}[/]")
    table = Table(title=f"Candidates ({experiment.cv_folds}-fold, article-grouped)")
    for column in ("classifier", "params", "CV macro-F1", "CV accuracy", "ECE", "s"):
        table.add_column(column)
    for c in sorted(result.candidates, key=lambda c: -c["cv_macro_f1"]):
        best = c["kind"] == result.best["kind"] and c["params"] == result.best["params"]
        table.add_row(
            ("★ " if best else "") + c["kind"],
            json.dumps(c["params"]),
            f"{c['cv_macro_f1']:.3f}",
            f"{c['cv_accuracy']:.3f}",
            f"{c['cv_ece']:.3f}",
            f"{c['seconds']}",
        )
    console.print(table)
    frozen = result.metrics.get("frozen")
    if frozen:
        console.print(
            _per_class_table(
                f"Frozen evaluation set (n={frozen['n']}, never trained on)",
                frozen["per_class"],
                result.thresholds,
            )
        )
        console.print(
            f"macro-F1 [bold]{frozen['macro_f1']:.3f}[/], accuracy "
            f"{frozen['accuracy']:.3f}, calibration error {frozen['ece']:.3f}"
        )
        rates = result.metrics.get("false_off_topic", {})
        if rates:
            ctx = Table(title="Real on-topic pairs called off_topic (frozen set)")
            for column in ("article given", "n", "predicted off_topic", "rejected as off_topic"):
                ctx.add_column(column)
            for kind, r in rates.items():
                ctx.add_row(
                    kind, str(r["n"]), _percent(r["predicted_off_topic"]), _percent(r["rejected_off_topic"])
                )
            console.print(ctx)
    leak = result.metrics.get("leakage", {})
    if "source_accuracy" in leak:
        console.print(
            f"corpus leakage check: source predictable with accuracy "
            f"{leak['source_accuracy']:.3f} (majority baseline "
            f"{leak['majority_baseline']:.3f}, {leak['n_sources']} sources)"
        )
    tweets = leak.get("tweet_accounts")
    if tweets:
        console.print(
            f"tweets check (never trained on): genuine accounts called spam "
            f"{_percent(tweets['genuine_accounts_called_spam'])}, spam accounts "
            f"{_percent(tweets['spam_accounts_called_spam'])}, AUC {tweets['auc_spam_vs_genuine']:.3f}"
        )
    console.print(f"trained in {result.train_seconds:.1f} s on {result.fingerprint['rows']} rows")
    if register:
        from training.registry.tracking import log_and_register

        registered = log_and_register(result, Path("."), str(config) if config else None)
        console.print(
            f"registered [bold]{experiment.registered_model}[/] version "
            f"{registered.version} as [bold]challenger[/] (run {registered.run_id}, "
            f"{registered.tracking_uri})"
        )


@app.command()
def promote(
    version: Annotated[str | None, typer.Option(help="Promote this version (default: challenger).")] = None,
    force: Annotated[bool, typer.Option(help="Skip the gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on the version.")] = None,
    model_name: Annotated[str, typer.Option("--name")] = DEFAULT_MODEL_NAME,
    tolerance: Annotated[float, typer.Option(help="Allowed macro-F1 drop.")] = 0.01,
) -> None:
    """Move `champion` to the challenger only if it is not worse on the frozen evaluation set."""
    from rich.console import Console

    from training.registry.tracking import promote as run_gate

    console = Console()
    try:
        decision = run_gate(model_name, version=version, force=force, reason=reason, tolerance=tolerance)
    except ValueError as exc:
        _fail(str(exc))
    if decision.promoted:
        console.print(
            f"[green]promoted[/] version {decision.challenger_version} to champion ({decision.reason})"
        )
    else:
        console.print(
            f"[yellow]not promoted[/]: version {decision.challenger_version} "
            f"({decision.reason}); champion stays {decision.champion_version}"
        )
        raise typer.Exit(2)


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("models/champion"),
    alias: Annotated[str, typer.Option(help="Alias to export.")] = "champion",
    version: Annotated[str | None, typer.Option(help="Export this version instead.")] = None,
    model_name: Annotated[str, typer.Option("--name")] = DEFAULT_MODEL_NAME,
) -> None:
    """Write a serving bundle (pickle + metadata with sha256) that loads without mlflow."""
    from rich.console import Console

    from training.registry.tracking import export_bundle

    try:
        metadata = export_bundle(model_name, output, alias=None if version else alias, version=version)
    except Exception as exc:  # mlflow raises its own exception types for missing aliases
        _fail(f"cannot export {model_name}@{version or alias}: {exc}")
    Console().print(
        f"exported {metadata['name']} version {metadata['version']} to {output} "
        f"(sha256 {metadata['sha256'][:16]}…)"
    )


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Canonical labelled JSONL/CSV.")],
    model: Annotated[str, typer.Option(help="Bundle dir or models:/NAME@ALIAS URI.")] = "models/champion",
) -> None:
    """Score a labelled file with a model and print per-class metrics."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from training.data.contract import ContractError, read_records
    from training.data.gather import to_frame
    from training.experiment.evaluate import classification_metrics, per_source_metrics

    console = Console()
    try:
        records = read_records(data)
    except ContractError as exc:
        _fail(str(exc))
    pipeline = _load_pipeline(model)
    model_labels = [str(c) for c in pipeline.classes_]
    labels = model_labels + sorted({r.label for r in records} - set(model_labels))
    proba = np.zeros((len(records), len(labels)))
    proba[:, : len(model_labels)] = pipeline.predict_proba(to_frame(records))
    metrics = classification_metrics([r.label for r in records], proba, labels)
    console.print(_per_class_table(f"{data} (n={metrics['n']})", metrics["per_class"]))
    console.print(
        f"macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}, ECE {metrics['ece']:.3f}"
    )
    sources = per_source_metrics(records, proba, labels)
    if len(sources) > 1:
        by_source = Table(title="Per source")
        for column in ("source", "n", "accuracy", "macro-F1"):
            by_source.add_column(column)
        for source, m in sources.items():
            by_source.add_row(source, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}")
        console.print(by_source)


@app.command()
def retrain(
    config: ConfigOption = None,
    since: Annotated[str | None, typer.Option(help="Only feedback from this date on (ISO 8601).")] = None,
    state_dir: Annotated[Path, typer.Option(help="The server's state dir (feedback store).")] = Path("var"),
    store_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the store (overrides --state-dir).")
    ] = None,
    export_dir: Annotated[Path, typer.Option("--export", help="Where the new champion bundle goes.")] = Path(
        "models/champion"
    ),
    notify: Annotated[list[str] | None, typer.Option(help="Server base URL to reload (repeatable).")] = None,
) -> None:
    """Retrain on labelled data + moderators' feedback; promote only if not worse; reload servers."""
    import os
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from serving.store.store import default_store_url
    from training.data.contract import ContractError
    from training.experiment.config import ConfigError, load_config
    from training.labels.retrain import retrain as run_retrain

    console = Console()
    if config is None:
        public = Path("data/build/public.jsonl").is_file()
        config = Path("experiments/public.toml" if public else "experiments/starter.toml")
    try:
        experiment = load_config(config)
    except ConfigError as exc:
        _fail(str(exc))
    cutoff = None
    if since:
        try:
            cutoff = datetime.fromisoformat(since)
        except ValueError:
            _fail(f"--since {since!r} is not an ISO 8601 date")
        cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    url = store_url or default_store_url(state_dir)
    with console.status(f"retraining with {config}"):
        try:
            report = run_retrain(
                experiment,
                store_url=url,
                since=cutoff,
                export_dir=export_dir,
                notify=notify or [],
                admin_key=os.environ.get("RAQIB_ADMIN_KEY"),
                config_path=str(config),
            )
        except (ContractError, ValueError) as exc:
            _fail(str(exc))
    table = Table(
        title=f"challenger v{report.challenger_version} vs champion "
        f"{'v' + report.champion_version if report.champion_version else '(none)'}"
    )
    for column in ("evaluation", "metric", "n", "champion", "challenger", "delta", "tolerance", "ok"):
        table.add_column(column)
    for c in report.comparisons:
        table.add_row(
            c.evaluation,
            c.metric,
            str(c.n),
            "—" if c.champion is None else f"{c.champion:.4f}",
            f"{c.challenger:.4f}",
            "—" if c.delta is None else f"{c.delta:+.4f}",
            "—" if c.tolerance is None else str(c.tolerance),
            "yes" if c.passes else "[red]NO[/]",
        )
    console.print(table)
    console.print(
        f"feedback: {report.feedback_total} ({report.feedback_trained} trained on, "
        f"{report.feedback_held_out} most recent held out)"
    )
    verdict = "[green]promoted[/]" if report.promoted else "[yellow]not promoted[/]"
    console.print(f"{verdict}: {report.reason}")
    if report.exported_to:
        console.print(f"exported to {report.exported_to}")
    for server, outcome in report.notified.items():
        console.print(f"{server}: {outcome}")
    if not report.promoted:
        raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    settings: Annotated[
        Path | None, typer.Option("--settings", help="Settings TOML (RAQIB_SETTINGS_FILE).")
    ] = None,
) -> None:
    """Run the scoring API (uvicorn on serving.api.app:create_app); settings from RAQIB_* env or --settings."""
    from serving.api.app import run

    run(host=host, port=port, workers=workers, settings_file=settings)


@app.command()
def anchors(
    data: Annotated[Path, typer.Option("--data", help="Public build (raqib datasets build).")] = Path(
        "data/build/public.jsonl"
    ),
    output: Annotated[Path | None, typer.Option("-o", help="Also write the figures as JSON.")] = None,
) -> None:
    """Our Pipeline under published protocols: YouTube, SMS (de-duplicated), SemEval, AOC."""
    from rich.console import Console
    from rich.table import Table

    from training.data.contract import ContractError, read_records
    from training.data.gather import load_starter
    from training.experiment.anchors import (
        aoc_constructed_anchor,
        semeval_anchors,
        sms_anchor,
        youtube_anchors,
    )

    console = Console()
    try:
        records = read_records(data)
        starter = [r for r in load_starter("data/starter") if r.article_title]
    except ContractError as exc:
        _fail(f"{exc} (run `raqib datasets build` first)")
    aoc_context = [r for r in records if r.source in ("aoc", "aoc_repaired")]
    with console.status("YouTube: 10-fold and leave-one-video-out"):
        youtube = youtube_anchors(records)
    with console.status("SMS Spam Collection: 5-fold on de-duplicated messages"):
        sms = sms_anchor(records)
    with console.status("SemEval-2015 Arabic: question-grouped folds"):
        semeval = semeval_anchors(records, starter + aoc_context)
    with console.status("AOC constructed pairs: bucket-grouped folds"):
        aoc = aoc_constructed_anchor(records, starter)
    table = Table(title="Published anchors (protocols in training/anchors.py)")
    for column in ("data set", "protocol", "ours", "published / baseline"):
        table.add_column(column)
    if "skipped" not in youtube:
        table.add_row(
            "YouTube Spam",
            "pooled stratified 10-fold accuracy",
            _percent(youtube["pooled_10fold_accuracy"]),
            "95.33 % (TF-IDF + LinearSVC)",
        )
        table.add_row("YouTube Spam", "pooled 10-fold spam F1", f"{youtube['pooled_10fold_spam_f1']:.3f}", "")
        table.add_row("YouTube Spam", "leave-one-video-out macro-F1", f"{youtube['lovo_macro_f1']:.3f}", "")
    if "skipped" not in sms:
        table.add_row(
            f"SMS Spam ({sms['n']} distinct)",
            "stratified 5-fold accuracy / spam F1",
            f"{_percent(sms['accuracy'])} / {sms['spam_f1']:.3f}",
            f"{_percent(sms['majority_baseline_accuracy'])} (always ham)",
        )
    if "skipped" not in semeval:
        table.add_row(
            "SemEval-2015 ar (shared half)",
            "off_topic ROC-AUC, grouped by question",
            f"{semeval['off_topic_auc']:.3f}",
            "0.5 (chance)",
        )
        table.add_row(
            "SemEval-2015 ar (shared half)",
            "MAP, answers ranked by p(on_topic)",
            f"{semeval['map_by_on_topic_score']:.3f}",
            f"{semeval['map_random_baseline']:.3f} (random ranking)",
        )
    if "skipped" not in aoc:
        table.add_row(
            "AOC re-paired (constructed)",
            "off_topic ROC-AUC, bucket-grouped",
            f"{aoc['off_topic_auc']:.3f}",
            "0.5 (chance)",
        )
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(
            json.dumps({"youtube": youtube, "sms": sms, "semeval2015": semeval, "aoc": aoc}, indent=2),
            encoding="utf-8",
        )


def _per_class_table(
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


def _load_pipeline(model: str):  # type: ignore[no-untyped-def]
    if model.startswith("models:/"):
        from training.registry.tracking import configure

        configure(Path("."))
        import mlflow.sklearn

        return mlflow.sklearn.load_model(model)
    from serving.model.bundle import BundleError
    from serving.model.moderation import ModerationModel

    try:
        return ModerationModel.from_bundle(model).pipeline
    except BundleError as exc:
        _fail(str(exc))


app.command(name="score")(score_command)
app.command(name="import")(import_command)

app.add_typer(feedback_app, name="feedback", help="Moderator feedback: export as training data.")

if __name__ == "__main__":  # pragma: no cover
    app()
