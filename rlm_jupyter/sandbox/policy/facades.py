"""Module facades: what ``import x`` gives sandbox code, one builder per module.

Each builder returns the members of one sandbox module: functions, classes and constants picked
by hand, never a module, with size-checked or guarded versions where the real one could run
away. numpy and pandas are in :mod:`.facades_data`.
"""

from __future__ import annotations

import math as _math
from typing import TYPE_CHECKING, Any, Callable, Dict

from .facade import _pick
from .facades_data import _fac_numpy, _fac_pandas
from .rules import SAFE_DUNDER_ATTRS

if TYPE_CHECKING:  # pragma: no cover
    from .repl import Repl


def _fac_math(repl: Repl) -> Dict[str, Any]:
    m = _pick(_math, "acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh degrees "
                     "dist e erf erfc exp exp2 expm1 fabs floor fmod frexp fsum gamma gcd hypot "
                     "inf isclose isfinite isinf isnan isqrt lcm ldexp lgamma log log10 log1p "
                     "log2 modf nan nextafter pi prod radians remainder sin sinh sqrt tan tanh "
                     "tau trunc ulp pow")
    big = 100_000

    def factorial(n: Any) -> Any:
        if isinstance(n, int) and n > big:
            raise MemoryError(f"factorial({n}) is too large for the sandbox (max {big})")
        return _math.factorial(n)

    def comb(n: Any, k: Any) -> Any:
        if isinstance(n, int) and isinstance(k, int) and n > big and min(k, n - k) > 1000:
            raise MemoryError(f"comb({n}, {k}) is too large for the sandbox")
        return _math.comb(n, k)

    def perm(n: Any, k: Any = None) -> Any:
        kk = n if k is None else k
        if isinstance(n, int) and isinstance(kk, int) and n > big and kk > 1000:
            raise MemoryError(f"perm({n}, {k}) is too large for the sandbox")
        return _math.perm(n, k)

    m.update(factorial=factorial, comb=comb, perm=perm)
    return m


def _fac_json(repl: Repl) -> Dict[str, Any]:
    import json
    m = _pick(json, "dumps loads JSONDecodeError JSONDecoder JSONEncoder")

    def dumps(obj: Any, *args: Any, **kwargs: Any) -> Any:
        indent = kwargs.get("indent")
        if (isinstance(indent, int) and indent > 64) or (
                isinstance(indent, str) and len(indent) > 64):
            raise ValueError("json.dumps(indent=...) is limited to 64 in the sandbox")
        if "cls" in kwargs:
            raise PermissionError("json.dumps(cls=...) is not available in the sandbox; use "
                                  "default=function")
        return json.dumps(obj, *args, **kwargs)

    m["dumps"] = dumps
    return m


def _fac_re(repl: Repl) -> Dict[str, Any]:
    import re
    return _pick(re, "compile search match fullmatch findall finditer split sub subn escape "
                     "purge error Pattern Match A ASCII I IGNORECASE M MULTILINE S DOTALL X "
                     "VERBOSE U UNICODE NOFLAG")


def _fac_collections(repl: Repl) -> Dict[str, Any]:
    import collections
    return _pick(collections, "Counter defaultdict OrderedDict deque namedtuple ChainMap "
                              "UserDict UserList UserString")


