"""Stage section of `make bench`: where one comment's scoring time goes, stage by stage, before and after.

Every part `ModerationModel.score` runs is timed on its own over the frozen-set comments (batches of
`BATCH`, one thread, the article cache warm as it is in a running server): normalising (and finding
each row's article), the base model's feature blocks and classifier, each label head's blocks, its
cross-source scaling and classifier, the relevance component's features and classifiers. Beside
them: batch throughput and one call's latency, with and without explanations.

"Before" is the same measure with the code before issue 18 (`BEFORE_COMMIT`) on the same bundle, in
the same run: the section checks that commit out into a temporary git worktree, copies this module
into it (the module only reads what exists in both versions of the model runtime) and times both
versions in turn, `ROUNDS` times each, in fresh processes; each figure is the median over rounds, so
a machine that slows down for a while slows both. Without git or that commit it falls back to the
figures recorded in `experiments/speed_before.json` (`python -m training.bench.stages --record`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.bench.report import Goal, Section, measured_on, skipped

BATCH = 500
REPEATS = 3
BEFORE = Path("experiments/speed_before.json")
BEFORE_COMMIT = "5e7fb7f"  # the last commit before issue 18's changes
ROUNDS = 2


def starter_comments(limit: int = 500) -> list[dict[str, Any]]:
    """Starter comments joined to their articles: realistic lengths, Arabic and English."""
    from training.data.gather import load_starter

    rows = [
        {"text": r.text, "article_title": r.article_title, "article_text": r.article_text}
        for r in load_starter("data/starter")
    ]
    return (rows * (limit // len(rows) + 1))[:limit]


def prepare(model: Any, items: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The batch as the model runtime prepares it (with its article cache entries), and the entries it
    created; for a runtime without an article cache, the base Pipeline's own preprocessing."""
    from serving.model.moderation import PREPROCESS_STEP

    if hasattr(model, "_prepare"):
        prepared, created = model._prepare(items)
        return prepared, created
    base = getattr(model.pipeline, "base", model.pipeline)
    return base.named_steps[PREPROCESS_STEP].transform([item.as_row() for item in items]), []


def stage_seconds(model: Any, items: Sequence[Any]) -> dict[str, float]:
    """Seconds per stage for one pass over `items`: every part `ModerationModel.score` runs."""
    from serving.model.moderation import CLASSIFIER_STEP, FEATURES_STEP

    pipeline = model.pipeline
    base = getattr(pipeline, "base", pipeline)
    started = time.perf_counter()
    prepared, created = prepare(model, items)
    stages = {"normalise and find articles": time.perf_counter() - started}
    parts = [("base", base)] + [
        (f"head[{label}]", head) for label, head in (getattr(pipeline, "heads", None) or {}).items()
    ]
    for part, part_pipeline in parts:
        steps = part_pipeline.named_steps
        union = steps[FEATURES_STEP]
        # A head's blocks sit inside its cross-source scaling: time them, then the scaling on top.
        inner = getattr(union, "features", union)
        blocks_seconds = 0.0
        for name, block in getattr(inner, "transformer_list", [("all", inner)]):
            started = time.perf_counter()
            block.transform(prepared)
            stages[f"{part}.features.{name}"] = elapsed = time.perf_counter() - started
            blocks_seconds += elapsed
        started = time.perf_counter()
        matrix = union.transform(prepared)
        if inner is not union:
            stages[f"{part}.features.scaling"] = max(time.perf_counter() - started - blocks_seconds, 0.0)
        started = time.perf_counter()
        steps[CLASSIFIER_STEP].predict_proba(matrix)
        stages[f"{part}.classifier"] = time.perf_counter() - started
    relevance = getattr(pipeline, "relevance", None)
    if relevance is not None:
        started = time.perf_counter()
        features = relevance.feature_rows(prepared)
        stages["relevance.features"] = time.perf_counter() - started
        started = time.perf_counter()
        relevance.relations(prepared, features)
        stages["relevance.classifier"] = time.perf_counter() - started
    if created and hasattr(model, "article_cache"):
        model.article_cache.settle(created)
    return stages


def median_seconds(repeats: int, run: Any) -> float:
    """Median seconds of `repeats` timed runs, after one untimed warm-up run (memos and the article
    cache fill as in a running server)."""
    run()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def call_timings(model: Any, items: Sequence[Any], explain: bool) -> list[float]:
    """Milliseconds of one `score([item])` call per item, sorted (after 50 warm-up calls)."""
    for item in items[:50]:
        model.score([item], explain=explain)
    timings = []
    for item in items:
        started = time.perf_counter()
        model.score([item], explain=explain)
        timings.append((time.perf_counter() - started) * 1000)
    return sorted(timings)


