"""Deprecated home of the doctor: it lives in :mod:`rlm_jupyter.commands.doctor`. Kept
importable for one release (notebooks import ``run_checks`` from here)."""

from __future__ import annotations

from rlm_jupyter.commands.doctor import Check, run_checks

__all__ = ["Check", "run_checks"]
