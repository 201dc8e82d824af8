"""Helpers for driving the magics in a real InteractiveShell (imported by tests and conftest)."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell


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


def use_server(sh: Shell, srv: Any) -> None:
    sh.magics.model = srv.model
    sh.magics.api_base = srv.base_url
    sh.magics.api_key = "scripted"
