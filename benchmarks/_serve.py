"""The scripted server in its own process, driven over stdin/stdout by :class:`RemoteServer`.

    python _serve.py '{"policy": "batch", "params": {"n": 64}, "latency_s": 0.2}'

Prints one JSON line with the base URL, then answers "stats" (one JSON line: every request's
kind, server-side handling time and arrival time) and "reset" until "quit" or EOF.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def serve(job: dict[str, Any]) -> int:
    from _policies import POLICIES

    from rlm_jupyter.testing import ScriptedServer

    root, sub = POLICIES[job["policy"]](**job.get("params", {}))
    srv = ScriptedServer(root=root, sub=sub, latency_s=float(job.get("latency_s", 0.0)),
                         model_name=job.get("model_name", "scripted"), strict=False)
    srv.start()
    print(json.dumps({"base_url": srv.base_url, "model_name": srv.model_name}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                reqs = [{"root": r.is_root, "elapsed_s": r.elapsed_s or 0.0,
                         "received_at": r.received_at, "status": r.status}
                        for r in srv.requests.snapshot()]
                print(json.dumps({"requests": reqs, "errors": srv.errors[:5]}), flush=True)
            elif command == "reset":
                srv.requests.clear()
                print("{}", flush=True)
            elif command == "quit":
                break
    finally:
        srv.stop()
    return 0


class RemoteServer:
    """A ScriptedServer in a child process, with the attributes the benchmarks use."""

    def __init__(self, policy: str, latency_s: float = 0.0, model_name: str = "scripted",
                 **params: Any) -> None:
        self.job = {"policy": policy, "params": params, "latency_s": latency_s,
                    "model_name": model_name}
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.model_name = model_name

    @property
    def model(self) -> str:
        return f"openai/{self.model_name}"

    def __enter__(self) -> "RemoteServer":
        self.proc = subprocess.Popen([sys.executable, __file__, json.dumps(self.job)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline() if self.proc.stdout else ""
        if not first.startswith("{"):
            self.__exit__()
            raise RuntimeError(f"the scripted server did not start ({first!r})")
        self.base_url = json.loads(first)["base_url"]
        return self

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def requests(self) -> list[dict[str, Any]]:
        data = self._ask("stats")
        if data.get("errors"):
            raise RuntimeError(f"the scripted server reported: {data['errors'][0]}")
        return data["requests"]

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1])))
