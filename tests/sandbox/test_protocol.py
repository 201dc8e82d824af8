"""The wire protocol and the host's defences against a worker that misbehaves.

A worker that escaped its policy controls everything it sends. These tests stand up a hostile
worker program (a real process speaking to the real host code) and check that the host never
unpickles, never crashes, caps what it accepts, and recovers.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlm_jupyter.sandbox import open_sandbox
from rlm_jupyter.sandbox.protocol import (ProtocolError, encode, make_init, read_message,
                                          worker_path, write_message)

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "rlm_jupyter" / "sandbox"


def test_roundtrip_and_payload() -> None:
    buf = io.BytesIO()
    write_message(buf, {"op": "init", "x": "é\n"}, payload=b"\x00\x01raw")
    buf.seek(0)
    msg = read_message(buf)
    assert msg == {"op": "init", "x": "é\n", "payload": 5}
    assert buf.read(5) == b"\x00\x01raw"


@pytest.mark.parametrize("line,match", [
    (b"", "closed"),
    (b"not json\n", "not JSON"),
    (b"[1, 2]\n", "not a message"),
    (b'{"no_op": 1}\n', "not a message"),
    (b'{"op": "x", "pad": "' + b"a" * 2000 + b'"}\n', "over"),
    (b'{"op": "x"}', "over"),  # no newline: truncated or endless line
])
def test_read_message_rejects(line: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        read_message(io.BytesIO(line), limit=1000)


def test_encode_is_one_line() -> None:
    data = encode({"op": "x", "s": "a\nb\u2028c\udcff"})
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    assert json.loads(data)["s"] == "a\nb\u2028c\udcff"


def test_host_modules_never_unpickle() -> None:
    """Static check: no host-side sandbox module calls pickle.load(s)."""
    for name in ("local.py", "worker_sandbox.py", "inprocess.py", "protocol.py", "__init__.py",
                 "docker.py"):
        path = SANDBOX_DIR / name
        if not path.exists():
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("load", "loads") and \
                    isinstance(node.value, ast.Name) and node.value.id in ("pickle", "cPickle"):
                pytest.fail(f"{name} line {node.lineno} unpickles")


def test_worker_sources_run_on_python39_syntax() -> None:
    shipped = [SANDBOX_DIR / "worker.py", *sorted((SANDBOX_DIR / "policy").glob("*.py"))]
    assert len(shipped) > 2  # worker.py and the policy package
    for path in shipped:
        ast.parse(path.read_text(), feature_version=(3, 9))


def test_worker_stdio_mode_directly() -> None:
    """Drive worker.py in --stdio mode exactly as ``docker run -i`` does."""
    proc = subprocess.Popen([sys.executable, "-I", "-B", worker_path(), "--stdio",
                             "--memory-mb", "2048"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdin and proc.stdout
        header, payload = make_init("stdio context", ["echo"])
        write_message(proc.stdin, header, payload)
        ready = read_message(proc.stdout)
        assert ready["op"] == "ready" and ready["restricted"] is True
        write_message(proc.stdin, {"op": "exec", "id": 1, "timeout": 5,
                                   "code": "import re\nprint(context.upper())\n"
                                           "print(echo('hi'))\nFINAL('ok')"})
        assert read_message(proc.stdout) == {"op": "running", "id": 1}
        call = read_message(proc.stdout)
        assert call == {"op": "call", "id": 1, "fn": "echo", "args": ["hi"], "kwargs": {}}
        write_message(proc.stdin, {"op": "reply", "id": 1, "ok": True, "value": "HI!"})
        result = read_message(proc.stdout)
        assert result["op"] == "result" and result["id"] == 1
        assert result["stdout"] == "STDIO CONTEXT\nHI!\n" and result["final"] == "ok"
        write_message(proc.stdin, {"op": "get", "id": 2, "name": "context"})
        assert read_message(proc.stdout) == {"op": "value", "id": 2, "value": "stdio context"}
        write_message(proc.stdin, {"op": "vars", "id": 3})
        assert read_message(proc.stdout)["vars"] == {"context": "str", "re": "module"}
        write_message(proc.stdin, {"op": "ping", "id": 4})
        assert read_message(proc.stdout) == {"op": "pong", "id": 4}
        write_message(proc.stdin, {"op": "shutdown"})
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_refuses_garbage_first_message() -> None:
    proc = subprocess.run([sys.executable, "-I", "-B", worker_path(), "--stdio"],
                          input=b'{"op": "exec", "code": "1"}\n', capture_output=True,
                          timeout=30)
    assert json.loads(proc.stdout)["op"] == "fatal" and proc.returncode == 2


# ---- a hostile worker ----------------------------------------------------------------------

HOSTILE = textwrap.dedent('''
    import json, os, pickle, sys
    args = sys.argv[1:]
    r, w = (int(x) for x in args[args.index("--fds") + 1].split(","))
    rin, wout = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    init = json.loads(rin.readline())
    n = init.get("payload", 0)
    rin.read(n)
    def send(raw):
        wout.write(raw)
        wout.flush()
    send(b'{"op": "ready", "pid": 1, "python": "x", "restricted": true}\\n')
    mode = os.environ.get("HOSTILE_MODE") or open(os.path.join(os.path.dirname(
        sys.argv[0]), "mode")).read().strip()
    marker = open(os.path.join(os.path.dirname(sys.argv[0]), "marker")).read().strip()
    class Evil:
        def __reduce__(self):
            return (open, (marker, "w"))
    for line in rin:
        msg = json.loads(line)
        if msg.get("op") != "exec":
            continue
        if mode == "pickle":
            send(pickle.dumps(Evil()) + b"\\n")
        elif mode == "huge":
            send(b'{"op": "result", "id": ' + str(msg["id"]).encode() + b', "stdout": "'
                 + b"A" * (65 * 1024 * 1024) + b'"}\\n')  # over message_limit(0)
        elif mode == "bigfields":
            send(json.dumps({"op": "result", "id": msg["id"], "stdout": "B" * 2_000_000,
                             "error": "E" * 2_000_000, "final": 5, "answer": [1],
                             "notes": ["n" * 5000] * 500}).encode() + b"\\n")
        elif mode == "unknown-fn":
            send(json.dumps({"op": "call", "id": 99, "fn": "__import__", "args": ["os"],
                             "kwargs": {}}).encode() + b"\\n")
            reply = json.loads(rin.readline())
            send(json.dumps({"op": "result", "id": msg["id"], "stdout": json.dumps(reply),
                             "error": None}).encode() + b"\\n")
        elif mode == "silent":
            pass
''')


@pytest.fixture
def hostile(tmp_path: Path):
    script = tmp_path / "hostile_worker.py"
    script.write_text(HOSTILE)
    marker = tmp_path / "unpickled-marker"
    (tmp_path / "marker").write_text(str(marker))
    launcher = tmp_path / "python"
    # The local backend runs "<python> -I -B worker.py --fds R,W ..."; this launcher swaps in
    # the hostile program and keeps the arguments.
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -I -B {script} \"$@\"\n")
    launcher.chmod(launcher.stat().st_mode | stat.S_IEXEC)

    def make(mode: str):  # type: ignore[no-untyped-def]
        (tmp_path / "mode").write_text(mode)
        return open_sandbox("local", python=str(launcher), timeout_s=1, grace_s=1,
                            compile_allowance_s=1)

    make.marker = marker  # type: ignore[attr-defined]
    return make


def test_hostile_pickle_is_never_unpickled(hostile) -> None:  # type: ignore[no-untyped-def]
    with hostile("pickle") as sb:
        r = sb.execute("print(1)")
        assert r.restarted and r.error
    assert not hostile.marker.exists()


def test_hostile_oversized_message_kills_worker(hostile) -> None:  # type: ignore[no-untyped-def]
    with hostile("huge") as sb:
        t0 = time.monotonic()
        r = sb.execute("print(1)")
        assert r.restarted and r.error and "A" * 100 not in r.stdout
        assert time.monotonic() - t0 < 30


def test_hostile_fields_are_recapped(hostile) -> None:  # type: ignore[no-untyped-def]
    with hostile("bigfields") as sb:
        r = sb.execute("print(1)")
        assert len(r.stdout) < 25_000 and len(r.error or "") < 5_000
        assert r.final == "5" and r.answer == {"content": "", "ready": False}
        assert len(r.notes) <= 20 and all(len(n) < 1100 for n in r.notes)


def test_hostile_unknown_function_is_refused(hostile) -> None:  # type: ignore[no-untyped-def]
    with hostile("unknown-fn") as sb:
        r = sb.execute("print(1)")
        reply = json.loads(r.stdout)
        assert reply["ok"] is False and "no host function" in reply["error"]


def test_hostile_silence_hits_hard_deadline(hostile) -> None:  # type: ignore[no-untyped-def]
    with hostile("silent") as sb:
        t0 = time.monotonic()
        r = sb.execute("print(1)")
        assert r.timed_out and r.restarted
        assert time.monotonic() - t0 < 10


def test_pickle_payload_for_objects() -> None:
    header, payload = make_init({"a": (1, 2)}, [])
    assert header["context_format"] == "pickle" and pickle.loads(payload) == {"a": (1, 2)}
    header, payload = make_init("text", [])
    assert header["context_format"] == "str" and payload == b"text"
    assert "rlm_sandbox_policy" in header["modules"]
    assert os.path.basename(worker_path()) == "worker.py"
