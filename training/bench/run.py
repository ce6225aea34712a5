"""`make bench`: the speed and quality report of the exported champion, in experiments/RESULTS.md.

Sections (each can be run alone with `--only`; the others are kept in the file as they were):

- quality   published-protocol anchors (YouTube, SMS, SemEval, AOC) and the corpus-leakage check
- fasttext  batch throughput and macro-F1 against fastText trained on the same rows
- latency   one in-process `ModerationModel.score` call
- http      /v1/score against a bare FastAPI endpoint: max throughput ratio, p99 at a fixed rate
- training  `raqib train` on the full public build: wall time and peak memory
- server    cold start to ready, memory then, bundle size
- dask      the Dask engine's throughput, when training/dask_engine.py provides it
- abuse     the abusive head, leave-one-source-out, beside the baseline and the previous model
- relevance off_topic against the article, out of fold by article, beside plain cosine and the model before
- retrain   today's code trains the public experiment twice: reproducible? quality against the champion?

The figures also go to MLflow (experiment `raqib-bench`). `make soak` (training/soak.py) adds the
soak section.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serving.schema import DEFAULT_BUNDLE_DIR
from training.bench.http import (
    RAQIB_APP,
    ServerProcess,
    child_pids,
    free_port,
    http_section,
    rss_mb,
    server_env,
    status_mb,
    uvicorn_command,
)
from training.bench.quality import PUBLIC_BUILD, PUBLIC_CONFIG
from training.bench.report import (
    Goal,
    Section,
    cpu_times,
    environment_restored,
    header_lines,
    log_to_mlflow,
    measured_on,
    missed_by,
    model_label,
    skipped,
    stolen_share,
    write_results,
)
from training.bench.stages import call_timings, starter_comments

# Every section, in run order: the short in-process measures first, the long CPU-heavy ones last.
RUN_ORDER = SECTIONS = (
    "latency",
    "fasttext",
    "stages",
    "server",
    "http",
    "dask",
    "quality",
    "abuse",
    "relevance",
    "training",
    "retrain",
)


def latency_section(bundle: Path) -> Section:
    """Median and p99 of one `ModerationModel.score` call, with and without explanations."""
    from serving.model.moderation import CommentInput, ModerationModel
    from training.bench.loadgen import percentile

    stamp = measured_on()
    model = ModerationModel.from_bundle(bundle)
    items = [CommentInput(**row) for row in starter_comments()]
    explained = call_timings(model, items, explain=True)
    plain = call_timings(model, items, explain=False)
    median = statistics.median(explained)
    figures = {
        "explained_median_ms": median,
        "explained_p99_ms": percentile(explained, 99),
        "plain_median_ms": statistics.median(plain),
        "plain_p99_ms": percentile(plain, 99),
        "calls": len(items),
    }
    lines = [
        stamp,
        "",
        f"Protocol: {len(items)} sequential calls of `ModerationModel.score([one comment])` in one process "
        "(after 50 warm-up calls), each a starter comment with its article's title and text, as `/v1/score` "
        "calls it; no HTTP, no thread limits.",
        "",
        "| call | median | p99 |",
        "|---|---|---|",
        f"| with explanations and spans (what /v1/score does) | **{median:.2f} ms** | "
        f"{figures['explained_p99_ms']:.2f} ms |",
        f"| scores and decision only (`explain=False`) | {figures['plain_median_ms']:.2f} ms | "
        f"{figures['plain_p99_ms']:.2f} ms |",
    ]
    goals = [
        Goal(
            "single in-process score (with explanations), median",
            f"{median:.2f} ms",
            "≤ 0.3 ms (issue 18)",
            missed_by(median, 0.3, " ms"),
        )
    ]
    return Section("latency", "Single call latency, in process", lines, goals, figures)


def _pss_mb(pid: int) -> float:
    """Proportional set size in MB: shared pages split between the processes that map them."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return kb / 1024


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = child_pids(frontier.pop())
        found += children
        frontier += children
    return found


def run_watching_memory(command: Sequence[str], interval: float = 0.2) -> dict[str, Any]:
    """Run `command` as a child and watch its memory until it exits.

    Every `interval` s: the sums of RSS and of PSS over the child and its descendants (peaks kept),
    and the child's own kernel high-water mark (VmHWM: the peak RSS of its address space, which the
    kernel keeps exactly, between samples too). Not `wait4`'s ru_maxrss: Linux carries the parent's
    high-water mark into a child at exec, so a child of a big process (this bench, after the abuse
    section) reported the parent's size as its own.
    Returns returncode, output, wall seconds and the peaks in MB."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))
        peak_tree_mb, peak_tree_pss_mb, peak_main_mb = 0.0, 0.0, 0.0
        while process.poll() is None:
            tree = [process.pid, *_descendants(process.pid)]
            # VmHWM is gone with the process: read it while it runs (it only grows).
            peak_main_mb = max(peak_main_mb, status_mb(process.pid, "VmHWM"))
            peak_tree_mb = max(peak_tree_mb, sum(rss_mb(p) for p in tree))
            peak_tree_pss_mb = max(peak_tree_pss_mb, sum(_pss_mb(p) for p in tree))
            time.sleep(interval)
        wall = time.perf_counter() - started
        output.seek(0)
        log = output.read()
    return {
        "returncode": process.returncode,
        "output": log,
        "wall_seconds": wall,
        "peak_tree_rss_mb": peak_tree_mb,
        "peak_tree_pss_mb": peak_tree_pss_mb,
        "peak_main_hwm_mb": peak_main_mb,
    }


def stage_seconds(log: str) -> dict[str, float]:
    """The "time by stage" line `raqib train` prints, as {stage: seconds} in the run's order."""
    found = re.search(r"^time by stage: (.+)$", log, flags=re.MULTILINE)
    if found is None:
        return {}
    stages = {}
    for part in found.group(1).split(", "):
        named = re.fullmatch(r"(\w+) ([\d.]+) s", part.strip())
        if named:
            stages[named.group(1)] = float(named.group(2))
    return stages


