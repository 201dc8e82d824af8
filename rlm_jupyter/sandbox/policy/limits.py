"""Deadlines and size limits: the per-cell deadline and the guards that refuse huge results.

:class:`Deadline` is checked by ``_tick_`` (loop heads, function entry, handlers) and by the
checking iterator. :class:`SizeGuards` holds the :class:`~.repl.Repl` methods behind ``*``,
``**``, ``<<``, ``%``, ``format`` and augmented assignment, and the text methods whose result can
be far bigger than their input; they read ``self.limits``.
"""

from __future__ import annotations

import builtins as _builtins
import operator as _operator
import re as _re
import time
from typing import Any, Callable, Dict, Optional

from .rules import _is_numpy, _is_pandas, _type_module


DEFAULT_LIMITS: Dict[str, int] = {
    "max_output": 20_000,
    "max_final": 1_000_000,
    "max_error": 4_000,
    "max_value": 100_000,
    "max_seq": 100_000_000,  # chars/bytes/items a single * or constructor may create
    "max_int_bits": 10_000_000,  # bits of an int result of ** << *
    "max_code": 500_000,  # chars of one cell's source
}


class SandboxTimeout(BaseException):
    """Raised by deadline checks. A BaseException so ``except Exception`` does not catch it,
    and re-raised by the check at the head of every handler, so bare ``except:`` does not
    help either. Never exposed to sandboxed code."""


class SandboxAbort(BaseException):
    """Raised by deadline checks when the host asked to stop (memory watchdog, cancel)."""


class Deadline:
    """A per-cell deadline that can be paused while a host function runs.

    Checked by ``_tick_`` (loop heads, function entry, handlers). ``abort(reason)`` makes the
    next check raise :class:`SandboxAbort` (used by the in-process RSS watchdog).
    """

    def __init__(self) -> None:
        self.deadline: Optional[float] = None
        self.timeout = 0.0
        self._paused_at: Optional[float] = None
        self.abort_reason: Optional[str] = None
        self.expired = False
        #: Set when the next check must run in full (abort asked, or the deadline passed as
        #: seen by a watchdog thread): cheap enough to read on every comprehension item.
        self.flag = False

    def start(self, timeout: Optional[float]) -> None:
        self.timeout = float(timeout or 0)
        self.deadline = (time.monotonic() + timeout) if timeout else float("inf")
        self._paused_at = None
        self.abort_reason = None
        self.expired = False
        self.flag = False

    def stop(self) -> None:
        self.deadline = None
        self._paused_at = None

    def pause(self) -> None:
        self._paused_at = time.monotonic()

    def resume(self) -> None:
        if self._paused_at is not None and self.deadline is not None:
            self.deadline += time.monotonic() - self._paused_at
        self._paused_at = None

    def abort(self, reason: str) -> None:
        self.abort_reason = reason
        self.flag = True

    def expire_if_late(self, now: float) -> bool:
        """Called by a watchdog thread: mark the deadline as passed so the next (cheap) check
        raises. ``_paused_at`` is read before ``deadline``: ``resume`` moves the deadline
        first and clears the pause after, so a host call that ends meanwhile is never taken
        for a late cell."""
        if self._paused_at is not None:
            return False
        d = self.deadline
        if d is not None and now > d:
            self.expired = True
            self.flag = True
            return True
        return False

    def check(self) -> None:
        if self.abort_reason is not None:
            raise SandboxAbort(self.abort_reason)
        if self.expired:
            raise SandboxTimeout()
        d = self.deadline
        if d is None:
            # Sandbox code running outside any cell (a generator finalised by the garbage
            # collector, a __str__ called by host code): stop it at its first check.
            raise SandboxAbort("sandbox code may only run inside a cell")
        if self._paused_at is None and time.monotonic() > d:
            self.expired = True
            raise SandboxTimeout()


