"""rlm-jupyter: Recursive Language Models inside Jupyter.

The public API is imported lazily so ``%load_ext rlm`` stays fast and never imports litellm.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# The one place this is set: every module of the package (and the kernels and workers it starts,
# which inherit the environment) sees it before litellm can be imported, so litellm reads its
# bundled price map instead of fetching one over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

_LAZY = {
    "RLM": "rlm_jupyter.engine.api",
    "RunResult": "rlm_jupyter.engine.result",
    "Settings": "rlm_jupyter.settings",
    "open_sandbox": "rlm_jupyter.sandbox",
    "RLMError": "rlm_jupyter.errors",
    "ConfigError": "rlm_jupyter.errors",
    "BudgetExceeded": "rlm_jupyter.errors",
    "TurnLimitExceeded": "rlm_jupyter.errors",
    "SubcallLimitExceeded": "rlm_jupyter.errors",
    "TokenLimitExceeded": "rlm_jupyter.errors",
    "CostLimitExceeded": "rlm_jupyter.errors",
    "TimeLimitExceeded": "rlm_jupyter.errors",
    "LLMCallError": "rlm_jupyter.errors",
    "RunCancelled": "rlm_jupyter.errors",
    "SandboxFailure": "rlm_jupyter.errors",
    "read_trajectory": "rlm_jupyter.engine.trajectory",
    "Session": "rlm_jupyter.engine.session",
    "SessionClosed": "rlm_jupyter.engine.session",
    "OutputValidationError": "rlm_jupyter.engine.output",
    "ValueTransferError": "rlm_jupyter.engine.output",
    "export_notebook": "rlm_jupyter.export",
}

__all__ = sorted(_LAZY) + ["load_ipython_extension", "unload_ipython_extension", "__version__"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rlm_jupyter' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    if name in ("RLM", "RunResult") and "IPython" in sys.modules:
        # In a notebook, results display as the static trajectory view: the Jupyter layer
        # registers it with the engine (which never imports a display itself).
        importlib.import_module("rlm_jupyter.jupyter.render")
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%rlm`` and ``%rlm`` (called by ``%load_ext rlm``)."""
    from rlm_jupyter.jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    try:
        from rlm_jupyter.jupyter.magics import unload_ipython_extension as _unload
    except ImportError:
        return
    _unload(ipython)
