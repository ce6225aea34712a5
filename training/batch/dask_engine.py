"""`--engine dask`: `raqib score` and the training candidate search on a Dask cluster.

Scoring. The client checks the export's columns as the local engine does, then cuts the export
into parts on record boundaries (CSV/TSV/JSONL: byte ranges found by one pass of the csv module,
so quoted fields spanning lines are never split; Parquet: row groups). Each worker reads its own
part with the local engine's readers, scores it in `--chunk-size` chunks with `score_chunk` and
writes `part-NNNNN.<format>` with the local engine's writers, so both engines produce the same
rows, the same added columns and the same values. The parts are not read with dask.dataframe's
`read_csv`/`read_parquet`: `read_csv` cuts blocks at any newline, inside quoted article bodies
too; pandas turns '007' into 7 and empty cells into NaN, nullable Parquet integers into floats;
and a bad row would lose its line number.

The model travels as the bundle's two files (`client.scatter(..., broadcast=True)`: one copy per
worker), and each worker loads them once with `ModerationModel.from_bundle`, which checks the
pickle's sha256 there too. Workers need neither the bundle's path nor mlflow, so a bundle
directory, a `models:/` URI and a remote cluster all work alike; bytes also scatter about 20×
faster than a pickled model (0.1 s against 2.2 s for the 33 MB champion on 2 local workers).
The export and the output directory must be on storage the workers see at the same path
(automatic on a LocalCluster).

Training. `raqib train --engine dask` runs the candidate × fold fits of `run_experiment` through
joblib's Dask backend inside `dask_client()`; everything else in training stays on the client.

dask and distributed are imported inside functions only: `raqib --help` must not pay for them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.batch.scoring import (
    ColumnError,
    ColumnMapping,
    OutputColumns,
    ProgressHook,
    ScoreJob,
    ScoreSummary,
    error_records,
    plan_output,
    score_chunk,
)
from training.data.tables import (
    Chunk,
    NumberedRow,
    TableInputError,
    TextSlice,
    chunk_rows,
    delimiter_of,
    iter_csv,
    iter_jsonl,
    open_writer,
    parquet_chunks,
    slice_text_export,
)

ENGINES = ("local", "dask")
CONNECT_TIMEOUT_SECONDS = 10
WORKERS_TIMEOUT_SECONDS = 30
# More parts than worker threads, so a slow part does not leave the other workers idle at the end.
PARTS_PER_THREAD = 4
PART_PREFIX = "part-"


class DaskEngineError(RuntimeError):
    """A cluster that cannot be reached, has no workers, or cannot see the export (exit code 1)."""


# --- the cluster ----------------------------------------------------------------------------------


def default_workers() -> int:
    """One single-thread worker process per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_engine_options(engine: str, scheduler: str | None, workers: int | None) -> None:
    """Raise ColumnError for an unknown engine or cluster options that do not fit together."""
    if engine not in ENGINES:
        raise ColumnError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "local" and (scheduler or workers):
        raise ColumnError("--scheduler and --workers only apply with --engine dask")
    if scheduler and workers:
        raise ColumnError(
            "--workers starts a local cluster of that many workers; with --scheduler the cluster's own "
            "workers are used (start more with `dask worker`)"
        )


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A distributed Client on `scheduler`, else on a LocalCluster of single-thread worker processes."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=True)
        except (OSError, TimeoutError, ValueError) as exc:
            raise DaskEngineError(
                f"cannot connect to the Dask scheduler at {scheduler}: {exc} "
                "(start one with `dask scheduler`, workers with `dask worker tcp://HOST:8786`)"
            ) from None
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_SECONDS)
            except TimeoutError:
                raise DaskEngineError(
                    f"the Dask scheduler at {scheduler} has no workers after {WORKERS_TIMEOUT_SECONDS} s; "
                    f"start some with `dask worker {scheduler}`"
                ) from None
            yield client
        return
    # Loopback only, and a free port for the scheduler's HTTP endpoint (the dashboard, when bokeh is
    # installed): a local run opens nothing another machine can reach and clashes with no other cluster.
    with (
        LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=True) as client,
    ):
        yield client


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFiles:
    """A bundle's files as bytes, shipped to each worker once and loaded there with from_bundle."""

    key: str  # sha256 of metadata.json, which itself carries the pickle's sha256
    files: dict[str, bytes]


def read_bundle(spec: str) -> tuple[Any, BundleFiles]:
    """The verified model (for the client) and its bundle's files (for the workers)."""
    import hashlib

    from serving.model.bundle import METADATA_FILE, MODEL_FILE
    from serving.model.moderation import ModerationModel
    from training.registry.export import resolved_bundle

    with resolved_bundle(spec) as directory:
        model = ModerationModel.from_bundle(directory)
        files = {name: (directory / name).read_bytes() for name in (METADATA_FILE, MODEL_FILE)}
    return model, BundleFiles(hashlib.sha256(files[METADATA_FILE]).hexdigest(), files)


