"""A real IPython InteractiveShell with the extension loaded, plus a scripted model server."""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyter_helpers import Shell

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_KEEP_ENV = ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SUB_MODEL", "RLM_SANDBOX")


@pytest.fixture
def shell(tmp_path, monkeypatch) -> Iterator[Shell]:
    for name in _KEEP_ENV:
        monkeypatch.delenv(name, raising=False)
    ip = InteractiveShell.instance()
    sh = Shell(ip)
    if sh.magics is None:
        ip.run_line_magic("load_ext", "rlm_jupyter")
    magics = sh.magics
    ip.run_line_magic("rlm", "config --reset")
    magics.log_dir = str(tmp_path / "runs")
    magics.display = "text"
    magics.last_result = None
    magics._ledger = None
    for name in [n for n in ip.user_ns if n.startswith(("answer", "res", "_rlm", "bg", "code"))]:
        ip.user_ns.pop(name, None)
    yield sh
    magics.close()
    # Leave no session defaults behind (a stopped server's api_base broke later shell users).
    ip.run_line_magic("rlm", "config --reset")
    # close() stops the demo server; os.environ edits made by `%rlm demo` are undone by monkeypatch
