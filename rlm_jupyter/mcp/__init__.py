"""``rlm mcp``: the RLM as an MCP server, on the official ``mcp`` SDK (``pip install
'rlm-jupyter[mcp]'``).

Tools: ``rlm_run`` (a question about files under the server's roots and/or a text; the answer,
a short summary and the run id; progress notifications as turns, cells and sub-calls finish;
a client's cancellation stops the run), ``rlm_logs`` (recent runs) and ``rlm_replay`` (one
saved run, no model called). Served over stdio, or streamable HTTP with ``--http PORT``.
Files are read only under ``--root`` folders (default: the current directory), after symlinks
and ``..`` are resolved. See rlm_jupyter/mcp/server.py.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from rlm_jupyter.mcp.server import main as serve

    return serve(argv)


__all__ = ["main"]
