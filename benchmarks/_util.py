"""Shared pieces of the benchmark script: figures, timing, machine details, the results file.

Every figure is a :class:`Figure`: a measured value, and where a lower bound exists, the ratio
to it and the target for that ratio, so RESULTS.md reads the same way for every benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class Skip(Exception):
    """A benchmark that cannot run on this machine; the message says why and lands in RESULTS."""


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str = "s"
    bound: float | None = None      # the lower bound the value is compared with
    target: str = ""                # e.g. "ratio <= 1.10", "<= 2 ms"
    ok: bool | None = None          # met the target (None: no target)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.bound:
            return None
        return self.value / self.bound

    def row(self) -> list[str]:
        verdict = {True: "yes", False: "**no**", None: ""}[self.ok]
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        bound = "" if self.bound is None else fmt(self.bound, self.unit)
        return [self.name, fmt(self.value, self.unit), bound, ratio, self.target, verdict,
                self.note]


@dataclass
class Section:
    heading: str                     # "## ..." heading, without the hashes
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)   # extra markdown blocks
    skipped: str | None = None
    elapsed_s: float = 0.0

    def markdown(self) -> str:
        out = [f"## {self.heading}", ""]
        if self.intro:
            out += [self.intro.strip(), ""]
        if self.skipped:
            out += [f"Not measured: {self.skipped}", ""]
        if self.figures:
            out.append(table(["figure", "value", "lower bound", "ratio", "target", "met",
                              "note"], [f.row() for f in self.figures]))
            out.append("")
        for block in self.tables:
            out += [block.strip(), ""]
        return "\n".join(out).rstrip() + "\n"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1.0:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "$":
        return f"${value:.4f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}".strip()


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_ci() -> bool:
    return os.environ.get("RLM_CI") == "1"


def docker_available() -> str | None:
    """None when a Docker daemon answers, else why not."""
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the docker CLI is missing or hangs ({exc})"
    if proc.returncode != 0:
        return f"no Docker daemon answers ({proc.stderr.strip()[:200]})"
    return None


def machine_details() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    load = ""
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    details = [
        ("date (UTC)", time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
        ("OS", f"{platform.system()} {platform.release()} ({_os_name()})"),
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("memory", mem),
        ("load average (1/5/15 min) at start", load),
        ("Python", sys.version.split()[0]),
        ("rlm-jupyter", _version("rlm-jupyter")),
        ("litellm", _version("litellm")),
        ("RestrictedPython", _version("RestrictedPython")),
        ("docker", _docker_version()),
    ]
    return details


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _docker_version() -> str:
    try:
        proc = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True, timeout=20)
        return f"server {proc.stdout.strip()}" if proc.returncode == 0 else "no daemon"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


# -- RESULTS.md -----------------------------------------------------------------------------

def split_sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(preamble lines, [(heading line, body lines)]) split at ``## `` headings."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, sections


def write_results(path: Path, header: str, sections: list[Section],
                  own_headings: Iterable[str] = ()) -> None:
    """Replace the header and our own sections; keep every other ``## `` section as it was.

    Other tools (the evaluation kit) write their own sections into the same file, so a
    section survives unless this run produced one with the same heading, or it is one of ours
    that this run did not produce (a stale figure is worse than none).
    """
    ours = {f"## {s.heading}" for s in sections} | {f"## {h}" for h in own_headings}
    kept: list[str] = []
    if path.exists():
        _, existing = split_sections(path.read_text())
        for heading, body in existing:
            if heading in ours:
                continue
            kept.append("\n".join([heading, *body]).rstrip() + "\n")
    parts = [header.rstrip() + "\n"] + [s.markdown() for s in sections] + kept
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def dump_json(path: Path, sections: list[Section]) -> None:
    data = []
    for s in sections:
        data.append({"heading": s.heading, "skipped": s.skipped, "elapsed_s": s.elapsed_s,
                     "figures": [dict(f.__dict__, ratio=f.ratio) for f in s.figures]})
    path.write_text(json.dumps(data, indent=2, default=str))
