"""The in-process sandbox runs its cells on one long-lived thread, never the caller's."""

from __future__ import annotations

import gc
import threading
import time

from rlm_jupyter.sandbox import open_sandbox


def _cell_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rlm-inprocess-cell"]


def _wait_until(check, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_one_thread_serves_every_cell_and_leaves_with_close() -> None:
    before = set(_cell_threads())
    seen: set[int] = set()

    def where() -> str:
        seen.add(threading.get_ident())
        return "ok"

    with open_sandbox("inprocess", functions={"where": where}) as sb:
        for i in range(30):
            r = sb.execute(f"x = {i}\nwhere()")
            assert r.error is None, r.error
        assert sb.execute("print(x)").stdout == "29\n"
        mine = set(_cell_threads()) - before
        assert len(mine) == 1
        assert seen == {next(iter(mine)).ident}  # host functions run on the cell thread
        assert threading.get_ident() not in seen  # ... never on the caller's
    assert _wait_until(lambda: not (set(_cell_threads()) - before))


def test_a_stopped_cell_leaves_the_thread_usable() -> None:
    with open_sandbox("inprocess", timeout_s=0.3) as sb:
        r = sb.execute("while True:\n    pass")
        assert r.timed_out
        assert sb.execute("print('next')").stdout == "next\n"
        r = sb.execute("1/0")
        assert "ZeroDivisionError" in (r.error or "")
        assert sb.execute("print('still')").stdout == "still\n"


def test_an_unclosed_sandbox_does_not_keep_its_thread() -> None:
    before = set(_cell_threads())
    sb = open_sandbox("inprocess", context="c" * 1000)
    assert sb.execute("print(len(context))").stdout == "1000\n"
    del sb
    gc.collect()
    assert _wait_until(lambda: not (set(_cell_threads()) - before))


def test_interrupting_the_caller_stops_the_cell() -> None:
    """A KeyboardInterrupt in the waiting caller stops the cell and reaches the caller."""
    import ctypes

    with open_sandbox("inprocess", timeout_s=30) as sb:
        caller = threading.get_ident()
        timer = threading.Timer(0.3, lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(caller), ctypes.py_object(KeyboardInterrupt)))
        timer.start()
        started = time.monotonic()
        try:
            sb.execute("while True:\n    pass")
            raise AssertionError("the interrupt did not reach the caller")
        except KeyboardInterrupt:
            pass
        assert time.monotonic() - started < 5
        assert sb.execute("print('after')").stdout == "after\n"
