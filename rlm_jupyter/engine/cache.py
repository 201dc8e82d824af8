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

#: Parameters that change what a model replies; everything else (timeouts, keys) is ignored.
SAMPLING_KEYS = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "stop",
                 "reasoning_effort", "presence_penalty", "frequency_penalty", "response_format",
                 "n", "logit_bias", "top_k")


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any],
              api_base: str | None = None) -> str:
    payload = {
        "model": model,
        "api_base": api_base or "",
        "messages": messages,
        "params": {k: params[k] for k in SAMPLING_KEYS if k in params},
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

    def clear(self) -> int:
        removed = 0
        for path in self.directory.glob("*/*.json"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed
