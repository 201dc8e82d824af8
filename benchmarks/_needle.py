"""Benchmark 6: the needle-in-a-haystack map task, rlm-jupyter beside the official ``rlms``.

Both systems talk to the same scripted server in the same run, and the root "model" writes the
same three cells for both, which both systems understand as they are (same context variable,
same ``llm_query_batched``, same ``answer`` dict to finish):

1. peek at the context;
2. split it into the same line chunks and map one sub-call per chunk with
   ``llm_query_batched`` (the same prompts, so the same number of sub-calls);
3. set ``answer["content"]`` and ``answer["ready"] = True``.

The sub "model" answers each chunk with the needle's value when the chunk holds it, else NONE.
The policy lives in _policies.py; the server runs in its own process for both systems.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from _ours import default_transport, transports
from _policies import QUESTION, VALUE, haystack
from _util import Figure, Section, Skip, docker_available, fmt, median, table


def run(workdir: Path, *, lines: int, chunks: int, latencies: list[float], repeats: int,
        with_rlms: bool, ours_backends: list[str], docker_reason: str | None,
        log: Any = print) -> Section:
    from _serve import RemoteServer

    text = haystack(lines)
    context_path = workdir / "haystack.txt"
    context_path.write_text(text, encoding="utf-8")
    section = Section(
        "6. Needle in a haystack: rlm-jupyter beside rlms",
        f"A haystack of {lines:,} lines ({len(text) / 1e6:.1f} MB) with one `key -> value` "
        f"needle. The scripted root model writes the same three cells for both systems (peek; "
        f"{chunks} line chunks mapped with one `llm_query_batched`; set the `answer` dict), so "
        f"both make 3 root calls and {chunks} sub-calls with identical prompts, against the "
        f"same server in the same run. Wall time of one end-to-end run (sandbox/container start "
        f"included), median of {repeats} after one untimed warm-up run per system and backend "
        f"(so lazy imports on either side are not counted). rlm-jupyter runs with each of its "
        f"LLM transports (litellm and the direct HTTP path). Ratio = rlms / rlm-jupyter; "
        f"targets: >= 3x with docker, >= 1x (never slower) with local, judged on the transport "
        f"a user gets by default for this server (`transport={default_transport()}`); the "
        f"other transport's rows are for reference.")
    rlms_python = rlms_image = shim_dir = None
    rlms_note = None
    if with_rlms:
        try:
            from _rlms import docker_path_for_rlms, ensure_image, ensure_venv

            rlms_python, version = ensure_venv(log)
            section.intro += f" rlms {version} from PyPI, in its own virtualenv."
            if docker_available() is None:
                rlms_image = ensure_image(log)
                shim_dir, shim_note = docker_path_for_rlms(workdir)
                if shim_note:
                    section.intro += f"\n\nrlms on this machine: {shim_note}"
        except Skip as exc:
            rlms_note = str(exc)
        except Exception as exc:  # noqa: BLE001 - report, do not lose the other figures
            rlms_note = f"{type(exc).__name__}: {exc}"
    else:
        rlms_note = "skipped in --quick mode (pass --rlms to include it)"
    if rlms_note:
        section.intro += f"\n\nrlms not run: {rlms_note}"
    if docker_reason:
        section.intro += f"\n\nrlm-jupyter's docker backend not measured: {docker_reason}"

    rows = []
    for latency in latencies:
        walls: dict[str, list[float]] = {}
        errors: dict[str, str] = {}
        with RemoteServer("needle", latency_s=latency, chunks=chunks) as srv:
            for backend in ours_backends:
                for transport in transports():
                    walls[f"rlm-jupyter/{backend}/{transport}"] = _ours(
                        srv, backend, transport, text, workdir, repeats, chunks, errors)
            if rlms_python is not None:
                for env in ("local", "docker"):
                    if env == "docker" and rlms_image is None:
                        continue
                    walls[f"rlms/{env}"] = _rlms(srv, rlms_python, env, rlms_image,
                                                 context_path, workdir, repeats, chunks,
                                                 errors, log, shim_dir)
        for name, values in walls.items():
            rows.append([f"{latency * 1000:.0f} ms", name,
                         fmt(median(values), "s") if values else "failed",
                         ", ".join(fmt(v, "s") for v in values) or errors.get(name, "")[:300]])
        for (env, target), transport in [(e, t) for e in (("local", 1.0), ("docker", 3.0))
                                         for t in transports()]:
            ours = walls.get(f"rlm-jupyter/{env}/{transport}") or []
            theirs = walls.get(f"rlms/{env}") or []
            if ours and theirs:
                ratio = median(theirs) / median(ours)
                judged = transport == default_transport()
                section.figures.append(Figure(
                    f"{env}, {latency * 1000:.0f} ms latency, transport={transport}: "
                    f"rlms / rlm-jupyter" + ("" if judged else " (reference)"), ratio,
                    unit="x", target=f">= {target:g}x" if judged else "",
                    ok=ratio >= target if judged else None,
                    note=f"medians: rlm-jupyter {fmt(median(ours), 's')}, rlms "
                         f"{fmt(median(theirs), 's')}; best runs: {fmt(min(ours), 's')} vs "
                         f"{fmt(min(theirs), 's')} ({min(theirs) / min(ours):.2f}x)"))
        for name, message in errors.items():
            if name not in walls:
                rows.append([f"{latency * 1000:.0f} ms", name, "failed", message[:300]])
    section.tables.append(table(["server latency", "system/backend", "median wall",
                                 "runs"], rows))
    return section


def _ours(srv: Any, backend: str, transport: str, text: str, workdir: Path, repeats: int,
          chunks: int, errors: dict[str, str]) -> list[float]:
    from rlm_jupyter import RLM

    walls = []
    for attempt in range(repeats + 1):     # the first run warms up and is not counted
        before = len(srv.requests())
        rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="bench-key", sandbox=backend,
                  cache=False, log_dir=str(workdir / "runs"), max_iterations=10,
                  concurrency=16, transport=transport)
        started = time.perf_counter()
        result = rlm.run(QUESTION, context=text)
        wall = time.perf_counter() - started
        made = srv.requests()[before:]
        subs = sum(1 for r in made if not r["root"])
        if result.answer != VALUE or subs != chunks:
            errors[f"rlm-jupyter/{backend}/{transport}"] = (f"answer {result.answer!r}, {subs} sub-calls, "
                                                f"error {result.error}")
            return walls
        if attempt:
            walls.append(wall)
    return walls


def _rlms(srv: Any, python: Path, env: str, image: str | None, context_path: Path,
          workdir: Path, repeats: int, chunks: int, errors: dict[str, str],
          log: Any, shim_dir: str | None = None) -> list[float]:
    name = f"rlms/{env}"
    workspace = workdir / "rlms-workspace"
    workspace.mkdir(exist_ok=True)
    job = {"base_url": srv.base_url, "model": srv.model_name, "environment": env,
           "image": image, "context_path": str(context_path), "question": QUESTION,
           "repeats": repeats + 1, "workspace": str(workspace)}
    before = len(srv.requests())
    driver = Path(__file__).with_name("rlms_driver.py")
    env_vars = dict(os.environ)
    if shim_dir and env == "docker":
        env_vars["PATH"] = shim_dir + os.pathsep + env_vars.get("PATH", "")
    try:
        proc = subprocess.run([str(python), str(driver), json.dumps(job)], capture_output=True,
                              text=True, timeout=300 + 120 * repeats, cwd=str(workdir),
                              env=env_vars)
    except subprocess.TimeoutExpired:
        errors[name] = "timed out"
        return []
    line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("{")), None)
    if line is None:
        errors[name] = f"driver failed (rc {proc.returncode}): {proc.stderr.strip()[-400:]}"
        return []
    runs = json.loads(line)["runs"][1:]      # the first run warmed up
    made = srv.requests()[before:]
    subs = sum(1 for r in made if not r["root"])
    walls = []
    for r in runs:
        if r["error"] or (r["answer"] or "").strip() != VALUE:
            errors[name] = f"answer {r['answer']!r}, error {r['error']}"
            log(f"{name} failed: {r.get('traceback', r['error'])}")
            return walls
        walls.append(r["wall_s"])
    if subs != chunks * (len(runs) + 1):
        errors[name] = f"{subs} sub-calls for {len(runs) + 1} runs, expected {chunks} each"
        return []
    return walls
