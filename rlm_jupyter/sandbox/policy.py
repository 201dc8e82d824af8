"""The sandbox policy: what model-written code may touch, and the REPL that enforces it.

Why one module for all of it: the same rules must hold in the local worker, inside a container
and in the in-process thread. This file is therefore standard-library only, with no imports from
the rest of the package, and stays Python 3.9 compatible: the host ships its source to the
worker (see ``protocol.py``), so a container needs nothing installed but Python.

Layers, outermost first:

* RestrictedPython (``compile_restricted_exec`` with :class:`RLMPolicy`) rewrites attribute
  access, item access, iteration, unpacking, augmented assignment, ``print`` and class creation
  into calls to the guards below, and refuses names that start with ``_`` at compile time.
  :class:`RLMPolicy` adds deadline checks at loop heads, function entry and every
  ``except``/``finally`` handler, size guards on ``*``, ``**`` and ``<<``, augmented assignment
  of items and attributes (``counts[k] += 1``), and echo of a trailing expression.
* The guards refuse private names, frame/code/traceback/module values, unsafe ``format``.
* Module facades hold functions, classes and constants picked by hand, never a module.
* pandas objects pass an attribute allow-list (no ``eval``/``query``, no file writers).
"""

from __future__ import annotations

import ast
import builtins as _builtins
import collections as _collections
import datetime as _datetime_mod
import itertools as _itertools
import json as _json
import linecache
import math as _math
import operator as _operator
import re as _re
import string as _string_mod
import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any, Callable, Dict, List, Optional

try:  # The worker may run where RestrictedPython cannot be imported (Python 3.9 images).
    from RestrictedPython import compile_restricted_exec
    from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

    HAVE_RESTRICTED = True
except Exception:  # pragma: no cover - exercised only on old interpreters
    HAVE_RESTRICTED = False
    compile_restricted_exec = None  # type: ignore[assignment]
    RestrictingNodeTransformer = object  # type: ignore[assignment,misc]
    INSPECT_ATTRIBUTES = frozenset([
        "tb_frame", "tb_next", "f_back", "f_builtins", "f_code", "f_generator", "f_globals",
        "f_locals", "f_trace", "co_code", "gi_frame", "gi_code", "gi_yieldfrom", "cr_await",
        "cr_frame", "cr_code", "cr_origin", "ag_await", "ag_frame", "ag_code",
    ])

DEFAULT_LIMITS: Dict[str, int] = {
    "max_output": 20_000,
    "max_final": 1_000_000,
    "max_error": 4_000,
    "max_value": 100_000,
    "max_seq": 100_000_000,  # chars/bytes/items a single * or constructor may create
    "max_int_bits": 10_000_000,  # bits of an int result of ** << *
    "max_code": 500_000,  # chars of one cell's source
}

#: Values sandboxed code must never hold: they lead to globals, builtins or the interpreter.
FORBIDDEN_VALUE_TYPES = (types.ModuleType, types.FrameType, types.CodeType,
                         types.TracebackType)

#: Dunder methods user classes may define, beyond RestrictedPython's own short list. None of
#: them runs at an unexpected time (no __del__, __getattr__, __init_subclass__, __format__...).
EXTRA_DUNDERS = frozenset([
    "__repr__", "__str__", "__len__", "__iter__", "__next__", "__getitem__", "__setitem__",
    "__delitem__", "__call__", "__hash__", "__bool__", "__add__", "__sub__", "__mul__",
    "__truediv__", "__floordiv__", "__mod__", "__neg__", "__radd__", "__rmul__", "__enter__",
    "__exit__", "__post_init__",
])


#: Private-looking attributes that only ever hold text: ``type(x).__name__`` is common in model
#: code. Read-only, and the guard checks the value is a str (or None).
SAFE_DUNDER_ATTRS = frozenset(["__name__", "__qualname__", "__doc__"])

#: namedtuple's public API is spelled with a leading underscore (``row._asdict()``, common with
#: ``df.itertuples()``). Allowed on namedtuple classes and instances only.
NAMEDTUPLE_ATTRS = frozenset(["_asdict", "_replace", "_fields", "_make", "_field_defaults"])


class SandboxTimeout(BaseException):
    """Raised by deadline checks. A BaseException so ``except Exception`` does not catch it,
    and re-raised by the check at the head of every handler, so bare ``except:`` does not
    help either. Never exposed to sandboxed code."""


class SandboxAbort(BaseException):
    """Raised by deadline checks when the host asked to stop (memory watchdog, cancel)."""


class CompileFailed(Exception):
    """The cell did not compile or broke a compile-time rule."""


# --------------------------------------------------------------------------------------------
# Deadline


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


# --------------------------------------------------------------------------------------------
# Facades


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


# --------------------------------------------------------------------------------------------
# pandas / numpy attribute rules

PANDAS_ALLOWED = frozenset("""
T abs add add_prefix add_suffix align all any append argmax argmin argsort array asof astype
at axes backfill between bfill capitalize casefold cat categories ceil clip codes columns
combine_first contains copy corr count cov cummax cummin cumprod cumsum cumcount date day
day_name dayofweek dayofyear days days_in_month daysinmonth describe diff difference div
divide dot drop drop_duplicates droplevel dropna dt dtype dtypes duplicated empty endswith eq
equals explode extract extractall factorize ffill fillna filter find findall first
first_valid_index floor floordiv freq fullmatch ge get get_group get_indexer get_level_values
get_loc groupby groups gt has_duplicates hasnans head hour iat idxmax idxmin iloc index
indices insert interpolate intersection is_monotonic_decreasing is_monotonic_increasing
is_unique isalnum isalpha isdecimal isdigit isin islower isna isnull isnumeric isocalendar
isoformat isspace istitle isupper item items iterrows itertuples join keys kurt kurtosis last
last_valid_index le len levels ljust loc lower lstrip lt map mask match max mean median melt
memory_usage merge microsecond min minute mod mode month month_name mul multiply name names
nanosecond nbytes ndim ne nlargest normalize notna notnull nsmallest nth nunique pad partition
pct_change pivot pivot_table pop pow prod product quantile quarter radd rank ravel rdiv reindex
rename rename_axis reorder_levels repeat replace reset_index resample rfind rindex rjust rmul
rolling round rpartition rsplit rstrip rsub rtruediv sample searchsorted second select_dtypes
sem set_axis set_index shape shift size skew slice slice_replace sort_index sort_values split
squeeze stack startswith std strftime strip sub subtract sum swapcase swaplevel symmetric_difference
tail time title to_dict to_frame to_list to_period to_pydatetime to_records to_series
to_string to_csv to_json to_markdown to_timestamp tolist total_seconds transpose truediv
truncate tz tz_convert tz_localize union unique unstack update upper value_counts var
week weekday where xs year zfill expanding ewm nsmallest ngroup ngroups groupby
isocalendar seconds microseconds components weekofyear is_leap_year is_month_end
is_month_start is_year_end is_year_start assign apply agg aggregate transform applymap pipe
set_names sort to_numpy values wrap len encode decode get_dummies removeprefix removesuffix
str is_na size value combine ordered from_dict from_records as_ordered add_categories
remove_categories
rename_categories set_categories
""".split())

#: Refused on pandas objects in strict (in-process) mode: they hand out raw numpy arrays or run
#: arbitrary callables/strings on the kernel thread.
PANDAS_STRICT_DENIED = frozenset("values to_numpy array apply agg aggregate transform applymap "
                                 "pipe to_records".split())

#: pandas methods that write to a path or buffer when given one: allowed only without one.
PANDAS_PATH_METHODS = frozenset("to_string to_csv to_json to_markdown".split())

NUMPY_DENIED = frozenset("ctypes tofile dump dumps load save savez savez_compressed fromfile "
                         "memmap lib ctypeslib testing f2py distutils setflags frombuffer "
                         "from_dlpack".split())

