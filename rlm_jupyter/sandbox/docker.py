"""The worker program in a hardened, long-lived Docker container (``sandbox="docker"``).

Why a container on top of the worker's own policy: the process boundary and rlimits of the local
backend still share the host's filesystem, network and user. Here the same ``worker.py`` runs
with no network, a read-only root, no capabilities, as ``nobody``, in a memory/pid/CPU-capped
cgroup, so even an escape from the Python policy reaches nothing worth having.

How it is wired (everything else is
:class:`~rlm_jupyter.sandbox.worker_sandbox.WorkerSandbox`'s):

* the ``docker`` SDK talks to the daemon named by ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY``,
  ``DOCKER_CERT_PATH``, or the current docker context), so the daemon may be on another
  machine: nothing of ours is mounted from the host's filesystem;
* per container: create (every hardening flag), copy ``worker.py`` and the context in with
  ``put_archive``, attach, start. The worker speaks JSON lines over the attach socket
  (:mod:`rlm_jupyter.docker.attach`); ``llm_query`` and other host functions are proxied to
  the kernel, so the container needs no network and the API key never enters it;
* the copy lands in an anonymous volume at ``/opt/rlm``: the daemon refuses ``put_archive``
  anywhere on a read-only root filesystem ("container rootfs is marked read-only"), even before
  start, and a tmpfs is not visible to it at all, but a volume is writable by the daemon while
  the files in it (root-owned, 0444, in a 0755 folder) are not by ``nobody``. The volume is
  removed with the container (``AutoRemove`` and ``remove(v=True)``);
* the policy and RestrictedPython's source cross inside the ``init`` message, so the image
  needs nothing but Python >= 3.9 (any image works); pandas/numpy contexts are pickled
  portably (:mod:`rlm_jupyter.docker.portable`) so the image's versions may differ;
* the context is encoded once into a private temporary tar file and copied into each container
  from it (a restart copies it again without re-encoding; the host drops the object);
* a soft timeout (the worker's own deadline) keeps the state; past the hard deadline the
  container is removed and a fresh one started (``ExecResult.restarted``); a memory kill is
  reported to the model and the next cell runs in a fresh container;
* containers carry labels naming the kernel (host, pid, pid start time, session) and are removed
  on close, at interpreter exit, and by :func:`reap_orphans` (run when a sandbox starts) once
  their kernel is gone. A kernel that dies closes the attach connection; the worker then reads
  the end of its input, exits, and the daemon removes the container (``AutoRemove``).

The SDK (about 90 ms to import) is imported on the first sandbox, and one client per daemon
address is shared by the whole process.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import signal
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from typing import IO, TYPE_CHECKING, Any

from .._proc import pid_alive as _pid_alive
from .._proc import process_start as _process_start
from .base import SandboxError
from .worker_sandbox import WorkerSandbox
from .protocol import worker_path

if TYPE_CHECKING:  # pragma: no cover
    import docker as docker_sdk

#: Image used when neither ``image=`` nor ``RLM_DOCKER_IMAGE`` names one.
DEFAULT_IMAGE = "rlm-jupyter/python:bookworm"

#: What to tell a user whose image is missing.
BUILD_HINT = (
    "build it with one line: docker build -t rlm-jupyter/python:bookworm "
    "\"$(python -c 'import rlm_jupyter, os; print(os.path.dirname(rlm_jupyter.__file__))')"
    "/docker\"  (no registry? from a source checkout: bash .ci/build-image), or set "
    "RLM_DOCKER_IMAGE / image= to any image that has Python >= 3.10"
)

LABEL = "io.rlm-jupyter.sandbox"
LABEL_HOST = "io.rlm-jupyter.host"
LABEL_PID = "io.rlm-jupyter.kernel-pid"
LABEL_PID_START = "io.rlm-jupyter.kernel-start"
LABEL_SESSION = "io.rlm-jupyter.session"

#: Where things appear inside the container: an anonymous volume (see the module docstring).
FILES_IN_CONTAINER = "/opt/rlm"
WORKER_IN_CONTAINER = FILES_IN_CONTAINER + "/worker.py"
CONTEXT_IN_CONTAINER = FILES_IN_CONTAINER + "/context"

_CHECKED: dict[str, float] = {}  # "daemon@CLIENT", "image@CLIENT:NAME" -> when found working
_CHECK_TTL_S = 300.0
#: Containers this process started and has not removed: name -> the client that made it.
_STARTED: dict[str, "docker_sdk.DockerClient"] = {}
_STARTED_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, ...], "docker_sdk.DockerClient"] = {}
_CLIENTS_LOCK = threading.Lock()
_ENV_KEYS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")
#: Per client: each open sandbox holds one connection (waiting for its container's exit)
#: besides the calls in flight; urllib3 warns when the pool overflows.
_POOL_SIZE = 64


# --------------------------------------------------------------------------------------------
# the client


def _daemon_address() -> str:
    return os.environ.get("DOCKER_HOST") or "the default socket"


def _not_reachable(detail: str) -> SandboxError:
    return SandboxError(
        f"the Docker daemon is not reachable at {_daemon_address()} ({detail[:300]}). Start it "
        f"(`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd), "
        f"make sure this user may use it (the `docker` group), point DOCKER_HOST at a daemon "
        f"that answers (tcp://..., ssh://..., unix://...), or use sandbox='local'")


def docker_client() -> "docker_sdk.DockerClient":
    """The process's client for the daemon the environment names (``DOCKER_HOST`` ...).

    Created on first use and shared: the SDK costs ~90 ms to import and each client does a
    version handshake. Keyed by the environment, so a changed ``DOCKER_HOST`` gets its own.
    """
    key = tuple(os.environ.get(k, "") for k in _ENV_KEYS)
    client = _CLIENTS.get(key)
    if client is not None:
        return client
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            try:
                import docker as docker_sdk
            except ImportError:
                raise SandboxError("the docker sandbox needs the `docker` Python package: "
                                   "pip install 'docker>=7', or use sandbox='local'") from None
            try:
                client = docker_sdk.from_env(max_pool_size=_POOL_SIZE)
            except Exception as exc:  # DockerException: no daemon, bad TLS files, bad URL
                raise _not_reachable(_short(exc)) from None
            _CLIENTS[key] = client
    return client


def _short(exc: BaseException) -> str:
    """The useful part of an SDK error (they embed whole URLs and nested reprs)."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _is_not_found(exc: BaseException) -> bool:
    return getattr(getattr(exc, "response", None), "status_code", None) == 404


