"""Shared fixtures: a tiny model trained on inline rows, written as a real serving bundle."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

# The throwaway PostgreSQL cluster and the `store_url` fixture over both backends.
pytest_plugins = ["tests.postgres"]

# Each folder under tests/ is one kind of test, and its marker says so: `pytest -m unit` runs
# tests/unit and nothing else. A test module marked for another folder's kind is an error.
FOLDER_MARKERS = ("unit", "api", "model", "e2e", "process")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--integration",
        action="store_true",
        help="also run the tests marked `integration` (several servers at once; `make check-integration`)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = []
    # Whole-deployment drills take minutes: CI runs them as their own step, `make test` stays short.
    skip_integration = pytest.mark.skip(reason="an integration drill: run with --integration")
    for item in items:
        if "integration" in item.keywords and not config.getoption("--integration"):
            item.add_marker(skip_integration)
        folder = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if folder not in FOLDER_MARKERS:
            continue
        others = sorted({m.name for m in item.iter_markers() if m.name in FOLDER_MARKERS} - {folder})
        if others:
            misplaced.append(f"{item.nodeid} is marked {others} but lives in tests/{folder}")
        item.add_marker(getattr(pytest.mark, folder))
    if misplaced:
        raise pytest.UsageError("tests whose marker disagrees with their folder:\n" + "\n".join(misplaced))


SHARED = Path(os.environ.get("RAQIB_SHARED", REPO.parent / "shared"))


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def uvicorn_command(port: int) -> list[str]:
    """The command that serves the app factory on loopback, as `raqib serve` would."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "serving.api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child server: no RAQIB_* settings of the developer's, a throwaway state dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAQIB_") or k == "RAQIB_SHARED"}
    # Servers started here keep their stores in a throwaway dir, never in the repository's var/.
    env["RAQIB_STATE_DIR"] = tempfile.mkdtemp(prefix="raqib-state-")
    env.update(extra)
    return env