# The model loaded in this worker process: one entry, so a long-lived cluster holds one model at most.
_worker_models: dict[str, Any] = {}
_worker_models_lock = threading.Lock()


def _worker_model(bundle: BundleFiles) -> Any:
    from serving.model.moderation import ModerationModel

    with _worker_models_lock:  # a worker started with several threads loads it once, not once per thread
        model = _worker_models.get(bundle.key)
        if model is None:
            with tempfile.TemporaryDirectory(prefix="raqib-bundle-") as tmp:
                for name, data in bundle.files.items():
                    (Path(tmp) / name).write_bytes(data)
                model = ModerationModel.from_bundle(tmp)
            _worker_models.clear()
            _worker_models[bundle.key] = model
        return model


def _load_worker_model(bundle: BundleFiles) -> None:
    _worker_model(bundle)  # returns nothing: the model stays on the worker


def _forget_worker_model() -> None:
    with _worker_models_lock:
        _worker_models.clear()


# --- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One task's share of the export: a byte range (CSV/TSV/JSONL) or row groups (Parquet)."""

    index: int
    size: int  # progress units: bytes for CSV/JSONL, rows for Parquet
    text: TextSlice | None = None
    row_groups: tuple[int, ...] = ()
    rows_before: int = 0


def plan_parts(
    path: Path,
    fmt: str,
    chunk_size: int,
    target_parts: int,
    progress: ProgressHook | None = None,
) -> list[Part]:
    """Cut the export into about `target_parts` parts, each a whole number of `chunk_size` chunks."""
    report = progress or (lambda *_: None)
    if fmt == "parquet":
        return _parquet_parts(path, target_parts)
    slices = slice_text_export(
        path, fmt, chunk_size, progress=lambda done, total: report("planning", done, total, 0)
    )
    total = sum(count for _, count in slices)
    per_part = max(1, math.ceil(total / max(1, target_parts) / chunk_size))
    parts = []
    for index, first in enumerate(range(0, len(slices), per_part)):
        group = slices[first : first + per_part]
        start, stop = group[0][0], group[-1][0]
        text = TextSlice(start.start, stop.stop, start.lines_before)
        parts.append(Part(index, text.stop - text.start, text=text))
    return parts


def _parquet_parts(path: Path, target_parts: int) -> list[Part]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for damaged files
        raise TableInputError(path, None, None, f"not a readable Parquet file: {exc}", "row") from None
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    # A row group is read whole, so it is the smallest part; one huge row group is one part.
    target_rows = max(1, math.ceil(sum(sizes) / max(1, target_parts)))
    parts: list[Part] = []
    groups: list[int] = []
    rows = rows_before = 0
    for group, size in enumerate(sizes):
        groups.append(group)
        rows += size
        if rows >= target_rows:
            parts.append(Part(len(parts), rows, row_groups=tuple(groups), rows_before=rows_before))
            rows_before += rows
            groups, rows = [], 0
    if groups or not parts:
        parts.append(Part(len(parts), rows, row_groups=tuple(groups), rows_before=rows_before))
    return parts


def part_name(index: int, count: int, fmt: str) -> str:
    """`part-00003.csv`: zero-padded so that sorting the names restores the input order."""
    return f"{PART_PREFIX}{index:0{max(5, len(str(count - 1)))}d}.{fmt}"


# --- the work of one part (runs on a worker) ------------------------------------------------------


@dataclass(frozen=True)
class PartJob:
    """What every part task needs besides its part and the model."""

    input: Path
    staging: Path
    input_format: str
    output_format: str
    parts: int
    mapping: ColumnMapping
    out: OutputColumns
    columns: list[str]
    schema: Any
    chunk_size: int
    explain: bool
    skip_bad: bool
    # A distributed.Variable: the lowest index of a part that met a bad row (-1 after a crash).
    # Parts after it stop at their next chunk; parts before it run on, as they may hold an earlier one.
    last_needed: str


@dataclass
class PartResult:
    """What a part task sends back: counts, skipped rows, or the row that stopped it."""

    index: int
    rows_in: int = 0
    rows_out: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # (number, field, message, unit) of the bad row when not skipping; TableInputError's own
    # constructor arguments do not survive pickling, so the client rebuilds it from these.
    failure: tuple[int | None, str | None, str, str] | None = None


