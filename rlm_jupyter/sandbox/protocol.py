"""The wire protocol between a sandbox host and the worker program (``worker.py``).

Why a protocol at all: model-written code runs in a separate process (local subprocess or
container). The host (the kernel) keeps the API keys and the LLM client; the worker only ever
sees the context and JSON answers to its requests. Everything crossing from the worker is
JSON, size-capped, and never unpickled.

How to drive the worker (local pipes, or a container's attach socket)
-----------------------------------------------------------
Start it with a Python >= 3.9 interpreter, stdlib only::

    python3 -I -B worker.py --stdio [--memory-mb N] [--cpu-s N] [--nofile N] [--landlock]
    python3 -I -B worker.py --fds R,W [...]          # local backend: dedicated pipes

``--landlock`` (Linux): the worker may then only read the Python installation and system
libraries, write nowhere, and open no TCP connection (``--read-path DIR`` adds a readable
directory). Harmless where the kernel or a seccomp profile lacks Landlock: it is skipped and
``ready`` reports ``"landlock": 0``.

``--stdio``: messages travel on stdin/stdout; the worker first moves its real stdout aside
(fd 1 is pointed at stderr), so stray C-level prints cannot corrupt the stream. ``--fds R,W``:
the worker reads host messages from fd R and writes its own to fd W (stdin/stdout unused).
The worker applies its rlimits (``RLIMIT_AS`` from ``--memory-mb``, ``RLIMIT_FSIZE=0``,
``RLIMIT_CORE=0``, ``RLIMIT_CPU``) before it reads anything.

Framing: every message is one UTF-8 JSON object on one line (``\\n`` terminated). A message whose
header has ``"payload": N`` (N > 0) is followed by exactly N raw bytes (host -> worker only).
Worker -> host lines are capped at :data:`MAX_WORKER_LINE` bytes; the host kills a worker that
sends more, or anything that is not a JSON object.

Session, in order:

1. host -> ``{"op": "init", "payload": N, "context_format": F, "context_path": P,
   "functions": [names], "modules": {name: source}, "limits": {...},
   "allow_unrestricted": false}`` then the N payload bytes.

   - ``context_format``: ``"none"`` (no context), ``"str"`` (payload is UTF-8 text),
     ``"bytes"`` (raw), ``"json"`` or ``"pickle"`` (trusted direction only).
   - ``context_path`` (optional, instead of a payload): a file the worker reads the same
     bytes from, e.g. the file the Docker backend copies into the container; use
     ``"payload": 0`` then.
   - ``modules``: pure-Python module sources the worker imports from memory. The host always
     ships ``rlm_sandbox_policy`` (the ``policy/`` package) and, when installed on the host,
     ``RestrictedPython`` (keys are dotted module names; a package's ``__init__`` is sent under
     the package name with ``"is_package"`` listed in ``"packages"``). So a container needs
     nothing but Python and ``worker.py``: no mount, no pip install.
   - ``limits``: ``{"max_output": chars, "max_final": chars, "max_error": chars,
     "max_message": bytes}``; defaults apply when missing.
   - ``allow_unrestricted``: only when RestrictedPython cannot be loaded (Python 3.9): run the
     code unrestricted and rely on the container alone. Off by default; SECURITY.md says why.

   worker -> ``{"op": "ready", "pid": int, "python": "3.11.7", "restricted": bool,
   "landlock": int}`` or
   ``{"op": "fatal", "error": str}`` (then it exits).

2. host -> ``{"op": "exec", "id": n, "code": str, "timeout": seconds}``. While the cell runs
   the worker may send any number of host-function calls::

       worker -> {"op": "call", "id": m, "fn": "llm_query", "args": [...], "kwargs": {...}}
       host   -> {"op": "reply", "id": m, "ok": true, "value": <json>}
               | {"op": "reply", "id": m, "ok": false, "error": "ValueError: ..."}

   Right after the cell compiled the worker sends ``{"op": "running", "id": n}``; the host's
   hard deadline runs from then (compiling a huge cell may take seconds). Time spent waiting
   for a reply does not count against the cell's timeout (on both sides).
   The cell ends with::

       worker -> {"op": "result", "id": n, "stdout": str, "error": str|null,
                  "timed_out": bool, "final": str|null,
                  "answer": {"content": str, "ready": bool}, "notes": [str]}

   ``timed_out`` here is the worker's own soft deadline (state kept). The host also keeps a
   hard deadline (timeout + grace): past it, it kills the process (group), starts a fresh
   worker, re-sends init, and reports ``restarted=True``.

3. host -> ``{"op": "get", "id": n, "name": str}``
   -> ``{"op": "value", "id": n, "value": str|null}``
   host -> ``{"op": "vars", "id": n}`` -> ``{"op": "vars", "id": n, "vars": {name: type_name}}``
   host -> ``{"op": "get_json", "id": n, "name": str, "max_chars": N}``
   -> ``{"op": "json_value", "id": n, "ok": bool, "value": <json>, "error": str, "chars": N}``
   (a variable by value, as plain data only: ``values.py``, shipped as ``rlm_sandbox_values``)
   host -> ``{"op": "ping", "id": n}`` -> ``{"op": "pong", "id": n}``
   host -> ``{"op": "shutdown"}`` (the worker exits; closing its input does the same).

For backend authors: ``rlm_jupyter.sandbox.worker_sandbox.WorkerSandbox`` implements the host
side (handshake, host-function dispatch, hard deadline, restart on hang or death). A new backend
subclasses it and implements ``_spawn(context_bytes) -> (writer, reader)`` (binary streams to the
worker's input and from its output, e.g. a subprocess's pipes or a container's attach socket),
``_kill()`` (idempotent), and optionally ``_death_reason()``, ``_cleanup()`` and
``_context_path()`` (return a path the *worker* can read to skip streaming the payload). The
worker needs only ``worker.py`` and a Python >= 3.10 for RestrictedPython 9 (3.9 runs only with
``allow_unrestricted``). :func:`make_init` builds the ``init`` message.

Keep this format stable: the Docker backend and the worker inside an image built from an older
release must keep talking.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

PROTOCOL_VERSION = 1

#: The smallest bound on one line the host accepts from a worker (bytes); see
#: :func:`message_limit` for the bound a sandbox actually uses.
MAX_WORKER_LINE = 64 * 1024 * 1024


def message_limit(context_bytes: int) -> int:
    """The largest line a worker may send (a host-function call's arguments, a value).

    Why a bound at all: the host reads a line whole and decodes it, holding it a few times
    over, so a runaway loop in sandbox code must not be able to make the kernel allocate
    without end. Why this bound: ``llm_query_batched`` over *all* of the context, cut into any
    number of pieces, must work, and its JSON is at most about twice the context's size (escapes
    included). So: four times the context, and never below 64 MiB. A line over it is refused in
    the worker with a message that says what to do, not by killing the worker.
    """
    return max(MAX_WORKER_LINE, 4 * int(context_bytes) + 16 * 1024 * 1024)

#: Defaults for the ``limits`` field of ``init``.
DEFAULT_LIMITS: dict[str, int] = {
    "max_output": 20_000,  # chars of printed output per cell
    "max_final": 1_000_000,  # chars of FINAL(...) text
    "max_error": 4_000,  # chars of error text
    "max_value": 100_000,  # chars of get_variable()
    "max_message": MAX_WORKER_LINE,
}


class ProtocolError(RuntimeError):
    """The other side sent something that is not a valid message (or closed the stream)."""


def encode(msg: dict[str, Any]) -> bytes:
    """One message as one JSON line. ``ensure_ascii`` keeps it a single physical line."""
    return json.dumps(msg, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def write_message(stream: IO[bytes], msg: dict[str, Any], payload: bytes | memoryview | None = None
                  ) -> None:
    """Write ``msg`` (and its raw payload, whose length is put in the header) and flush."""
    if payload is not None:
        msg = dict(msg, payload=len(payload))
    stream.write(encode(msg))
    if payload is not None and len(payload):
        stream.write(payload)
    stream.flush()


def read_message(stream: IO[bytes], limit: int = MAX_WORKER_LINE) -> dict[str, Any]:
    """Read one JSON-object line; raise :class:`ProtocolError` on EOF, overlong or bad lines."""
    line = stream.readline(limit + 1)
    if not line:
        raise ProtocolError("the worker closed its output (it exited or was killed)")
    if len(line) > limit or not line.endswith(b"\n"):
        raise ProtocolError(f"the worker sent a message over {limit} bytes")
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"the worker sent a line that is not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise ProtocolError("the worker sent a JSON value that is not a message object")
    return msg


def worker_path() -> str:
    """Absolute path of the worker program, to run it or copy it into a container."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


