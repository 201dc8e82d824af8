"""rlm-jupyter's speed benchmarks; writes ``benchmarks/RESULTS.md``.

    python benchmarks/run.py            # everything (about 10-15 minutes; installs rlms once)
    python benchmarks/run.py --quick    # a smoke run of every code path with tiny sizes (<2 min)
    python benchmarks/run.py --only 1,2 --backends local

Every model call goes over real HTTP to the scripted latency-simulating server
(``rlm_jupyter.testing.ScriptedServer``). Figures are recorded as ratios to their lower bounds
where one exists. Only this script's sections of RESULTS.md are replaced; sections written by
other tools (the evaluation kit) are kept. Docker figures are skipped when no daemon answers,
except with ``RLM_CI=1``, where a missing Docker is an error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (HERE, Section, Skip, docker_available, dump_json, in_ci,  # noqa: E402
                   machine_details, table, write_results)

ALL = ["1", "2", "3", "3b", "4", "5", "6", "7"]
BACKENDS = ["local", "inprocess", "docker"]

#: Every heading this script may write, so a stale one is dropped when a run skips it.
OWN_HEADINGS = [
    "1. A batch of 64 sub-calls", "2. Per-turn host overhead", "2b. Hotspots (local backend)",
    "3. Large contexts", "3b. Sandbox backends", "4. A cached re-run",
    "5. Import times", "6. Needle in a haystack: rlm-jupyter beside rlms",
    "7. Many contexts: RLM.map", "Run notes",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: every code path, tiny sizes, rlms skipped")
    p.add_argument("--out", default=str(HERE / "RESULTS.md"), help="results file to update")
    p.add_argument("--only", default=",".join(ALL), help=f"benchmarks to run ({','.join(ALL)})")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="sandbox backends (docker is dropped when no daemon answers)")
    rl = p.add_mutually_exclusive_group()
    rl.add_argument("--rlms", dest="rlms", action="store_true", default=None,
                    help="run the rlms comparison even in --quick mode")
    rl.add_argument("--no-rlms", dest="rlms", action="store_false",
                    help="skip the rlms comparison")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (profiles, logs)")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def usable_backends(requested: list[str]) -> tuple[list[str], str | None]:
    """The backends to measure, and why docker is left out (None when it is in)."""
    reason = None
    if "docker" in requested:
        reason = docker_available()
        if reason is None:
            reason = _docker_image_missing()
        if reason is not None:
            if in_ci():
                raise SystemExit(f"RLM_CI=1 but Docker cannot be benchmarked: {reason}")
            requested = [b for b in requested if b != "docker"]
    return requested, reason


def _docker_image_missing() -> str | None:
    """Open and close one docker sandbox: the cheapest proof the backend works here."""
    try:
        from rlm_jupyter.sandbox import open_sandbox

        with open_sandbox("docker", timeout_s=60) as sb:
            r = sb.execute("print(1 + 1)")
            if "2" not in r.stdout:
                return f"the docker sandbox ran but printed {r.stdout!r} ({r.error})"
    except Exception as exc:  # noqa: BLE001 - becomes the reason in RESULTS.md
        return f"the docker sandbox does not start: {type(exc).__name__}: {str(exc)[:300]}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    quick = args.quick
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {sorted(unknown)}; use {ALL}")
    requested = [b.strip() for b in args.backends.split(",") if b.strip()]
    with_rlms = (not quick) if args.rlms is None else args.rlms
    started = time.perf_counter()
    details = machine_details()
    backends, docker_reason = usable_backends(requested)
    if docker_reason:
        log(f"docker left out: {docker_reason}")
    workdir = Path(tempfile.mkdtemp(prefix="rlm-bench-"))
    from rlm_jupyter.engine.llm import get_litellm

    get_litellm()  # pay the import once, outside every figure
    import _needle
    import _ours

    _ours.warm_up(workdir)  # litellm's first call loads more of itself; no figure pays it

    p = _Plan(quick)
    sections: list[Section] = []
    failures: list[str] = []

    def step(key: str, label: str, fn: Callable[[], Any]) -> None:
        if key not in only:
            return
        log(f"{label} ...")
        t0 = time.perf_counter()
        try:
            produced = fn()
        except Skip as exc:
            produced = [Section(label, skipped=str(exc))]
        except Exception as exc:  # noqa: BLE001 - record it and keep going
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
            produced = [Section(label, skipped=f"failed: {type(exc).__name__}: {exc}")]
        produced = produced if isinstance(produced, list) else [produced]
        for s in produced:
            s.elapsed_s = time.perf_counter() - t0
        sections.extend(produced)
        log(f"{label}: {time.perf_counter() - t0:.1f} s")

    profile_dir = workdir / "profiles"

    def turns_and_hotspots() -> list[Section]:
        s, _ = _ours.turns(backends, workdir, n_turns=p.turns, repeats=p.repeats,
                           profile_dir=profile_dir)
        out = [s]
        hot = Section("2b. Hotspots (local backend)",
                      f"cProfile of one {p.turns}-turn run on the local backend per transport "
                      f"(no listener, zero-latency model; the scripted server runs in its own "
                      f"process). Top functions by own time, own time by package, then our "
                      f"own functions by cumulative time.")
        for transport in _ours.transports():
            prof = profile_dir / f"local-{transport}.prof"
            if prof.exists():
                hot.tables.append(f"### transport={transport}\n\n" + _ours.hotspots(prof))
                hot.tables.append(table(["rlm_jupyter function", "calls", "own ms",
                                         "cumulative ms"], _ours.engine_hotspots(prof)))
        if hot.tables:
            out.append(hot)
        return out

    step("1", OWN_HEADINGS[0], lambda: _ours.batch(
        backends, workdir, n=p.batch_n, latency_s=p.batch_latency, repeats=p.repeats))
    step("2", OWN_HEADINGS[1], turns_and_hotspots)
    # A fresh interpreter per context run (peak memory must be that run's own); the smoke run
    # starts only one (the local backend), to stay short.
    step("3", OWN_HEADINGS[3], lambda: _ours.contexts(
        backends, p.context_mb, workdir, fresh={"local"} if quick else None))
    step("3b", OWN_HEADINGS[4], lambda: _ours.sandbox_micro(backends, p.micro_mb,
                                                            cells=p.cells, starts=p.starts))
    step("4", OWN_HEADINGS[5], lambda: _ours.cached_rerun("local", workdir, n=p.cache_n))
    step("5", OWN_HEADINGS[6], lambda: _ours.import_times(repeats=p.import_repeats))
    step("6", OWN_HEADINGS[7], lambda: _needle.run(
        workdir, lines=p.needle_lines, chunks=p.needle_chunks, latencies=p.needle_latencies,
        repeats=p.needle_repeats, with_rlms=with_rlms, ours_backends=backends,
        docker_reason=docker_reason, log=log))

    step("7", "7. Many contexts: RLM.map", lambda: _map_section(quick))

    total = time.perf_counter() - started
    notes = Section("Run notes", _notes(quick, backends, docker_reason, total, sections,
                                        failures, workdir if args.keep else None))
    sections.append(notes)
    out = Path(args.out)
    write_results(out, _header(details, quick, sections), sections, OWN_HEADINGS)
    if args.json:
        dump_json(Path(args.json), sections)
    log(f"wrote {out} in {total:.0f} s")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"scratch folder kept: {workdir}")
    if failures:
        log("FAILED: " + "; ".join(failures))
        return 1
    return 0


def _map_section(quick: bool) -> Section:
    """Step 7: the map's targets judged with the in-process sandbox (a worker process per item
    costs ~0.3 s of CPU to start, which on 2 cores is the bound, not the map), and the default
    local sandbox on threads beside it for reference."""
    import _map

    section = _map.run_section(quick, sandbox="inprocess")
    srv = _map.Server(0.05 if quick else 0.2)
    try:
        ref = _map.bench_threads(srv, 8 if quick else 64, 0.05 if quick else 0.2, 8,
                                 tempfile.mkdtemp(prefix="rlm-map-bench-"), "local")
    finally:
        srv.close()
    ref.name += " (reference: a worker process per item)"
    ref.target, ref.ok = "", None
    section.figures.insert(1, ref)
    return section


class _Plan:
    """Sizes for the full run and for the smoke run."""

    def __init__(self, quick: bool) -> None:
        self.repeats = 1 if quick else 3
        self.batch_n = 64                        # the figure is defined for 64 at 16
        self.batch_latency = 0.05 if quick else 0.2
        self.turns = 5 if quick else 40
        self.context_mb = [0.5] if quick else [1, 10, 50, 100]
        self.micro_mb = [0.5] if quick else [1, 10, 50]
        self.cells = 5 if quick else 50
        self.starts = 1 if quick else 3
        self.cache_n = 10 if quick else 100
        self.import_repeats = 1 if quick else 5
        self.needle_lines = 2_000 if quick else 50_000
        self.needle_chunks = 8 if quick else 32
        self.needle_latencies = [0.0] if quick else [0.0, 0.2]
        self.needle_repeats = 1 if quick else 5


def _header(details: list[tuple[str, str]], quick: bool, sections: list[Section]) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/run.py`" + (" --quick (smoke sizes: these figures "
                                                          "are not meaningful)" if quick else "")
             + ". Each figure is a ratio to its lower bound where one exists.", "",
             table(["machine", ""], [[k, v] for k, v in details]), ""]
    rows = []
    for s in sections:
        for f in s.figures:
            if f.target:
                value = f"{f.ratio:.2f} (ratio)" if f.ratio is not None else \
                    f.row()[1]
                rows.append([s.heading.split(" ", 1)[0].rstrip("."), f.name, value, f.target,
                             {True: "yes", False: "**no**", None: ""}[f.ok]])
    if rows:
        lines += ["Summary of the targets:", "",
                  table(["#", "figure", "value", "target", "met"], rows), ""]
    return "\n".join(lines)


def _notes(quick: bool, backends: list[str], docker_reason: str | None, total: float,
           sections: list[Section], failures: list[str], kept: Path | None) -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"- mode: {'quick (smoke)' if quick else 'full'}; backends measured: "
             f"{', '.join(backends)}; total time {total:.0f} s; load average at the end "
             f"{load} (the machine is shared: absolute times swing with it)."]
    if docker_reason:
        lines.append(f"- docker not measured: {docker_reason}")
    for s in sections:
        lines.append(f"- {s.heading}: {s.elapsed_s:.1f} s"
                     + (f" ({s.skipped})" if s.skipped else ""))
    for f in failures:
        lines.append(f"- FAILED: {f}")
    if kept:
        lines.append(f"- scratch folder (profiles, run logs): {kept}")
    return "\n".join(lines)


def child(argv: list[str]) -> int:
    """Work that needs a fresh interpreter (peak memory); prints one JSON line."""
    import json

    import _ours

    kind, *rest = argv
    if kind == "context":
        backend, mb, workdir = rest
        data = _ours.context_child(backend, float(mb), Path(workdir))
        print(json.dumps(data))
        return 0
    raise SystemExit(f"unknown child job {kind!r}")


if __name__ == "__main__":
    sys.exit(main())
