"""Where a server's time goes under load: py-spy samples, a top-N table, and a flame graph SVG.

`record(pid, seconds, out)` attaches py-spy to a running server and writes its samples as collapsed
stacks (py-spy's `raw` format: one `frame;frame;...;leaf COUNT` line per distinct stack, the first
frame naming the thread). `Profile` reads those lines and answers what the http section prints:

- the share of samples per *part* of a request (the audit log, the model, validation, JSON, logging,
  metrics, the HTTP server...), each sample given to exactly one part, so the shares add up to 100 %;
- the functions with the most samples on their own (self) and under them (inclusive);
- a flame graph SVG drawn from the same samples, coloured by part, so the picture and the table
  cannot disagree.

Frames are compared without line numbers (`score (serving/api/routes/score.py)`), so a function
is one box however many lines of it were sampled.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PY_SPY = "py-spy"
PY_SPY_INSTALL = "pip install 'py-spy>=0.4'"
SAMPLE_RATE = 200
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\)(?:: (?P<name>.*))?$")
AUDIT_THREAD = "raqib-audit-writer"


@dataclass(frozen=True)
class Part:
    """A part of a request's work: a sample belongs to it when a frame matches one of its markers."""

    name: str
    colour: str
    # Substrings of a frame ("function (package/file.py)"), or of the thread's name when prefixed "thread:".
    markers: tuple[str, ...]


# Checked in this order: the first part with a matching frame anywhere in the stack takes the sample.
# The audit and the model come first because they own whole subtrees (SQLAlchemy and numpy inside
# them are theirs); the access log before metrics, both inside the request-context middleware.
PARTS: tuple[Part, ...] = (
    Part(
        "audit log (group commit: SQLAlchemy, SQLite)",
        "#e8893a",
        (f"thread:{AUDIT_THREAD}", "serving/store/", "sqlalchemy/", "sqlite3/", "audit_entry ("),
    ),
    Part(
        "model (ModerationModel.score)",
        "#58a55c",
        ("ModerationModel.score (", "serving/model/", "serving/features/", "serving/text/", "sklearn/"),
    ),
    Part(
        "response: validation and JSON",
        "#b565c9",
        (
            "serialize_response (",
            "jsonable_encoder (",
            "JSONResponse.render (",
            "ORJSONResponse.render (",
            "_response_fields (",
            "_score_one (",
            "json/encoder.py",
            "json/__init__.py",
        ),
    ),
    Part(
        "request: body and validation",
        "#5b8fd6",
        ("request_body_to_args (", "Request.body (", "Request.json (", "json/decoder.py", "pydantic"),
    ),
    Part("access log (logging)", "#d6c24a", ("logging/",)),
    Part("metrics (prometheus_client)", "#c9a07a", ("prometheus_client/",)),
    # Only uvicorn's own parsing and socket writes: every request's stack starts in uvicorn/protocols.
    Part(
        "HTTP server (uvicorn, h11/httptools, socket writes)",
        "#8fb3c9",
        (
            "h11/",
            # The package, not uvicorn's httptools_impl.py that every request's stack starts in.
            "httptools/",
            "H11Protocol.",
            "HttpToolsProtocol.",
            "RequestResponseCycle.send (",
            "RequestResponseCycle.receive (",
            "asyncio/selector_events.py",
        ),
    ),
    Part(
        "dependencies (API key, rate limit, model, store)",
        "#6fc9b5",
        ("solve_dependencies (", "serving/api/deps.py", "fastapi/security/", "serving/runtime/ratelimit.py"),
    ),
    Part("threadpool and task hand-offs (anyio, concurrent.futures)", "#a0a0a0", ("anyio/", "concurrent/")),
)
OTHER = Part("other (ASGI middleware, routing, event loop)", "#a8a8a8", ())


def frame_key(frame: str) -> str:
    """`name (file)`: a frame without its line number."""
    match = _FRAME.match(frame)
    return f"{match['name']} ({match['file']})" if match else frame


def thread_name(frame: str) -> str | None:
    """The thread's name when `frame` is py-spy's thread frame (`thread (0x7f..): MainThread`)."""
    match = _THREAD.match(frame)
    if match is None:
        return None
    return match["name"] or "thread"


@dataclass(frozen=True)
class Stack:
    """One distinct stack: its thread, its frames root first (without line numbers), how often seen."""

    thread: str
    frames: tuple[str, ...]
    count: int