def _fac_itertools(repl: Repl) -> Dict[str, Any]:
    import itertools
    m = _pick(itertools, "accumulate batched chain combinations combinations_with_replacement "
                         "compress count cycle dropwhile filterfalse groupby islice pairwise "
                         "permutations product repeat starmap takewhile tee zip_longest")
    # Endless iterators run in C: consumed by C (sum, any, list) nothing would ever check the
    # deadline. Their sandbox versions yield through the checking iterator.
    tick = repl._tickiter

    def count(start: Any = 0, step: Any = 1) -> Any:
        return tick(itertools.count(start, step))

    def cycle(iterable: Any) -> Any:
        return tick(itertools.cycle(iterable))

    def repeat(obj: Any, times: Any = None) -> Any:
        if times is None:
            return tick(itertools.repeat(obj))
        return tick(itertools.repeat(obj, times)) if times > 4096 else itertools.repeat(obj,
                                                                                       times)

    def tee(iterable: Any, n: int = 2) -> Any:
        if not isinstance(n, int) or n > 1024:
            raise MemoryError("tee() with more than 1024 copies is not allowed in the sandbox")
        return itertools.tee(iterable, n)

    def _small(what: str, n: Any, cap: int = 10_000) -> None:
        if isinstance(n, int) and n > cap:
            raise MemoryError(f"itertools.{what}={n} is too large for the sandbox (max {cap})")

    def product(*iterables: Any, repeat: Any = 1) -> Any:
        _small("product(repeat)", repeat, 1000)
        return itertools.product(*iterables, repeat=repeat)

    def combinations_with_replacement(iterable: Any, r: Any) -> Any:
        _small("combinations_with_replacement(r)", r)
        return itertools.combinations_with_replacement(iterable, r)

    def combinations(iterable: Any, r: Any) -> Any:
        _small("combinations(r)", r)  # C allocates r indices before it looks at the input
        return itertools.combinations(iterable, r)

    def permutations(iterable: Any, r: Any = None) -> Any:
        _small("permutations(r)", r)
        return itertools.permutations(iterable, r)

    m.update(count=count, cycle=cycle, repeat=repeat, tee=tee, product=product,
             combinations_with_replacement=combinations_with_replacement,
             combinations=combinations, permutations=permutations)
    if "batched" in m:
        def batched(iterable: Any, n: Any, *args: Any, **kwargs: Any) -> Any:
            _small("batched(n)", n, repl.limits["max_seq"] // 8)
            return itertools.batched(iterable, n, *args, **kwargs)  # type: ignore[attr-defined]
        m["batched"] = batched
    return m


def _fac_statistics(repl: Repl) -> Dict[str, Any]:
    import statistics
    return _pick(statistics, "mean fmean geometric_mean harmonic_mean median median_low "
                             "median_high median_grouped mode multimode pstdev pvariance stdev "
                             "variance quantiles correlation covariance linear_regression "
                             "NormalDist StatisticsError")


def _fac_datetime(repl: Repl) -> Dict[str, Any]:
    import datetime
    return _pick(datetime, "date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC")


def _fac_textwrap(repl: Repl) -> Dict[str, Any]:
    import textwrap
    m = _pick(textwrap, "wrap fill dedent indent shorten TextWrapper")
    limit = repl.limits["max_seq"]

    def indent(text: Any, prefix: Any, predicate: Any = None) -> Any:
        if isinstance(text, str) and isinstance(prefix, str) and \
                len(text) + len(prefix) * (text.count("\n") + 1) > limit:
            raise MemoryError("textwrap.indent() result would exceed the sandbox size limit")
        return textwrap.indent(text, prefix, predicate)

    m["indent"] = indent
    return m


def _fac_difflib(repl: Repl) -> Dict[str, Any]:
    import difflib
    return _pick(difflib, "SequenceMatcher Differ HtmlDiff get_close_matches ndiff unified_diff "
                          "context_diff restore IS_LINE_JUNK IS_CHARACTER_JUNK diff_bytes")


def _fac_string(repl: Repl) -> Dict[str, Any]:
    import string
    return _pick(string, "ascii_letters ascii_lowercase ascii_uppercase digits hexdigits "
                         "octdigits punctuation printable whitespace capwords Template")


def _fac_csv(repl: Repl) -> Dict[str, Any]:
    """Reading and writing CSV text (a CSV context is a data scientist's daily bread). No
    dialect registry or ``field_size_limit`` (process-wide state: in-process, the kernel's own),
    and no ``Sniffer`` (its regexes can run long in C, where no deadline reaches)."""
    import csv
    return _pick(csv, "reader writer DictReader DictWriter Error excel excel_tab unix_dialect "
                      "QUOTE_MINIMAL QUOTE_ALL QUOTE_NONNUMERIC QUOTE_NONE")


def _fac_heapq(repl: Repl) -> Dict[str, Any]:
    import heapq
    return _pick(heapq, "heappush heappop heapify heapreplace heappushpop nlargest nsmallest "
                        "merge")


def _fac_bisect(repl: Repl) -> Dict[str, Any]:
    import bisect
    return _pick(bisect, "bisect bisect_left bisect_right insort insort_left insort_right")


class _SafeDispatch:
    """``functools.singledispatch`` without the annotation form of ``register``: that form
    calls ``typing.get_type_hints``, which ``eval``s string annotations outside
    RestrictedPython. ``@f.register(int)`` works."""

    __slots__ = ("_real",)

    def __init__(self, func: Callable[..., Any]) -> None:
        import functools
        object.__setattr__(self, "_real", functools.singledispatch(func))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real(*args, **kwargs)

    def register(self, cls: Any, func: Any = None) -> Any:
        if not isinstance(cls, type):
            raise TypeError("in the sandbox, register takes the class explicitly: "
                            "@f.register(int) (annotations are not read)")
        real = self._real
        if func is None:
            def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
                return real.register(cls, f)
            return decorator
        return real.register(cls, func)

    def dispatch(self, cls: Any) -> Any:
        return self._real.dispatch(cls)

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("read-only")


def _fac_functools(repl: Repl) -> Dict[str, Any]:
    import functools
    m = _pick(functools, "reduce partial lru_cache cache cmp_to_key cached_property")
    assigned_ok = frozenset(functools.WRAPPER_ASSIGNMENTS)
    updated_ok = frozenset(functools.WRAPPER_UPDATES)

    def update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = None,
                       updated: Any = None) -> Any:
        """Copies ``__name__``, ``__qualname__`` and ``__doc__`` (text only) onto a function or
        class defined in the sandbox. No attribute name comes from sandbox code."""
        for names, ok in ((assigned, assigned_ok), (updated, updated_ok)):
            if names is not None and (type(names) not in (tuple, list) or any(
                    type(n) is not str or n not in ok for n in names)):
                raise PermissionError("functools.wraps/update_wrapper: assigned= and updated= "
                                      "cannot be chosen in the sandbox; leave them out")
        repl._check_own_callable(wrapper, "functools.wraps")
        for attr in SAFE_DUNDER_ATTRS:
            try:
                value = getattr(wrapped, attr)
            except Exception:
                continue
            if value is None or type(value) is str:
                try:
                    setattr(wrapper, attr, value)
                except (AttributeError, TypeError):
                    pass
        return wrapper

    def wraps(wrapped: Any, assigned: Any = None, updated: Any = None
              ) -> Callable[[Any], Any]:
        def decorator(wrapper: Any) -> Any:
            return update_wrapper(wrapper, wrapped, assigned, updated)
        return decorator

    def total_ordering(cls: Any) -> Any:
        if not isinstance(cls, type) or cls not in repl._sandbox_classes:
            raise TypeError("functools.total_ordering only applies to classes defined in the "
                            "sandbox")
        return functools.total_ordering(cls)

    m.update(update_wrapper=update_wrapper, wraps=wraps, total_ordering=total_ordering,
             singledispatch=_SafeDispatch, WRAPPER_ASSIGNMENTS=functools.WRAPPER_ASSIGNMENTS,
             WRAPPER_UPDATES=functools.WRAPPER_UPDATES)
    return m


