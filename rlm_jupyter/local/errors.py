"""The error the local-model path raises; its message always says what to do next."""

from __future__ import annotations

from ..errors import ConfigError


class LocalModelError(ConfigError):
    """Fetching, building or serving a local model failed."""