def training_section(config: Path = PUBLIC_CONFIG, data: Path = PUBLIC_BUILD) -> Section:
    """Wall seconds and peak memory of `raqib train --config experiments/public.toml --no-register`."""
    title = "Training time and memory on the full public build"
    if not data.is_file():
        return skipped("training", title, f"{data} is absent (build it with `make data`)")
    stamp = measured_on()
    command = [sys.executable, "-m", "training.cli.main", "train", "--config", str(config), "--no-register"]
    print(f"training: {' '.join(command[1:])}", flush=True)
    watched = run_watching_memory(command)
    log, wall = watched["output"], watched["wall_seconds"]
    peak_tree_mb, peak_tree_pss_mb = watched["peak_tree_rss_mb"], watched["peak_tree_pss_mb"]
    peak_main_mb = watched["peak_main_hwm_mb"]
    if watched["returncode"] != 0:
        raise RuntimeError(f"raqib train failed ({watched['returncode']}): {log[-800:]}")
    fitted = re.search(r"trained in ([\d.]+) s on (\d+) rows", log)
    fit_seconds = float(fitted.group(1)) if fitted else None
    rows = int(fitted.group(2)) if fitted else None
    # Judged on PSS: summing RSS counts the libraries every worker maps (numpy, scipy, ...) once per process.
    peak_mb = max(peak_tree_pss_mb, peak_main_mb)
    stages = stage_seconds(log)
    figures = {
        "wall_seconds": wall,
        "stage_seconds": stages,
        "fit_seconds": fit_seconds,
        "rows": rows,
        "peak_tree_rss_mb": peak_tree_mb,
        "peak_tree_pss_mb": peak_tree_pss_mb,
        "peak_main_rss_mb": peak_main_mb,
    }
    fit_text = f"{fit_seconds:.1f} s" if fit_seconds is not None else "not reported"
    lines = [
        stamp,
        "",
        f"Protocol: `{' '.join(['raqib', *command[3:]])}` as a child process (nothing registered), on "
        f"`{data}`; wall seconds from start to exit (imports, data gathering, the candidate search with "
        f"{os.cpu_count()} parallel workers, the final fit, frozen-set evaluation, the leakage checks). "
        "Peak memory, sampled every 0.2 s over the process and its workers: the largest sum of PSS "
        "(shared pages split between the processes mapping them; the goal is judged on it, or on the "
        "main process's kernel high-water mark, VmHWM, if larger) and, for reference, of RSS (which "
        "counts every shared library once per process). Not `wait4`'s ru_maxrss: Linux carries the "
        "parent's high-water mark into a child at exec, so run after the in-process sections it reported "
        "this bench's own size (4.79 and 4.85 GB in two full runs).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wall time, start to exit | **{wall:.1f} s** |",
        f"| of which to the fitted model (reported by `raqib train`) | {fit_text} |",
        f"| training rows after caps | {f'{rows:,}' if rows is not None else '—'} |",
        f"| peak PSS, process + workers (sampled) | **{peak_tree_pss_mb:,.0f} MB** |",
        f"| peak RSS, process + workers (sampled) | {peak_tree_mb:,.0f} MB |",
        f"| peak RSS, main process (kernel high-water mark) | {peak_main_mb:,.0f} MB |",
    ]
    if stages:
        counted = sum(stages.values())
        lines += [
            "",
            "Where the wall time goes, stage by stage (`raqib train`'s own clock; the rest of the wall time "
            "is starting Python, imports and printing the report):",
            "",
            "| stage | seconds | share of the wall time |",
            "|---|---|---|",
            *(
                f"| {stage.replace('_', ' ')} | {seconds:.1f} | {seconds / wall:.0%} |"
                for stage, seconds in stages.items()
            ),
            f"| the rest | {wall - counted:.1f} | {(wall - counted) / wall:.0%} |",
        ]
    goals = [
        Goal("training wall time, full public build", f"{wall:.1f} s", "≤ 60 s", missed_by(wall, 60, " s")),
        Goal(
            "training peak memory (PSS, process + workers)",
            f"{peak_mb / 1024:.2f} GB",
            "≤ 2 GB",
            missed_by(peak_mb / 1024, 2.0, " GB"),
        ),
    ]
    return Section("training", title, lines, goals, figures)


LOCK_FILE = Path(".ci/requirements.lock")