def check_daemon(client: "docker_sdk.DockerClient | None" = None) -> str:
    """The daemon's version; a :class:`SandboxError` with the fix when it does not answer."""
    try:
        client = client or docker_client()
        version = str(client.api.version().get("Version") or "?")
    except SandboxError:
        raise
    except Exception as exc:
        raise _not_reachable(_short(exc)) from None
    _CHECKED[f"daemon@{id(client)}"] = time.monotonic()
    return version


def check_image(image: str, client: "docker_sdk.DockerClient | None" = None) -> None:
    """Make sure ``image`` exists on the daemon (we never pull: sandboxes must not need a
    registry)."""
    client = client or docker_client()
    try:
        client.api.inspect_image(image)
    except Exception as exc:
        if not _is_not_found(exc):
            raise SandboxError(f"cannot look up the Docker image {image!r}: {_short(exc)}; "
                               f"is the daemon healthy? (`docker info` tells)") from None
        if image == DEFAULT_IMAGE:
            raise SandboxError(f"the Docker image {image!r} is not on this machine; "
                               f"{BUILD_HINT}") from None
        raise SandboxError(f"the Docker image {image!r} is not on this machine (sandboxes never "
                           f"pull): `docker pull {image}` or build it, or use the default image "
                           f"{DEFAULT_IMAGE!r}: {BUILD_HINT}") from None
    _CHECKED[f"image@{id(client)}:{image}"] = time.monotonic()


def _fresh(key: str) -> bool:
    return time.monotonic() - _CHECKED.get(key, -1e9) < _CHECK_TTL_S


def _hostname() -> str:
    return socket.gethostname()[:63]


