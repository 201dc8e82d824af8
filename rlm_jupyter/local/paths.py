"""Where the local path keeps weights, wheels, server state and logs.

Everything lives under one root (``RLM_LOCAL_DIR``, default ``~/.cache/rlm_jupyter``) so CI can
keep it between runs and users can delete it in one go. (``RLM_CACHE_DIR`` is the response
cache, a different thing.)
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("RLM_LOCAL_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rlm_jupyter"


def models_dir() -> Path:
    return cache_root() / "models"


def wheels_dir() -> Path:
    return cache_root() / "wheels"


def servers_dir() -> Path:
    return cache_root() / "servers"