class _PartTimer:
    """Seconds spent inside named methods of a model during `score` calls, found by wrapping those
    methods on the instances (the call itself is unchanged, so it is the real request path)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._wrapped: list[tuple[Any, str]] = []

    def wrap(self, owner: Any, method: str, name: str) -> None:
        inner = getattr(owner, method, None)
        if inner is None:
            return
        self._wrapped.append((owner, method))

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(owner, method, timed)

    def unwrap(self) -> None:
        """Drop the wrappers: they live on the instances only, over the classes' methods."""
        for owner, method in self._wrapped:
            vars(owner).pop(method, None)
        self._wrapped.clear()


def single_call_parts(model: Any, items: Sequence[Any]) -> dict[str, float] | None:
    """µs per call of each part of one `score([comment], explain=True)`: preparing the comment, each
    part's features and classifier, the relevance component's features and rule, the explanation,
    and the rest (combining, deciding, building the result). None for a runtime without those parts."""
    if not all(hasattr(model, name) for name in ("_prepare", "_base", "_heads", "_explain")):
        return None
    for item in items[:50]:
        model.score([item], explain=True)
    timer = _PartTimer()
    timer.wrap(model, "_prepare", "prepare: normalise, article cache")
    for part in [model._base, *model._heads]:
        label = "base" if part.label is None else f"head[{part.label}]"
        timer.wrap(part, "rows", f"{label}: features")
        timer.wrap(part, "proba", f"{label}: classifier")
    relevance = getattr(model, "_relevance", None)
    if relevance is not None:
        timer.wrap(relevance, "feature_rows", "relevance: features")
        timer.wrap(relevance, "relations", "relevance: features and rule")
    timer.wrap(model, "_explain", "explanation: reasons and spans")
    started = time.perf_counter()
    for item in items:
        model.score([item], explain=True)
    total = time.perf_counter() - started
    timer.unwrap()
    seconds = dict(timer.seconds)
    if "relevance: features and rule" in seconds:
        seconds["relevance: rule"] = seconds.pop("relevance: features and rule") - seconds.get(
            "relevance: features", 0.0
        )
    seconds["the rest: combine, decide, result"] = total - sum(seconds.values())
    return {name: value / len(items) * 1e6 for name, value in seconds.items()}


def measure(bundle: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Per-comment stage times, batch throughput and single-call latency of `bundle` with the code
    that is importable now."""
    from threadpoolctl import threadpool_limits

    from serving.model.moderation import CommentInput, ModerationModel
    from training.bench.quality import champion_split

    model = ModerationModel.from_bundle(bundle)
    frozen = champion_split(metadata).frozen
    items = [CommentInput(r.text, r.article_title, r.article_text) for r in frozen]
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]

    def score_batches() -> None:
        for batch in batches:
            model.score(batch, explain=False)

    def stage_pass() -> dict[str, float]:
        total: dict[str, float] = {}
        for batch in batches:
            for name, seconds in stage_seconds(model, batch).items():
                total[name] = total.get(name, 0.0) + seconds
        return total

    with threadpool_limits(limits=1):
        probabilities = np.vstack([model.predict_proba(batch) for batch in batches])
        batch_seconds = median_seconds(REPEATS, score_batches)
        stage_pass()  # warm
        passes = [stage_pass() for _ in range(REPEATS)]
        starter = [CommentInput(**row) for row in starter_comments()]
        explained = call_timings(model, starter, explain=True)
        plain = call_timings(model, starter, explain=False)
        parts = single_call_parts(model, starter)
    stages = {name: statistics.median(p[name] for p in passes) / len(items) * 1e6 for name in passes[0]}
    predicted = [model.labels[k] for k in np.argmax(probabilities, axis=1)]
    truth = [r.label or "" for r in frozen]
    return {
        "quality": quality(truth, predicted, [r.source or "" for r in frozen], model.labels),
        "probabilities_sha": _rounded_digest(probabilities),
        "bundle_sha256": metadata.get("sha256"),
        "comments": len(items),
        "batch": BATCH,
        "batch_comments_per_s": len(items) / batch_seconds,
        "stage_us_per_comment": stages,
        "single_explained_median_ms": statistics.median(explained),
        "single_plain_median_ms": statistics.median(plain),
        "single_call_parts_us": parts,
    }


def quality(
    truth: Sequence[str], predicted: Sequence[str], sources: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Frozen-set macro-F1, overall and per source (sources with 50 rows or more)."""
    from sklearn.metrics import f1_score

    every = sorted(set(truth) | set(labels))
    out: dict[str, Any] = {"macro_f1": float(f1_score(truth, predicted, labels=every, average="macro"))}
    per_source = {}
    for source in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == source]
        if len(rows) < 50:
            continue
        t, p = [truth[i] for i in rows], [predicted[i] for i in rows]
        present = sorted(set(t) | set(p))
        per_source[source] = float(f1_score(t, p, labels=present, average="macro"))
    out["per_source_macro_f1"] = per_source
    return out


