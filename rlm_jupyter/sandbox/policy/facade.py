"""The stand-in for a module: a read-only bag of hand-picked names."""

from __future__ import annotations

import types
from typing import Any, Dict, List


class Facade:
    """A read-only bag of allowed names standing in for a module.

    Attribute lookup goes through the getattr guard (``Facade`` instances answer from
    ``_members`` only); the write guard refuses them, so ``json.loads = ...`` fails.
    """

    __slots__ = ("_name", "_members")

    def __init__(self, name: str, members: Dict[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, item: str) -> Any:
        # Reached by ``from x import y`` (plain getattr): answer from the members only.
        members = object.__getattribute__(self, "_members")
        if item in members:
            return members[item]
        raise AttributeError(f"module {object.__getattribute__(self, '_name')!r} has no "
                             f"attribute {item!r} in the sandbox")

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("sandbox modules are read-only")

    def __repr__(self) -> str:
        return f"<module {object.__getattribute__(self, '_name')!r} (sandbox facade)>"

    def __dir__(self) -> List[str]:
        return sorted(object.__getattribute__(self, "_members"))


def _pick(module: Any, names: str) -> Dict[str, Any]:
    out = {}
    for n in names.split():
        if hasattr(module, n):
            v = getattr(module, n)
            if not isinstance(v, types.ModuleType):
                out[n] = v
    return out
