"""A fresh process's first run against a local OpenAI-compatible server never waits for litellm.

Importing litellm takes seconds; the direct HTTP path needs it for nothing (a local model has no
price), so a first run must not import it at all. The timing itself is a benchmark
(benchmarks/RESULTS.md, "5. Import times"), not an assertion here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SNIPPET = textwrap.dedent("""
    import sys
    from rlm_jupyter import RLM
    rlm = RLM(model="openai/scripted", api_base=sys.argv[1], api_key="k", cache=False,
              log_dir=sys.argv[2])
    result = rlm.run("What is x?", context="x = 1")
    assert result.error is None and result.answer == "1", (result.status, result.error)
    assert result.cost_usd == 0.0
    print("litellm imported:", "litellm" in sys.modules)
""")


def test_a_first_run_on_the_direct_path_never_imports_litellm(server_factory, tmp_path):
    script = ["```repl\nprint(context)\n```", "FINAL(1)"]
    srv = server_factory(root=lambda req: script[min(req.turn, 2) - 1])
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run([sys.executable, "-c", SNIPPET, srv.base_url, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "litellm imported: False" in proc.stdout