def _rounded_digest(probabilities: Any) -> str:
    """A digest of the probabilities rounded to 5 decimals: equal digests, equal decisions."""
    import hashlib

    return hashlib.sha256(np.round(probabilities, 5).tobytes()).hexdigest()[:16]


QUALITY_TOLERANCE = 0.005


def stages_section(bundle: Path, metadata: dict[str, Any], before_path: Path = BEFORE) -> Section:
    """Stage by stage, per comment, with the code before issue 18 beside it; the quality check that
    the same bundle decides the same."""
    from training.bench.quality import PUBLIC_BUILD

    title = "Where a comment's time goes: stage by stage, before and after"
    if not PUBLIC_BUILD.is_file():
        return skipped("stages", title, f"{PUBLIC_BUILD} is absent, so the frozen set cannot be rebuilt")
    stamp = measured_on()
    print(
        "stages: timing every stage on the frozen set, the code before issue 18 and now in turn", flush=True
    )
    after, before = side_by_side(bundle)
    if not before:
        before = json.loads(before_path.read_text(encoding="utf-8")) if before_path.is_file() else {}
    same_bundle = before.get("bundle_sha256") == after["bundle_sha256"]
    lines = [
        stamp,
        "",
        f"Protocol: the frozen evaluation set (n = {after['comments']:,}) in batches of {BATCH}, one thread, "
        f"median of {REPEATS} passes after a warm-up pass (the article cache warm, as in a running "
        "server); every part `ModerationModel.score` runs is timed on its own, in µs per comment. Single "
        "calls: 500 starter comments with their articles, one `score([comment])` each. Before: the "
        f"same measure with the code before issue 18 ({before.get('code') or 'not recorded'}) on "
        f"{'the same bundle' if same_bundle else 'ANOTHER bundle (figures not comparable)'}; "
        + (
            f"both versions timed in turn in this run, {ROUNDS} rounds each in fresh processes, medians over "
            "rounds (training/bench/stages.py)."
            if before.get("rounds")
            else f"recorded earlier in `{before_path}`."
        ),
        "",
        "| stage | before (µs/comment) | after (µs/comment) | change |",
        "|---|---|---|---|",
    ]
    old_stages: dict[str, float] = before.get("stage_us_per_comment", {})
    names = list(after["stage_us_per_comment"])
    names += [n for n in old_stages if n not in names]
    for name in names:
        new = after["stage_us_per_comment"].get(name)
        old = old_stages.get(name)
        lines.append(f"| {name} | {_us(old)} | {_us(new)} | {_ratio(old, new)} |")
    old_total, new_total = sum(old_stages.values()), sum(after["stage_us_per_comment"].values())
    lines.append(
        f"| **all stages** | **{_us(old_total)}** | **{_us(new_total)}** | {_ratio(old_total, new_total)} |"
    )
    lines += [
        "",
        "| whole call | before | after | change |",
        "|---|---|---|---|",
        _row("batch scoring, comments/s (1 thread)", before, after, "batch_comments_per_s", "{:,.0f}", True),
        _row("one call with explanations, median ms", before, after, "single_explained_median_ms", "{:.2f}"),
        _row("one call without explanations, median ms", before, after, "single_plain_median_ms", "{:.2f}"),
        "",
    ]
    lines += single_call_lines(before.get("single_call_parts_us"), after.get("single_call_parts_us"))
    goals = []
    old_q, new_q = before.get("quality"), after["quality"]
    if old_q and same_bundle:
        deltas = {"frozen macro-F1": new_q["macro_f1"] - old_q["macro_f1"]}
        for source, value in new_q["per_source_macro_f1"].items():
            if source in old_q["per_source_macro_f1"]:
                deltas[f"{source} macro-F1"] = value - old_q["per_source_macro_f1"][source]
        worst = max(deltas, key=lambda k: abs(deltas[k]))
        lines += [
            "Quality with the same bundle, before and after (frozen set; per source: macro-F1 over the "
            "labels present in that source's rows): "
            + ", ".join(f"{k} {v:+.4f}" for k, v in deltas.items())
            + ". Probabilities rounded to 5 decimals are "
            + (
                "**identical**"
                if before.get("probabilities_sha") == after["probabilities_sha"]
                else "not identical"
            )
            + " (the batch path sums the float32 topical space in another order: differences of about 1e-7).",
        ]
        goals.append(
            Goal(
                "quality unchanged: frozen macro-F1 and every per-source figure",
                f"largest change {deltas[worst]:+.4f} ({worst})",
                f"within {QUALITY_TOLERANCE}",
                "met" if abs(deltas[worst]) <= QUALITY_TOLERANCE else "missed",
            )
        )
    else:
        lines.append("No quality figures recorded before for this bundle: nothing to compare.")
    return Section("stages", title, lines, goals, {"before": before, "after": after})


