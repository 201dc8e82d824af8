"""Sandboxes for model-written code, behind one entry point.

```python
from rlm_jupyter.sandbox import open_sandbox
with open_sandbox("local", context=text, functions={"llm_query": fn}, timeout_s=5) as sb:
    r = sb.execute("print(len(context))")
```

Backends are imported lazily, so importing this package stays cheap (the engine imports it when
a run opens its sandbox) and never pulls in the Docker SDK unless asked for.
"""

from __future__ import annotations

from typing import Any

from .base import ExecResult, HostFunctions, Sandbox, SandboxError

__all__ = ["open_sandbox", "Sandbox", "ExecResult", "SandboxError", "BACKENDS"]

#: kind -> "module:Class"
BACKENDS: dict[str, str] = {
    "local": "rlm_jupyter.sandbox.local:LocalSandbox",
    "docker": "rlm_jupyter.sandbox.docker:DockerSandbox",
    "inprocess": "rlm_jupyter.sandbox.inprocess:InProcessSandbox",
}


def open_sandbox(kind: str = "local", context: Any = None,
                 functions: HostFunctions | None = None, timeout_s: float = 30.0,
                 memory_mb: int | None = None, **options: Any) -> Sandbox:
    """Start a sandbox of ``kind`` ("local", "docker" or "inprocess") holding ``context``.

    ``functions`` maps names to host callables the sandboxed code may call (``llm_query``...);
    in the worker backends their arguments and results cross as JSON. ``timeout_s`` is the
    default per-cell limit; time spent inside host functions does not count. ``memory_mb``
    caps the sandbox's memory (default: sized to the context). Backend-specific ``options``
    are passed through (e.g. ``image=`` for Docker, ``grace_s=``, ``limits=``).
    Raises :class:`SandboxError` when the backend cannot start, with what to do next.
    """
    import importlib

    key = (kind or "local").strip().lower()
    target = BACKENDS.get(key)
    if target is None:
        raise SandboxError(f"unknown sandbox kind {kind!r}; choose one of "
                           f"{', '.join(sorted(BACKENDS))}")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SandboxError(f"the {key!r} sandbox backend is not available: {exc}. "
                           f"Use sandbox='local', or install what it needs") from None
    cls = getattr(module, cls_name)
    return cls(context=context, functions=functions, timeout_s=timeout_s, memory_mb=memory_mb,
               **options)
