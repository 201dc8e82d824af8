"""The sandbox's built-ins: the safe subset of Python's, the guarded replacements, imports.

:class:`Builtins` (mixed into :class:`~.repl.Repl`) builds the ``__builtins__`` dict each
namespace runs with: safe names, size-checked constructors, the guards RestrictedPython's
rewritten code calls (``_getattr_``, ``_write_``, ``_tick_``...), ``print``, and ``__import__``
answering with module facades only. :class:`HostFunction` is what ``llm_query`` and friends are.
"""

from __future__ import annotations

import builtins as _builtins
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .facade import Facade
from .facades import _FACADE_BUILDERS
from .limits import _range_len, check_format_spec
from .pandas_rules import PANDAS_ALLOWED
from .printing import _PrintProxy
from .rules import _is_pandas

if TYPE_CHECKING:  # pragma: no cover
    from .repl import Repl


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


def _type_of(obj: Any) -> type:
    """``type(x)``, the one-argument form only: creating classes goes through ``class``, and
    metaclasses (``type`` itself) are never handed out, since they would create classes with
    any dunder method (``__del__``...)."""
    t = type(obj)
    if issubclass(t, type):
        raise TypeError("type() of a class is not available in the sandbox")
    return t


def _apply(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


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


class Builtins:
    """Built-ins and imports, mixed into :class:`~.repl.Repl`."""

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