def single_call_lines(before: dict[str, float] | None, after: dict[str, float] | None) -> list[str]:
    """Where one request's time goes: the mean µs per part of `score([comment], explain=True)`."""
    if not after:
        return []
    total = sum(after.values())
    lines = [
        "One call with explanations, part by part (the 500 starter comments, one `score([comment])` "
        "each, after 50 warm-up calls; each part's methods timed where the call runs them, mean µs per "
        "call; a part's features include the n-gram hashing the base model shares with the head):",
        "",
        "| part of one call | before (µs) | after (µs) | share after |",
        "|---|---|---|---|",
    ]
    for name, value in sorted(after.items(), key=lambda item: -item[1]):
        old = before.get(name) if before else None
        lines.append(f"| {name} | {_us(old)} | {_us(value)} | {value / total:.0%} |")
    old_total = sum(before.values()) if before else None
    lines += [f"| **one call** | **{_us(old_total)}** | **{_us(total)}** | 100% |", ""]
    return lines


def side_by_side(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`measure` of today's code and of `BEFORE_COMMIT`'s, alternately in fresh processes; per figure
    the median over rounds. The before half is {} when that commit cannot be checked out."""
    import shutil
    import subprocess
    import sys
    import tempfile

    repo = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="raqib-before-") as scratch:
        tree = Path(scratch) / "before"
        checkout = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), BEFORE_COMMIT], capture_output=True, text=True
        )
        codes: dict[str, Path | None] = {"after": repo}
        if checkout.returncode == 0:
            shutil.copy2(Path(__file__), tree / "training" / "bench" / "stages.py")
            (tree / "data" / "build").symlink_to((repo / "data" / "build").resolve())
            codes["before"] = tree
        else:
            print(f"stages: cannot check out {BEFORE_COMMIT} ({checkout.stderr.strip()}); before from file")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
        try:
            for round_number in range(ROUNDS):
                for name, code in codes.items():
                    out = Path(scratch) / f"{name}-{round_number}.json"
                    print(f"stages: round {round_number + 1}/{ROUNDS}, {name}", flush=True)
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "training.bench.stages",
                            "--record",
                            str(bundle.resolve()),
                            "-o",
                            str(out),
                            "--note",
                            BEFORE_COMMIT if name == "before" else "this checkout",
                        ],
                        cwd=code,
                        env={**os.environ, "PYTHONPATH": str(code)},
                        check=True,
                        stdout=subprocess.DEVNULL,
                    )
                    runs[name].append(json.loads(out.read_text(encoding="utf-8")))
        finally:
            if "before" in codes:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True)
    merged = {name: _median_figures(found) for name, found in runs.items()}
    return merged["after"], merged.get("before", {})


def _median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's figures with every timing replaced by its median over the runs."""
    figures = dict(runs[0])
    for key in ("batch_comments_per_s", "single_explained_median_ms", "single_plain_median_ms"):
        figures[key] = statistics.median(run[key] for run in runs)
    figures["stage_us_per_comment"] = {
        name: statistics.median(run["stage_us_per_comment"][name] for run in runs)
        for name in runs[0]["stage_us_per_comment"]
    }
    if all(run.get("single_call_parts_us") for run in runs):
        figures["single_call_parts_us"] = {
            name: statistics.median(run["single_call_parts_us"][name] for run in runs)
            for name in runs[0]["single_call_parts_us"]
        }
    figures["rounds"] = len(runs)
    return figures


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ratio(old: float | None, new: float | None) -> str:
    if not old or new is None:
        return "—"
    return f"{old / new:.2f}× faster" if new < old else f"{new / old:.2f}× slower"


def _row(
    name: str, before: dict[str, Any], after: dict[str, Any], key: str, fmt: str, higher: bool = False
) -> str:
    old, new = before.get(key), after.get(key)
    change = "—"
    if old and new:
        factor = new / old if higher else old / new
        change = (
            f"{factor:.2f}× {'faster' if factor >= 1 else 'slower'}"
            if factor >= 1
            else f"{1 / factor:.2f}× slower"
        )
    return f"| {name} | {fmt.format(old) if old else '—'} | {fmt.format(new)} | {change} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", type=Path, required=True, help="bundle directory to measure")
    parser.add_argument("-o", "--out", type=Path, default=BEFORE)
    parser.add_argument("--note", default="", help="what code was measured (e.g. the commit)")
    args = parser.parse_args(argv)
    metadata = json.loads((args.record / "metadata.json").read_text(encoding="utf-8"))
    figures = measure(args.record, metadata)
    figures["code"] = args.note
    args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