# --------------------------------------------------------------------------------------------
# finding and removing our containers


def list_sandbox_containers(client: "docker_sdk.DockerClient | None" = None,
                            session: str | None = None) -> list[dict[str, str]]:
    """Every container (running or not) labelled as ours: id, name, state and labels."""
    client = client or docker_client()
    labels = [LABEL] + ([f"{LABEL_SESSION}={session}"] if session else [])
    try:
        found = client.api.containers(all=True, filters={"label": labels})
    except Exception as exc:
        raise SandboxError(f"cannot list containers: {_short(exc)}") from None
    rows = []
    for c in found:
        lab = c.get("Labels") or {}
        rows.append({
            "id": c.get("Id", ""),
            "name": ((c.get("Names") or ["?"])[0]).lstrip("/"),
            "state": c.get("State", ""),
            "host": lab.get(LABEL_HOST, ""),
            "pid": lab.get(LABEL_PID, ""),
            "pid_start": lab.get(LABEL_PID_START, ""),
            "session": lab.get(LABEL_SESSION, ""),
        })
    return rows


def reap_orphans(client: "docker_sdk.DockerClient | None" = None) -> list[str]:
    """Remove our containers whose kernel (on this host) is gone; return their names.

    Kernels that crash or are killed never run ``close()`` or ``atexit``; their containers
    would otherwise live until the worker notices its closed stdin (not at all when a cell is
    stuck in C code). Containers from other hosts sharing the daemon are left alone.
    """
    client = client or docker_client()
    host = _hostname()
    dead = []
    for row in list_sandbox_containers(client):
        if row["host"] != host:
            continue
        try:
            pid = int(row["pid"])
        except ValueError:
            pid = -1
        if not _pid_alive(pid, row["pid_start"]):
            dead.append(row)
    for row in dead:
        if row["state"] == "running":
            _stop_running(client, row["id"])
        _remove_container(client, row["id"])
    _remove_stale_context_dirs()
    return [r["name"] for r in dead]


def _remove_container(client: "docker_sdk.DockerClient", name: str) -> bool:
    """Kill and remove one container and its volume; True once it is gone (or going)."""
    try:
        client.api.remove_container(name, force=True, v=True)
    except Exception as exc:
        if _is_not_found(exc):
            return True
        if "already in progress" not in str(getattr(exc, "explanation", "") or exc):
            return False
        try:  # the daemon is removing it (AutoRemove): wait until it is really gone
            client.api.wait(name, condition="removed", timeout=10)
        except Exception:
            pass
    return True


def _stop_running(client: "docker_sdk.DockerClient", name: str,
                  watch: "_ExitWatch | None" = None) -> None:
    """Kill a running container and let ``AutoRemove`` delete it with its volume.

    Why not ``remove(force=True, v=True)`` at once: on a running ``AutoRemove`` container
    that races the daemon's own removal on exit, and the loser's volume clean-up can be
    skipped, leaking the anonymous volume (which holds the user's context). Measured on
    dockerd 20.10: one volume in six hard-deadline restarts; none in 16 this way."""
    try:
        client.api.kill(name)
    except Exception:
        return  # gone, or not running: the caller removes what is left
    if watch is not None:
        watch.join(10)
        return
    try:
        client.api.wait(name, condition="removed", timeout=10)
    except Exception:
        pass  # already removed (404), or slow: the caller's remove() finishes the job


def _remove_containers(client: "docker_sdk.DockerClient", names: list[str]) -> None:
    gone = [n for n in names if _remove_container(client, n)]
    # Names not confirmed gone stay: atexit (or the reaper, next time) retries.
    with _STARTED_LOCK:
        for name in gone:
            _STARTED.pop(name, None)


@atexit.register
def _remove_leftovers() -> None:  # pragma: no cover - runs at interpreter exit
    """Remove every container this process still has. atexit runs hooks in reverse order, so
    this runs just before local.py's hook closes the sandboxes themselves (which then finds
    nothing left to stop)."""
    with _STARTED_LOCK:
        left = list(_STARTED.items())
    for name, client in left:
        try:
            _stop_running(client, name)
            _remove_containers(client, [name])
        except Exception:
            pass


