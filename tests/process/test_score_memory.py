"""`raqib score` keeps memory flat: 200,000 rows (plain or sorted) peak within 100 MB of 20,000."""

from __future__ import annotations

import csv
import itertools
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

OPENINGS = [
    "الحكومة لازم تتحرك",
    "الهلال بطل الدوري",
    "أسعار النفط نار",
    "great article thanks",
    "واتساب 0551234567 ربح مضمون",
    "يا حمار اسكت",
    "check my channel http://x.example",
    "الله يحفظ البلاد",
    "متى ينتهي هذا الوضع؟",
    "this is so true",
]
ENDINGS = ["", "!!", " والله", " 100%", " شكرا", " lol", " يا جماعة", " ؟"]
ARTICLES = {
    "pol-1": "الحكومة العراقية تبدأ محادثات مع واشنطن",
    "sport-7": "الهلال يفوز على النصر",
    "eco-3": "ارتفاع أسعار النفط مع خفض الإنتاج",
}
PEAK_BOUND_MB = 600
FLATNESS_MB = 100


def _write_export(path: Path, rows: int) -> None:
    rng = random.Random(7)
    article_ids = list(ARTICLES)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["comment_id", "text", "article_id", "article_title"])
        for i in range(rows):
            article = article_ids[i % len(article_ids)]
            # Distinct texts: the row number keeps every comment (and its features) different.
            text = f"{rng.choice(OPENINGS)} {i}{rng.choice(ENDINGS)}"
            writer.writerow([f"c{i}", text, article, ARTICLES[article]])


# The child reports its own high-water mark from /proc/self/status at exit. VmHWM belongs to the
# address space that exec created, whereas ru_maxrss (wait4, getrusage) survives exec and so counts
# the moment the child was a fork of this pytest process, which holds every model earlier tests loaded.
REPORT_PEAK = (
    "import atexit, runpy, sys\n"
    "peak_path = sys.argv.pop(1)\n"
    "def report():\n"
    "    status = open('/proc/self/status').read()\n"
    "    peak = next(line.split()[1] for line in status.splitlines() if line.startswith('VmHWM'))\n"
    "    open(peak_path, 'w').write(peak)\n"
    "atexit.register(report)\n"
    "runpy.run_module('training.cli.main', run_name='__main__', alter_sys=True)\n"
)


def _score_peak_rss(export: Path, output: Path, bundle: Path, *extra: str) -> tuple[float, float, str]:
    """Run `raqib score` in a subprocess; (peak RSS in MB, seconds, its output)."""
    peak_file = output.with_suffix(".peak")
    command = [
        sys.executable,
        "-c",
        REPORT_PEAK,
        str(peak_file),
        "score",
        str(export),
        "-o",
        str(output),
        "--model",
        str(bundle),
        "--no-explain",
        *extra,
    ]
    log = output.with_suffix(".log")
    started = time.perf_counter()
    with log.open("w") as sink:
        returncode = subprocess.run(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, text
    return int(peak_file.read_text()) / 1024, seconds, text  # VmHWM is in kB


def _data_lines(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def _risks(path: Path) -> list[float]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        risky = [c for c in reader.fieldnames or [] if c.startswith("p_") and c != "p_on_topic"]
        return [max(float(row[c]) for c in risky) for row in reader]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ off Linux")
def test_memory_stays_flat_from_20k_to_200k_rows(tiny_bundle, tmp_path, record_property) -> None:
    figures = {}
    runs = [("20k", 20_000, ()), ("200k", 200_000, ()), ("200k --sort risk", 200_000, ("--sort", "risk"))]
    for name, rows, extra in runs:
        export = tmp_path / f"export-{rows}.csv"
        if not export.exists():
            _write_export(export, rows)
        output = tmp_path / f"scored-{len(figures)}.csv"
        peak_mb, seconds, _ = _score_peak_rss(export, output, tiny_bundle, *extra)
        assert _data_lines(output) == rows
        if extra:
            risks = _risks(output)
            assert all(a >= b for a, b in itertools.pairwise(risks))
        figures[name] = peak_mb
        slug = name.replace(" --sort ", "_sorted_by_")
        record_property(f"peak_rss_mb_{slug}", round(peak_mb, 1))
        record_property(f"seconds_{slug}", round(seconds, 1))
        print(
            f"\n{name} rows ({export.stat().st_size / 1e6:.1f} MB CSV): peak RSS {peak_mb:.0f} MB, "
            f"{seconds:.1f} s ({rows / seconds:,.0f} rows/s)"
        )
    for name in ("200k", "200k --sort risk"):
        assert figures[name] < PEAK_BOUND_MB
        grew = figures[name] - figures["20k"]
        assert grew < FLATNESS_MB, f"{name}: peak RSS grew by {grew:.0f} MB over the 20k run"
