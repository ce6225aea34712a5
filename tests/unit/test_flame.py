"""The bench's profile reading: py-spy's collapsed stacks into parts, top functions and a flame graph SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from training.bench import flame, http
from training.bench.flame import AUDIT_THREAD, OTHER, Profile, frame_key, parse_collapsed, part_of

pytestmark = pytest.mark.unit

ROOT = (
    "thread (0x7f01): MainThread;run (uvicorn/server.py:86);run_asgi (uvicorn/protocols/http/h11_impl.py:411)"
)
RAW = [
    f"{ROOT};score (serving/api/routes/score.py:80);ModerationModel.score (serving/model/moderation.py:184);"
    "dot (numpy/core/multiarray.py:5) 60\n",
    f"{ROOT};score (serving/api/routes/score.py:90);_score_one (serving/services/scoring.py:280);"
    "BaseModel.__init__ (pydantic/main.py:270) 10\n",
    f"{ROOT};RequestContextMiddleware.__call__ (serving/api/middleware.py:150);"
    "Logger.handle (logging/__init__.py:1600) 5\n",
    f"{ROOT};RequestResponseCycle.send (uvicorn/protocols/http/h11_impl.py:480) 15\n",
    f"{ROOT};Router.__call__ (starlette/routing.py:700) 5\n",
    f"thread (0x7f02): {AUDIT_THREAD};GroupCommit._run (serving/store/group_commit.py:90);"
    "_sqlite_audit_insert (serving/store/writer.py:190) 5\n",
    "not a stack line\n",
    "\n",
]


def profile() -> Profile:
    return Profile(parse_collapsed(RAW))


def test_stacks_are_read_with_their_thread_and_without_line_numbers() -> None:
    stacks = parse_collapsed(RAW)
    assert len(stacks) == 6 and sum(s.count for s in stacks) == 100
    assert stacks[0].thread == "MainThread" and stacks[-1].thread == AUDIT_THREAD
    assert stacks[0].frames[-1] == "dot (numpy/core/multiarray.py)"
    assert frame_key("<module> (<frozen runpy>:198)") == "<module> (<frozen runpy>)"
    assert frame_key("no location") == "no location"


def test_every_sample_belongs_to_one_part() -> None:
    stacks = parse_collapsed(RAW)
    names = [part_of(stack).name for stack in stacks]
    assert names[0].startswith("model")
    assert names[1].startswith("response")
    assert names[2].startswith("access log")
    # Every request's stack starts in uvicorn's protocol: only its own sends count as the server's.
    assert names[3].startswith("HTTP server") and part_of(stacks[4]) is OTHER
    assert names[5].startswith("audit")
    parts = profile().parts()
    assert sum(count for _, count in parts) == 100 and parts[0][1] == 60


def test_the_summary_shares_add_up_and_name_the_top_functions() -> None:
    summary = Profile(parse_collapsed(RAW), {"about": "test"}).summary(3)
    assert summary["about"] == "test" and summary["samples"] == 100
    assert sum(row["share"] for row in summary["parts"]) == pytest.approx(1.0)
    assert summary["top_self"][0]["function"] == "dot (numpy/core/multiarray.py)"
    assert len(summary["top_self"]) == 3
    # Frames every sample has (the server's own loop) say nothing about where time goes.
    assert all("uvicorn/server.py" not in row["function"] for row in summary["top_inclusive"])
    assert summary["threads"] == {"MainThread": 0.95, AUDIT_THREAD: 0.05}
    json.dumps(summary)


def test_the_flame_graph_is_an_svg_of_every_visible_frame(tmp_path: Path) -> None:
    path = profile().write_svg(tmp_path / "flame.svg", "test <graph>")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("dot (numpy/core/multiarray.py) — 60 samples (60.0%)") for t in titles)
    assert any(t.startswith(f"thread {AUDIT_THREAD} — 5 samples") for t in titles)
    fills = {
        (g.findtext("{http://www.w3.org/2000/svg}title") or "").split(" — ")[0]: rect.get("fill")
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if (rect := g.find("{http://www.w3.org/2000/svg}rect")) is not None
    }
    # One part's own frames in its colour; frames several parts pass through in the neutral one.
    assert fills["dot (numpy/core/multiarray.py)"] == flame.PARTS[1].colour
    assert fills["thread MainThread"] == fills["all"] == flame.SHARED_COLOUR
    assert fills[f"thread {AUDIT_THREAD}"] == flame.PARTS[0].colour
    text = path.read_text(encoding="utf-8")
    assert "test &lt;graph&gt;" in text and "model (ModerationModel.score): 60.0%" in text


def test_without_py_spy_the_bench_says_so_and_skips_only_the_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(flame, "py_spy_path", lambda: None)
    monkeypatch.setattr(http, "py_spy_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="py-spy not found"):
        flame.Recorder(1, 1.0, tmp_path / "raw.txt")
    reason = http.profile_under_load(1, "http://127.0.0.1:1/v1/score", [b"{}"], {}, tmp_path)
    assert isinstance(reason, str) and "py-spy not found" in reason
    lines = http.profile_lines(reason, None)
    assert lines[-1] == f"Not profiled: {reason}."


def test_the_report_prints_before_beside_now(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(http, "FLAME_SVG", tmp_path / "flame.svg")
    monkeypatch.setattr(http, "PROFILE_NOW", tmp_path / "now.json")
    now = Profile(parse_collapsed(RAW), {"py_spy": "py-spy record --gil"})
    before = {
        "about": "the old path",
        "samples": 10,
        "parts": [{"part": "audit log (group commit: SQLAlchemy, SQLite)", "samples": 4, "share": 0.4}],
    }
    lines = http.profile_lines(now, before)
    table = "\n".join(lines)
    assert "| audit log (group commit: SQLAlchemy, SQLite) | 40.0% | 5.0% |" in table
    assert "| model (ModerationModel.score) | — | 60.0% |" in table
    assert (tmp_path / "flame.svg").is_file()
    assert json.loads((tmp_path / "now.json").read_text(encoding="utf-8"))["samples"] == 100


@pytest.mark.parametrize("protocol", ["h11_impl", "httptools_impl"])
def test_only_the_server_s_own_frames_count_as_the_server_s_whichever_parser_serves(protocol: str) -> None:
    root = f"thread (0x7f01): MainThread;run_asgi (uvicorn/protocols/http/{protocol}.py:411)"
    lines = [
        f"{root};score (serving/api/routes/score.py:80);"
        "ModerationModel.score (serving/model/moderation.py:184) 3\n",
        f"{root};solve_dependencies (fastapi/dependencies/utils.py:600);"
        "scoring_context (serving/api/deps.py:90) 2\n",
        f"{root};Router.__call__ (starlette/routing.py:700) 1\n",
        f"{root};RequestResponseCycle.send (uvicorn/protocols/http/{protocol}.py:480) 4\n",
    ]
    names = [part_of(stack).name for stack in parse_collapsed(lines)]
    assert names[0].startswith("model") and names[1].startswith("dependencies")
    assert names[2] == OTHER.name and names[3].startswith("HTTP server")