#: Attributes numpy arrays keep but sandbox code may not assign: they re-point an array at
#: other memory.
NUMPY_WRITE_DENIED = frozenset("strides data base ctypes flags shape_base".split())

#: Attribute names refused on every object: raw-memory doors (numpy's ``bit_generator.cffi``,
#: ``.ctypes``, ``.capsule``) and ``mro`` (walks up to ``object`` and ``BaseException``).
RAW_MEMORY_NAMES = frozenset(["ctypes", "cffi", "capsule", "ctypeslib", "from_address",
                              "from_buffer", "addressof", "dlpack", "__dlpack__"])

#: Modules whose objects are raw pointers or foreign-function doors: never handed out.
_RAW_MEMORY_MODULES = frozenset(["ctypes", "_ctypes", "_cffi_backend", "cffi", "mmap"])


def _type_module(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    try:
        m = type.__getattribute__(t, "__module__")
    except Exception:
        return ""
    return m if isinstance(m, str) else ""


_KIND_CACHE: Dict[type, str] = {}
_REPL_COUNTER = _itertools.count(1)


def _kind(obj: Any) -> str:
    """"pandas", "numpy" or "" for the object's type (cached per type)."""
    t = obj if isinstance(obj, type) else type(obj)
    kind = _KIND_CACHE.get(t)
    if kind is None:
        m = _type_module(obj)
        kind = ("pandas" if m == "pandas" or m.startswith("pandas.") else
                "numpy" if m == "numpy" or m.startswith("numpy.") else "")
        if len(_KIND_CACHE) < 10_000:
            _KIND_CACHE[t] = kind
    return kind


def _is_raw_memory(obj: Any) -> bool:
    """ctypes/cffi objects and C capsules: raw pointers, never handed to sandbox code."""
    t = obj if isinstance(obj, type) else type(obj)
    if _CAPSULE_TYPE and t is _CAPSULE_TYPE:
        return True
    m = _type_module(obj)
    return m.split(".", 1)[0] in _RAW_MEMORY_MODULES


def _is_pandas(obj: Any) -> bool:
    return _kind(obj) == "pandas"


def _is_numpy(obj: Any) -> bool:
    return _kind(obj) == "numpy"


_MISSING = object()


def _pandas_column(obj: Any, name: str) -> Any:
    """``df.col`` / ``df.groupby(k).col``: column access spelled as an attribute."""
    tname = type(obj).__name__
    try:
        if tname == "DataFrame":
            if name in obj.columns:
                return obj[name]
        elif tname == "DataFrameGroupBy":
            if name in obj.obj.columns:
                return obj[name]
    except Exception:
        pass
    return _MISSING


def _no_path(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a pandas writer so it only returns text (no path, buffer or file)."""

    def writer(*args: Any, **kwargs: Any) -> Any:
        if (args and args[0] is not None) or any(
                kwargs.get(k) is not None for k in ("buf", "path_or_buf", "path")):
            raise PermissionError(f"{name}() may not write to a file in the sandbox; call it "
                                  f"without a path to get the text back")
        return method(*args, **kwargs)

    writer.__name__ = name
    return writer


#: The only function *names* pandas may resolve for sandbox code. pandas looks a string up with
#: ``getattr`` on the object (private attributes included), then on numpy, so the list is closed
#: and checked by value: anything else needs a real function (``df.agg(my_func)``).
SAFE_FUNC_NAMES = frozenset("""
sum mean median min max count size std var sem nunique first last prod product any all
cumsum cumprod cummax cummin cumcount idxmax idxmin skew kurt kurtosis quantile describe mode
nlargest nsmallest rank diff pct_change shift ffill bfill abs round unique value_counts ohlc
ngroup nth head tail fillna
""".split())

#: pandas methods that take a function (or a function name, or containers of them), and where.
#: name -> (positional index of the function, keyword names that hold functions,
#:          whether extra keywords are named aggregations ``x=(column, func)``)
PANDAS_FUNC_METHODS: Dict[str, Any] = {
    "apply": (0, ("func",), False), "agg": (0, ("func", "arg"), True),
    "aggregate": (0, ("func", "arg"), True), "transform": (0, ("func",), False),
    "map": (0, ("arg", "func", "mapper"), False), "applymap": (0, ("func",), False),
    "pipe": (0, ("func",), False), "pivot_table": (3, ("aggfunc",), False),
    "rolling": (None, ("win_type",), False),
}

#: pandas *functions* of the facade that take a function name: positional index and keywords.
PANDAS_FUNC_FUNCTIONS: Dict[str, Any] = {
    "pivot_table": (4, ("aggfunc",)), "crosstab": (5, ("aggfunc",)),
}

_WIN_TYPES = frozenset("boxcar triang blackman hamming bartlett parzen bohman blackmanharris "
                       "nuttall barthann cosine exponential tukey taylor".split())


def _safe_funcs(value: Any, name: str, depth: int = 0, mapping_ok: bool = False) -> Any:
    """A checked *copy* of a pandas function argument: names only from
    :data:`SAFE_FUNC_NAMES` (exact ``str``), recursively through plain lists, tuples and dicts.
    The copy is what pandas receives, so a container cannot show one thing to the check and
    another to pandas."""
    if depth > 20:
        raise PermissionError(f"{name}(): function arguments nest too deeply")
    if isinstance(value, str):
        if type(value) is not str or value not in SAFE_FUNC_NAMES:
            shown = str.__repr__(value)[:60]
            raise PermissionError(
                f"{name}() with the function name {shown} is not allowed in the sandbox; pass "
                f"a function (e.g. lambda s: s.sum()) or one of: "
                f"{', '.join(sorted(SAFE_FUNC_NAMES))}")
        return value
    if isinstance(value, dict):
        if mapping_ok:  # Series.map({...}): a lookup table, not functions
            return value
        if type(value) is not dict:
            raise PermissionError(f"{name}(): pass a plain dict of functions")
        return {k: _safe_funcs(v, name, depth + 1) for k, v in dict.items(value)}
    if isinstance(value, (list, tuple)):
        if type(value) not in (list, tuple):
            if _is_pandas(value) and isinstance(value, tuple):  # pd.NamedAgg
                return (tuple.__getitem__(value, 0),
                        _safe_funcs(tuple.__getitem__(value, 1), name, depth + 1))
            raise PermissionError(f"{name}(): pass a plain list or tuple of functions")
        items = [_safe_funcs(v, name, depth + 1) for v in
                 (list.__iter__(value) if type(value) is list else tuple.__iter__(value))]
        return items if type(value) is list else tuple(items)
    if _is_pandas(value) or not callable(value):
        return value  # a Series used as a mapping, a scalar...
    return value


def _named_agg(value: Any, name: str) -> Any:
    """``x=('col', func)`` / ``pd.NamedAgg(column, aggfunc)``: check the function part only."""
    if isinstance(value, tuple) and len(value) == 2:
        if type(value) is not tuple and not _is_pandas(value):
            raise PermissionError(f"{name}(): named aggregations must be plain tuples")
        return (tuple.__getitem__(value, 0),
                _safe_funcs(tuple.__getitem__(value, 1), name, 1))
    return _safe_funcs(value, name, 1)


def _checked_func_method(method: Callable[..., Any], name: str, pos: Optional[int],
                         keys: Any, named: bool = False) -> Callable[..., Any]:
    """Wrap a pandas method so every argument that pandas may resolve as a function name goes
    through :func:`_safe_funcs` (checked and copied)."""
    mapping_ok = name == "map"

    def call(*args: Any, **kwargs: Any) -> Any:
        if "engine" in kwargs or "engine_kwargs" in kwargs:
            raise PermissionError(f"{name}(engine=...) is not allowed in the sandbox")
        args = list(args)
        has_func = False
        if pos is not None and len(args) > pos:
            args[pos] = _safe_funcs(args[pos], name, mapping_ok=mapping_ok)
            has_func = True
        if name == "rolling":  # rolling(window, min_periods, center, win_type, ...)
            w = args[3] if len(args) > 3 else kwargs.get("win_type")
            if w is not None and (type(w) is not str or w not in _WIN_TYPES):
                raise PermissionError(f"rolling(win_type=...) must be one of "
                                      f"{sorted(_WIN_TYPES)} in the sandbox")
            return method(*args, **kwargs)
        for k in keys:
            if k in kwargs:
                kwargs[k] = _safe_funcs(kwargs[k], name, mapping_ok=mapping_ok)
                has_func = True
        if named and not has_func:
            kwargs = {k: _named_agg(v, name) for k, v in kwargs.items()}
        return method(*args, **kwargs)

    call.__name__ = name
    return call


# --------------------------------------------------------------------------------------------
# Printing


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


# --------------------------------------------------------------------------------------------
# The compile-time policy

if HAVE_RESTRICTED:

    def _call(name: str, args: List[ast.expr], node: ast.AST) -> ast.Call:
        call = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
        ast.copy_location(call, node)
        ast.fix_missing_locations(call)
        return call

    def _tick_stmt(node: ast.AST) -> ast.Expr:
        stmt = ast.Expr(value=_call("_tick_", [], node))
        ast.copy_location(stmt, node)
        ast.fix_missing_locations(stmt)
        return stmt

    _BINOP_GUARDS = {ast.Mult: "_mul_", ast.Pow: "_pow_", ast.LShift: "_lshift_",
                     ast.Mod: "_mod_"}

    class RLMPolicy(RestrictingNodeTransformer):  # type: ignore[misc,valid-type]
        """RestrictedPython's transformer plus deadline checks and size guards."""

        def check_name(self, node: Any, name: Optional[str], allow_magic_methods: bool = False
                       ) -> None:
            if (allow_magic_methods and name in EXTRA_DUNDERS
                    and getattr(node, "col_offset", 0) != 0):
                return
            super().check_name(node, name, allow_magic_methods)

        def visit_For(self, node: ast.For) -> Any:
            node = super().visit_For(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_While(self, node: ast.While) -> Any:
            node = super().visit_While(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
            node = super().visit_FunctionDef(node)
            first = node.body[0] if node.body else None
            has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                       and isinstance(first.value.value, str))
            node.body.insert(1 if has_doc else 0, _tick_stmt(node))
            return node

        def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
            node = super().visit_ExceptHandler(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_Try(self, node: ast.Try) -> Any:
            node = super().visit_Try(node)
            if node.finalbody:
                node.finalbody.insert(0, _tick_stmt(node))
            return node

        def visit_Lambda(self, node: ast.Lambda) -> Any:
            """``lambda x: body`` becomes ``lambda x: _tick_() or body``: the same deadline
            check as a ``def`` (``any(map(lambda x: ..., itertools.count()))``)."""
            node = super().visit_Lambda(node)
            body = ast.BoolOp(op=ast.Or(), values=[_call("_tick_", [], node.body), node.body])
            ast.copy_location(body, node.body)
            node.body = body
            return node

        def visit_comprehension(self, node: ast.comprehension) -> Any:
            node = super().visit_comprehension(node)
            node.iter = _call("_tickiter_", [node.iter], node.iter)
            return node

        def visit_BinOp(self, node: ast.BinOp) -> Any:
            node = super().visit_BinOp(node)
            guard = _BINOP_GUARDS.get(type(node.op))
            if guard is None:
                return node
            return _call(guard, [node.left, node.right], node)

        def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
            """``x: int = 5`` (RestrictedPython refuses it; dataclasses need it). The target
            and the annotation are checked and rewritten like any other expression."""
            if isinstance(node.target, ast.Attribute) and node.value is not None:
                assign = ast.Assign(targets=[node.target], value=node.value)
                ast.copy_location(assign, node)
                return self.visit_Assign(assign)
            return self.node_contents_visit(node)

        def visit_Attribute(self, node: ast.Attribute) -> Any:
            if (node.attr in SAFE_DUNDER_ATTRS or node.attr in NAMEDTUPLE_ATTRS) and \
                    isinstance(node.ctx, ast.Load):
                value = self.visit(node.value)
                return _call("_getattr_", [value, ast.Constant(node.attr)], node)
            return super().visit_Attribute(node)

        def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
            node = super().visit_FormattedValue(node)
            if node.format_spec is not None:
                spec = node.format_spec
                checked = ast.FormattedValue(value=_call("_spec_", [spec], spec),
                                             conversion=-1, format_spec=None)
                ast.copy_location(checked, spec)
                node.format_spec = ast.JoinedStr(values=[checked])
                ast.copy_location(node.format_spec, spec)
            return node

        def visit_AugAssign(self, node: ast.AugAssign) -> Any:
            from RestrictedPython.transformer import IOPERATOR_TO_STR
            if isinstance(node.target, ast.Subscript):
                node = self.node_contents_visit(node)
                target = node.target
                op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
                new = ast.Expr(value=_call("_aug_item_", [target.value, target.slice, op,
                                                          node.value], node))
                ast.copy_location(new, node)
                return new
            if isinstance(node.target, ast.Attribute):
                node = self.node_contents_visit(node)
                target = node.target
                if target.attr.startswith("_"):
                    self.error(node, f'"{target.attr}" is an invalid attribute name because it '
                                     'starts with "_"')
                    return node
                op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
                new = ast.Expr(value=_call("_aug_attr_", [target.value,
                                                          ast.Constant(target.attr), op,
                                                          node.value], node))
                ast.copy_location(new, node)
                return new
            return super().visit_AugAssign(node)

        def visit_Module(self, node: ast.Module) -> Any:
            node = super().visit_Module(node)
            if node.body and isinstance(node.body[-1], ast.Expr):
                last = node.body[-1]
                last.value = _call("_echo_", [last.value], last)
            return node


# --------------------------------------------------------------------------------------------
# The REPL


def _cap(text: str, limit: int, what: str = "text") -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{what} cut: {len(text) - limit} more characters]"


def _exact_str(value: Any) -> str:
    s = str(value)
    if type(s) is not str:
        s = str.__str__(s)
    return s


class HostFunction:
    """What sandboxed code sees for ``llm_query`` and friends: a callable with no reachable
    state. Everything it holds is behind ``_`` names, which the getattr guard refuses."""

    __slots__ = ("_name", "_repl")

    def __init__(self, name: str, repl: "Repl") -> None:
        self._name = name
        self._repl = repl

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._repl._call_host(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<host function {self._name}>"


class Repl:
    """A persistent restricted namespace holding ``context``; runs one cell at a time.

    ``host_call(name, args, kwargs)`` performs a host function call (over the pipe in the
    worker, directly in-process) and returns its JSON-compatible result or raises.
    ``strict=True`` is the in-process mode: pandas loses ``values``/``apply``-style methods.
    """

    def __init__(self, context: Any = None, host_call: Optional[Callable[..., Any]] = None,
                 functions: Optional[List[str]] = None, limits: Optional[Dict[str, int]] = None,
                 strict: bool = False, restricted: bool = True, has_context: bool = True) -> None:
        if restricted and not HAVE_RESTRICTED:
            raise RuntimeError("RestrictedPython is not importable in this interpreter "
                               f"(Python {sys.version.split()[0]}); install RestrictedPython>=9 "
                               "or use Python >= 3.10")
        self.limits = dict(DEFAULT_LIMITS)
        self.limits.update(limits or {})
        self.restricted = restricted
        self.strict = strict
        self.host_call = host_call
        self.function_names = list(functions or [])
        self.deadline = Deadline()
        self.collector = PrintCollector(self.limits["max_output"])
        self.final: Optional[str] = None
        self.cell_no = 0
        self._sandbox_classes: "weakref.WeakSet[type]" = weakref.WeakSet()
        self._facades: Dict[str, Facade] = {}
        self._facade_lock = threading.Lock()
        self._protected_ids = set()
        self.builtins = self._make_builtins()
        #: What ``builtins`` must hold before every cell: restored in place by ``_rebind``,
        #: so nothing a cell did to the dict (or to ``__builtins__``) outlives that cell.
        self._builtins_master = dict(self.builtins)
        # The namespace is a module's dict, registered in sys.modules while a cell runs, so
        # classes defined in cells have a __module__ that resolves (dataclasses look it up).
        # Nothing in the sandbox can reach sys.modules; only host code sees this entry.
        self.module_name = f"sandbox_{next(_REPL_COUNTER)}"
        self._module = types.ModuleType(self.module_name)
        self.ns: Dict[str, Any] = self._module.__dict__
        self.ns["__builtins__"] = self.builtins
        if has_context:
            self.ns["context"] = context
            if strict:
                self._protected_ids.add(id(context))
        self.ns["answer"] = {"content": "", "ready": False}
        self._rebind()

    # ---- guards --------------------------------------------------------------------------

    def _guarded_getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        # Fast path for the plain data types honest code touches in tight loops: their public
        # attributes are methods and plain values, never modules, frames or code.
        if type(obj) in _FAST_TYPES and type(name) is str and name[:1] != "_" and \
                name not in _FAST_SPECIAL:
            return getattr(obj, name, *default)
        return self._slow_getattr(obj, name, *default)

    def _slow_getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        if type(name) is not str:
            raise TypeError("attribute name must be a plain str")
        if name in NAMEDTUPLE_ATTRS:
            cls = obj if isinstance(obj, type) else type(obj)
            if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
                return getattr(obj, name, *default)
        if name in SAFE_DUNDER_ATTRS:
            value = getattr(obj, name, *default) if default else getattr(obj, name, None)
            if value is None or type(value) is str:
                return value
            raise AttributeError(f"{name!r} is not available on this object in the sandbox")
        if name.startswith("_"):
            raise AttributeError(f"{name!r}: names starting with '_' are private and not "
                                 f"available in the sandbox")
        if name in INSPECT_ATTRIBUTES or name in _REFUSED_NAMES:
            raise AttributeError(f"{name!r} is not available in the sandbox")
        if type(obj) is Facade:
            members = object.__getattribute__(obj, "_members")
            if name in members:
                return members[name]
            if default:
                return default[0]
            mod = object.__getattribute__(obj, "_name")
            raise AttributeError(f"module {mod!r} has no attribute {name!r} in the sandbox "
                                 f"(available: {', '.join(sorted(members)[:40])})")
        if name in ("format", "format_map"):
            if isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str)):
                return self._safe_format_method(obj, name)
            if not default:
                raise AttributeError(f"{name!r} is not available in the sandbox on this object")
            return default[0]
        if isinstance(obj, HostFunction):
            if default:
                return default[0]
            raise AttributeError("host functions have no attributes in the sandbox")
        if name in _TEXT_GROWERS and (isinstance(obj, (str, bytes, bytearray)) or (
                isinstance(obj, type) and issubclass(obj, (str, bytes, bytearray)))):
            return self._guarded_text(getattr(obj, name), name, isinstance(obj, type),
                                      None if isinstance(obj, type) else obj)
        if _is_pandas(obj):
            if name not in PANDAS_ALLOWED:
                column = _pandas_column(obj, name)  # ``df.price`` is column access
                if column is not _MISSING:
                    return column
            if name not in PANDAS_ALLOWED or (self.strict and name in PANDAS_STRICT_DENIED):
                if default:
                    return default[0]
                hint = (" in the in-process sandbox (use .tolist()/.to_dict(), or "
                        "sandbox='local')" if self.strict and name in PANDAS_STRICT_DENIED
                        else " in the sandbox")
                raise AttributeError(f"{name!r} of a pandas object is not available{hint}")
            value = getattr(obj, name, *default)
            if name in PANDAS_PATH_METHODS and callable(value):
                return _no_path(value, name)
            spec = PANDAS_FUNC_METHODS.get(name)
            if spec is not None and callable(value):
                if isinstance(obj, type):
                    raise AttributeError(f"call {name}() on the object (df.{name}(...)), not "
                                         f"on the class, in the sandbox")
                return _checked_func_method(value, name, *spec)
            return self._check_value(value, name)
        if _is_numpy(obj) and name in NUMPY_DENIED:
            raise AttributeError(f"{name!r} of a numpy object is not available in the sandbox")
        value = getattr(obj, name, *default)
        return self._check_value(value, name)

    def _check_value(self, value: Any, name: str) -> Any:
        if isinstance(value, FORBIDDEN_VALUE_TYPES) or _is_raw_memory(value):
            raise AttributeError(f"{name!r} leads to a {type(value).__name__} object, which the "
                                 f"sandbox does not hand out")
        if isinstance(value, type) and issubclass(value, type):
            raise AttributeError(f"{name!r} leads to a metaclass, which the sandbox does not "
                                 f"hand out")
        if isinstance(value, type) and issubclass(value, BaseException) and \
                not issubclass(value, Exception):
            raise AttributeError(f"{name!r} leads to {value.__name__}, which the sandbox does "
                                 f"not hand out")
        return value

    def _check_own_callable(self, obj: Any, what: str) -> None:
        """Refuse unless ``obj`` was made by sandbox code (a function of this namespace, or a
        class or instance of a class defined in it): facades that write onto an object."""
        if isinstance(obj, types.FunctionType) and obj.__globals__ is self.ns:
            return
        cls = obj if isinstance(obj, type) else type(obj)
        if any(b in self._sandbox_classes for b in type.__getattribute__(cls, "__mro__")):
            return
        raise TypeError(f"{what} only applies to functions and classes defined in the sandbox")

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

    def _safe_format_method(self, obj: Any, name: str) -> Callable[..., Any]:
        formatter = _SafeFormatter(self._guarded_getattr)
        if isinstance(obj, str):
            if name == "format":
                return lambda *a, **k: formatter.vformat(obj, a, k)
            return lambda mapping: formatter.vformat(obj, (), mapping)
        if name == "format":
            return lambda s, *a, **k: formatter.vformat(s, a, k)
        return lambda s, mapping: formatter.vformat(s, (), mapping)

    def _guarded_hasattr(self, obj: Any, name: Any) -> bool:
        try:
            self._guarded_getattr(obj, name)
            return True
        except (AttributeError, PermissionError):
            return False

    def _write_guard(self, obj: Any) -> Any:
        """What ``obj.x = v``, ``obj[k] = v`` and ``del`` write through.

        Plain containers, instances of sandbox classes and sandbox classes themselves are
        writable. No other class ever is (``pandas.DataFrame.to_string = ...`` would change
        every DataFrame of the kernel). pandas/numpy *instances* are written through a
        :class:`_LibraryWriter`, which refuses to shadow their methods."""
        if type(obj) in _WRITABLE_TYPES and not self._protected_ids:
            return obj
        if type(obj) is _LibraryWriter:  # ``df.loc[k] += 1`` passes through the guard twice
            return obj
        if self._protected_ids and id(obj) in self._protected_ids:
            raise PermissionError("the shared context is read-only in this sandbox; copy it "
                                  "first (e.g. data = list(context))")
        t = type(obj)
        if t in _WRITABLE_TYPES:
            return obj
        if isinstance(obj, type):
            if obj in self._sandbox_classes:
                return obj
            raise TypeError(f"cannot change the class {obj.__name__!r} in the sandbox: only "
                            f"classes defined in the sandbox can be changed (subclass it)")
        for base in t.__mro__:
            if base in self._sandbox_classes:
                return obj
        if _is_pandas(obj) or _is_numpy(obj):
            return _LibraryWriter(obj)
        if isinstance(obj, (list, dict, set, bytearray)):
            return obj
        raise TypeError(f"cannot assign to attributes or items of a {t.__name__} in the "
                        f"sandbox")

    def _getitem(self, obj: Any, index: Any) -> Any:
        return obj[index]

    def _getiter(self, obj: Any) -> Any:
        return iter(obj)

    def _tickiter(self, obj: Any) -> Any:
        """Iterate with deadline checks: a cheap flag on every item (set by an abort or by
        the in-process watchdog when memory grows or the deadline passes), the full check
        every 256 items. So a comprehension whose items are each slow or big stops within an
        item or two."""
        dl = self.deadline
        check = dl.check
        n = 0
        for item in obj:
            n += 1
            if n >= 256 or dl.flag:
                n = 0
                check()
            yield item

    def _unpack(self, it: Any, spec: Dict[str, Any], getiter: Any) -> List[Any]:
        items = list(getiter(it))
        if len(items) < spec["min_len"]:
            return items
        for idx, child in spec["childs"]:
            items[idx] = self._unpack(items[idx], child, getiter)
        return items

    def _iter_unpack(self, it: Any, spec: Dict[str, Any], getiter: Any) -> Any:
        for item in getiter(it):
            yield self._unpack(item, spec, getiter)

    def _metaclass(self, name: str, bases: tuple, ns: Dict[str, Any]) -> type:
        for b in bases:
            if not isinstance(b, type):
                raise TypeError("class bases must be classes")
        user_len = ns.get("__len__")
        if callable(user_len):
            limit = self.limits["max_seq"]

            def __len__(obj: Any) -> int:
                """C code preallocates from ``len()`` (``tuple(x)``, ``list(x)``,
                ``itertools.product(x)``): a lying ``__len__`` must not size a huge
                allocation."""
                n = user_len(obj)
                if isinstance(n, int) and n > limit:
                    raise MemoryError(f"__len__ of {name} returned {n}, over the sandbox "
                                      f"size limit ({limit})")
                return n

            ns = dict(ns)
            ns["__len__"] = __len__
        cls = type(name, bases, ns)
        self._sandbox_classes.add(cls)
        return cls

    # size guards

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

    def _aug_item(self, obj: Any, key: Any, op: str, value: Any) -> None:
        target = self._write_guard(obj)
        target[key] = self._inplacevar(op, obj[key], value)

    def _aug_attr(self, obj: Any, name: str, op: str, value: Any) -> None:
        target = self._write_guard(obj)
        current = self._guarded_getattr(obj, name)
        setattr(target, name, self._inplacevar(op, current, value))

    def _print_factory(self, _getattr: Any = None) -> _PrintProxy:
        return _PrintProxy(self.collector, self._guarded_getattr)

    def _echo(self, value: Any) -> None:
        if value is not None:
            self.collector.write(repr(value) + "\n")

    def _guarded_import(self, name: Any, globals: Any = None, locals: Any = None,
                        fromlist: Any = (), level: int = 0) -> Facade:
        if type(fromlist) is list and type(name) is str and level == 0:
            # C code (numpy, datetime.strptime...) imports lazily through PyImport_Import,
            # which looks up __import__ in the *calling* frame's builtins (ours) and passes a
            # list as fromlist. The import statement in sandbox code always passes a tuple or
            # None, and sandbox code cannot call __import__ itself (private name). The module
            # goes back to the C caller, never to sandbox code.
            return _builtins.__import__(name, globals, locals, fromlist, level)
        if type(name) is not str or level != 0:
            raise ImportError("relative imports are not available in the sandbox")
        facade = self._facade(name)
        if facade is None:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox; available "
                              f"modules: {', '.join(sorted(_FACADE_BUILDERS))}")
        return facade

    def _facade(self, name: str) -> Optional[Facade]:
        with self._facade_lock:
            if name in self._facades:
                return self._facades[name]
            builder = _FACADE_BUILDERS.get(name)
            if builder is None:
                return None
            try:
                members = builder(self)
            except ImportError:
                return None
            fac = Facade(name, members)
            self._facades[name] = fac
            return fac

    # ---- builtins -------------------------------------------------------------------------

    def _make_builtins(self) -> Dict[str, Any]:
        b: Dict[str, Any] = {}
        for n in _SAFE_BUILTIN_NAMES:
            if hasattr(_builtins, n):
                b[n] = getattr(_builtins, n)
        limit = self.limits["max_seq"]

        def _sized(ctor: Callable[..., Any]) -> Callable[..., Any]:
            def make(*args: Any, **kwargs: Any) -> Any:
                if args and type(args[0]) is range and _range_len(args[0]) > limit:
                    raise MemoryError(f"{ctor.__name__}() of {_range_len(args[0])} items "
                                      f"exceeds the sandbox size limit")
                if args and isinstance(args[0], int) and args[0] > limit:
                    raise MemoryError(f"{ctor.__name__}({args[0]}) exceeds the sandbox size "
                                      f"limit")
                return ctor(*args, **kwargs)
            make.__name__ = ctor.__name__
            return make

        b["bytes"] = _sized(bytes)
        b["bytearray"] = _sized(bytearray)
        tick = self._tickiter

        def iter_(obj: Any, *sentinel: Any) -> Any:
            """``iter(callable, sentinel)`` runs in C until the sentinel: checked per item."""
            if sentinel:
                return tick(_builtins.iter(obj, *sentinel))
            return _builtins.iter(obj)

        def round_(number: Any, ndigits: Any = None) -> Any:
            """``round(1, -10**9)`` computes 10**(10**9) first: refuse absurd digit counts for
            exact types."""
            if isinstance(ndigits, int) and abs(ndigits) > 10_000 and not isinstance(
                    number, float):
                raise MemoryError("round(): ndigits too large for the sandbox")
            return _builtins.round(number) if ndigits is None else _builtins.round(number,
                                                                                  ndigits)

        def sorted_(iterable: Any, *args: Any, **kwargs: Any) -> Any:
            if type(iterable) is range and _range_len(iterable) > limit:
                raise MemoryError(f"sorted() of {_range_len(iterable)} items exceeds the "
                                  f"sandbox size limit")
            return _builtins.sorted(iterable, *args, **kwargs)

        b["iter"] = iter_
        b["round"] = round_
        b["sorted"] = sorted_
        b["type"] = _type_of
        b["getattr"] = self._guarded_getattr
        b["hasattr"] = self._guarded_hasattr
        b["pow"] = self._pow
        b["dir"] = self._safe_dir
        b["__import__"] = self._guarded_import
        b["__build_class__"] = _builtins.__build_class__  # class statements; name is private
        b["__metaclass__"] = self._metaclass
        b["_getattr_"] = self._guarded_getattr
        b["_getitem_"] = self._getitem
        b["_getiter_"] = self._getiter
        b["_write_"] = self._write_guard
        b["_inplacevar_"] = self._inplacevar
        b["_unpack_sequence_"] = self._unpack
        b["_iter_unpack_sequence_"] = self._iter_unpack
        b["_apply_"] = _apply
        b["_print_"] = self._print_factory
        b["_tick_"] = self.deadline.check
        b["_tickiter_"] = self._tickiter
        b["_mul_"] = self._mul
        b["_pow_"] = self._pow
        b["_lshift_"] = self._lshift
        b["_mod_"] = self._mod
        b["_spec_"] = check_format_spec
        b["format"] = self._format
        b["_aug_item_"] = self._aug_item
        b["_aug_attr_"] = self._aug_attr
        b["_echo_"] = self._echo
        if not self.restricted:
            b["print"] = lambda *a, **k: self._print_factory()._call_print(*a, **k)
        return b

    def _safe_dir(self, obj: Any = None) -> List[str]:
        if obj is None:
            return sorted(k for k in self.ns if not k.startswith("_"))
        if type(obj) is Facade:
            return sorted(object.__getattribute__(obj, "_members"))
        names = [n for n in dir(obj) if not n.startswith("_")]
        if _is_pandas(obj):
            names = [n for n in names if n in PANDAS_ALLOWED]
        return sorted(names)

    def _rebind(self) -> None:
        """Re-bind the built-in functions before every cell, so a cell that overwrote
        ``FINAL`` or ``llm_query`` cannot break the next one."""
        self.builtins.clear()  # identity restore: no comparison runs sandbox __eq__
        self.builtins.update(self._builtins_master)
        if self.ns.get("__builtins__") is not self.builtins:
            self.ns["__builtins__"] = self.builtins
        for key in [k for k in self.ns if k.startswith("__") and k not in _NS_DUNDERS]:
            del self.ns[key]  # e.g. a module's globals merged into the namespace
        self.ns["__name__"] = self.module_name
        self.ns["FINAL"] = self._final
        self.ns["FINAL_VAR"] = self._final_var
        self.ns["SHOW_VARS"] = self._show_vars
        for name in self.function_names:
            self.ns[name] = HostFunction(name, self)
        if not isinstance(self.ns.get("answer"), dict):
            self.ns["answer"] = {"content": "", "ready": False}

    # ---- sandbox built-ins ----------------------------------------------------------------

    def _final(self, value: Any) -> None:
        """FINAL(x): the run's answer is str(x)."""
        self.final = _cap(_exact_str(value), self.limits["max_final"], "answer")

    def _final_var(self, name: Any) -> None:
        """FINAL_VAR(name): the run's answer is str() of the variable called ``name``."""
        if type(name) is not str:
            raise TypeError("FINAL_VAR takes the variable's name as a string, e.g. "
                            "FINAL_VAR('result'); to answer with a value use FINAL(value)")
        key = name.strip()
        if key.startswith("_") or key not in self.ns:
            raise NameError(f"FINAL_VAR: no variable named {key!r}; assign it first or use "
                            f"FINAL(value)")
        self.final = _cap(_exact_str(self.ns[key]), self.limits["max_final"], "answer")

    def _show_vars(self) -> None:
        """SHOW_VARS(): print the user variables and their types."""
        vs = self.variables()
        if not vs:
            self.collector.write("(no variables yet)\n")
            return
        self.collector.write("\n".join(f"{k}: {v}" for k, v in vs.items()) + "\n")

    def _call_host(self, name: str, args: tuple, kwargs: Dict[str, Any]) -> Any:
        if self.host_call is None:
            raise RuntimeError(f"{name} is not connected to a host")
        self.deadline.check()
        try:  # plain data only, made while the deadline still runs (may call sandbox code)
            plain = _json.loads(_json.dumps([list(args), dict(kwargs)]))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments to {name}() must be JSON-compatible (str, int, float, "
                            f"bool, None, list, dict): {exc}") from None
        self.deadline.pause()
        try:
            return self.host_call(name, plain[0], plain[1])
        finally:
            self.deadline.resume()

    # ---- public API -----------------------------------------------------------------------

    def compile(self, code: str, filename: str) -> Any:
        if not self.restricted:
            try:
                return compile(code, filename, "exec")
            except SyntaxError as exc:
                raise CompileFailed(f"SyntaxError: {exc}") from None
        try:
            result = compile_restricted_exec(code, filename=filename, policy=RLMPolicy)
        except (ValueError, UnicodeError, RecursionError, MemoryError) as exc:
            raise CompileFailed(f"SyntaxError: {type(exc).__name__}: {exc}") from None
        if result.errors:
            msgs = []
            for e in result.errors:
                msgs.append(e.replace("SyntaxError: ", "") if "SyntaxError" in e else e)
            kind = ("SyntaxError" if any("SyntaxError" in e or "invalid syntax" in e
                                         for e in result.errors) else "SecurityError")
            hint = ("" if kind == "SyntaxError" else
                    " (the sandbox refuses private names starting with '_' and some statements)")
            raise CompileFailed(f"{kind}: " + "; ".join(msgs) + hint)
        return result.code

    def execute(self, code: str, timeout: Optional[float] = None,
                on_start: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Run one cell; never raises for errors in ``code``. Returns the ``result`` fields.

        ``on_start`` is called once the cell compiled, just before it runs (the worker tells
        the host, which starts its hard deadline then)."""
        self.cell_no += 1
        filename = f"<cell-{self.cell_no}>"
        self.collector = PrintCollector(self.limits["max_output"])
        self.final = None
        self._rebind()
        notes: List[str] = []
        error: Optional[str] = None
        timed_out = False
        t0 = time.monotonic()
        try:
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            sys.modules[self.module_name] = self._module
            try:
                # Compiling is trusted code with a bounded input, so it runs before the
                # deadline starts: a big cell must not look like a runaway one.
                if len(code) > self.limits["max_code"]:
                    raise CompileFailed(f"SyntaxError: the cell is {len(code)} characters; the "
                                        f"limit is {self.limits['max_code']}. Split it up, or "
                                        f"keep data in variables instead of code")
                compiled = self.compile(code, filename)
                if on_start is not None:
                    on_start()
                self.deadline.start(timeout)
                exec(compiled, self.ns)
                if self.deadline.expired:  # the timeout fired where it was swallowed (finalizer)
                    raise SandboxTimeout()
                if self.deadline.abort_reason is not None:
                    raise SandboxAbort(self.deadline.abort_reason)
            except CompileFailed as exc:
                error = _cap(str(exc), self.limits["max_error"], "error")
            except SandboxTimeout:
                raise
            except SandboxAbort:
                raise
            except RecursionError as exc:
                error = self._format_error(exc)
            except Exception as exc:
                error = self._format_error(exc)
        except SandboxTimeout:
            timed_out = True
            error = (f"TimeoutError: the cell ran past its {(timeout or 0):g} s limit and was "
                     f"stopped. "
                     f"Variables assigned before that point are kept; make the code faster or "
                     f"work on smaller pieces.")
        except SandboxAbort as exc:
            error = f"SandboxError: the cell was stopped: {exc}"
        except BaseException as exc:  # e.g. KeyboardInterrupt raised inside the worker
            error = f"{type(exc).__name__}: the cell was interrupted"
        finally:
            self.deadline.stop()
            sys.modules.pop(self.module_name, None)
            old = f"<cell-{self.cell_no - 50}>"
            linecache.cache.pop(old, None)
        answer = self._read_answer(notes)
        if self.collector.cut:
            notes.append(f"output truncated: {self.collector.cut} more characters were not "
                         f"shown (limit {self.limits['max_output']}); print less, or slices")
        return {
            "stdout": self.collector.text(),
            "error": error,
            "timed_out": timed_out,
            "final": self.final,
            "answer": answer,
            "notes": notes,
            "duration_s": time.monotonic() - t0,
        }

    def _format_error(self, exc: BaseException) -> str:
        """The user's frames only, then ``Type: message``; capped."""
        lines: List[str] = []
        try:
            tb = traceback.extract_tb(exc.__traceback__)
            frames = [f for f in tb if str(f.filename).startswith("<cell-")]
            if frames:
                lines.append("Traceback (most recent call last):")
                for f in frames[-8:]:
                    lines.append(f'  line {f.lineno}, in {f.name}' if f.name != "<module>"
                                 else f"  line {f.lineno}")
                    if f.line:
                        lines.append(f"    {f.line.strip()[:300]}")
            msg = _exact_str(exc)  # may run a sandbox __str__: still under the deadline
        except BaseException:
            msg = "<error message unavailable>"
        name = type(exc).__name__
        lines.append(f"{name}: {_cap(msg, self.limits['max_error'] // 2, 'message')}"
                     if msg else name)
        return _cap("\n".join(lines), self.limits["max_error"], "error")

    def _read_answer(self, notes: List[str]) -> Dict[str, Any]:
        ans = self.ns.get("answer")
        if not isinstance(ans, dict):
            notes.append("`answer` is not a dict any more; it was reset to "
                         "{'content': '', 'ready': False}")
            self.ns["answer"] = ans = {"content": "", "ready": False}
        content = dict.get(ans, "content", "")
        try:
            self.deadline.start(2.0)
            text = content if type(content) is str else _exact_str(content)
        except BaseException:
            text = "<answer content could not be converted to text>"
        finally:
            self.deadline.stop()
        return {"content": _cap(text, self.limits["max_final"], "answer"),
                "ready": _truthy_flag(dict.get(ans, "ready", False))}

    def get_variable(self, name: str) -> Optional[str]:
        if type(name) is not str or name.startswith("_") or name not in self.ns:
            return None
        try:
            self.deadline.start(5.0)
            return _cap(_exact_str(self.ns[name]), self.limits["max_value"], "value")
        except BaseException as exc:
            return f"<str() of {name} failed: {type(exc).__name__}>"
        finally:
            self.deadline.stop()

    def close(self) -> None:
        """Drop the namespace and its sys.modules entry (in-process sandboxes)."""
        sys.modules.pop(self.module_name, None)
        self.ns.clear()

    def variables(self) -> Dict[str, str]:
        hidden = {"FINAL", "FINAL_VAR", "SHOW_VARS", "answer", *self.function_names}
        out = {}
        for k, v in self.ns.items():
            if k.startswith("_") or k in hidden:
                continue
            out[k] = "module" if type(v) is Facade else type(v).__name__
        return out


def _static_attr(cls: type, name: str) -> Any:
    """The class attribute ``name`` without running descriptors (like inspect.getattr_static)."""
    for base in type.__getattribute__(cls, "__mro__"):
        d = type.__getattribute__(base, "__dict__")
        if name in d:
            return d[name]
    return _MISSING


class _LibraryWriter:
    """Writes to a pandas/numpy instance on sandbox code's behalf. Items pass through
    (``df['a'] = ...``, ``df.loc[...] = ...``); attributes only when they are data
    (``df.columns = ...``, ``s.name = ...``, ``df.newcol = ...``), never a method
    (``df.to_string = ...`` would run sandbox code when the kernel prints the frame), and not
    numpy's memory-layout attributes."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def _check(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        if type(name) is not str or name.startswith("_"):
            raise AttributeError("private attributes cannot be assigned in the sandbox")
        if _is_numpy(target) and name in NUMPY_WRITE_DENIED:
            raise AttributeError(f"{name!r} of a numpy object cannot be assigned in the "
                                 f"sandbox")
        attr = _static_attr(type(target), name)
        if attr is not _MISSING and not hasattr(type(attr), "__set__") and (
                callable(attr) or isinstance(attr, (staticmethod, classmethod))):
            raise AttributeError(f"cannot replace the method {name!r} of a "
                                 f"{type(target).__name__} in the sandbox")
        return target

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._check(name), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._check(name), name)

    def __setitem__(self, key: Any, value: Any) -> None:
        object.__getattribute__(self, "_target")[key] = value

    def __delitem__(self, key: Any) -> None:
        del object.__getattribute__(self, "_target")[key]

    def __getitem__(self, key: Any) -> Any:  # augmented assignment reads through the writer
        return object.__getattribute__(self, "_target")[key]


class _SafeFormatter(_string_mod.Formatter):
    """``str.format`` whose field names go through the getattr guard."""

    def __init__(self, getattr_: Callable[..., Any]) -> None:
        self._getattr = getattr_

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        import _string  # CPython's helper for parsing "a.b[c]" field names
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = self._getattr(obj, key) if is_attr else obj[key]
        return obj, first

    def format_field(self, value: Any, format_spec: str) -> Any:
        return format(value, check_format_spec(format_spec))


def _type_of(obj: Any) -> type:
    """``type(x)``, the one-argument form only: creating classes goes through ``class``, and
    metaclasses (``type`` itself) are never handed out, since they would create classes with
    any dunder method (``__del__``...)."""
    t = type(obj)
    if issubclass(t, type):
        raise TypeError("type() of a class is not available in the sandbox")
    return t


def _truthy_flag(value: Any) -> bool:
    """``answer["ready"]`` without running sandbox code (no user __bool__/__eq__)."""
    return type(value) in (bool, int) and value != 0


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


def _apply(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


_PADDERS = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs"])
_TEXT_GROWERS = _PADDERS | frozenset(["replace", "join"])


def _count_tabs(text: Any) -> int:
    return text.count("\t" if isinstance(text, str) else b"\t")

#: Attribute names refused everywhere.
_REFUSED_NAMES = frozenset(["mro"]) | RAW_MEMORY_NAMES

_CAPSULE_TYPE: Any = (type(_datetime_mod.datetime_CAPI)  # type: ignore[attr-defined]
                      if hasattr(_datetime_mod, "datetime_CAPI") else ())

_BIG_WIDTH = _re.compile(r"\d{9,}")


def check_format_spec(spec: Any) -> Any:
    """Refuse format specs with absurd widths or precisions (``f"{x:>999999999}"``)."""
    if isinstance(spec, str) and _BIG_WIDTH.search(spec):
        raise MemoryError("format width or precision too large for the sandbox")
    return spec

_WRITABLE_TYPES = {list, dict, set, bytearray}

#: Dunder names the namespace keeps (a module's own); any other is dropped before each cell.
_NS_DUNDERS = frozenset(["__builtins__", "__name__", "__doc__", "__package__", "__loader__",
                         "__spec__"])


_FAST_TYPES = frozenset([str, bytes, list, dict, tuple, set, frozenset, int, float, bool,
                         complex, range, type(None), _collections.defaultdict,
                         _collections.Counter, _collections.OrderedDict, _collections.deque])
_FAST_SPECIAL = frozenset(["format", "format_map", "ljust", "rjust", "center", "zfill",
                           "replace", "join",
                           "expandtabs", "mro"])


_INPLACE = {
    "+=": _operator.iadd, "-=": _operator.isub, "*=": _operator.imul, "/=": _operator.itruediv,
    "%=": _operator.imod, "**=": _operator.ipow, "<<=": _operator.ilshift,
    ">>=": _operator.irshift, "|=": _operator.ior, "^=": _operator.ixor,
    "&=": _operator.iand, "//=": _operator.ifloordiv, "@=": _operator.imatmul,
}

_SAFE_BUILTIN_NAMES = """
abs all any ascii bin bool callable chr classmethod complex dict divmod enumerate filter float
format frozenset hash hex id int isinstance issubclass iter len list map max min next oct ord
property range repr reversed round set slice sorted staticmethod str sum tuple zip
None True False Ellipsis NotImplemented
Exception ArithmeticError AssertionError AttributeError EOFError FloatingPointError ImportError
ModuleNotFoundError IndexError KeyError LookupError MemoryError NameError NotImplementedError
OverflowError RecursionError RuntimeError StopIteration TimeoutError TypeError UnicodeError
UnicodeDecodeError UnicodeEncodeError ValueError ZeroDivisionError Warning UserWarning
PermissionError LookupError
""".split()


# --------------------------------------------------------------------------------------------
# Facade builders: each returns the members of one sandbox module. Hand-picked, never a module.


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


def _fac_numpy(repl: Repl) -> Dict[str, Any]:
    import numpy as np
    names = ("array asarray arange linspace zeros ones full empty zeros_like ones_like "
             "full_like eye identity concatenate stack vstack hstack column_stack split "
             "array_split reshape ravel transpose where nonzero argwhere unique sort argsort "
             "argmax argmin max min amax amin sum prod cumsum cumprod mean median std var "
             "average percentile quantile histogram bincount digitize searchsorted clip abs "
             "absolute sqrt exp log log2 log10 log1p sin cos tan arcsin arccos arctan arctan2 "
             "floor ceil round rint trunc sign isnan isinf isfinite nan inf pi e dot matmul "
             "inner outer cross linalg_norm diff gradient convolve corrcoef cov allclose "
             "isclose array_equal logical_and logical_or logical_not logical_xor all any "
             "maximum minimum add subtract multiply divide power mod floor_divide count_nonzero "
             "int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
             "bool_ str_ ndarray dtype newaxis tile repeat flip roll unravel_index "
             "nanmean nanmedian nanstd nansum nanmax nanmin nanargmax nanargmin isin "
             "intersect1d union1d setdiff1d in1d cumsum diag trace triu tril meshgrid "
             "polyfit polyval interp vectorize frompyfunc")
    m = _pick(np, names)
    limit = repl.limits["max_seq"] * 8  # bytes one call may allocate

    def _count(shape: Any) -> int:
        if isinstance(shape, (int, np.integer)):
            return max(int(shape), 0)
        n = 1
        for d in tuple(shape):
            n *= max(int(d), 0)
        return n

    def _refuse(fname: str, nbytes: int) -> None:
        if nbytes > limit:
            raise MemoryError(f"numpy.{fname} would allocate {nbytes / 1e9:.1f} GB, over the "
                              f"sandbox limit of {limit / 1e9:.1f} GB; work on smaller pieces")

    def _itemsize(dtype: Any, default: Any = float) -> int:
        try:
            return max(np.dtype(default if dtype is None else dtype).itemsize, 8)
        except Exception:
            return 8

    def shaped(fname: str) -> Callable[..., Any]:
        real = getattr(np, fname)

        def make(shape: Any, *args: Any, **kwargs: Any) -> Any:
            dtype = kwargs.get("dtype", args[1] if fname == "full" and len(args) > 1 else
                               args[0] if fname != "full" and args else None)
            _refuse(fname, _count(shape) * _itemsize(dtype))
            return real(shape, *args, **kwargs)

        make.__name__ = fname
        return make

    for fname in ("zeros", "ones", "empty", "full"):
        m[fname] = shaped(fname)

    def arange(*args: Any, **kwargs: Any) -> Any:
        try:
            n = len(range(*[int(a) for a in args[:3]])) if args and all(
                isinstance(a, (int, np.integer)) for a in args[:3]) else 0
        except (OverflowError, ValueError):
            n = 1 << 62
        if args and not n and all(isinstance(a, (int, float, np.number)) for a in args[:3]):
            a = [float(x) for x in args[:3]]
            start, stop, step = (0.0, a[0], 1.0) if len(a) == 1 else (
                a[0], a[1], a[2] if len(a) > 2 else 1.0)
            n = int(abs((stop - start) / step)) if step and _math.isfinite(
                (stop - start) / step) else 1 << 62
        _refuse("arange", n * 8)
        return np.arange(*args, **kwargs)

    def linspace(start: Any, stop: Any, num: Any = 50, *args: Any, **kwargs: Any) -> Any:
        _refuse("linspace", _count(num) * 8)
        return np.linspace(start, stop, num, *args, **kwargs)

    def eye(N: Any, M: Any = None, *args: Any, **kwargs: Any) -> Any:
        _refuse("eye", _count((N, N if M is None else M)) * 8)
        return np.eye(N, M, *args, **kwargs)

    def identity(n: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse("identity", _count((n, n)) * 8)
        return np.identity(n, *args, **kwargs)

    def tile(A: Any, reps: Any) -> Any:
        _refuse("tile", np.size(A) * _count(reps) * 8)
        return np.tile(A, reps)

    def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
        r = int(np.max(repeats)) if np.size(repeats) else 0
        _refuse("repeat", np.size(a) * max(r, 0) * 8)
        return np.repeat(a, repeats, axis)

    def outer(a: Any, b: Any, out: Any = None) -> Any:
        _refuse("outer", np.size(a) * np.size(b) * 8)
        return np.outer(a, b, out)

    m.update(arange=arange, linspace=linspace, eye=eye, identity=identity, tile=tile,
             repeat=repeat, outer=outer)
    la = np.linalg
    m["linalg"] = Facade("numpy.linalg", _pick(la, "norm inv det eig eigh svd solve lstsq "
                                                   "matrix_rank pinv qr cholesky"))
    rng = np.random.default_rng()

    def rand(*shape: Any) -> Any:
        _refuse("random.rand", _count(shape) * 8)
        return rng.random(shape if shape else None)

    def default_rng(seed: Any = None) -> Any:
        return Facade("numpy.random.Generator", {
            n: sized_rng_of(np.random.default_rng(seed), n, p) for n, p in _RNG_METHODS})

    def sized_rng_of(gen: Any, fname: str, size_pos: int) -> Callable[..., Any]:
        real = getattr(gen, fname)

        def call(*args: Any, **kwargs: Any) -> Any:
            size = kwargs.get("size", args[size_pos] if len(args) > size_pos else None)
            if size is not None:
                _refuse(f"random.{fname}", _count(size) * 8)
            return real(*args, **kwargs)

        call.__name__ = fname
        return call

    members = {n: sized_rng_of(rng, n, p) for n, p in _RNG_METHODS}
    members.update(default_rng=default_rng, rand=rand, randint=members["integers"])
    m["random"] = Facade("numpy.random", members)
    return m


#: numpy Generator methods the sandbox offers, with the position of their ``size`` argument
#: (-1: none). A Generator is handed out as a facade: its ``bit_generator`` (raw C state,
#: ``cffi``/``ctypes`` pointers) is not reachable.
_RNG_METHODS = (("random", 0), ("integers", 2), ("choice", 1), ("normal", 2),
                ("uniform", 2), ("shuffle", 99), ("permutation", 99), ("standard_normal", 0),
                ("exponential", 1), ("poisson", 1), ("binomial", 2), ("bytes", 0))


def _fac_pandas(repl: Repl) -> Dict[str, Any]:
    import pandas as pd
    m = _pick(pd, "DataFrame Series Index MultiIndex Categorical CategoricalDtype concat "
                     "merge merge_asof to_datetime to_numeric to_timedelta isna isnull notna "
                     "notnull NA NaT Timestamp Timedelta Period DateOffset date_range "
                     "timedelta_range period_range interval_range cut qcut crosstab "
                     "pivot_table pivot unique factorize get_dummies melt wide_to_long "
                     "IndexSlice Interval")
    for fname, (pos, keys) in PANDAS_FUNC_FUNCTIONS.items():
        if fname in m:
            m[fname] = _checked_func_method(m[fname], fname, pos, keys)
    return m


_FACADE_BUILDERS: Dict[str, Callable[[Repl], Dict[str, Any]]] = {
    "math": _fac_math, "json": _fac_json, "re": _fac_re, "collections": _fac_collections,
    "itertools": _fac_itertools, "statistics": _fac_statistics, "datetime": _fac_datetime,
    "textwrap": _fac_textwrap, "difflib": _fac_difflib, "string": _fac_string,
    "heapq": _fac_heapq, "bisect": _fac_bisect, "functools": _fac_functools,
    "operator": _fac_operator, "fractions": _fac_fractions, "decimal": _fac_decimal,
    "typing": _fac_typing, "random": _fac_random, "dataclasses": _fac_dataclasses,
    "numpy": _fac_numpy, "pandas": _fac_pandas,
}

#: What ``import x`` may name (pandas and numpy only when installed).
ALLOWED_MODULES = tuple(sorted(_FACADE_BUILDERS))
