"""Benchmarks of ``RLM.map`` (issue 16): thread pool, Dask scale-out, the grid's cost.

    python benchmarks/_map.py            # 64 items, 200 ms per request
    python benchmarks/_map.py --quick    # 8 items, every code path

Every model call goes over real HTTP to a ScriptedServer in its own process (so the server's
threads do not share the GIL with the map) with a fixed latency per request. Each item is two
root turns with a batch of sub-calls between them: three sequential requests, so one item
takes at least ``3 x latency``, and a map of N items at concurrency C at least
``ceil(N / C) x 3 x latency`` (the lower bound set by the concurrency cap).

Prints a Markdown section (the shape of benchmarks/RESULTS.md; run.py may include it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _util import Figure, Section  # noqa: E402

CODE_RE = re.compile(r"code is (\d+)")
TURN_1 = ("```repl\n"
          "text = str(context)\n"
          "chunks = [text[i:i + 40] for i in range(0, len(text), 40)]\n"
          "found = [a for a in llm_query_batched([f'Find the code in: {c}' for c in chunks])"
          " if a != 'NONE']\n"
          "result = found[0] if found else 'NONE'\n"
          "print(result)\n```")


def map_root(req: Any) -> str:
    return TURN_1 if req.turn <= 1 else "FINAL_VAR(result)"


def map_sub(prompt: str, req: Any) -> str:
    match = CODE_RE.search(prompt)
    return match.group(1) if match else "NONE"


def doc(n: int) -> str:
    return f"Report {n}. Nothing here.\nThe code is {n}.\nEnd of report."


def serve(latency_s: float) -> None:
    """Child process: the scripted server, until stdin closes."""
    from rlm_jupyter.testing import ScriptedServer

    srv = ScriptedServer(root=map_root, sub=map_sub, latency_s=latency_s, strict=False)
    srv.start()
    print(json.dumps({"base_url": srv.base_url, "model": srv.model}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            c = srv.counters
            print(json.dumps({"requests": c.get("requests", 0),
                              "max_in_flight": c.get("max_in_flight", 0)}), flush=True)
    srv.stop()


class Server:
    def __init__(self, latency_s: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(latency_s)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.base_url, self.model = info["base_url"], info["model"]

    def stats(self) -> dict[str, Any]:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def _rlm(srv: Server, log_dir: str, sandbox: str) -> Any:
    from rlm_jupyter import RLM

    return RLM(model=srv.model, api_base=srv.base_url, api_key="bench", sandbox=sandbox,
               log_dir=log_dir, cache=False)


def bench_threads(srv: Server, n: int, latency: float, concurrency: int, log_dir: str,
                  sandbox: str) -> Figure:
    rlm = _rlm(srv, log_dir, sandbox)
    contexts = [doc(i) for i in range(n)]
    t0 = time.perf_counter()
    result = rlm.map("What is the code?", contexts, concurrency=concurrency)
    wall = time.perf_counter() - t0
    ok = result.counts()["ok"]
    bound = math.ceil(n / concurrency) * 3 * latency
    return Figure(f"{n} items, threads, concurrency {concurrency}, {sandbox} sandbox", wall,
                  bound=bound, target="ratio <= 1.2", ok=wall / bound <= 1.2 and ok == n,
                  note=f"{ok}/{n} ok")


def bench_dask(srv: Server, n: int, latency: float, workers: int, threads: int,
               log_dir: str, sandbox: str) -> tuple[float, int]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        rlm = _rlm(srv, log_dir, sandbox)
        # warm the workers' imports (the engine, RestrictedPython) outside the timing
        rlm.map("What is the code?", [doc(0)] * 1, executor=client)
        client.run(lambda: __import__("rlm_jupyter.engine.api"))
        t0 = time.perf_counter()
        result = rlm.map("What is the code?", [doc(i) for i in range(n)], executor=client,
                         concurrency=workers * threads)
        wall = time.perf_counter() - t0
    return wall, result.counts()["ok"]


def bench_grid(n: int) -> list[Figure]:
    from rlm_jupyter.engine import batch
    from rlm_jupyter.jupyter.grid import MapGrid, map_mimebundle

    grid = MapGrid(live=True, max_rate=10)
    sent: list[dict[str, Any]] = []
    grid.send = lambda msg, buffers=None: sent.append(msg)  # type: ignore[method-assign]
    keys = [f"item-{i}" for i in range(n)]
    t0 = time.perf_counter()
    grid(batch.MapStarted(question="q", keys=keys))
    for i in range(n):
        grid(batch.ItemStarted(index=i))
        grid(batch.ItemProgress(index=i, tokens=10, cost_usd=0.0001))
        grid(batch.ItemFinished(index=i, result=batch.ItemResult(
            index=i, key=keys[i], question="q", answer=str(i), total_tokens=20,
            cost_usd=0.0002, elapsed_s=0.01)))
    fold = time.perf_counter() - t0
    time.sleep(0.15)
    results = [batch.ItemResult(index=i, key=keys[i], question="q", answer=str(i))
               for i in range(n)]
    t1 = time.perf_counter()
    grid(batch.MapFinished(result=batch.MapResult("q", results)))
    finish = time.perf_counter() - t1
    total_s = time.perf_counter() - t0
    size = sum(len(json.dumps(m)) for m in sent)
    static = map_mimebundle(batch.MapResult("q", results))  # the notebook's static view
    return [
        Figure(f"grid: fold {4 * n} events of {n} items (driver thread)", fold,
               target="< 1 s", ok=fold < 1.0, note=f"{fold / (4 * n) * 1e6:.1f} us an event"),
        Figure("grid: messages sent to the browser", float(len(sent)), unit="",
               target="<= 10/s", ok=len(sent) <= 10 * total_s + 2,
               note=f"{size / 1024:.0f} KiB in all over {total_s:.2f} s"),
        Figure("grid: end of map (last delta + snapshot + static view)", finish,
               target="< 1 s", ok=finish < 1.0,
               note=f"static HTML {len(static['text/html']) / 1024:.0f} KiB"),
    ]


def run_section(quick: bool = False, sandbox: str = "local", skip_dask: bool = False) -> Section:
    """The "7. Many contexts" section (run.py's step 7, or this file run alone)."""
    import tempfile

    n = 8 if quick else 64
    latency = 0.05 if quick else 0.2
    log_dir = tempfile.mkdtemp(prefix="rlm-map-bench-")
    section = Section("7. Many contexts: RLM.map", intro=(
        f"{n} contexts; every request waits {latency * 1000:.0f} ms at the scripted server "
        "(its own process); an item is 2 root turns with a batch of sub-calls between them, "
        "so 3 sequential requests. Lower bound: ceil(items / concurrency) x 3 x latency."))
    srv = Server(latency)
    try:
        section.figures.append(bench_threads(srv, n, latency, 8, log_dir, sandbox))
        if not skip_dask:
            try:
                import distributed  # noqa: F401
            except ImportError:
                section.tables.append("Dask: not installed (pip install 'rlm-jupyter[dask]').")
            else:
                threads = 4 if quick else 8
                one, ok1 = bench_dask(srv, n, latency, 1, threads, log_dir, sandbox)
                two, ok2 = bench_dask(srv, n, latency, 2, threads, log_dir, sandbox)
                bound1 = math.ceil(n / threads) * 3 * latency
                bound2 = math.ceil(n / (2 * threads)) * 3 * latency
                section.figures += [
                    Figure(f"Dask LocalCluster, 1 worker process x {threads} threads", one,
                           bound=bound1, note=f"{ok1}/{n} ok, {n / one:.1f} items/s"),
                    Figure(f"Dask LocalCluster, 2 worker processes x {threads} threads", two,
                           bound=bound2, note=f"{ok2}/{n} ok, {n / two:.1f} items/s"),
                    Figure("Dask throughput, 2 workers over 1", one / two, unit="x",
                           target=">= 1.7", ok=one / two >= 1.7,
                           note=f"{os.cpu_count()} cores on this machine"),
                ]
        section.figures += bench_grid(200 if quick else 1000)
    finally:
        srv.close()
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    print(run_section(args.quick, args.sandbox, args.skip_dask).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