# --------------------------------------------------------------------------------------------
# what is copied into each container


_TMP_PREFIX = "rlm-docker-"


def _context_dir() -> str:
    """A private (0700) folder for one sandbox's archive, named after this kernel so the
    reaper can delete it once the kernel is gone (it holds the user's data)."""
    pid = os.getpid()
    return tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{pid}-{_process_start(pid) or 0}-")


def _remove_stale_context_dirs() -> None:
    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(_TMP_PREFIX)]
    except OSError:
        return
    for name in names:
        parts = name[len(_TMP_PREFIX):].split("-")
        try:
            pid, start = int(parts[0]), parts[1]
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid, "" if start == "0" else start):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Root-owned and read-only: the worker runs as nobody and must not change its files."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _write_archive(fh: IO[bytes], context: bytes | None) -> None:
    with open(worker_path(), "rb") as src:
        worker = src.read()
    with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add_file(tar, "worker.py", worker)
        if context is not None:
            _add_file(tar, os.path.basename(CONTEXT_IN_CONTAINER), context)


_WORKER_ONLY: bytes | None = None


def _worker_only_archive() -> bytes:
    """The archive for sandboxes without a context: built once per process."""
    global _WORKER_ONLY
    if _WORKER_ONLY is None:
        buf = io.BytesIO()
        _write_archive(buf, None)
        _WORKER_ONLY = buf.getvalue()
    return _WORKER_ONLY