def _part_chunks(part: Part, job: PartJob) -> Iterator[Chunk]:
    if job.input_format == "parquet":
        import pyarrow.parquet as pq

        return parquet_chunks(
            pq.ParquetFile(job.input), job.input, job.chunk_size, list(part.row_groups), part.rows_before
        )
    errors: list[TableInputError] = []
    rows: Iterator[NumberedRow]
    if job.input_format == "jsonl":
        rows = iter_jsonl(job.input, job.skip_bad, errors, part=part.text)
    else:
        rows = iter_csv(job.input, delimiter_of(job.input_format), job.skip_bad, errors, part=part.text)
    return chunk_rows(rows, errors, job.chunk_size, part.size)


def score_part(part: Part, job: PartJob, bundle: BundleFiles) -> PartResult:
    """Read, score and write one part on a worker; input errors come back in the result."""
    from distributed import Variable

    if not job.input.is_file() or not job.staging.is_dir():
        raise DaskEngineError(
            f"worker on {socket.gethostname()} cannot see {job.input} or {job.staging}: the dask engine "
            "needs the export and the output directory on storage every worker mounts at the same path"
        )
    model = _worker_model(bundle)
    result = PartResult(part.index)
    unit = "row" if job.input_format == "parquet" else "line"
    path = job.staging / part_name(part.index, job.parts, job.output_format)
    writer = open_writer(job.output_format, path, job.columns, job.schema)
    last_needed = Variable(job.last_needed)
    try:
        for chunk in _part_chunks(part, job):
            if part.index > last_needed.get():
                break  # an earlier part met a bad row: this one's output will be thrown away
            result.rows_in += len(chunk.rows) + len(chunk.errors)
            rows, _, errors = score_chunk(
                model,
                chunk,
                job.mapping,
                job.out,
                explain=job.explain,
                skip_bad=job.skip_bad,
                path=job.input,
                unit=unit,
            )
            result.errors.extend(error_records(errors, chunk, job.mapping))
            for row in rows:
                result.counts[(row[job.out.action], row[job.out.label])] += 1
            result.rows_out += len(rows)
            writer.write(rows)
    except TableInputError as exc:
        result.failure = (exc.number, exc.field, exc.message, exc.unit)
    finally:
        writer.close()
    return result


# --- the whole run (on the client) ----------------------------------------------------------------


@dataclass
class DaskScoreSummary(ScoreSummary):
    """A ScoreSummary plus how the work was spread."""

    parts: int = 0
    workers: int = 0


def check_output_dir(output: Path) -> None:
    """Raise ColumnError unless `output` is free or a part directory an earlier run wrote."""
    if output.is_file():
        raise ColumnError(
            f"{output}: is a file; --engine dask writes a directory of part files there (pick another -o)"
        )
    if output.is_dir():
        others = sorted(p.name for p in output.iterdir() if not p.name.startswith(PART_PREFIX))
        if others:
            raise ColumnError(
                f"{output}: is a directory holding other files ({', '.join(others[:3])}); "
                "refusing to replace it"
            )


