"""The retrain section: does today's code train the model the champion is, and the same one twice?

The stages section scores one bundle with the old and the new scoring code. That shows serving's
changes kept the numbers; it says nothing of training's. Here the full public experiment is trained
twice by the current code, in two processes with different hash seeds (set and dict orders differ
between them), and the two models and the champion are scored on the champion's frozen set:

- the two new models against each other: is training reproducible run to run?
- a new model against the champion: is quality unchanged (frozen macro-F1 and every per-source
  macro-F1 within 0.005), or did a change to the features' arithmetic move the fitted model?

Run alone: `python -m training.bench.run --only retrain` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.bench.quality import PUBLIC_BUILD, PUBLIC_CONFIG, champion_split
from training.bench.report import Goal, Section, measured_on, skipped
from training.bench.stages import QUALITY_TOLERANCE, quality

HASH_SEEDS = ("1", "2")


def train_into(path: Path, config: Path = PUBLIC_CONFIG) -> None:
    """Run the experiment (what `raqib train` fits, nothing logged) and pickle its pipeline and thresholds."""
    from training.experiment.config import load_config
    from training.experiment.train import run_experiment

    result = run_experiment(load_config(config), Path("."))
    with path.open("wb") as out:
        pickle.dump({"pipeline": result.pipeline, "thresholds": result.thresholds}, out, protocol=5)


def _train_in_process(path: Path, hash_seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    command = [sys.executable, "-m", "training.bench.retrain", "--into", str(path)]
    print(f"retrain: {' '.join(command[1:])} (PYTHONHASHSEED={hash_seed})", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}): {done.stderr[-800:]}")


def _probabilities(pipeline: Any, frame: Any) -> np.ndarray:
    return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)


def compare(
    champion: Any, fresh: Sequence[dict[str, Any]], frozen: Sequence[Any], labels: Sequence[str]
) -> dict[str, Any]:
    """Probabilities, decisions and quality of the fresh models beside the champion's, on the frozen set."""
    from training.data.gather import to_frame

    frame = to_frame(frozen)
    truth = [r.label or "" for r in frozen]
    sources = [r.source or "" for r in frozen]
    classes = [str(c) for c in champion.classes_]
    probabilities = [_probabilities(champion, frame), *(_probabilities(f["pipeline"], frame) for f in fresh)]
    predicted = [[classes[k] for k in np.argmax(p, axis=1)] for p in probabilities]
    qualities = [quality(truth, p, sources, labels) for p in predicted]
    champion_q, fresh_q = qualities[0], qualities[1]
    deltas = {"frozen macro-F1": fresh_q["macro_f1"] - champion_q["macro_f1"]}
    for source, value in fresh_q["per_source_macro_f1"].items():
        if source in champion_q["per_source_macro_f1"]:
            deltas[f"{source} macro-F1"] = value - champion_q["per_source_macro_f1"][source]
    return {
        "rows": len(frozen),
        "runs_identical": bool(np.array_equal(probabilities[1], probabilities[2])),
        "runs_max_difference": float(np.abs(probabilities[1] - probabilities[2]).max()),
        "runs_thresholds_equal": fresh[0]["thresholds"] == fresh[1]["thresholds"],
        "champion_max_difference": float(np.abs(probabilities[0] - probabilities[1]).max()),
        "champion_decisions_differ": sum(a != b for a, b in zip(predicted[0], predicted[1], strict=True)),
        "champion_quality": champion_q,
        "fresh_quality": fresh_q,
        "deltas": deltas,
    }


def retrain_section(bundle: Path, metadata: dict[str, Any], data: Path = PUBLIC_BUILD) -> Section:
    """Train twice with today's code and compare both models with each other and with the champion."""
    title = "Retraining with today's code: reproducible, and quality against the champion"
    if not data.is_file():
        return skipped("retrain", title, f"{data} is absent (build it with `make data`)")
    stamp = measured_on()
    split = champion_split(metadata)
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        paths = [Path(tmp) / f"model-{seed}.pkl" for seed in HASH_SEEDS]
        for path, seed in zip(paths, HASH_SEEDS, strict=True):
            _train_in_process(path, seed)
        fresh = [pickle.loads(path.read_bytes()) for path in paths]
    # The bundle's own file, unpickled as the server does (verified against its recorded checksum).
    from serving.model.bundle import load_verified_model

    champion = load_verified_model(bundle / "model.joblib", metadata)
    labels = [str(label) for label in metadata.get("labels") or champion.classes_]
    figures = compare(champion, fresh, split.frozen, labels)
    deltas = figures["deltas"]
    worst = max(deltas, key=lambda k: abs(deltas[k]))
    same = "**identical**" if figures["runs_identical"] else "not identical"
    lines = [
        stamp,
        "",
        f"Protocol: `{PUBLIC_CONFIG}` trained twice by the current code (training.bench.retrain: the "
        "experiment `raqib train` runs, nothing logged), each in its own process with PYTHONHASHSEED "
        f"{' and '.join(HASH_SEEDS)}; both models and the champion scored on the champion's frozen set "
        f"(n = {figures['rows']:,}; decisions = the most probable label).",
        split.provenance(),
        "",
        f"- The two new models: probabilities {same} (largest difference "
        f"{figures['runs_max_difference']:.1e}), thresholds "
        f"{'equal' if figures['runs_thresholds_equal'] else 'different'}.",
        f"- A new model against the champion: largest probability difference "
        f"{figures['champion_max_difference']:.3f}, {figures['champion_decisions_differ']} of "
        f"{figures['rows']:,} decisions differ.",
        "",
        "| macro-F1 on the frozen set | champion | retrained now | change |",
        "|---|---|---|---|",
        f"| all rows | {figures['champion_quality']['macro_f1']:.4f} | "
        f"{figures['fresh_quality']['macro_f1']:.4f} | {deltas['frozen macro-F1']:+.4f} |",
    ]
    for source, value in figures["fresh_quality"]["per_source_macro_f1"].items():
        before = figures["champion_quality"]["per_source_macro_f1"].get(source)
        if before is not None:
            lines.append(f"| {source} | {before:.4f} | {value:.4f} | {value - before:+.4f} |")
    goals = [
        Goal(
            "quality unchanged when retrained: frozen macro-F1 and every per-source figure",
            f"largest change {deltas[worst]:+.4f} ({worst})",
            f"within {QUALITY_TOLERANCE}",
            "met" if abs(deltas[worst]) <= QUALITY_TOLERANCE else "missed",
        ),
        Goal(
            "training reproducible: two runs, two hash seeds",
            "identical probabilities" if figures["runs_identical"] else "probabilities differ",
            "identical",
            "met" if figures["runs_identical"] and figures["runs_thresholds_equal"] else "missed",
        ),
    ]
    return Section("retrain", title, lines, goals, json.loads(json.dumps(figures, default=str)))


def main(argv: Sequence[str] | None = None) -> int:
    description = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m training.bench.retrain", description=description)
    parser.add_argument("--into", type=Path, required=True, help="Where to pickle the trained pipeline.")
    parser.add_argument("--config", type=Path, default=PUBLIC_CONFIG)
    args = parser.parse_args(argv)
    train_into(args.into, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
