"""A response cache on disk, shared by the whole run tree and across kernel restarts.

We keep our own small store instead of litellm's cache because litellm's cache-hit path crashes
on a plain install (it imports fastapi) and re-reports the original cost; a hit here is free by
construction. Entries are JSON files named by the sha256 of model, messages and sampling
parameters, written atomically so concurrent sub-calls and crashed runs never leave half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Client options of litellm's that the engine governs itself on every transport (the request
#: timeout and the retries are ``request_timeout_s`` and ``num_retries``; litellm is called with
#: its own retries off), or that only tell litellm what to drop: never sent, never in the key.
#: Listed once here; the direct HTTP transport leaves the same keys out of the request.
CLIENT_ONLY_KEYS = frozenset({"timeout", "request_timeout", "max_retries", "num_retries",
                              "drop_params"})

#: Parameters that never change what a model replies: the client options above, credentials
#: and litellm's bookkeeping. Every other parameter is part of the key,
#: because both transports send every other parameter to the server (``logprobs``,
#: ``extra_body``, ``extra_headers``...), so any of them may change the reply; an unknown one
#: costing a cache miss is better than a hit that answers a different request.
NON_REPLY_KEYS = CLIENT_ONLY_KEYS | frozenset({"api_key", "metadata", "caching", "cache",
                                              "logger_fn", "litellm_logging_obj",
                                              "litellm_call_id"})


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any],
              api_base: str | None = None) -> str:
    payload = {
        "model": model,
        "api_base": api_base or "",
        "messages": messages,
        "params": {k: v for k, v in params.items() if k not in NON_REPLY_KEYS},
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self._path(key), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(value, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot write is a cache miss next time, never a failed run