def parse_collapsed(lines: Iterable[str]) -> list[Stack]:
    """py-spy's raw output (collapsed stacks) as Stacks; lines that are not `stack COUNT` are skipped."""
    stacks: list[Stack] = []
    for line in lines:
        text, _, count = line.rstrip("\n").rpartition(" ")
        if not text or not count.isdigit():
            continue
        frames = text.split(";")
        thread = thread_name(frames[0])
        if thread is not None:
            frames = frames[1:]
        stacks.append(Stack(thread or "thread", tuple(frame_key(f) for f in frames), int(count)))
    return stacks


def part_of(stack: Stack) -> Part:
    """The part of the work a sample belongs to (see PARTS)."""
    for part in PARTS:
        for marker in part.markers:
            if marker.startswith("thread:"):
                if stack.thread == marker.removeprefix("thread:"):
                    return part
            elif any(marker in frame for frame in stack.frames):
                return part
    return OTHER


@dataclass
class Profile:
    """Samples of one server under load."""

    stacks: list[Stack]
    about: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, about: dict[str, Any] | None = None) -> Profile:
        """A py-spy raw file."""
        with path.open(encoding="utf-8", errors="replace") as lines:
            return cls(parse_collapsed(lines), dict(about or {}))

    @property
    def samples(self) -> int:
        """All samples (every thread that was running when sampled)."""
        return sum(stack.count for stack in self.stacks)

    def _share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0

    def parts(self) -> list[tuple[Part, int]]:
        """Samples per part, largest first; each sample counted once."""
        counts: Counter[str] = Counter()
        for stack in self.stacks:
            counts[part_of(stack).name] += stack.count
        known = {part.name: part for part in (*PARTS, OTHER)}
        return [(known[name], count) for name, count in counts.most_common()]

    def top_self(self, n: int) -> list[tuple[str, int]]:
        """Functions that were on top of the stack (doing the work themselves) most often."""
        counts: Counter[str] = Counter()
        for stack in self.stacks:
            if stack.frames:
                counts[stack.frames[-1]] += stack.count
        return counts.most_common(n)

    def top_inclusive(self, n: int, skip: Sequence[str] = ()) -> list[tuple[str, int]]:
        """Functions with the most samples under them (a recursive function counts once per sample)."""
        counts: Counter[str] = Counter()
        for stack in self.stacks:
            for frame in set(stack.frames):
                if not any(s in frame for s in skip):
                    counts[frame] += stack.count
        return counts.most_common(n)

    def summary(self, n: int = 15) -> dict[str, Any]:
        """The compact JSON a bench run keeps: parts, top functions and threads, shares of all samples."""
        threads: Counter[str] = Counter()
        for stack in self.stacks:
            threads[stack.thread] += stack.count
        return {
            **self.about,
            "samples": self.samples,
            "parts": [
                {"part": part.name, "samples": count, "share": round(self._share(count), 4)}
                for part, count in self.parts()
            ],
            "top_self": [
                {"function": name, "samples": count, "share": round(self._share(count), 4)}
                for name, count in self.top_self(n)
            ],
            "top_inclusive": [
                {"function": name, "samples": count, "share": round(self._share(count), 4)}
                for name, count in self.top_inclusive(n, skip=_SCAFFOLDING)
            ],
            "threads": {name: round(self._share(count), 4) for name, count in threads.most_common()},
        }

    def write_svg(self, path: Path, title: str) -> Path:
        """The flame graph: root at the bottom, width = share of samples, colour = part (see the legend)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_svg(self, title), encoding="utf-8")
        return path


# Frames every sample of a thread has (the interpreter, uvicorn's start-up, the event loop's turn):
# an inclusive 100 % says nothing about where time goes.
_SCAFFOLDING = (
    "<frozen runpy>",
    "uvicorn/__main__.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "click/core.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "threading.py",
)


# --- the flame graph ------------------------------------------------------------------------------

WIDTH = 1200
ROW = 16
MIN_PIXELS = 0.3


# Boxes whose samples belong to more than one part (the server's loop, the middleware every request
# passes through): neutral, so a colour marks where one part's own subtree begins.
SHARED_COLOUR = "#e4e4de"


@dataclass
class _Node:
    name: str
    count: int = 0
    parts: Counter[str] = field(default_factory=Counter)
    children: dict[str, _Node] = field(default_factory=dict)

    def colour(self, colours: dict[str, str]) -> str:
        return colours[next(iter(self.parts))] if len(self.parts) == 1 else SHARED_COLOUR


def _tree(profile: Profile) -> _Node:
    root = _Node("all")
    for stack in profile.stacks:
        part = part_of(stack)
        node = root
        node.count += stack.count
        node.parts[part.name] += stack.count
        for frame in (f"thread {stack.thread}", *stack.frames):
            node = node.children.setdefault(frame, _Node(frame))
            node.count += stack.count
            node.parts[part.name] += stack.count
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def render_svg(profile: Profile, title: str) -> str:
    """A self-contained SVG (no script): one box per frame, its samples and share in a hover title."""
    root = _tree(profile)
    total = max(root.count, 1)
    legend = profile.parts()
    colours = {part.name: part.colour for part in (*PARTS, OTHER)}
    depth = _depth(root)
    top = 48 + ROW * ((len(legend) + 2) // 3)
    height = top + depth * ROW + 10
    scale = WIDTH / total
    boxes: list[str] = []

    def draw(node: _Node, x: float, level: int) -> None:
        width = node.count * scale
        if width < MIN_PIXELS:
            return
        y = height - 10 - (level + 1) * ROW
        label = html.escape(f"{node.name} — {node.count} samples ({node.count / total:.1%})")
        text = ""
        characters = int((width - 6) / 6.5)
        if characters >= 3:
            shown = node.name if len(node.name) <= characters else node.name[: characters - 1] + "…"
            text = f'<text x="{x + 3:.1f}" y="{y + 12}">{html.escape(shown)}</text>'
        boxes.append(
            f'<g><title>{label}</title><rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{ROW - 1}" '
            f'fill="{node.colour(colours)}" rx="1"/>{text}</g>'
        )
        offset = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, offset, level + 1)
            offset += child.count * scale

    draw(root, 0.0, 0)
    keys = []
    for i, (part, count) in enumerate(legend):
        kx, ky = 10 + (i % 3) * 400, 40 + (i // 3) * ROW
        keys.append(
            f'<rect x="{kx}" y="{ky - 11}" width="12" height="12" fill="{part.colour}"/>'
            f'<text x="{kx + 16}" y="{ky}">{html.escape(part.name)}: {count / total:.1%}</text>'
        )
    header = html.escape(f"{title} — {total} samples; grey boxes: frames shared by several parts")
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="11">',
            f'<rect width="{WIDTH}" height="{height}" fill="#fcfcf8"/>',
            f'<text x="10" y="18" font-size="14">{header}</text>',
            *keys,
            *boxes,
            "</svg>",
            "",
        ]
    )


# --- recording ------------------------------------------------------------------------------------


def py_spy_path() -> str | None:
    """py-spy beside this interpreter (the venv's), else on PATH, else None."""
    beside = Path(sys.executable).with_name(PY_SPY)
    if beside.is_file():
        return str(beside)
    return shutil.which(PY_SPY)


class Recorder:
    """py-spy attached to a process for `seconds`; `finish()` waits and returns the raw file."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = SAMPLE_RATE):
        binary = py_spy_path()
        if binary is None:
            raise FileNotFoundError(f"py-spy not found (install it with `{PY_SPY_INSTALL}`)")
        self.out = out
        self.command = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--threads",
            # Only the thread holding the GIL: what one worker process serialises (see describe()).
            "--gil",
            "--rate",
            str(rate),
            "--duration",
            str(max(1, round(seconds))),
            "--output",
            str(out),
        ]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def describe(self) -> str:
        """The command line, without this run's pid and file."""
        options = self.command[1:]
        options[options.index("--pid") + 1] = "PID"
        return "py-spy " + " ".join(options[: options.index("--output")])

    def finish(self, timeout: float = 60.0) -> Path:
        """Wait for py-spy to write its file; RuntimeError with its output if it could not sample."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        if self.process.returncode != 0 or not self.out.is_file() or self.out.stat().st_size == 0:
            message = output.decode("utf-8", errors="replace").strip()[-400:]
            raise RuntimeError(f"py-spy failed ({self.process.returncode}): {message}")
        return self.out


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """The summary as indented JSON (committed: a later run prints it as 'before')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
