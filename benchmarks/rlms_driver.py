"""Runs the needle task on the official RLM package (``rlms``) inside its own virtualenv.

Started by ``run.py`` with that venv's interpreter (``rlms`` installs a top-level ``rlm``
package, which clashes with our ``rlm`` shim, so the two never share an interpreter). Reads one
JSON job from argv[1], prints one JSON line with each run's wall time and answer. Standard
library plus ``rlms`` only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def main() -> int:
    job = json.loads(sys.argv[1])
    os.environ.setdefault("RLM_DOCKER_WORKSPACE_DIR", job["workspace"])
    from rlm import RLM

    with open(job["context_path"], encoding="utf-8") as fh:
        context = fh.read()
    env_kwargs = {"image": job["image"]} if job["environment"] == "docker" else {}
    runs = []
    for _ in range(int(job["repeats"])):
        rlm = RLM(backend="openai",
                  backend_kwargs={"model_name": job["model"], "base_url": job["base_url"],
                                  "api_key": "bench-key"},
                  environment=job["environment"], environment_kwargs=dict(env_kwargs),
                  max_iterations=int(job.get("max_iterations", 10)), max_depth=1)
        started = time.perf_counter()
        try:
            out = rlm.completion(context, root_prompt=job["question"])
            runs.append({"wall_s": time.perf_counter() - started, "answer": out.response,
                         "error": None})
        except Exception as exc:  # noqa: BLE001 - reported to the parent as data
            runs.append({"wall_s": time.perf_counter() - started, "answer": None,
                         "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-2000:]})
    print(json.dumps({"runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
