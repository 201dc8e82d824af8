"""Jupyter face of rlm-jupyter: ``%%rlm`` / ``%rlm`` magics, the live widget and static renderers.

Importing this package is cheap on purpose (no litellm, no widgets): ``%load_ext rlm`` must stay
under 0.2 s, so heavy modules are imported only when a run starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from rlm_jupyter.jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from rlm_jupyter.jupyter.magics import unload_ipython_extension as _unload

    _unload(ipython)