def wait_until(check: Any, timeout: float) -> bool:
    """Poll `check` until it is true (HTTP errors count as not yet) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


POLITICS_TITLE = "الحكومة العراقية تبدأ محادثات مع واشنطن حول انسحاب القوات الأجنبية"
POLITICS_BODY = (
    "قالت الحكومة العراقية إن محادثات مع الولايات المتحدة ستحدد جدولا لانسحاب القوات الأجنبية "
    "من العراق، بينما تواصل الفصائل المسلحة تهديد قواعد التحالف في الأنبار وبغداد."
)
SPORT_TITLE = "الهلال يفوز على النصر ويتصدر الدوري السعودي"
SPORT_BODY = (
    "حقق فريق الهلال فوزا كبيرا على النصر بثلاثة أهداف في مباراة الدوري السعودي، "
    "وسجل المهاجم هدفين في الشوط الثاني أمام جماهير الملعب."
)
ECONOMY_TITLE = "ارتفاع أسعار النفط مع خفض الإنتاج"
ECONOMY_BODY = "ارتفعت أسعار النفط بعد قرار خفض الإنتاج، وتوقع محللون استمرار صعود سعر البرميل."

ON_POLITICS = [
    "المحادثات مع واشنطن لن تخرج القوات من العراق",
    "الفصائل تهدد الحكومة والقواعد الأمريكية باقية",
    "انسحاب القوات الأجنبية مطلب كل العراقيين",
    "الحكومة العراقية ضعيفة أمام الفصائل المسلحة",
    "متى يكون الانسحاب من قواعد الأنبار؟",
]
ON_SPORT = [
    "الهلال بطل الدوري هذا الموسم",
    "مباراة قوية والنصر لعب بشكل سيء",
    "المهاجم سجل هدفين رائعين في الشوط الثاني",
    "جماهير الهلال صنعت الفرق في الملعب",
    "الدوري السعودي أصبح قويا جدا",
]
ON_ECONOMY = [
    "أسعار النفط سترتفع أكثر بعد خفض الإنتاج",
    "سعر البرميل مرتفع والمواطن يدفع الثمن",
    "خفض الإنتاج قرار صحيح لرفع الأسعار",
]
SPAM = [
    "للتواصل واتساب 0551234567 ربح مضمون يوميا",
    "استثمر 100 دولار واربح 5000 في أسبوع سجل الآن www.win-fast.example",
    "check out my channel and subscribe http://my-channel.example",
    "قرض سريع بدون كفيل اتصل 0501112223",
    "شيخ روحاني لجلب الحبيب وفك السحر واتساب 0569998887",
    "free followers visit bit.ly/abc123 now",
]
ABUSIVE = [
    "يا حمار يا جاهل اسكت",
    "الله يلعنكم يا كلاب يا خونة",
    "انتم حثالة ومتخلفين",
    "you are an idiot and a moron",
    "يا غبي يا حقير",
]


def tiny_training_frame() -> pd.DataFrame:
    """A few dozen inline rows covering every label, with and without articles."""
    rows = []
    articles = {
        "pol": (POLITICS_TITLE, POLITICS_BODY),
        "sport": (SPORT_TITLE, SPORT_BODY),
        "eco": (ECONOMY_TITLE, ECONOMY_BODY),
    }
    on = {"pol": ON_POLITICS, "sport": ON_SPORT, "eco": ON_ECONOMY}
    for key, comments in on.items():
        title, body = articles[key]
        for text in comments:
            rows.append((text, "on_topic", title, body))
            rows.append((text, "on_topic", title, None))
            rows.append((text, "on_topic", None, None))
            other = "sport" if key != "sport" else "pol"
            rows.append((text, "off_topic", *articles[other]))
    for i, text in enumerate(SPAM + ABUSIVE):
        label = "spam" if text in SPAM else "abusive"
        title, body = list(articles.values())[i % 3]
        rows.append((text, label, title, body))
        rows.append((text, label, None, None))
    return pd.DataFrame(rows, columns=["text", "label", "article_title", "article_text"])


def fit_tiny_pipeline() -> Any:
    """A logistic-regression Pipeline fitted on the inline rows (seconds)."""
    from training.experiment.config import FeatureConfig
    from training.experiment.pipeline import build_pipeline

    frame = tiny_training_frame()
    pipeline = build_pipeline(FeatureConfig(min_df=1, lsa_components=20), "logreg", {"C": 10.0})
    pipeline.fit(frame, frame["label"])
    return pipeline


def write_tiny_bundle(pipeline: Any, out: Path, version: str = "0-test") -> Path:
    """`pipeline` exported as a real bundle directory (pickle + metadata + sha256); also used by
    .ci/check-serve-install.sh."""
    from serving.model.bundle import write_bundle

    labels = [str(c) for c in pipeline.classes_]
    metadata = {
        "name": "raqib-moderator",
        "version": version,
        "labels": labels,
        "thresholds": {
            "reject_at": {label: 0.8 for label in labels if label != "on_topic"},
            "review_at": {label: 0.4 for label in labels if label != "on_topic"},
        },
        "metrics": {"frozen_macro_f1": None},
        "training_data": {"sha256": "tiny", "rows": len(tiny_training_frame())},
    }
    write_bundle(pipeline, metadata, out)
    return out


@pytest.fixture(scope="session")
def tiny_pipeline() -> Any:
    """A fitted logistic-regression Pipeline on the inline rows."""
    return fit_tiny_pipeline()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_pipeline: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Pipeline exported as a real bundle directory (pickle + metadata + sha256)."""
    return write_tiny_bundle(tiny_pipeline, tmp_path_factory.mktemp("bundle") / "champion")


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may corrupt or overwrite."""
    target = tmp_path / "models" / "champion"
    shutil.copytree(tiny_bundle, target)
    return target
