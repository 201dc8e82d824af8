"""The worker program in a hardened, long-lived Docker container (``sandbox="docker"``).

Why a container on top of the worker's own policy: the process boundary and rlimits of the local
backend still share the host's filesystem, network and user. Here the same ``worker.py`` runs
with no network, a read-only root, no capabilities, as ``nobody``, in a memory/pid/CPU-capped
cgroup, so even an escape from the Python policy reaches nothing worth having.

How it is wired (everything else is :class:`~rlm_jupyter.sandbox.local.WorkerSandbox`'s):

* one ``docker run -i --rm --init ...`` per sandbox; JSON lines over the client's stdio, so
  ``llm_query`` and other host functions are proxied to the kernel and the container needs no
  network; the API key never enters it;
* ``worker.py`` is bind-mounted read-only; the policy and RestrictedPython's source cross inside
  the ``init`` message, so the image needs nothing but Python >= 3.9 (any image works);
* the context is written once to a private temporary file, bind-mounted read-only, and read by
  the worker at start (and again after a restart) without crossing the pipe; pandas/numpy values
  are pickled portably (:mod:`rlm_jupyter.docker.portable`) so the image's versions may differ;
* a soft timeout (the worker's own deadline) keeps the state; past the hard deadline the
  container is removed and a fresh one started (``ExecResult.restarted``); a memory kill is
  reported to the model and the next cell runs in a fresh container;
* containers carry labels naming the kernel (host, pid, pid start time, session) and are removed
  on close, at interpreter exit, and by :func:`reap_orphans` (run when a sandbox starts) once
  their kernel is gone.

Only the ``docker`` command line is used (no SDK import), so opening a sandbox stays cheap.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from typing import IO, Any

from .._proc import pid_alive as _pid_alive
from .._proc import process_start as _process_start
from .base import SandboxError
from .local import WorkerSandbox
from .protocol import worker_path

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

#: Where things appear inside the container.
WORKER_IN_CONTAINER = "/opt/rlm/worker.py"
CONTEXT_IN_CONTAINER = "/opt/rlm/context"

_CHECKED: dict[str, float] = {}  # "daemon"/"image:NAME" -> when it was last found working
_CHECK_TTL_S = 300.0
_STARTED: set[str] = set()  # names of containers this process started and has not removed
_STARTED_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# docker CLI helpers


def docker_binary(docker: str | None = None) -> str:
    """Path of the ``docker`` client, or a :class:`SandboxError` saying how to get one."""
    path = shutil.which(docker or os.environ.get("RLM_DOCKER_BIN") or "docker")
    if not path:
        raise SandboxError(
            "the docker sandbox needs the `docker` command line, and none is on PATH: install "
            "Docker (Debian/Ubuntu: apt-get install docker.io) or use sandbox='local'")
    return path


def _docker(docker: str, *args: str, timeout: float = 30.0, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SandboxError(f"`docker {args[0]}` did not answer within {timeout:g} s; is the "
                           f"Docker daemon overloaded or stuck? (`docker info` tells)") from None
    except OSError as exc:
        raise SandboxError(f"cannot run {docker}: {exc}") from None
    if check and proc.returncode != 0:
        raise SandboxError(f"`docker {' '.join(args[:3])}` failed: "
                           f"{(proc.stderr or proc.stdout).strip()[:500]}")
    return proc


def check_daemon(docker: str | None = None) -> str:
    """The daemon's version; a :class:`SandboxError` with the fix when it does not answer."""
    docker = docker_binary(docker)
    proc = _docker(docker, "version", "--format", "{{.Server.Version}}", timeout=20,
                   check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        err = (proc.stderr or "").strip().splitlines()
        detail = err[-1] if err else "no answer"
        raise SandboxError(
            f"the Docker daemon is not reachable ({detail[:300]}). Start it "
            f"(`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd), "
            f"make sure this user may use it (the `docker` group, or DOCKER_HOST), or use "
            f"sandbox='local'")
    _CHECKED["daemon"] = time.monotonic()
    return proc.stdout.strip()


def check_image(image: str, docker: str | None = None) -> None:
    """Make sure ``image`` exists locally (we never pull: sandboxes must not need a registry)."""
    docker = docker_binary(docker)
    proc = _docker(docker, "image", "inspect", "--format", "{{.Id}}", image, check=False)
    if proc.returncode != 0:
        if image == DEFAULT_IMAGE:
            raise SandboxError(f"the Docker image {image!r} is not on this machine; "
                               f"{BUILD_HINT}")
        raise SandboxError(f"the Docker image {image!r} is not on this machine (sandboxes never "
                           f"pull): `docker pull {image}` or build it, or use the default image "
                           f"{DEFAULT_IMAGE!r}: {BUILD_HINT}")
    _CHECKED["image:" + image] = time.monotonic()


def _fresh(key: str) -> bool:
    return time.monotonic() - _CHECKED.get(key, -1e9) < _CHECK_TTL_S


def _hostname() -> str:
    return socket.gethostname()[:63]


def list_sandbox_containers(docker: str | None = None, session: str | None = None
                            ) -> list[dict[str, str]]:
    """Every container (running or not) labelled as ours: id, name, state and labels."""
    docker = docker_binary(docker)
    fmt = "\t".join(["{{.ID}}", "{{.Names}}", "{{.State}}",
                     f'{{{{.Label "{LABEL_HOST}"}}}}', f'{{{{.Label "{LABEL_PID}"}}}}',
                     f'{{{{.Label "{LABEL_PID_START}"}}}}', f'{{{{.Label "{LABEL_SESSION}"}}}}'])
    args = ["ps", "-a", "--no-trunc", "--filter", f"label={LABEL}"]
    if session:
        args += ["--filter", f"label={LABEL_SESSION}={session}"]
    args += ["--format", fmt]
    out = _docker(docker, *args).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 7:
            continue
        rows.append(dict(zip(("id", "name", "state", "host", "pid", "pid_start", "session"),
                             parts)))
    return rows


def reap_orphans(docker: str | None = None) -> list[str]:
    """Remove our containers whose kernel (on this host) is gone; return their names.

    Kernels that crash or are killed never run ``close()`` or ``atexit``; their containers
    would otherwise live until the worker notices its closed stdin (not at all when a cell is
    stuck in C code). Containers from other hosts sharing the daemon are left alone.
    """
    docker = docker_binary(docker)
    host = _hostname()
    dead = []
    for row in list_sandbox_containers(docker):
        if row["host"] != host:
            continue
        try:
            pid = int(row["pid"])
        except ValueError:
            pid = -1
        if not _pid_alive(pid, row["pid_start"]):
            dead.append(row)
    if dead:
        _docker(docker, "rm", "-f", *[r["id"] for r in dead], timeout=60, check=False)
    _remove_stale_context_dirs()
    return [r["name"] for r in dead]


_TMP_PREFIX = "rlm-docker-"


def _context_dir() -> str:
    """A private (0700) folder for one sandbox's context file, named after this kernel so the
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


def _remove_containers(docker: str, names: list[str]) -> None:
    if not names:
        return
    proc = _docker(docker, "rm", "-f", *names, timeout=60, check=False)
    gone = proc.returncode == 0 or "No such container" in proc.stderr \
        or "already in progress" in proc.stderr
    if gone:  # otherwise keep the names: atexit (or the reaper, next time) retries
        with _STARTED_LOCK:
            _STARTED.difference_update(names)


@atexit.register
def _remove_leftovers() -> None:  # pragma: no cover - runs at interpreter exit
    """Remove every container this process still has, in one call. atexit runs hooks in
    reverse order, so this runs just before local.py's hook closes the sandboxes themselves
    (which then finds nothing left to stop)."""
    with _STARTED_LOCK:
        names = sorted(_STARTED)
    if names:
        try:
            _remove_containers(docker_binary(), names)
        except Exception:
            pass


def default_memory_mb(context_bytes: int) -> int:
    """Container memory (RAM, no swap) sized to the context: the file's bytes, the decoded
    object (pandas can take several times the pickle), copies the model makes, and room for
    pandas/numpy themselves."""
    return int(max(1024, 512 + 6 * (context_bytes // (1024 * 1024))))


# --------------------------------------------------------------------------------------------
# the sandbox


class DockerSandbox(WorkerSandbox):
    """A persistent REPL in one long-lived, locked-down container. See the module docstring.

    Options (besides :func:`~rlm_jupyter.sandbox.open_sandbox`'s): ``image`` (default
    ``RLM_DOCKER_IMAGE`` or ``rlm-jupyter/python:bookworm``), ``cpus`` (1.0), ``pids_limit``
    (128), ``tmpfs_mb`` (64, the only writable place, ``/tmp``), ``python`` (the interpreter
    inside the image, "python3"), ``docker`` (the client binary), ``session_id`` (a label;
    default: random), plus the local backend's ``grace_s``, ``start_timeout_s``, ``limits``...
    ``memory_mb`` is the container's RAM limit (default: sized to the context).
    """

    kind = "docker"

    def __init__(self, context: Any = None, *args: Any, image: str | None = None,
                 cpus: float = 1.0, pids_limit: int = 128, tmpfs_mb: int = 64,
                 python: str = "python3", docker: str | None = None,
                 session_id: str | None = None, **kwargs: Any) -> None:
        self.image = image or os.environ.get("RLM_DOCKER_IMAGE") or DEFAULT_IMAGE
        self.cpus = float(cpus)
        self.pids_limit = int(pids_limit)
        self.tmpfs_mb = int(tmpfs_mb)
        self.python = python
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self._docker_bin = docker_binary(docker)
        self._proc: subprocess.Popen[bytes] | None = None
        self._container: str | None = None
        self._tmpdir: str | None = None
        self._context_file: str | None = None
        self._staged = False
        self._we_killed = False
        self._stderr_tail = b""
        self._spawn_count = 0
        if not _fresh("daemon"):
            check_daemon(self._docker_bin)
        if not _fresh("image:" + self.image):
            check_image(self.image, self._docker_bin)
        try:
            reap_orphans(self._docker_bin)
        except SandboxError:
            pass  # a failed clean-up must not stop the user's work
        super().__init__(context, *args, **kwargs)

    # ---- the context crosses once ---------------------------------------------------------

    def _stage_context(self) -> None:
        """Write the context to a private file once; the container mounts it read-only.

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
        self._tmpdir = _context_dir()
        self._context_file = os.path.join(self._tmpdir, "context")
        with open(self._context_file, "wb") as fh:
            fh.write(data)
        os.chmod(self._context_file, 0o644)  # readable by the container's `nobody`
        if self.memory_mb is None:
            self.memory_mb = default_memory_mb(len(data))
        del data
        self._context = {"none": None, "str": "", "bytes": b"", "json": None}.get(fmt, 0)
        if fmt == "json":  # pragma: no cover - encode_context never picks json today
            raise SandboxError("json contexts are not supported by the docker backend")

    def _start(self) -> None:
        if not self._staged:
            self._stage_context()
        if self.memory_mb is None:
            self.memory_mb = default_memory_mb(0)
        super()._start()

    def _context_path(self) -> str | None:
        return CONTEXT_IN_CONTAINER if self._context_file else None

    # ---- process life cycle -------------------------------------------------------------

    def _run_args(self, name: str) -> list[str]:
        mem = int(self.memory_mb or default_memory_mb(0))
        labels = {
            LABEL: "1",
            LABEL_HOST: _hostname(),
            LABEL_PID: str(os.getpid()),
            LABEL_PID_START: _process_start(os.getpid()),
            LABEL_SESSION: self.session_id,
        }
        args = [
            self._docker_bin, "run", "-i", "--rm", "--pull", "never", "--name", name,
            "--network", "none", "--read-only",
            "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={self.tmpfs_mb}m,mode=1777",
            "--memory", f"{mem}m", "--memory-swap", f"{mem}m",
            "--pids-limit", str(self.pids_limit), "--cpus", f"{self.cpus:g}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", "65534:65534", "--log-driver", "none", "--init",
            "--workdir", "/tmp", "--entrypoint", self.python,
            # The image's own environment is replaced where it matters; no host variable
            # ever crosses (docker run passes none unless asked).
            "--env", "HOME=/tmp", "--env", "TMPDIR=/tmp", "--env", "LANG=C.UTF-8",
            "--env", "OMP_NUM_THREADS=1", "--env", "OPENBLAS_NUM_THREADS=1",
            "--env", "MKL_NUM_THREADS=1", "--env", "NUMEXPR_MAX_THREADS=1",
            "--volume", f"{worker_path()}:{WORKER_IN_CONTAINER}:ro",
        ]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        if self._context_file:
            args += ["--volume", f"{self._context_file}:{CONTEXT_IN_CONTAINER}:ro"]
        args += [self.image, "-I", "-B", WORKER_IN_CONTAINER, "--stdio",
                 "--cpu-s", str(int(self.cpu_s)), "--nofile", "256"]
        return args

    def _spawn(self, context_bytes: int) -> tuple[IO[bytes], IO[bytes]]:
        if self._closed:
            # execute() may try to recover while another thread closes the sandbox.
            raise SandboxError("this sandbox was closed")
        self._spawn_count += 1
        name = f"rlm-sbx-{self.session_id}-{self._spawn_count}"
        with _STARTED_LOCK:
            _STARTED.add(name)
        self._container = name
        self._we_killed = False
        try:
            self._proc = subprocess.Popen(
                self._run_args(name), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise SandboxError(f"cannot run {self._docker_bin}: {exc}") from None
        self._stderr_tail = b""
        threading.Thread(target=self._drain_stderr, args=(self._proc,), daemon=True,
                         name="rlm-docker-stderr").start()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _kill(self) -> None:
        proc, name = self._proc, self._container
        reader, self._reader = self._reader, None
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        except Exception:
            pass
        if name is not None:
            if proc is not None and proc.poll() is None:
                self._we_killed = True
            # `docker rm -f` stops and removes the container itself; killing only the client
            # would leave it running.
            try:
                _remove_containers(self._docker_bin, [name])
            except SandboxError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    pass
        # Only now: closing a pipe that the reader thread is blocked on would wait for it.
        try:
            if reader is not None:
                reader.close()
        except Exception:
            pass
        if proc is not None:
            if proc.stderr is not None:
                try:
                    proc.stderr.close()
                except Exception:
                    pass

    def _death_reason(self) -> str:
        proc = self._proc
        if proc is None:
            return "no container"
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        tail = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        detail = f": {' | '.join(tail)[:500]}" if tail else ""
        if code == 137 and not self._we_killed:
            return (f"the container was killed, most likely because it ran out of memory "
                    f"(its limit is {self.memory_mb} MB; use less memory, or open the sandbox "
                    f"with a larger memory_mb)")
        if code == 125:
            return f"docker could not run the container{detail}"
        if code in (126, 127):
            return f"the image has no runnable {self.python!r}{detail}"
        if code > 128:  # --init reports a signal death of the worker as 128 + signal
            try:
                name = signal.Signals(code - 128).name
            except ValueError:
                name = f"signal {code - 128}"
            hint = {"SIGKILL": "killed", "SIGSEGV": "crashed in C code",
                    "SIGXCPU": "its CPU-time limit was reached", "SIGABRT": "aborted",
                    "SIGXFSZ": "it tried to write a file"}.get(name, "")
            return f"the worker died of {name}" + (f" ({hint})" if hint else "") + detail
        return f"exit code {code}{detail}"

    def _cleanup(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def container_name(self) -> str | None:
        """The current container's name (changes after a restart)."""
        return self._container