def serving_host_python(workdir: Path) -> Path:
    """The Python of a fresh venv holding what a serving host installs: `pip install '.[serve]'` with the
    locked versions, from a copy of this checkout's files (the build writes nothing into the checkout).

    The development venv also holds the training and bench extras (pandas, pyarrow, MLflow), and
    scikit-learn imports pandas whenever it is installed: the server there is bigger than as deployed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    source = workdir / "src"
    for name in filter(None, listed.split("\0")):
        path = Path(name)
        if path.is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / path)
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Byte-compiled, as pip installs by default: a host's first start does not compile every module.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(LOCK_FILE.resolve()), f"{source}[serve]"],
        check=True,
        capture_output=True,
    )
    return python


def _starts(
    bundle: Path, tmp: Path, runs: int, label: str, python: str = sys.executable, cwd: Path | None = None
) -> tuple[list[float], list[float]]:
    """Seconds to ready and RSS then, for `runs` starts of the server with this Python."""
    starts, memories = [], []
    for run in range(runs):
        port = free_port()
        env = server_env(bundle, tmp / f"state-{label}-{run}")
        command = [python, *uvicorn_command(RAQIB_APP, port)[1:]]
        with ServerProcess(command, port, env, tmp / "server.log", cwd=cwd) as server:
            starts.append(server.wait_ready())
            memories.append(server.tree_rss_mb())
    return starts, memories


def server_section(bundle: Path, runs: int = 3) -> Section:
    """Seconds from process start to /readyz 200 and the server's RSS then (median of `runs`), in this
    venv and as a serving host installs it, and the bundle's size."""
    stamp = measured_on()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as name:
        tmp = Path(name)
        starts, memories = _starts(bundle, tmp, runs, "dev")
        try:
            print("server: installing '.[serve]' into a fresh venv (a serving host's install)", flush=True)
            host_python = serving_host_python(tmp / "host")
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            host: tuple[list[float], list[float]] | None = None
            host_note = f"not measured: the serving install failed ({exc}; {detail[-300:]!r})"
        else:
            # Started from the temporary directory: nothing of the checkout is importable there.
            host = _starts(bundle, tmp, runs, "host", str(host_python), cwd=tmp / "host")
            host_note = ""
    size_mb = (bundle / "model.joblib").stat().st_size / 1e6
    start, memory = statistics.median(starts), statistics.median(memories)
    figures: dict[str, Any] = {
        "cold_start_seconds": start,
        "cold_start_max_seconds": max(starts),
        "rss_mb": memory,
        "bundle_mb": size_mb,
    }
    rows = [
        f"| this venv (every extra: training, bench, tests) | {start:.2f} s ({max(starts):.2f} s) | "
        f"{memory:.0f} MB |"
    ]
    judged = ("this venv", start, memory)
    if host is not None:
        host_start, host_memory = statistics.median(host[0]), statistics.median(host[1])
        figures |= {
            "serving_host_cold_start_seconds": host_start,
            "serving_host_cold_start_max_seconds": max(host[0]),
            "serving_host_rss_mb": host_memory,
        }
        rows.insert(
            0,
            f"| **a serving host's install** (`pip install '.[serve]'`) | **{host_start:.2f} s** "
            f"({max(host[0]):.2f} s) | **{host_memory:.0f} MB** |",
        )
        judged = ("a serving host's install", host_start, host_memory)
    lines = [
        stamp,
        "",
        f"Protocol: `uvicorn {RAQIB_APP} --factory --workers 1` started {runs} times in each install; "
        "seconds from process start to the first 200 from `/readyz` (imports, unpickling and verifying "
        "the bundle, warm-up) and the process's RSS then; medians. Two installs: what a serving host "
        "installs (`pip install '.[serve]'` with `.ci/requirements.lock`, into a fresh venv, byte-compiled "
        "as pip does; the goals are judged on it) and this development venv, which also holds the "
        "training and bench extras: scikit-learn imports pandas (and pyarrow) whenever they are "
        "installed, so the server is bigger there than as deployed.",
        "",
        "| install | cold start to ready, median (max) | RSS when ready, median |",
        "|---|---|---|",
        *rows,
        "",
        f"Bundle size (`model.joblib`): {size_mb:.1f} MB."
        + (f" Serving host: {host_note}." if host_note else ""),
    ]
    where, judged_start, judged_memory = judged
    goals = [
        Goal(
            f"server cold start to ready ({where})",
            f"{judged_start:.2f} s",
            "≤ 3 s",
            missed_by(judged_start, 3, " s"),
        ),
        Goal(
            f"server RSS when ready ({where})",
            f"{judged_memory:.0f} MB",
            "≤ 300 MB",
            missed_by(judged_memory, 300, " MB"),
        ),
    ]
    return Section("server", "Server cold start, memory and bundle size", lines, goals, figures)


def dask_section(bundle: Path) -> Section:
    """The Dask engine's own throughput figures, when training/dask_engine.py provides them."""
    title = "Dask engine"
    try:
        module = importlib.import_module("training.batch.dask_engine")
    except ModuleNotFoundError as exc:
        return skipped("dask", title, f"not measured (cannot import training.batch.dask_engine: {exc})")
    measure = getattr(module, "dask_score_throughput", None)
    if measure is None:
        return skipped("dask", title, "not measured (training/dask_engine.py has no dask_score_throughput)")
    stamp = measured_on()
    figures = dict(measure(bundle, rows=20000, workers=2))
    lines = [
        stamp,
        "",
        "Protocol: `training.batch.dask_engine.dask_score_throughput(bundle, rows=20000, workers=2)` "
        "(its own protocol is in its docstring: the engine's `--no-explain` scoring on a local 2-worker "
        "cluster, beside the local engine).",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {key} | {_figure(value)} |" for key, value in figures.items()],
    ]
    return Section("dask", title, lines, [], figures)