def run_dask_score(
    job: ScoreJob, model: Any, bundle: BundleFiles, client: Any, progress: ProgressHook | None = None
) -> DaskScoreSummary:
    """Score the export on the cluster into `job.output/part-*`; raise TableInputError/ColumnError.

    `model` and `bundle` come from `read_bundle`: the client's copy gives the labels, the files go
    to the workers.
    """
    from distributed import Variable

    started = time.perf_counter()
    report = progress or (lambda *_: None)
    report("reading columns", 0, 0, 0)
    check_output_dir(job.output)
    plan = plan_output(job, model.labels)
    threads = client.nthreads()
    summary = DaskScoreSummary(labels=plan.out.labels, workers=len(threads))
    last_needed = Variable(f"raqib-score-last-needed-{uuid.uuid4().hex}", client=client)
    staging: Path | None = None
    submitted: list[Any] = []
    try:
        bundle_future = client.scatter(bundle, broadcast=True, hash=False)
        submitted.append(bundle_future)
        # Loading takes seconds (unpickling, imports): workers do it while the client plans the parts.
        submitted += [
            client.submit(
                _load_worker_model, bundle_future, workers=[w], allow_other_workers=False, pure=False
            )
            for w in threads
        ]
        parts = plan_parts(
            job.input, job.input_format, job.chunk_size, PARTS_PER_THREAD * sum(threads.values()), report
        )
        summary.parts = len(parts)
        last_needed.set(len(parts))
        job.output.parent.mkdir(parents=True, exist_ok=True)
        # Parts land in a hidden directory beside the target, renamed only when every part succeeded.
        staging = Path(tempfile.mkdtemp(prefix=f".{job.output.name}.", dir=job.output.parent)).resolve()
        staging.chmod(0o755)
        spec = PartJob(
            input=job.input.resolve(),
            staging=staging,
            input_format=job.input_format,
            output_format=job.output_format,
            parts=len(parts),
            mapping=job.mapping,
            out=plan.out,
            columns=plan.columns,
            schema=plan.schema,
            chunk_size=job.chunk_size,
            explain=job.explain,
            skip_bad=job.skip_bad,
            last_needed=last_needed.name,
        )
        futures = client.map(score_part, parts, job=spec, bundle=bundle_future, pure=False)
        submitted += futures
        total = sum(part.size for part in parts)
        report("scoring", 0, total, 0)
        results = _collect(futures, parts, total, last_needed, report)
        failed = next((r.failure for r in results if r.failure is not None), None)
        if failed is not None:
            raise TableInputError(job.input, *failed)
        for result in results:
            summary.rows_in += result.rows_in
            summary.rows_out += result.rows_out
            summary.counts.update(result.counts)
            summary.errors += len(result.errors)
        if job.skip_bad:
            _write_errors(staging / "errors.jsonl", results)
            os.replace(staging / "errors.jsonl", job.errors_path)
        _replace_dir(staging, job.output)
    finally:
        client.cancel(submitted)
        with contextlib.suppress(OSError, TimeoutError):  # a cluster that went away holds nothing
            # Waits for a load still running, so no worker keeps the model after the run.
            client.run(_forget_worker_model)
            last_needed.delete()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _collect(
    futures: Sequence[Any], parts: Sequence[Part], total: int, last_needed: Any, report: ProgressHook
) -> list[PartResult]:
    """Results in input order, up to the first part that met a bad row; re-raises a task's exception.

    On a failure the parts after it are told to stop, and every task is waited for: a cancelled
    task would go on writing into the staging directory while it is being removed.
    """
    from distributed import as_completed

    index_of = {future.key: i for i, future in enumerate(futures)}
    results: dict[int, PartResult] = {}
    raised: BaseException | None = None
    done = rows = 0
    for future in as_completed(futures):
        index = index_of[future.key]
        try:
            result: PartResult = future.result()
        except Exception as exc:
            raised = raised or exc
            last_needed.set(-1)
            continue
        results[index] = result
        if result.failure is not None and index < last_needed.get():
            last_needed.set(index)
        done += parts[index].size
        rows += result.rows_out
        report("scoring", done, total, rows)
    if raised is not None:
        raise raised
    # As the local engine would, report the earliest bad row; parts after it stopped or are moot.
    first_failure = min((i for i, r in results.items() if r.failure is not None), default=len(futures))
    return [results[i] for i in range(min(first_failure + 1, len(futures)))]


def _write_errors(path: Path, results: Sequence[PartResult]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for result in results:
            for record in result.errors:
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _replace_dir(staging: Path, output: Path) -> None:
    previous = output.with_name(f".{output.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)


# --- benchmark ------------------------------------------------------------------------------------


def _write_starter_csv(path: Path, rows: int) -> None:
    from training.data.gather import load_starter

    records = load_starter("data/starter")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["comment_id", "text", "article_title", "article_text"])
        for i in range(rows):
            record = records[i % len(records)]
            writer.writerow([f"c{i}", record.text, record.article_title or "", record.article_text or ""])


def dask_score_throughput(bundle_dir: Path, rows: int = 20_000, workers: int = 2) -> dict[str, float]:
    """Comments/s and wall seconds of `--engine dask --no-explain` on a LocalCluster, beside the local engine.

    The export is the starter comments (with their articles) repeated to `rows` rows. Dask's wall
    seconds cover planning, loading the model on every worker, scoring and writing the parts;
    starting the cluster is reported apart, and so is the local engine's one model load.
    """
    from training.batch.scoring import run_score

    started = time.perf_counter()
    model, bundle = read_bundle(str(bundle_dir))
    load = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="raqib-dask-bench-") as tmp:
        export = Path(tmp) / "comments.csv"
        _write_starter_csv(export, rows)

        def job(output: str) -> ScoreJob:
            return ScoreJob(
                input=export,
                output=Path(tmp) / output,
                input_format="csv",
                output_format="csv",
                mapping=ColumnMapping(columns={}),
                explain=False,
            )

        local = run_score(job("local.csv"), model)
        started = time.perf_counter()
        with dask_client(workers=workers) as client:
            startup = time.perf_counter() - started
            summary = run_dask_score(job("dask.csv"), model, bundle, client)
    return {
        "rows": float(summary.rows_out),
        "workers": float(workers),
        "parts": float(summary.parts),
        "seconds": summary.seconds,
        "comments_per_second": summary.rows_per_second,
        "cluster_start_seconds": startup,
        "local_seconds": local.seconds,
        "local_model_load_seconds": load,
        "local_comments_per_second": local.rows_per_second,
    }
