"""The send throttle the live views share (the run widget and the map grid)."""

from __future__ import annotations

import threading
import time
from typing import Callable


class FlushTimer:
    """Calls ``flush`` on a timer thread at most ``max_rate`` times a second, so the thread
    that feeds events only marks what changed.

    The timer stays set while ``flush`` runs: marks made meanwhile do not start a second timer
    that would send right after this one; they are sent a full interval later (``pending``
    says whether any were made). ``lock`` is the owner's lock around its marks, so a mark is
    never left unsent between the check and the timer's end. The owner's ``flush`` sets
    :attr:`last` when it sends.
    """

    def __init__(self, flush: Callable[[], None], pending: Callable[[], bool],
                 lock: threading.RLock, max_rate: float) -> None:
        self._flush, self._pending, self._lock = flush, pending, lock
        self.interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.last = 0.0
        self._timer: threading.Timer | None = None

    def schedule(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            wait = max(0.0, self.interval - (time.monotonic() - self.last))
            self._timer = threading.Timer(wait, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _fire(self) -> None:
        self._flush()
        with self._lock:
            self._timer = None
            again = self._pending()
        if again:
            self.schedule()