# --------------------------------------------------------------------------------------------
# Building the init message (shared by the local and Docker backends)

_SHIPPED: tuple[dict[str, str], list[str]] | None = None


def shipped_modules() -> tuple[dict[str, str], list[str]]:
    """Sources the worker imports from memory: the policy package (``policy/``, imported there
    as the package ``rlm_sandbox_policy``), ``values.py`` and (when installed) RestrictedPython.

    Read once per process; about 150 KB.
    """
    global _SHIPPED
    if _SHIPPED is None:
        here = os.path.dirname(os.path.abspath(__file__))
        sources: dict[str, str] = {}
        policy_dir = os.path.join(here, "policy")
        for fname in sorted(os.listdir(policy_dir)):
            if not fname.endswith(".py"):
                continue
            mod = "rlm_sandbox_policy" if fname == "__init__.py" else \
                "rlm_sandbox_policy." + fname[:-3]
            with open(os.path.join(policy_dir, fname), encoding="utf-8") as fh:
                sources[mod] = fh.read()
        with open(os.path.join(here, "values.py"), encoding="utf-8") as fh:
            sources["rlm_sandbox_values"] = fh.read()
        packages: list[str] = ["rlm_sandbox_policy"]
        try:
            import importlib.util
            spec = importlib.util.find_spec("RestrictedPython")
        except Exception:
            spec = None
        if spec is not None and spec.submodule_search_locations:
            pkg_dir = list(spec.submodule_search_locations)[0]
            for fname in sorted(os.listdir(pkg_dir)):
                if not fname.endswith(".py"):
                    continue
                mod = "RestrictedPython" if fname == "__init__.py" else \
                    "RestrictedPython." + fname[:-3]
                with open(os.path.join(pkg_dir, fname), encoding="utf-8") as fh:
                    sources[mod] = fh.read()
            packages.append("RestrictedPython")
        _SHIPPED = (sources, packages)
    return _SHIPPED


