"""`raqib train`, `raqib evaluate`, `raqib anchors`: fit and judge the Pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from serving.schema import DEFAULT_BUNDLE_DIR, is_model_uri
from training.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    DaskWorkersOption,
    SchedulerOption,
    console,
    fail,
    per_class_table,
    percent,
)

if TYPE_CHECKING:
    from rich.console import Console

    from training.experiment.config import ExperimentConfig
    from training.experiment.train import TrainResult


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
    from training.batch.dask_engine import check_engine_options
    from training.experiment.config import ConfigError, load_config

    try:
        experiment = load_config(config)
        check_engine_options(engine, scheduler, workers)
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    result = _run_training(experiment, engine, scheduler, workers)
    out = console()
    for source, note in result.notes.items():
        out.print(f"[dim]{source}: {note}[/]")
    out.print(_candidates_table(result, experiment.cv_folds))
    _print_frozen_evaluation(out, result)
    _print_abuse_head(out, result.metrics.get("abuse_head"))
    relevance = result.metrics.get("relevance")
    if relevance and relevance.get("table_markdown"):
        out.print(
            "relevance component (off_topic), out of fold by article; thresholds", relevance.get("thresholds")
        )
        out.print(relevance["table_markdown"], markup=False)
    _print_leakage_checks(out, result.metrics.get("leakage", {}))
    out.print(f"trained in {result.train_seconds:.1f} s on {result.fingerprint['rows']} rows")
    stages = result.metrics.get("stage_seconds", {})
    if stages:
        # One line, read back by `make bench` for its training table.
        out.print(
            "time by stage: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items()),
            soft_wrap=True,
        )
    if register:
        from training.registry.tracking import log_and_register

        registered = log_and_register(result, Path("."), str(config) if config else None)
        out.print(
            f"registered [bold]{experiment.registered_model}[/] version "
            f"{registered.version} as [bold]challenger[/] (run {registered.run_id}, "
            f"{registered.tracking_uri})"
        )


def _run_training(
    experiment: ExperimentConfig, engine: str, scheduler: str | None, workers: int | None
) -> TrainResult:
    """run_experiment under a progress bar, on this machine or inside a Dask client."""
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from training.batch.dask_engine import DaskEngineError, dask_client
    from training.data.contract import ContractError
    from training.experiment.train import run_experiment

    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console(),
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
            return run_experiment(
                experiment, Path("."), progress=report, search_backend="dask" if engine == "dask" else None
            )
        except (ContractError, ValueError, DaskEngineError) as exc:
            fail(str(exc))


def _candidates_table(result: TrainResult, folds: int) -> Any:
    from rich.table import Table

    table = Table(title=f"Candidates ({folds}-fold, article-grouped)")
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
    return table


def _print_frozen_evaluation(out: Console, result: TrainResult) -> None:
    """Per-class metrics and thresholds on the frozen set, then the false off-topic rates."""
    from rich.table import Table

    frozen = result.metrics.get("frozen")
    if not frozen:
        return
    title = f"Frozen evaluation set (n={frozen['n']}, never trained on)"
    out.print(per_class_table(title, frozen["per_class"], result.thresholds))
    out.print(
        f"macro-F1 [bold]{frozen['macro_f1']:.3f}[/], accuracy "
        f"{frozen['accuracy']:.3f}, calibration error {frozen['ece']:.3f}"
    )
    rates = result.metrics.get("false_off_topic", {})
    if rates:
        table = Table(title="Real on-topic pairs called off_topic (frozen set)")
        for column in ("article given", "n", "predicted off_topic", "rejected as off_topic"):
            table.add_column(column)
        for kind, r in rates.items():
            table.add_row(
                kind, str(r["n"]), percent(r["predicted_off_topic"]), percent(r["rejected_off_topic"])
            )
        out.print(table)


def _print_abuse_head(out: Console, head: dict[str, Any] | None) -> None:
    from rich.table import Table

    if not head:
        return
    out.print(
        f"abusive head: {head['rows']:,} rows; {head.get('protocol')}; review_at {head['review_at']}, "
        f"reject_at {head['reject_at']} (from {head.get('thresholds_from')})"
    )
    left_out = head.get("left_out")
    if not left_out:
        return
    table = Table(title="Abusive head, each source scored left out")
    for column in ("source", "kind", "n", "ROC-AUC", "non-abusive held", "abuse caught"):
        table.add_column(column)

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f} %"

    for source, row in left_out.items():
        auc = "—" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
        table.add_row(
            source,
            row["kind"],
            f"{row['n']:,}",
            auc,
            pct(row["held_at_review"]),
            pct(row["caught_at_review"]),
        )
    out.print(table)


def _print_leakage_checks(out: Console, leak: dict[str, Any]) -> None:
    """Can the features tell the corpora apart, and are genuine tweets called spam?"""
    if "source_accuracy" in leak:
        out.print(
            f"corpus leakage check: source predictable with accuracy "
            f"{leak['source_accuracy']:.3f} (majority baseline "
            f"{leak['majority_baseline']:.3f}, {leak['n_sources']} sources)"
        )
    tweets = leak.get("tweet_accounts")
    if tweets:
        out.print(
            f"tweets check (never trained on): genuine accounts called spam "
            f"{percent(tweets['genuine_accounts_called_spam'])}, spam accounts "
            f"{percent(tweets['spam_accounts_called_spam'])}, AUC {tweets['auc_spam_vs_genuine']:.3f}"
        )


def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Canonical labelled JSONL/CSV.")],
    model: Annotated[str, typer.Option(help="Bundle dir or models:/NAME@ALIAS URI.")] = str(
        DEFAULT_BUNDLE_DIR
    ),
) -> None:
    """Score a labelled file with a model and print per-class metrics."""
    import numpy as np
    from rich.table import Table

    from training.data.contract import ContractError, gold_labels, read_records
    from training.data.gather import to_frame
    from training.experiment.evaluate import classification_metrics, per_source_metrics

    out = console()
    try:
        records = read_records(data)
    except ContractError as exc:
        fail(str(exc))
    pipeline = _load_pipeline(model)
    model_labels = [str(c) for c in pipeline.classes_]
    truth = gold_labels(records)
    labels = model_labels + sorted(set(truth) - set(model_labels))
    proba = np.zeros((len(records), len(labels)))
    proba[:, : len(model_labels)] = pipeline.predict_proba(to_frame(records))
    metrics = classification_metrics(truth, proba, labels)
    out.print(per_class_table(f"{data} (n={metrics['n']})", metrics["per_class"]))
    out.print(
        f"macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}, ECE {metrics['ece']:.3f}"
    )
    sources = per_source_metrics(records, proba, labels)
    if len(sources) > 1:
        by_source = Table(title="Per source")
        for column in ("source", "n", "accuracy", "macro-F1"):
            by_source.add_column(column)
        for source, m in sources.items():
            by_source.add_row(source, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}")
        out.print(by_source)


def _load_pipeline(model: str) -> Any:
    """The sklearn Pipeline of a bundle directory or a registered version."""
    if is_model_uri(model):
        from serving.schema import ModelUriError
        from training.registry.export import load_registered

        try:
            return load_registered(model)
        except ModelUriError as exc:
            fail(str(exc), EXIT_USAGE)
    from serving.model.bundle import BundleError
    from serving.model.moderation import ModerationModel

    try:
        return ModerationModel.from_bundle(model).pipeline
    except BundleError as exc:
        fail(str(exc))


def anchors(
    data: Annotated[Path, typer.Option("--data", help="Public build (raqib datasets build).")] = Path(
        "data/build/public.jsonl"
    ),
    output: Annotated[Path | None, typer.Option("-o", help="Also write the figures as JSON.")] = None,
) -> None:
    """Our Pipeline under published protocols: YouTube, SMS (de-duplicated), SemEval, AOC."""
    from training.data.contract import ContractError, read_records
    from training.data.gather import load_starter
    from training.experiment.anchors import (
        aoc_constructed_anchor,
        semeval_anchors,
        sms_anchor,
        youtube_anchors,
    )

    out = console()
    try:
        records = read_records(data)
        starter = [r for r in load_starter("data/starter") if r.article_title]
    except ContractError as exc:
        fail(f"{exc} (run `raqib datasets build` first)")
    aoc_context = [r for r in records if r.source in ("aoc", "aoc_repaired")]
    with out.status("YouTube: 10-fold and leave-one-video-out"):
        youtube = youtube_anchors(records)
    with out.status("SMS Spam Collection: 5-fold on de-duplicated messages"):
        sms = sms_anchor(records)
    with out.status("SemEval-2015 Arabic: question-grouped folds"):
        semeval = semeval_anchors(records, starter + aoc_context)
    with out.status("AOC constructed pairs: bucket-grouped folds"):
        aoc = aoc_constructed_anchor(records, starter)
    out.print(_anchors_table(youtube, sms, semeval, aoc))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(
            json.dumps({"youtube": youtube, "sms": sms, "semeval2015": semeval, "aoc": aoc}, indent=2),
            encoding="utf-8",
        )


def _anchors_table(
    youtube: dict[str, Any], sms: dict[str, Any], semeval: dict[str, Any], aoc: dict[str, Any]
) -> Any:
    """Our figures beside the published ones (or the chance baseline), one row per measure."""
    from rich.table import Table

    table = Table(title="Published anchors (protocols in training/experiment/anchors.py)")
    for column in ("data set", "protocol", "ours", "published / baseline"):
        table.add_column(column)
    if "skipped" not in youtube:
        table.add_row(
            "YouTube Spam",
            "pooled stratified 10-fold accuracy",
            percent(youtube["pooled_10fold_accuracy"]),
            "95.33 % (TF-IDF + LinearSVC)",
        )
        table.add_row("YouTube Spam", "pooled 10-fold spam F1", f"{youtube['pooled_10fold_spam_f1']:.3f}", "")
        table.add_row("YouTube Spam", "leave-one-video-out macro-F1", f"{youtube['lovo_macro_f1']:.3f}", "")
    if "skipped" not in sms:
        table.add_row(
            f"SMS Spam ({sms['n']} distinct)",
            "stratified 5-fold accuracy / spam F1",
            f"{percent(sms['accuracy'])} / {sms['spam_f1']:.3f}",
            f"{percent(sms['majority_baseline_accuracy'])} (always ham)",
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
    return table
