"""What sandbox code may never hold or name, and which library an object's type comes from.

Constants shared by the compile-time policy (:mod:`.transformer`) and the run-time guards
(:mod:`.guards`), and the cached type classification (pandas, numpy, raw memory) they use.
"""

from __future__ import annotations

import datetime as _datetime_mod
import types
from typing import Any, Dict


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


#: Attribute names refused on every object: raw-memory doors (numpy's ``bit_generator.cffi``,
#: ``.ctypes``, ``.capsule``) and ``mro`` (walks up to ``object`` and ``BaseException``).
RAW_MEMORY_NAMES = frozenset(["ctypes", "cffi", "capsule", "ctypeslib", "from_address",
                              "from_buffer", "addressof", "dlpack", "__dlpack__"])


#: Modules whose objects are raw pointers or foreign-function doors: never handed out.
_RAW_MEMORY_MODULES = frozenset(["ctypes", "_ctypes", "_cffi_backend", "cffi", "mmap"])


#: Attribute names refused everywhere.
_REFUSED_NAMES = frozenset(["mro"]) | RAW_MEMORY_NAMES


_CAPSULE_TYPE: Any = (type(_datetime_mod.datetime_CAPI)  # type: ignore[attr-defined]
                      if hasattr(_datetime_mod, "datetime_CAPI") else ())


def _type_module(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    try:
        m = type.__getattribute__(t, "__module__")
    except Exception:
        return ""
    return m if isinstance(m, str) else ""


_KIND_CACHE: Dict[type, str] = {}


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