def _range_len(r: range) -> int:
    """len(range) without OverflowError for ranges longer than sys.maxsize."""
    if r.step > 0:
        return max(0, (r.stop - r.start + r.step - 1) // r.step)
    return max(0, (r.start - r.stop - r.step - 1) // -r.step)


def _int_exponent(b: Any) -> Optional[int]:
    """The exponent as an int when ``** b`` can be exact (int, bool, numpy integer, a
    Fraction or Decimal of integral value); None when the result is a float anyway."""
    if isinstance(b, int):
        return int(b)
    t = type(b)
    if _is_numpy(b):
        try:
            import numpy as np
            if isinstance(b, np.integer):
                return int(b)
            if isinstance(b, np.ndarray) and b.dtype.kind in "iuO":
                return int(abs(b).max()) if b.size else 0
        except Exception:
            return None
        return None
    name = t.__name__
    if name == "Fraction" and _type_module(b) == "fractions":
        return int(b.numerator) if b.denominator == 1 else None
    return None


def _exact_bits(a: Any) -> Optional[int]:
    """Size of an exact base in bits: 0 when powers of it stay small (|a| <= 1, floats,
    complex, Decimal, fixed-width numpy numbers); None when it cannot be sized."""
    if isinstance(a, int):
        return 0 if -1 <= a <= 1 else int(a).bit_length()
    if isinstance(a, (float, complex)):
        return 0
    mod = _type_module(a)
    if mod in ("decimal", "_decimal", "_pydecimal"):
        return 0
    if mod == "fractions":
        n, d = a.numerator, a.denominator
        if d == 1 and -1 <= n <= 1:
            return 0
        return int(n).bit_length() + int(d).bit_length()
    if _is_numpy(a) or _is_pandas(a):
        dtype = getattr(a, "dtype", None)
        kind = getattr(dtype, "kind", None)
        if kind is not None and kind != "O":
            return 0
        if kind == "O":
            return None
        return 0
    return None


_PADDERS = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs"])


_TEXT_GROWERS = _PADDERS | frozenset(["replace", "join"])


def _count_tabs(text: Any) -> int:
    return text.count("\t" if isinstance(text, str) else b"\t")


_BIG_WIDTH = _re.compile(r"\d{9,}")


def check_format_spec(spec: Any) -> Any:
    """Refuse format specs with absurd widths or precisions (``f"{x:>999999999}"``)."""
    if isinstance(spec, str) and _BIG_WIDTH.search(spec):
        raise MemoryError("format width or precision too large for the sandbox")
    return spec


_INPLACE = {
    "+=": _operator.iadd, "-=": _operator.isub, "*=": _operator.imul, "/=": _operator.itruediv,
    "%=": _operator.imod, "**=": _operator.ipow, "<<=": _operator.ilshift,
    ">>=": _operator.irshift, "|=": _operator.ior, "^=": _operator.ixor,
    "&=": _operator.iand, "//=": _operator.ifloordiv, "@=": _operator.imatmul,
}


class SizeGuards:
    """Size guards, mixed into :class:`~.repl.Repl` (they use ``self.limits``)."""

    def _guarded_text(self, method: Callable[..., Any], name: str, unbound: bool,
                      bound_to: Any) -> Callable[..., Any]:
        """str/bytes methods whose result can be far bigger than their input: padding
        (``ljust(10**12)``), ``replace`` with a longer text, ``join`` with a long separator
        or many copies of one big item. The size is worked out before the C call."""
        limit = self.limits["max_seq"]

        def guarded(*args: Any, **kwargs: Any) -> Any:
            rest = list(args[1:]) if unbound else list(args)
            self_ = args[0] if unbound and args else bound_to
            if name in _PADDERS:
                width = rest[0] if rest else kwargs.get("width", kwargs.get("tabsize", 0))
                if isinstance(width, int) and width > limit:
                    raise MemoryError(f"{name}({width}) would exceed the sandbox size limit")
                if name == "expandtabs" and isinstance(width, int) and isinstance(
                        self_, (str, bytes, bytearray)) and width * _count_tabs(self_) > limit:
                    raise MemoryError("expandtabs() result would exceed the sandbox size limit")
            elif name == "replace" and isinstance(self_, (str, bytes, bytearray)) and \
                    len(rest) >= 2:
                old, new = rest[0], rest[1]
                if isinstance(old, (str, bytes, bytearray)) and isinstance(
                        new, (str, bytes, bytearray)) and len(new) > len(old):
                    n = self_.count(old) if old else len(self_) + 1
                    count = rest[2] if len(rest) > 2 else kwargs.get("count", -1)
                    if isinstance(count, int) and count >= 0:
                        n = min(n, count)
                    if len(self_) + n * (len(new) - len(old)) > limit:
                        raise MemoryError("replace() result would exceed the sandbox size "
                                          "limit")
            elif name == "join" and rest:
                items = rest[0]
                if not isinstance(items, (list, tuple)):
                    items = list(items)
                    rest[0] = items
                sep = len(self_) if isinstance(self_, (str, bytes, bytearray)) else 0
                try:
                    total = sum(map(len, items)) + sep * max(len(items) - 1, 0)
                except TypeError:
                    total = 0  # join raises its own error for non-text items
                if total > limit:
                    raise MemoryError(f"join() result of {total} characters exceeds the "
                                      f"sandbox size limit ({limit})")
                args = (self_, *rest) if unbound else tuple(rest)
            return method(*args, **kwargs)

        guarded.__name__ = name
        return guarded

    def _mul(self, a: Any, b: Any) -> Any:
        if type(a) is int and type(b) is int:
            if a.bit_length() + b.bit_length() > self.limits["max_int_bits"]:
                raise MemoryError("integer result too large for the sandbox")
        else:
            self._check_repeat(a, b)
            self._check_repeat(b, a)
        return a * b

    def _check_repeat(self, seq: Any, n: Any) -> None:
        if isinstance(seq, (str, bytes, bytearray, list, tuple)) and isinstance(n, int):
            if len(seq) * n > self.limits["max_seq"]:
                raise MemoryError(f"sequence repetition of {len(seq)} x {n} exceeds the sandbox "
                                  f"size limit ({self.limits['max_seq']})")

    def _pow(self, a: Any, b: Any, mod: Any = None) -> Any:
        if mod is not None:
            return _builtins.pow(a, b, mod)
        self._check_pow(a, b)
        return a ** b

    def _check_pow(self, a: Any, b: Any) -> None:
        """Refuse ``a ** b`` whose exact result would be huge, for every type with an exact
        ``__pow__``: int (and bool, int subclasses), Fraction, and object arrays of them.
        Floats, complex, Decimal (bounded precision) and fixed-width numpy numbers stay small
        or overflow fast."""
        e = _int_exponent(b)
        if e is None or -1 <= e <= 1:
            return
        limit = self.limits["max_int_bits"]
        bits = _exact_bits(a)
        if bits is None:  # a type we cannot size: an object array, a user type...
            if -64 <= e <= 64:
                return
            raise MemoryError(f"{type(a).__name__} ** {e} may be too large for the sandbox; "
                              f"use floats (float(x) ** y) or a smaller exponent")
        if bits and bits * abs(e) > limit:
            raise MemoryError(f"{bits}-bit number ** {e} is too large for the sandbox")

    def _lshift(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int) and b > self.limits["max_int_bits"]:
            raise MemoryError("shift too large for the sandbox")
        return a << b

    def _mod(self, a: Any, b: Any) -> Any:
        if isinstance(a, (str, bytes)):
            check_format_spec(a)
            args = b if isinstance(b, tuple) else (b,)
            if any(type(x) is int and x > self.limits["max_seq"] for x in args) and \
                    ("*" in a if isinstance(a, str) else b"*" in a):
                raise MemoryError("% format width too large for the sandbox")
        return a % b

    def _format(self, value: Any, spec: Any = "") -> str:
        return format(value, check_format_spec(spec))

    def _inplacevar(self, op: str, x: Any, y: Any) -> Any:
        fn = _INPLACE.get(op)
        if fn is None:
            raise SyntaxError(f"unsupported augmented assignment {op}")
        if op == "*=":
            if type(x) is int and type(y) is int:
                return self._mul(x, y)
            self._check_repeat(x, y)
            self._check_repeat(y, x)
        elif op == "**=":
            return self._pow(x, y)
        elif op == "<<=":
            return self._lshift(x, y)
        elif op == "%=":
            return self._mod(x, y)
        return fn(x, y)