def encode_context(context: Any) -> tuple[str, bytes]:
    """``(context_format, payload)`` for ``init``: raw UTF-8 for str (fastest for 100 MB
    texts), raw bytes, otherwise pickle (host -> worker is the trusted direction)."""
    import pickle

    if context is None:
        return "none", b""
    if isinstance(context, str):
        return "str", context.encode("utf-8", "surrogatepass")
    if isinstance(context, (bytes, bytearray)):
        return "bytes", bytes(context)
    try:
        return "pickle", pickle.dumps(context, protocol=min(5, pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise TypeError(
            f"the context ({type(context).__name__}) cannot be sent to a worker process: {exc}. "
            "Convert it to str, list or dict, or use sandbox='inprocess'") from None


def make_init(context: Any, function_names: list[str], limits: dict[str, int] | None = None,
              *, strict: bool = False, allow_unrestricted: bool = False,
              context_path: str | None = None, has_context: bool = True
              ) -> tuple[dict[str, Any], bytes]:
    """The ``init`` header and payload. With ``context_path`` the payload is returned but the
    header points at the file instead (``payload`` 0): write the bytes there yourself."""
    fmt, payload = encode_context(context) if has_context else ("none", b"")
    sources, packages = shipped_modules()
    header: dict[str, Any] = {
        "op": "init", "version": PROTOCOL_VERSION, "context_format": fmt,
        "functions": list(function_names), "modules": sources, "packages": packages,
        "limits": {**DEFAULT_LIMITS, **(limits or {})}, "strict": strict,
        "allow_unrestricted": allow_unrestricted,
    }
    if context_path:
        header["context_path"] = context_path
    return header, payload
