"""Start, find, reuse and stop llama.cpp's OpenAI-compatible server for a local model.

Why a state file: loading a model takes seconds and a server holds 0.4-2 GB, so every caller
(``RLM(model="local/...")``, ``%%rlm``, the CLI, tests) should share one live server per model.
Each server we start records its pid, port and model in ``<cache>/servers/<alias>.json``; a
later call reuses it when the pid is alive and ``/v1/models`` answers with the same alias.

Servers started by :func:`serve` with ``keep_alive=False`` (the default of
:func:`ensure_server`) are stopped when the starting interpreter exits; ``rlm local serve
--detach`` starts one that stays until ``rlm local stop``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .._proc import pid_alive as _pid_alive
from .build import ensure_llama_cpp
from .errors import LocalModelError
from .fetch import fetch
from .paths import servers_dir
from .registry import MODELS, normalize_name

Progress = Callable[[str], None]

DEFAULT_N_CTX = 16384
HOST = "127.0.0.1"
API_KEY = "local"  # the server ignores it; litellm's OpenAI client insists on one


@dataclass
class ServerInfo:
    """A running (or recorded) server; ``litellm_model``/``api_base`` are what litellm needs."""

    alias: str
    model_path: str
    port: int
    pid: int
    n_ctx: int
    n_threads: int
    started_at: float
    log_path: str
    keep_alive: bool = True
    owner_pid: int = 0

    @property
    def api_base(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def litellm_model(self) -> str:
        return f"openai/{self.alias}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(api_base=self.api_base, litellm_model=self.litellm_model)
        return d


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _state_path(alias: str) -> Path:
    return servers_dir() / f"{alias}.json"


def _models_endpoint(port: int, timeout: float = 2.0) -> list[str] | None:
    """Model ids the server on ``port`` reports, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=timeout) as r:
            data = json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _read_state(alias: str) -> ServerInfo | None:
    try:
        data = json.loads(_state_path(alias).read_text())
        fields = ServerInfo.__dataclass_fields__
        return ServerInfo(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None


def _is_our_server_process(info: ServerInfo) -> bool:
    """The pid still runs llama_cpp.server on the recorded port (not a recycled pid)."""
    try:
        with open(f"/proc/{info.pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid check
    return b"llama_cpp.server" in args and str(info.port).encode() in args


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def _live(info: ServerInfo) -> bool:
    """Alive and ours. A server busy with a long prompt may not answer /v1/models for minutes,
    so a live process holding its port counts as live even when the endpoint times out."""
    if not _pid_alive(info.pid) or not _is_our_server_process(info):
        return False
    ids = _models_endpoint(info.port, timeout=5.0)
    if ids is not None:
        return info.alias in ids
    return _port_open(info.port)


def find_server(alias: str) -> ServerInfo | None:
    """The live server recorded for ``alias``; stale records are removed."""
    info = _read_state(alias)
    if info is None:
        return None
    if _live(info):
        return info
    with contextlib.suppress(OSError):
        _state_path(alias).unlink()
    return None


def resolve_model(name_or_path: str, *, progress: Progress | None = None) -> tuple[str, Path]:
    """Map a registry name (fetching it) or a GGUF path to ``(alias, path)``."""
    candidate = Path(name_or_path).expanduser()
    if name_or_path.endswith(".gguf") or candidate.is_file():
        if not candidate.is_file():
            raise LocalModelError(
                f"No GGUF file at {candidate}. Give the path of a .gguf file you have, or one of "
                f"the named models: {', '.join(sorted(MODELS))}.")
        alias = candidate.name[: -len(".gguf")] if candidate.name.endswith(".gguf") \
            else candidate.name
        return alias.lower(), candidate.resolve()
    key = normalize_name(name_or_path)
    path = fetch(key, progress=progress)
    return MODELS[key].alias, path


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        # reap if it is our child
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


_OWNED: dict[str, int] = {}  # alias -> pid of servers this interpreter must stop at exit


def _stop_owned() -> None:
    for alias, pid in list(_OWNED.items()):
        info = _read_state(alias)
        if info is not None and info.pid == pid:
            with contextlib.suppress(OSError):
                _state_path(alias).unlink()
        _stop_pid(pid, timeout=5.0)
        _OWNED.pop(alias, None)


atexit.register(_stop_owned)


def serve(name_or_path: str, port: int | None = None, *, n_ctx: int | None = None,
          n_threads: int | None = None, keep_alive: bool = True, ready_timeout_s: float = 180.0,
          progress: Progress | None = None) -> ServerInfo:
    """Start (or reuse) a server for a named model or a GGUF path; return once it answers.

    A live server for the same model is reused unless ``port`` or ``n_ctx`` is given and
    differs from it (then it is restarted). ``n_ctx`` defaults to 16384 tokens.
    ``keep_alive=False`` stops a server started here when this interpreter exits.
    """
    alias, path = resolve_model(name_or_path, progress=progress)
    servers_dir().mkdir(parents=True, exist_ok=True)
    with _start_lock(alias):  # two processes asking at once share one server
        return _serve_locked(alias, path, port, n_ctx, n_threads, keep_alive, ready_timeout_s,
                             progress)


@contextlib.contextmanager
def _start_lock(alias: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(servers_dir() / f"{alias}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _serve_locked(alias: str, path: Path, port: int | None, n_ctx: int | None,
                  n_threads: int | None, keep_alive: bool, ready_timeout_s: float,
                  progress: Progress | None) -> ServerInfo:
    existing = find_server(alias)
    if existing is not None:
        if (Path(existing.model_path) == path and port in (None, existing.port)
                and n_ctx in (None, existing.n_ctx)):
            return existing
        _say(progress, f"Restarting the {alias} server with the requested settings")
        stop(alias)
    n_ctx = n_ctx or DEFAULT_N_CTX
    ensure_llama_cpp(progress=progress)
    port = port or _free_port()
    if _models_endpoint(port, timeout=0.5) is not None:
        raise LocalModelError(f"Port {port} is already in use by another server. Choose another "
                              "port or leave it out to pick a free one.")
    threads = n_threads or default_threads()
    log_path = servers_dir() / f"{alias}.log"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", alias,
           "--host", HOST, "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads), "--n_threads_batch", str(threads),
           # The server's default keeps logits for every prompt token: n_ctx x 152k floats
           # (5 GB at n_ctx 8192 for Qwen) and slower prompts. Chat completions never need them.
           "--logits_all", "false"]
    _say(progress, f"Starting llama.cpp server for {alias} on {HOST}:{port} "
                   f"(n_ctx={n_ctx}, threads={threads}); log: {log_path}")
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    info = ServerInfo(alias=alias, model_path=str(path), port=port, pid=proc.pid, n_ctx=n_ctx,
                      n_threads=threads, started_at=time.time(), log_path=str(log_path),
                      keep_alive=keep_alive, owner_pid=0 if keep_alive else os.getpid())
    if not keep_alive:
        _OWNED[alias] = proc.pid
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if proc.poll() is not None:
            _OWNED.pop(alias, None)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise LocalModelError(
                f"The llama.cpp server for {alias} exited with code {proc.returncode} before it "
                f"was ready. Log {log_path} ends with:\n{tail}\nIf the model file is damaged, "
                f"delete it and fetch again; if memory is short, lower n_ctx.")
        ids = _models_endpoint(port, timeout=1.0)
        if ids is not None and alias in ids:
            break
        if time.monotonic() > deadline:
            _stop_pid(proc.pid)
            _OWNED.pop(alias, None)
            raise LocalModelError(
                f"The llama.cpp server for {alias} was not ready after {ready_timeout_s:.0f} s "
                f"(log: {log_path}). The machine may be overloaded; retry with a longer "
                "ready_timeout_s.")
        time.sleep(0.2)
    _state_path(alias).write_text(json.dumps(info.to_dict(), indent=2))
    _say(progress, f"Server ready in {time.monotonic() - t0:.1f} s: model={info.litellm_model} "
                   f"api_base={info.api_base}")
    return info


def status() -> dict:
    """What is cached, installed and running (JSON-serializable)."""
    from .build import cached_wheel, installed_version, missing_server_modules
    from .fetch import is_fetched, model_path

    servers = []
    if servers_dir().exists():
        for p in sorted(servers_dir().glob("*.json")):
            info = find_server(p.stem)
            if info is not None:
                servers.append(info.to_dict())
    wheel = cached_wheel()
    return {
        "models": {name: {"fetched": is_fetched(name), "path": str(model_path(name)),
                          "size": spec.size, "note": spec.note}
                   for name, spec in MODELS.items()},
        "llama_cpp": {"installed": installed_version(),
                      "missing_modules": missing_server_modules(),
                      "cached_wheel": str(wheel) if wheel else None},
        "servers": servers,
    }


def stop(name: str | None = None) -> list[str]:
    """Stop the server for ``name`` (registry name, alias or GGUF path), or all; return aliases."""
    if not servers_dir().exists():
        return []
    if name is None:
        aliases = [p.stem for p in servers_dir().glob("*.json")]
    else:
        p = Path(name).expanduser()
        aliases = [p.name[:-5].lower() if name.endswith(".gguf") else normalize_name(name)]
    stopped = []
    for alias in aliases:
        info = _read_state(alias)
        if info is None:
            continue
        if _pid_alive(info.pid) and _is_our_server_process(info):  # never a recycled pid
            _stop_pid(info.pid)
            stopped.append(alias)
        _OWNED.pop(alias, None)
        with contextlib.suppress(OSError):
            _state_path(alias).unlink()
    return stopped


def ensure_server(name: str, *, keep_alive: bool | None = None,
                  progress: Progress | None = None) -> tuple[str, str]:
    """Fetch, install and start (or reuse) a local model; return ``(litellm_model, api_base)``.

    ``name`` is ``"local/<registry name>"``, a bare registry name, or a GGUF path. Pass the
    pair to litellm with ``api_key="local"``. Servers started here stop when this interpreter
    exits unless ``keep_alive`` (default: env ``RLM_LOCAL_KEEP_ALIVE=1``).
    """
    if keep_alive is None:
        keep_alive = os.environ.get("RLM_LOCAL_KEEP_ALIVE", "") in ("1", "true", "yes")
    raw = name[len("local/"):] if name.lower().startswith("local/") else name
    info = serve(raw, keep_alive=keep_alive, progress=progress)
    return info.litellm_model, info.api_base
