"""Deprecated home of ``Settings``: kept importable for one release.

The knobs now live in :mod:`rlm_jupyter.settings`, the one table every front end derives from;
import from there.
"""

from __future__ import annotations

from rlm_jupyter.settings import (DEFAULT_CACHE_DIR, DEFAULT_LOG_DIR, ENV_VARS, SANDBOX_KINDS,
                                  Settings)

__all__ = ["Settings", "ENV_VARS", "SANDBOX_KINDS", "DEFAULT_LOG_DIR", "DEFAULT_CACHE_DIR"]