def default_memory_mb(context_bytes: int) -> int:
    """Container memory (RAM, no swap) sized to the context: the file's bytes, the decoded
    object (pandas can take several times the pickle), copies the model makes, and room for
    pandas/numpy themselves."""
    return int(max(1024, 512 + 6 * (context_bytes // (1024 * 1024))))


class _ExitWatch:
    """The container's exit status, from a ``wait`` request made before it starts.

    ``AutoRemove`` deletes an exited container at once, so its state cannot be inspected
    afterwards; a wait for the "removed" condition, made before start, still answers with the
    exit code (137 for a memory kill), and its return means the removal is done.
    """

    def __init__(self, client: "docker_sdk.DockerClient", container_id: str) -> None:
        self.code: int | None = None
        self.error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._wait, args=(client, container_id), daemon=True,
                         name="rlm-docker-wait").start()

    def _wait(self, client: "docker_sdk.DockerClient", container_id: str) -> None:
        try:
            reply = client.api.wait(container_id, condition="removed", timeout=None)
            self.code = int(reply.get("StatusCode", -1))
        except Exception as exc:  # 404: already gone before the wait arrived; daemon gone
            self.error = _short(exc)
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float) -> bool:
        return self._done.wait(timeout)


# --------------------------------------------------------------------------------------------
# the sandbox


class DockerSandbox(WorkerSandbox):
    """A persistent REPL in one long-lived, locked-down container. See the module docstring.

    Options (besides :func:`~rlm_jupyter.sandbox.open_sandbox`'s): ``image`` (default
    ``RLM_DOCKER_IMAGE`` or ``rlm-jupyter/python:bookworm``), ``cpus`` (1.0), ``pids_limit``
    (128), ``tmpfs_mb`` (64, the only writable place, ``/tmp``), ``python`` (the interpreter
    inside the image, "python3"), ``client`` (a ``docker.DockerClient``; default: one from the
    environment, shared), ``session_id`` (a label; default: random), plus the local backend's
    ``grace_s``, ``start_timeout_s``, ``limits``... ``memory_mb`` is the container's RAM limit
    (default: sized to the context).
    """

    kind = "docker"

    def __init__(self, context: Any = None, *args: Any, image: str | None = None,
                 cpus: float = 1.0, pids_limit: int = 128, tmpfs_mb: int = 64,
                 python: str = "python3", client: "docker_sdk.DockerClient | None" = None,
                 session_id: str | None = None, **kwargs: Any) -> None:
        self.image = image or os.environ.get("RLM_DOCKER_IMAGE") or DEFAULT_IMAGE
        self.cpus = float(cpus)
        self.pids_limit = int(pids_limit)
        self.tmpfs_mb = int(tmpfs_mb)
        self.python = python
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self._container: str | None = None
        self._stdio: Any = None
        self._exit: _ExitWatch | None = None
        self._tmpdir: str | None = None
        self._archive: str | None = None
        self._staged = False
        self._we_killed = False
        self._stderr_tail = b""
        self._spawn_count = 0
        self.client = client or docker_client()
        # Checked once in a while per client (clients are shared per daemon address).
        if not _fresh(f"daemon@{id(self.client)}"):
            check_daemon(self.client)
        if not _fresh(f"image@{id(self.client)}:{self.image}"):
            check_image(self.image, self.client)
        try:
            reap_orphans(self.client)
        except SandboxError:
            pass  # a failed clean-up must not stop the user's work
        super().__init__(context, *args, **kwargs)

    # ---- the context is encoded once -------------------------------------------------------

    def _stage_context(self) -> None:
        """Write worker.py and the encoded context into a private tar file, once.

        The base class encodes ``self._context`` again at every (re)start to build the
        ``init`` header; after staging it holds a tiny stand-in of the same format, so that
        costs nothing and the host drops its reference to the big object.
        """
        from .protocol import encode_context

        self._staged = True
        if not self._has_context:
            return
        context = self._context
        try:
            from ..docker.portable import needs_portable, portable_dumps

            if needs_portable(context):
                fmt, data = "pickle", portable_dumps(context)
            else:
                fmt, data = encode_context(context)
        except TypeError as exc:
            raise SandboxError(str(exc)) from None
        except Exception as exc:
            raise SandboxError(f"the context ({type(context).__name__}) cannot be sent to the "
                               f"container: {exc}. Convert it to str, list or dict") from None
        if fmt == "json":  # pragma: no cover - encode_context never picks json today
            raise SandboxError("json contexts are not supported by the docker backend")
        self._tmpdir = _context_dir()
        self._archive = os.path.join(self._tmpdir, "files.tar")
        with open(self._archive, "wb") as fh:
            _write_archive(fh, data)
        if self.memory_mb is None:
            self.memory_mb = default_memory_mb(len(data))
        del data
        self._context = {"none": None, "str": "", "bytes": b""}.get(fmt, 0)

    def _start(self) -> None:
        if not self._staged:
            self._stage_context()
        if self.memory_mb is None:
            self.memory_mb = default_memory_mb(0)
        super()._start()

    def _context_path(self) -> str | None:
        return CONTEXT_IN_CONTAINER if self._archive else None

    # ---- container life cycle ------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        pid = os.getpid()
        return {LABEL: "1", LABEL_HOST: _hostname(), LABEL_PID: str(pid),
                LABEL_PID_START: _process_start(pid), LABEL_SESSION: self.session_id}

    def _create_args(self, name: str) -> dict[str, Any]:
        """``docker create`` in SDK terms: every hardening flag of the design lives here."""
        from docker.types import LogConfig

        mem = f"{int(self.memory_mb or default_memory_mb(0))}m"
        host_config = self.client.api.create_host_config(
            network_mode="none", read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={self.tmpfs_mb}m,mode=1777"},
            mem_limit=mem, memswap_limit=mem, pids_limit=self.pids_limit,
            nano_cpus=int(self.cpus * 1e9), cap_drop=["ALL"],
            security_opt=["no-new-privileges"], log_config=LogConfig(type="none"),
            init=True, auto_remove=True)
        return dict(
            image=self.image, name=name, host_config=host_config, labels=self._labels(),
            user="65534:65534", working_dir="/tmp", entrypoint=[self.python],
            command=["-I", "-B", WORKER_IN_CONTAINER, "--stdio", "--cpu-s", str(int(self.cpu_s)),
                     "--nofile", "256"],
            # The image's own environment is replaced where it matters; no host variable
            # ever crosses (and no proxy settings from ~/.docker/config.json either).
            environment=["HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8", "OMP_NUM_THREADS=1",
                         "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1",
                         "NUMEXPR_MAX_THREADS=1"],
            volumes=[FILES_IN_CONTAINER], stdin_open=True, tty=False, detach=False,
            network_disabled=True, use_config_proxy=False)

    def _copy_files(self, container_id: str) -> None:
        api = self.client.api
        if self._archive:
            with open(self._archive, "rb") as fh:
                api.put_archive(container_id, FILES_IN_CONTAINER, fh)
        else:
            api.put_archive(container_id, FILES_IN_CONTAINER, _worker_only_archive())

    def _spawn(self, context_bytes: int) -> tuple[IO[bytes], IO[bytes]]:
        from ..docker.attach import AttachedStdio

        if self._closed:
            # execute() may try to recover while another thread closes the sandbox.
            raise SandboxError("this sandbox was closed")
        self._spawn_count += 1
        name = f"rlm-sbx-{self.session_id}-{self._spawn_count}"
        with _STARTED_LOCK:
            _STARTED[name] = self.client
        self._container = name
        self._stdio, self._exit = None, None  # nothing of the last container is reused
        self._we_killed = False
        self._stderr_tail = b""
        api = self.client.api
        step = "create"
        try:
            cid = api.create_container(**self._create_args(name))["Id"]
            step = "copy worker.py and the context into"
            self._copy_files(cid)
            step = "attach to"
            sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                  "stream": 1})
            self._stdio = AttachedStdio(sock, self._keep_stderr)
            self._exit = _ExitWatch(self.client, cid)
            step = "start"
            api.start(cid)
        except SandboxError:
            raise
        except Exception as exc:
            raise SandboxError(f"Docker could not {step} the container {name}: {_short(exc)}"
                               + self._start_hint(exc)) from None
        return self._stdio.writer, self._stdio.reader

    def _start_hint(self, exc: BaseException) -> str:
        text = str(exc)
        if "executable file not found" in text or "no such file" in text.lower():
            return (f" (the image {self.image!r} has no {self.python!r}: pass python='...' "
                    f"or use an image with Python >= 3.9)")
        if _is_not_found(exc) and self.image in text:
            return f"; {BUILD_HINT}"
        return ""

    def _keep_stderr(self, data: bytes) -> None:
        self._stderr_tail = (self._stderr_tail + data)[-8192:]

    def _alive(self) -> bool:
        return self._exit is not None and not self._exit.done()

    def _kill(self) -> None:
        stdio, name, watch = self._stdio, self._container, self._exit
        self._stdio = None
        self._reader = self._writer = None
        if name is not None:
            if watch is not None and not watch.done():
                self._we_killed = True
                _stop_running(self.client, name, watch)
            # What is left (never started, or the daemon did not remove it in time).
            _remove_containers(self.client, [name])
        if stdio is not None:
            stdio.close()
        if watch is not None:
            watch.join(10)

    def _death_reason(self) -> str:
        watch = self._exit
        if watch is None:
            return "no container"
        if not watch.join(5):
            return "it stopped answering"
        tail = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        detail = f": {' | '.join(tail)[:500]}" if tail else ""
        code = watch.code
        if code is None:
            return f"the container is gone ({watch.error or 'exit status unknown'}){detail}"
        if code == 137 and not self._we_killed:
            return (f"the container was killed, most likely because it ran out of memory "
                    f"(its limit is {self.memory_mb} MB; use less memory, or open the sandbox "
                    f"with a larger memory_mb)")
        if code in (126, 127):
            return (f"the image {self.image!r} has no runnable {self.python!r}{detail}; pass "
                    f"python='...' or use an image with Python >= 3.9")
        if code > 128:  # --init reports a signal death of the worker as 128 + signal
            try:
                sig = signal.Signals(code - 128).name
            except ValueError:
                sig = f"signal {code - 128}"
            hint = {"SIGKILL": "killed", "SIGSEGV": "crashed in C code",
                    "SIGXCPU": "its CPU-time limit was reached", "SIGABRT": "aborted",
                    "SIGXFSZ": "it tried to write a file"}.get(sig, "")
            return f"the worker died of {sig}" + (f" ({hint})" if hint else "") + detail
        return f"exit code {code}{detail}"

    @property
    def container_name(self) -> str | None:
        """The current container's name (changes after a restart)."""
        return self._container
