"""The run-time guards: attribute, item, iteration and write access from sandbox code.

RestrictedPython rewrites ``obj.name``, ``obj[k]``, ``for``, unpacking, ``obj.x = v`` and class
creation into calls to these :class:`~.repl.Repl` methods (mixed in from :class:`Guards`). They
refuse private names, frame/code/traceback/module values, unsafe ``format``, and writes to
anything but plain containers and what sandbox code made itself.
"""

from __future__ import annotations

import collections as _collections
import string as _string_mod
import types
from typing import Any, Callable, Dict, List

from .builtins import HostFunction
from .facade import Facade
from .limits import _TEXT_GROWERS, check_format_spec
from .pandas_rules import (NUMPY_DENIED, PANDAS_ALLOWED, PANDAS_FUNC_METHODS, PANDAS_PATH_METHODS,
                           PANDAS_STRICT_DENIED, _checked_func_method, _LibraryWriter,
                           _no_path, _pandas_column)
from .rules import (_MISSING, _REFUSED_NAMES, FORBIDDEN_VALUE_TYPES, NAMEDTUPLE_ATTRS,
                    SAFE_DUNDER_ATTRS, _is_numpy, _is_pandas, _is_raw_memory)
from .transformer import INSPECT_ATTRIBUTES


_WRITABLE_TYPES = {list, dict, set, bytearray}


_FAST_TYPES = frozenset([str, bytes, list, dict, tuple, set, frozenset, int, float, bool,
                         complex, range, type(None), _collections.defaultdict,
                         _collections.Counter, _collections.OrderedDict, _collections.deque])


_FAST_SPECIAL = frozenset(["format", "format_map", "ljust", "rjust", "center", "zfill",
                           "replace", "join",
                           "expandtabs", "mro"])


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


class Guards:
    """The guards, mixed into :class:`~.repl.Repl` (they use its ``limits``, ``strict``,
    ``deadline``, ``ns`` and sets of sandbox classes and protected objects)."""

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

    def _aug_item(self, obj: Any, key: Any, op: str, value: Any) -> None:
        target = self._write_guard(obj)
        target[key] = self._inplacevar(op, obj[key], value)

    def _aug_attr(self, obj: Any, name: str, op: str, value: Any) -> None:
        target = self._write_guard(obj)
        current = self._guarded_getattr(obj, name)
        setattr(target, name, self._inplacevar(op, current, value))
