"""The REPL runtime: a persistent restricted namespace that runs one cell at a time.

:class:`Repl` holds the namespace (a module's dict holding ``context`` and ``answer``), compiles
each cell with the policy, runs it under the deadline with the print collector, and reads the
answer (``FINAL``, ``FINAL_VAR``, the ``answer`` dict). Its guards, size guards and built-ins
come from :class:`~.guards.Guards`, :class:`~.limits.SizeGuards` and
:class:`~.builtins.Builtins`.
"""

from __future__ import annotations

import itertools as _itertools
import json as _json
import linecache
import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any, Callable, Dict, List, Optional

from .builtins import Builtins, HostFunction
from .facade import Facade
from .guards import Guards
from .limits import DEFAULT_LIMITS, Deadline, SandboxAbort, SandboxTimeout, SizeGuards
from .printing import PrintCollector
from .transformer import HAVE_RESTRICTED, CompileFailed, compile_restricted_exec

if HAVE_RESTRICTED:
    from .transformer import RLMPolicy


def _cap(text: str, limit: int, what: str = "text") -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{what} cut: {len(text) - limit} more characters]"


def _exact_str(value: Any) -> str:
    s = str(value)
    if type(s) is not str:
        s = str.__str__(s)
    return s


def _truthy_flag(value: Any) -> bool:
    """``answer["ready"]`` without running sandbox code (no user __bool__/__eq__)."""
    return type(value) in (bool, int) and value != 0


#: Dunder names the namespace keeps (a module's own); any other is dropped before each cell.
_NS_DUNDERS = frozenset(["__builtins__", "__name__", "__doc__", "__package__", "__loader__",
                         "__spec__"])


_REPL_COUNTER = _itertools.count(1)


class Repl(Guards, SizeGuards, Builtins):
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