def _figure(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _metadata(bundle: Path) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
    return metadata


def _runners(bundle: Path, metadata: dict[str, Any]) -> dict[str, Callable[[], Section]]:
    from training.bench.abuse import abuse_section
    from training.bench.fasttext import fasttext_section
    from training.bench.quality import quality_section
    from training.bench.relevance import relevance_section
    from training.bench.retrain import retrain_section
    from training.bench.stages import stages_section

    return {
        "quality": lambda: quality_section(bundle, metadata),
        "fasttext": lambda: fasttext_section(bundle, metadata),
        "stages": lambda: stages_section(bundle, metadata),
        "latency": lambda: latency_section(bundle),
        "http": lambda: http_section(bundle),
        "training": training_section,
        "server": lambda: server_section(bundle),
        "dask": lambda: dask_section(bundle),
        "abuse": abuse_section,
        "relevance": lambda: relevance_section(bundle),
        "retrain": lambda: retrain_section(bundle, metadata),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections, rewrite them in experiments/RESULTS.md, log the figures to MLflow."""
    parser = argparse.ArgumentParser(prog="python -m training.bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR, help="Serving bundle to measure.")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="Run this section only (repeatable)."
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="Leave the training runs out (training, retrain)."
    )
    parser.add_argument("--no-mlflow", action="store_true", help="Do not log a run to MLflow.")
    args = parser.parse_args(argv)
    bundle: Path = args.bundle
    if not (bundle / "model.joblib").is_file():
        parser.error(f"no bundle at {bundle}: run `make demo` (or raqib train/promote/export) first")
    metadata = _metadata(bundle)
    chosen = set(args.only or SECTIONS) - ({"training", "retrain"} if args.skip_training else set())
    runners = _runners(bundle, metadata)
    header = header_lines(bundle, metadata)
    done: list[Section] = []
    failed = False
    for key in (k for k in RUN_ORDER if k in chosen):
        print(f"== {key}", flush=True)
        started = time.perf_counter()
        before = _metadata(bundle)
        cpu_before = cpu_times()
        try:
            with environment_restored():
                section = runners[key]()
        except Exception as exc:  # one broken section must not lose the others' figures
            failed = True
            traceback.print_exc()
            section = skipped(key, key, f"failed with {exc.__class__.__name__}: {exc}")
        stolen = stolen_share(cpu_before, cpu_times())
        if stolen is not None:
            section.figures["cpu_stolen_share"] = stolen
            section.lines += [
                "",
                f"CPU time stolen by the hypervisor while this section ran: {stolen:.1%} of the machine's "
                "(other guests of a virtual machine's host; speed figures taken while it is high are low, "
                "though this machine's figures also move between runs when it is near 0).",
            ]
        after = _metadata(bundle)
        section.model = model_label(bundle, before)
        if after.get("sha256") != before.get("sha256"):
            failed = True
            section.lines[:0] = [
                f"**WARNING: the bundle was replaced while this section ran** (now "
                f"{model_label(bundle, after)}): its figures may mix both models.",
                "",
            ]
        print(f"   {key} took {time.perf_counter() - started:.0f} s", flush=True)
        done.append(section)
        write_results([section], header)
    text = write_results([], header)
    print(text)
    if not args.no_mlflow and done:
        params = {
            "bundle": str(bundle),
            "model_version": metadata.get("version"),
            "bundle_sha256": metadata.get("sha256"),
            "sections": ",".join(s.key for s in done),
            "cpu_count": os.cpu_count(),
        }
        run_id = log_to_mlflow(done, params, run_name="bench")
        print(f"logged to MLflow experiment raqib-bench, run {run_id}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
