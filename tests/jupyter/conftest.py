"""A real IPython InteractiveShell with the extension loaded, plus a scripted model server."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_KEEP_ENV = ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SUB_MODEL", "RLM_SANDBOX")


class Shell:
    """Thin helper around the shell: run cells, read variables, reach the magics."""

    def __init__(self, ip: InteractiveShell) -> None:
        self.ip = ip

    @property
    def magics(self) -> Any:
        from rlm_jupyter.jupyter.magics import get_magics

        return get_magics(self.ip)

    def run(self, source: str) -> Any:
        return self.ip.run_cell(source, store_history=False)

    def __getitem__(self, name: str) -> Any:
        return self.ip.user_ns[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.ip.user_ns[name] = value


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
    # close() stops the demo server; os.environ edits made by `%rlm demo` are undone by monkeypatch


def use_server(sh: Shell, srv: Any) -> None:
    sh.magics.model = srv.model
    sh.magics.api_base = srv.base_url
    sh.magics.api_key = "scripted"
