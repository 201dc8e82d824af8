"""Deprecated home of the context helpers: they live in :mod:`rlm_jupyter.commands.context`
(shared with ``rlm run``). Kept importable for one release (notebooks import ``interpolate``)."""

from __future__ import annotations

from rlm_jupyter.commands.context import (ContextError, evaluate, interpolate, read_files,
                                          resolve_context, split_options, split_pairs, unquote)

__all__ = ["ContextError", "evaluate", "interpolate", "read_files", "resolve_context",
           "split_options", "split_pairs", "unquote"]