def _fac_operator(repl: Repl) -> Dict[str, Any]:
    import operator
    m = _pick(operator, "abs add and_ concat contains countOf eq floordiv ge gt index indexOf "
                        "inv invert is_ is_not itemgetter le length_hint lshift lt matmul mod "
                        "mul ne neg not_ or_ pos pow rshift sub truediv truth xor iadd isub "
                        "iconcat iand ior ixor ifloordiv imod itruediv")
    getattr_ = repl._guarded_getattr

    def attrgetter(*names: str) -> Callable[[Any], Any]:
        """operator.attrgetter through the sandbox's attribute rules."""
        def get_one(obj: Any, dotted: str) -> Any:
            for part in dotted.split("."):
                obj = getattr_(obj, part)
            return obj
        if len(names) == 1:
            return lambda obj: get_one(obj, names[0])
        return lambda obj: tuple(get_one(obj, n) for n in names)

    def methodcaller(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda obj: getattr_(obj, name)(*args, **kwargs)

    m.update(mul=repl._mul, pow=repl._pow, lshift=repl._lshift,
             imul=lambda a, b: repl._inplacevar("*=", a, b),
             ipow=lambda a, b: repl._inplacevar("**=", a, b),
             ilshift=lambda a, b: repl._inplacevar("<<=", a, b),
             attrgetter=attrgetter, methodcaller=methodcaller)
    return m


def _fac_fractions(repl: Repl) -> Dict[str, Any]:
    import fractions
    return _pick(fractions, "Fraction")


def _fac_decimal(repl: Repl) -> Dict[str, Any]:
    import decimal
    return _pick(decimal, "Decimal InvalidOperation DivisionByZero DecimalException Inexact "
                          "Rounded Overflow Underflow ROUND_CEILING ROUND_DOWN ROUND_FLOOR "
                          "ROUND_HALF_DOWN ROUND_HALF_EVEN ROUND_HALF_UP ROUND_UP ROUND_05UP")


def _fac_typing(repl: Repl) -> Dict[str, Any]:
    import typing
    return _pick(typing, "Any Callable Dict List Set FrozenSet Tuple Optional Union Iterable "
                         "Iterator Sequence Mapping MutableMapping MutableSequence Generator "
                         "Literal TypeVar Generic Hashable Sized Counter DefaultDict Deque "
                         "OrderedDict cast")


def _fac_random(repl: Repl) -> Dict[str, Any]:
    import random
    rng = random.Random()  # private: seeding it never touches anyone else's generator
    m = {n: getattr(rng, n) for n in (
        "random seed randint randrange choice choices shuffle sample uniform gauss "
        "normalvariate expovariate betavariate triangular getrandbits lognormvariate "
        "vonmisesvariate gammavariate paretovariate weibullvariate").split()}
    m["Random"] = random.Random
    limit = repl.limits["max_seq"] // 8

    def sized(fname: str) -> Callable[..., Any]:
        real = m[fname]

        def call(*args: Any, **kwargs: Any) -> Any:
            k = kwargs.get("k", args[1] if fname == "sample" and len(args) > 1 else None)
            if isinstance(k, int) and k > limit:
                raise MemoryError(f"random.{fname}(k={k}) is too large for the sandbox")
            return real(*args, **kwargs)

        call.__name__ = fname
        return call

    def getrandbits(k: Any) -> Any:
        if isinstance(k, int) and k > repl.limits["max_int_bits"]:
            raise MemoryError("getrandbits(): too many bits for the sandbox")
        return rng.getrandbits(k)

    m.update(choices=sized("choices"), sample=sized("sample"), getrandbits=getrandbits)
    return m


def _fac_dataclasses(repl: Repl) -> Dict[str, Any]:
    import dataclasses
    m = _pick(dataclasses, "field fields asdict astuple replace is_dataclass "
                           "FrozenInstanceError MISSING")
    options = frozenset("init repr eq order unsafe_hash frozen match_args kw_only slots "
                        "weakref_slot".split())

    def dataclass(cls: Any = None, **kwargs: Any) -> Any:
        """``@dataclass`` for classes defined in the sandbox (it writes methods onto the
        class, so a library class is never accepted)."""
        bad = [k for k in kwargs if k not in options]
        if bad:
            raise TypeError(f"dataclass() got unexpected options {bad}")

        def wrap(c: Any) -> Any:
            if not isinstance(c, type) or c not in repl._sandbox_classes:
                raise TypeError("dataclass() only applies to classes defined in the sandbox")
            out = dataclasses.dataclass(c, **kwargs)
            if out is not c:  # slots=True builds a new class
                repl._sandbox_classes.add(out)
            return out

        return wrap if cls is None else wrap(cls)

    m["dataclass"] = dataclass
    return m


_FACADE_BUILDERS: Dict[str, Callable[[Repl], Dict[str, Any]]] = {
    "math": _fac_math, "json": _fac_json, "re": _fac_re, "collections": _fac_collections,
    "itertools": _fac_itertools, "statistics": _fac_statistics, "datetime": _fac_datetime,
    "textwrap": _fac_textwrap, "difflib": _fac_difflib, "string": _fac_string,
    "heapq": _fac_heapq, "bisect": _fac_bisect, "functools": _fac_functools,
    "operator": _fac_operator, "fractions": _fac_fractions, "decimal": _fac_decimal,
    "typing": _fac_typing, "random": _fac_random, "dataclasses": _fac_dataclasses,
    "numpy": _fac_numpy, "pandas": _fac_pandas, "csv": _fac_csv,
}


#: What ``import x`` may name (pandas and numpy only when installed).
ALLOWED_MODULES = tuple(sorted(_FACADE_BUILDERS))
