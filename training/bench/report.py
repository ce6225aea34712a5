"""experiments/RESULTS.md as independent sections, so `make bench` and `make soak` (or `--only`) each
rewrite their own sections and keep the rest; plus goal verdicts and the MLflow run.

Each section sits between `<!-- section:KEY {json} -->` and `<!-- /section:KEY -->`; the JSON holds
its goals and figures, from which the "Goals at a glance" table is rebuilt on every write.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path("experiments/RESULTS.md")
BENCH_EXPERIMENT = "raqib-bench"
# Order of sections in the file; sections written by something else are kept after these.
SECTION_ORDER = (
    "quality",
    "abuse",
    "relevance",
    "fasttext",
    "stages",
    "latency",
    "http",
    "training",
    "retrain",
    "server",
    "dask",
    "soak",
)
_SECTION = re.compile(
    r"<!-- section:(?P<key>[a-z_]+) (?P<data>\{.*?\}) -->\n(?P<body>.*?)<!-- /section:(?P=key) -->", re.S
)


@dataclass(frozen=True)
class Goal:
    """One goal of the brief: what was measured, the target, and whether it was met (and by how much)."""

    measure: str
    value: str
    goal: str
    verdict: str


@dataclass
class Section:
    """A block of the report: markdown lines, the goals it checks and its raw figures (for MLflow)."""

    key: str
    title: str
    lines: list[str]
    goals: list[Goal] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    # Which bundle the figures are about (sections can be re-run apart, and the champion can change).
    model: str = ""

    def render(self) -> str:
        """The section as markdown between its markers."""
        data = json.dumps({"goals": [asdict(g) for g in self.goals], "model": self.model}, ensure_ascii=False)
        data = data.replace("-->", "--\\u003e")
        about = [f"Model: {self.model}.", ""] if self.model else []
        body = "\n".join([f"## {self.title}", "", *about, *self.lines]).rstrip() + "\n"
        return f"<!-- section:{self.key} {data} -->\n{body}<!-- /section:{self.key} -->"


def missed_by(value: float, goal: float, unit: str = "", higher_is_better: bool = False) -> str:
    """'met', or 'missed by <difference> (<how far>)' for a goal on one number."""
    if (value >= goal) if higher_is_better else (value <= goal):
        return "met"
    gap = abs(value - goal)
    if higher_is_better:
        return f"missed by {_number(gap)}{unit} ({value / goal:.0%} of the goal)" if goal else "missed"
    return f"missed by {_number(gap)}{unit} ({value / goal:.1f}× the goal)" if goal else "missed"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def measured_on() -> str:
    """When and on what a section was measured (load average included: the machine may be shared)."""
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    return f"Measured {stamp} on {os.cpu_count()} cores ({cpu}), load average {load}."


def cpu_times(stat: str | None = None) -> tuple[int, int] | None:
    """(steal, total) jiffies of the whole machine from /proc/stat's first line (None off Linux).

    Steal is time a virtual machine's CPUs were ready to run but the hypervisor ran another guest:
    figures measured while it is high are low, whatever the code does."""
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text(encoding="ascii")
        except OSError:
            return None
    fields = stat.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    values = [int(v) for v in fields[1:9]]
    return values[7], sum(values)


def stolen_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time stolen between two `cpu_times` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


@contextmanager
def environment_restored() -> Iterator[None]:
    """Run a section, then put `os.environ` back as it was.

    A section must not change what the next ones run with. Dask's LocalCluster (the dask section)
    sets OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS to 1 in its own process, so every
    later subprocess (the training and retrain sections' `raqib train`) inherited single-threaded
    BLAS, which trains a slightly different model and takes longer.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def skipped(key: str, title: str, reason: str) -> Section:
    """A section that could not be measured, saying why."""
    return Section(key, title, [f"Not measured: {reason}."], figures={"skipped": reason})


def _existing(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    return {m["key"]: m.group(0) for m in _SECTION.finditer(text)}


def _data_of(rendered: str) -> dict[str, Any]:
    match = _SECTION.search(rendered)
    try:
        data = json.loads(match["data"]) if match else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _goals_of(rendered: str) -> list[Goal]:
    try:
        return [Goal(**g) for g in _data_of(rendered).get("goals", [])]
    except TypeError:
        return []


def model_label(bundle: Path, metadata: dict[str, Any]) -> str:
    """A bundle's identity for the report: name, version, sha256 prefix and size."""
    model_file = bundle / "model.joblib"
    size = f", {model_file.stat().st_size / 1e6:.1f} MB" if model_file.is_file() else ""
    return (
        f"{metadata.get('name')} v{metadata.get('version')} "
        f"(sha256 {str(metadata.get('sha256', ''))[:12]}…{size})"
    )


def write_results(sections: list[Section], header: list[str], path: Path = RESULTS) -> str:
    """Replace the given sections in the results file (keeping the others) and rebuild the summary."""
    blocks = _existing(path)
    for section in sections:
        blocks[section.key] = section.render()
    keys = [k for k in SECTION_ORDER if k in blocks] + sorted(k for k in blocks if k not in SECTION_ORDER)
    summary = ["## Goals at a glance", "", "| measure | value | goal | verdict |", "|---|---|---|---|"]
    for key in keys:
        for goal in _goals_of(blocks[key]):
            summary.append(f"| {goal.measure} | {goal.value} | {goal.goal} | {goal.verdict} |")
    if len(summary) == 4:
        summary.append("| — | nothing measured yet | — | — |")
    models = sorted({str(_data_of(blocks[k]).get("model") or "") for k in keys} - {""})
    if len(models) > 1:
        summary += [
            "",
            f"**Sections were measured on different bundles** ({'; '.join(models)}): re-run `make bench` "
            "and `make soak` for one consistent report.",
        ]
    text = "\n".join([*header, "", *summary, ""]) + "\n" + "\n\n".join(blocks[k] for k in keys) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return text


def header_lines(bundle: Path, metadata: dict[str, Any]) -> list[str]:
    """The report's title and the model it is about."""
    size_mb = (bundle / "model.joblib").stat().st_size / 1e6 if (bundle / "model.joblib").is_file() else 0.0
    return [
        "# Raqib: speed and quality report",
        "",
        f"Model: {metadata.get('name')} version {metadata.get('version')} (experiment "
        f"`{metadata.get('experiment')}`, {metadata.get('classifier', {}).get('kind')}), bundle `{bundle}` "
        f"{size_mb:.1f} MB, sha256 `{str(metadata.get('sha256', ''))[:12]}…`.",
        "",
        "Regenerate with `make bench` (all sections; `python -m training.bench.run --only SECTION` for one) "
        "and `make soak` (the soak section). Each section states when it was measured and the machine's load "
        "then: figures from a shared machine are noisy. Protocols are given with every figure; a missed "
        "goal says by how much.",
    ]


def flat_figures(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested figures as dotted MLflow metric names."""
    flat: dict[str, float] = {}
    for key, value in figures.items():
        name = re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", f"{prefix}{key}")
        if isinstance(value, dict):
            flat.update(flat_figures(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            flat[name] = float(value)
    return flat


def log_to_mlflow(
    sections: list[Section], params: dict[str, Any], run_name: str, root: Path = Path(".")
) -> str | None:
    """Log the sections' figures (and the results file) as one run of the `raqib-bench` experiment."""
    import mlflow

    from training.registry.tracking import configure, experiment_id

    configure(root)
    with mlflow.start_run(experiment_id=experiment_id(BENCH_EXPERIMENT, root), run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics = {}
        for section in sections:
            metrics.update(flat_figures(section.figures, f"{section.key}."))
        if metrics:
            mlflow.log_metrics(metrics)
        for section in sections:
            mlflow.log_dict(section.figures, f"figures/{section.key}.json")
            for goal in section.goals:
                mlflow.set_tag(f"goal.{section.key}.{_slug(goal.measure)}", goal.verdict[:250])
        if (root / RESULTS).is_file():
            mlflow.log_artifact(str(root / RESULTS))
        return str(run.info.run_id)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]


def record_before_main(module: str, doc: str, record: Callable[[Path], dict[str, Any]], output: Path) -> None:
    """`python -m <module> --record-before BUNDLE [-o FILE]`: an earlier bundle's figures as JSON, the
    "before" column of a section."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument(
        "--record-before", type=Path, required=True, metavar="BUNDLE", help="Earlier bundle to score."
    )
    parser.add_argument("-o", "--output", type=Path, default=output)
    args = parser.parse_args()
    args.output.write_text(json.dumps(record(args.record_before), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
