"""``print`` in the sandbox: one capped collector per cell, and what the rewritten call reaches."""

from __future__ import annotations

from typing import Any, Callable, List


class PrintCollector:
    """One capped collector per cell; every ``print`` (also inside functions) lands here."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: List[str] = []
        self.size = 0
        self.cut = 0

    def write(self, text: str) -> None:
        text = str(text)
        room = self.limit - self.size
        if room <= 0:
            self.cut += len(text)
            return
        if len(text) > room:
            self.cut += len(text) - room
            text = text[:room]
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)


class _PrintProxy:
    """What the rewritten ``print`` calls: ``_print._call_print(*objects, **kwargs)``."""

    __slots__ = ("_collector", "_getattr")

    def __init__(self, collector: PrintCollector, getattr_: Callable[..., Any]) -> None:
        self._collector = collector
        self._getattr = getattr_

    def _call_print(self, *objects: Any, sep: Any = " ", end: Any = "\n", file: Any = None,
                    flush: bool = False) -> None:
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        if type(sep) is not str or type(end) is not str:
            raise TypeError("sep and end must be str")
        text = sep.join(str(o) for o in objects) + end
        if file is None:
            self._collector.write(text)
        else:
            self._getattr(file, "write")(text)

    def __call__(self) -> str:  # the ``printed`` name
        return self._collector.text()
