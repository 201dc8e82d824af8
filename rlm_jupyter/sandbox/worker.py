"""The sandbox worker program: a REPL server for model-written code.

Runs as ``python3 -I -B worker.py --fds R,W`` (local backend) or ``--stdio`` (``docker run
-i``). Standard library only and Python >= 3.9, so any Python image can run it: the host ships
the policy (the ``policy/`` package) and RestrictedPython as source inside the ``init`` message, and this
program imports them from memory. See ``protocol.py`` for the wire format.

Order matters here: rlimits first, then the protocol streams, and only then the first byte of
input (the context and the code are untrusted input).
"""

import argparse
import importlib.abc
import importlib.util
import json
import os
import pickle
import signal
import sys

MB = 1024 * 1024


def apply_rlimits(memory_mb, cpu_s, nofile):
    """Hard resource limits, applied before any untrusted input is read."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return
    def setlim(which, soft, hard=None):
        if which is None:
            return
        hard = soft if hard is None else hard
        try:
            cur_soft, cur_hard = resource.getrlimit(which)
            if cur_hard != resource.RLIM_INFINITY:
                hard = min(hard, cur_hard)
                soft = min(soft, hard)
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass
    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_FSIZE, 0)
    if memory_mb:
        setlim(getattr(resource, "RLIMIT_AS", None), int(memory_mb) * MB)
    if cpu_s:
        setlim(resource.RLIMIT_CPU, int(cpu_s))
    if nofile:
        setlim(resource.RLIMIT_NOFILE, int(nofile))


def set_cell_cpu_limit(timeout):
    """Per cell, move the CPU soft limit to (used + timeout + slack): a last line of defence
    if the host's wall-clock deadline ever failed. The hard limit stays the session cap."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard == resource.RLIM_INFINITY:
            return
        used = resource.getrusage(resource.RUSAGE_SELF)
        used_s = used.ru_utime + used.ru_stime
        want = int(used_s + (timeout or 60) * 2 + 10)
        resource.setrlimit(resource.RLIMIT_CPU, (min(want, hard), hard))
    except Exception:
        pass


def apply_landlock(extra_read=()):
    """Linux Landlock: from here on this process may only *read* the Python installation and
    system libraries, may write nowhere, may not open TCP connections, and may not signal
    processes outside itself. Defence in depth for the local worker: if model code ever got
    past the policy, it still could not read your files or the kernel's /proc/<pid>/environ.

    Returns the Landlock ABI version applied, or 0 when the kernel does not offer it.
    """
    import ctypes
    import struct

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    create, add_rule, restrict = 444, 445, 446  # same numbers on every architecture
    abi = syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    fs_all = (1 << 13) - 1
    if abi >= 2:
        fs_all |= 1 << 13  # REFER
    if abi >= 3:
        fs_all |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs_all |= 1 << 15  # IOCTL_DEV
    read_dir = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE, READ_FILE, READ_DIR
    read_file = (1 << 0) | (1 << 2)
    if abi >= 6:
        attr = struct.pack("QQQ", fs_all, 3, 3)  # + deny TCP bind/connect, scope signals
    elif abi >= 4:
        attr = struct.pack("QQ", fs_all, 3)
    else:
        attr = struct.pack("Q", fs_all)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = syscall(create, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    paths = set()
    for p in list(sys.path) + [sys.prefix, sys.base_prefix, sys.exec_prefix,
                               sys.base_exec_prefix, os.path.dirname(sys.executable)] + \
            list(extra_read) + ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib",
                                "/usr/share/zoneinfo", "/etc/ld.so.cache", "/etc/localtime",
                                "/proc/cpuinfo", "/proc/meminfo", "/proc/self/",
                                "/proc/%d" % os.getpid(), "/sys/devices/system/cpu",
                                "/dev/null", "/dev/urandom"]:
        if p:
            paths.add(p)
            paths.add(os.path.realpath(p))
    try:
        for p in sorted(paths):
            try:
                fd = os.open(p, getattr(os, "O_PATH", 0) | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                is_dir = os.path.isdir(p)
                access = read_dir if is_dir else read_file
                if p == "/dev/null":
                    access = (1 << 1) | (1 << 2)  # WRITE_FILE, READ_FILE
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access & fs_all, fd), 12)
                syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(1), rule,
                        ctypes.c_uint32(0))
            finally:
                os.close(fd)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return 0
        if syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return int(abi)


# ---- process-level hardening (Linux): capabilities, seccomp, subreaper ---------------------------

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_SET_CHILD_SUBREAPER = 36
_CLONE_THREAD = 0x00010000

# Syscall numbers: (x86_64, aarch64). ``None``: the call does not exist on that architecture.
_SYSCALLS = {
    "fork": (57, None), "vfork": (58, None), "clone": (56, 220), "clone3": (435, 435),
    "execve": (59, 221), "execveat": (322, 281),
    "socket": (41, 198), "socketpair": (53, 199),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438), "pidfd_send_signal": (424, 424),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "move_mount": (429, 429),
    "open_tree": (428, 428), "fspick": (433, 433), "mount_setattr": (442, 442),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142),
    "open_by_handle_at": (304, 265),
}
# Refused outright (EPERM): new processes and programs, every socket family (and io_uring,
# which could open sockets past this filter), other processes' memory, namespaces and mounts,
# kernel keys, modules, BPF.
_DENIED = ("fork", "vfork", "execve", "execveat", "socket", "socketpair", "io_uring_setup",
           "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv",
           "process_vm_writev", "pidfd_getfd", "pidfd_send_signal", "tkill", "unshare",
           "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
           "move_mount", "open_tree", "fspick", "mount_setattr", "bpf", "perf_event_open",
           "userfaultfd", "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load",
           "init_module", "finit_module", "delete_module", "reboot", "open_by_handle_at")


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def seccomp_program(arch, pid):
    """The classic-BPF seccomp filter for this worker, as bytes (8 bytes per instruction).

    Threads stay possible (``clone`` with ``CLONE_THREAD``; ``clone3``, whose flags a filter
    cannot read, answers ENOSYS so the C library falls back to ``clone``); every other new
    process, every ``execve`` and every ``socket()`` of any family is refused with EPERM, and
    signals may only go to this process itself. Returns None on an architecture we do not know.
    """
    import struct
    arches = {"x86_64": (0, 0xC000003E), "amd64": (0, 0xC000003E),
              "aarch64": (1, 0xC00000B7), "arm64": (1, 0xC00000B7)}
    if arch not in arches:
        return None
    col, audit_arch = arches[arch]
    nr = {name: nums[col] for name, nums in _SYSCALLS.items() if nums[col] is not None}
    ld_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill_process = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | 1, 0x00050000 | 38
    arg0 = 16  # offsetof(struct seccomp_data, args[0]); the low 32 bits on little-endian
    prog = [
        (ld_abs, 0, 0, 4),                 # A = arch
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, kill_process),         # another ABI (i386 int 0x80 on x86_64): refuse
        (ld_abs, 0, 0, 0),                 # A = syscall number
    ]
    if col == 0:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]  # x32 ABI numbers
    for name in _DENIED:
        if name in nr:
            prog += [(jeq, 0, 1, nr[name]), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 1, nr["clone3"]), (ret, 0, 0, enosys)]
    # clone: a thread (CLONE_THREAD) is fine, a new process is not.
    prog += [(jeq, 0, 4, nr["clone"]), (ld_abs, 0, 0, arg0), (jset, 0, 1, _CLONE_THREAD),
             (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    # kill(pid, sig): only this process (or its own group, which holds only itself).
    prog += [(jeq, 0, 5, nr["kill"]), (ld_abs, 0, 0, arg0), (jeq, 2, 0, pid), (jeq, 1, 0, 0),
             (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    # tgkill(tgid, tid, sig): only threads of this process.
    prog += [(jeq, 0, 4, nr["tgkill"]), (ld_abs, 0, 0, arg0), (jeq, 1, 0, pid),
             (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    prog.append((ret, 0, 0, allow))
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def apply_seccomp():
    """Install the filter of :func:`seccomp_program` on this (still single-threaded) process.
    Returns 1 when it is in force, 0 when the platform or kernel does not offer it."""
    import ctypes
    libc = _libc()
    if libc is None:
        return 0
    code = seccomp_program(os.uname().machine.lower(), os.getpid())
    if code is None:
        return 0

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return 0
    if libc.prctl(_PR_SET_SECCOMP, 2, ctypes.addressof(prog), 0, 0) != 0:  # MODE_FILTER
        return 0
    return 1


def drop_capabilities():
    """Give up every capability (they matter when the worker runs as root: CAP_KILL,
    CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...). The bounding set first, so no later ``execve`` could
    regain them, then this thread's sets; threads started later inherit the empty sets.
    Returns 1 when the worker ends with no capability, else 0."""
    import ctypes
    libc = _libc()
    if libc is None:
        return 0
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability this kernel knows
    libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2): all empty
    try:
        if libc.capset(header, data) != 0:
            return 0
    except AttributeError:
        return 0
    try:
        with open("/proc/self/status") as fh:
            eff = [ln for ln in fh if ln.startswith("CapEff:")]
        return 1 if eff and int(eff[0].split()[1], 16) == 0 else 0
    except (OSError, ValueError, IndexError):
        return 1


def harden_process(seccomp=True):
    """Process-level defence in depth, applied after Landlock and before any input: become a
    child subreaper (orphans of anything this process started stay below it, for the host's
    sweep), drop capabilities, install the seccomp filter. Where seccomp is missing, a zero
    ``RLIMIT_NPROC`` stops forks for a non-root user (root is exempt from it). Returns what
    holds, for the ``ready`` message."""
    info = {"seccomp": 0, "caps_dropped": 0, "subreaper": 0}
    libc = _libc()
    if libc is None:
        return info
    import ctypes
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    info["subreaper"] = int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    info["caps_dropped"] = drop_capabilities()
    if seccomp:
        info["seccomp"] = apply_seccomp()
    if not info["seccomp"]:
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        except (ImportError, AttributeError, ValueError, OSError):
            pass
    return info


class MemoryImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from source strings the host sent (policy, RestrictedPython)."""

    def __init__(self, sources, packages):
        self.sources = dict(sources)
        self.packages = set(packages)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.sources:
            return None
        return importlib.util.spec_from_loader(fullname, self,
                                               is_package=fullname in self.packages)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        code = compile(self.sources[name], "<shipped %s>" % name, "exec")
        exec(code, module.__dict__)


class Channel:
    """JSON lines in both directions; raw payload bytes after a header (host -> worker)."""

    def __init__(self, rfd, wfd):
        self.rin = os.fdopen(rfd, "rb", buffering=1 << 20)
        self.wout = os.fdopen(wfd, "wb", buffering=1 << 16)

    def read(self):
        line = self.rin.readline()
        if not line:
            raise EOFError("host closed the channel")
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise ValueError("message is not an object")
        return msg

    def read_payload(self, n):
        chunks = []
        left = n
        while left > 0:
            chunk = self.rin.read(min(left, 64 * MB))
            if not chunk:
                raise EOFError("host closed the channel during the payload")
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def send(self, msg):
        data = json.dumps(msg, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        self.wout.write(data + b"\n")
        self.wout.flush()


def decode_context(fmt, data):
    if fmt in (None, "none"):
        return None
    if fmt == "str":
        return data.decode("utf-8", "surrogatepass")
    if fmt == "bytes":
        return data
    if fmt == "json":
        return json.loads(data)
    if fmt == "pickle":  # host -> worker only: the host is trusted, the worker is not
        return pickle.loads(data)
    raise ValueError("unknown context_format %r" % (fmt,))


class Worker:
    def __init__(self, chan):
        self.chan = chan
        self.repl = None
        self.call_id = 0
        self.max_message = 64 * MB
        self.landlock = 0
        self.hardening = {}
        self.raw_exec = False
        self.raw_ns = {}

    def host_call(self, name, args, kwargs):
        """Ask the host to run ``name``; wait for its reply. Raises in the cell on failure."""
        self.call_id += 1
        cid = self.call_id
        try:
            line = json.dumps({"op": "call", "id": cid, "fn": name, "args": args,
                               "kwargs": kwargs}, ensure_ascii=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError("arguments to %s() must be JSON-compatible (str, int, float, bool, "
                            "None, list, dict): %s" % (name, exc)) from None
        if len(line) > self.max_message:
            raise ValueError("arguments to %s() are %d bytes, over this sandbox's limit of %d "
                             "(four times the context, at least 64 MiB, so a runaway loop "
                             "cannot exhaust the kernel's memory): send fewer or smaller pieces "
                             "per call" % (name, len(line), self.max_message))
        self.chan.wout.write(line.encode("ascii") + b"\n")
        self.chan.wout.flush()
        while True:
            msg = self.chan.read()
            op = msg.get("op")
            if op == "reply" and msg.get("id") == cid:
                break
            if op == "shutdown":
                sys.exit(0)
        if msg.get("ok"):
            return msg.get("value")
        raise RuntimeError("%s() failed: %s" % (name, msg.get("error", "unknown error")))

    def init(self, msg):
        n = int(msg.get("payload") or 0)
        data = self.chan.read_payload(n) if n else b""
        if msg.get("context_path"):
            with open(msg["context_path"], "rb") as fh:
                data = fh.read()
        modules = msg.get("modules") or {}
        if modules:
            sys.meta_path.insert(0, MemoryImporter(modules, msg.get("packages") or []))
        self.max_message = int((msg.get("limits") or {}).get("max_message") or self.max_message)
        # Test-only: the host sets this (only when its own environment asks for it, see
        # local.py) to simulate code that already escaped the policy. Sandbox code cannot send
        # or change the init message, and without it the "raw_exec" op is refused.
        self.raw_exec = msg.get("test_raw_exec") is True
        try:
            import rlm_sandbox_policy as policy
        except ImportError:
            policy = None
        if policy is None:
            raise RuntimeError("the host did not send the sandbox policy (rlm_sandbox_policy)")
        restricted = policy.HAVE_RESTRICTED
        if not restricted and not msg.get("allow_unrestricted"):
            raise RuntimeError(
                "RestrictedPython cannot be loaded by this worker's Python %s (it needs >= 3.10); "
                "use a newer Python image, or allow_unrestricted=True to rely on the container "
                "alone" % sys.version.split()[0])
        fmt = msg.get("context_format", "none")
        context = decode_context(fmt, data)
        del data
        self.repl = policy.Repl(context=context, host_call=self.host_call,
                                functions=msg.get("functions") or [],
                                limits=msg.get("limits") or {}, strict=bool(msg.get("strict")),
                                restricted=restricted)
        del context
        self.chan.send({"op": "ready", "pid": os.getpid(),
                        "python": sys.version.split()[0], "restricted": restricted,
                        "landlock": self.landlock, **self.hardening})

    def run_raw(self, code):
        """Test-only (see ``raw_exec``): run ``code`` as plain Python in this process, with
        every OS-level restriction in force but no policy, as an escape would."""
        import io
        import traceback
        out = io.StringIO()
        old = sys.stdout
        sys.stdout = out
        error = None
        try:
            exec(compile(code, "<raw>", "exec"), self.raw_ns)
        except BaseException:  # noqa: B036 - report everything, SystemExit included
            error = traceback.format_exc(limit=3)[-4000:]
        finally:
            sys.stdout = old
        return {"stdout": out.getvalue()[-100000:], "error": error}

    def serve(self):
        first = self.chan.read()
        if first.get("op") != "init":
            self.chan.send({"op": "fatal", "error": "expected init, got %r" % first.get("op")})
            return 2
        try:
            self.init(first)
        except Exception as exc:
            self.chan.send({"op": "fatal", "error": "%s: %s" % (type(exc).__name__, exc)})
            return 2
        while True:
            try:
                msg = self.chan.read()
            except EOFError:
                return 0
            op = msg.get("op")
            mid = msg.get("id")
            if op == "exec":
                timeout = msg.get("timeout")
                set_cell_cpu_limit(timeout)
                res = self.repl.execute(
                    str(msg.get("code", "")), timeout,
                    on_start=lambda mid=mid: self.chan.send({"op": "running", "id": mid}))
                res.update(op="result", id=mid)
                self.chan.send(res)
            elif op == "get":
                self.chan.send({"op": "value", "id": mid,
                                "value": self.repl.get_variable(msg.get("name"))})
            elif op == "vars":
                self.chan.send({"op": "vars", "id": mid, "vars": self.repl.variables()})
            elif op == "get_json":  # a variable by value, as plain JSON (rlm_sandbox_values)
                import rlm_sandbox_values
                reply = rlm_sandbox_values.export(self.repl.ns, msg.get("name"),
                                                  int(msg.get("max_chars") or 1000000))
                self.chan.send(dict(reply, op="json_value", id=mid))
            elif op == "raw_exec":
                if not self.raw_exec:
                    self.chan.send({"op": "error", "id": mid, "error": "raw_exec is off"})
                else:
                    self.chan.send(dict(self.run_raw(str(msg.get("code", ""))),
                                        op="raw_result", id=mid))
            elif op == "ping":
                self.chan.send({"op": "pong", "id": mid})
            elif op == "shutdown":
                return 0
            else:
                self.chan.send({"op": "error", "id": mid, "error": "unknown op %r" % (op,)})


def main(argv=None):
    ap = argparse.ArgumentParser(description="rlm-jupyter sandbox worker")
    ap.add_argument("--stdio", action="store_true", help="speak the protocol on stdin/stdout")
    ap.add_argument("--fds", help="R,W: read host messages from fd R, write to fd W")
    ap.add_argument("--memory-mb", type=int, default=0)
    ap.add_argument("--cpu-s", type=int, default=0)
    ap.add_argument("--nofile", type=int, default=256)
    ap.add_argument("--landlock", action="store_true",
                    help="restrict file reads to the Python installation (Linux Landlock)")
    ap.add_argument("--read-path", action="append", default=[],
                    help="with --landlock: another directory the worker may read")
    ap.add_argument("--harden", action="store_true",
                    help="drop capabilities and become a child subreaper (Linux)")
    ap.add_argument("--seccomp", action="store_true",
                    help="with --harden: refuse new processes, execve and sockets (seccomp)")
    args = ap.parse_args(argv)

    apply_rlimits(args.memory_mb, args.cpu_s, args.nofile)
    landlock = apply_landlock(args.read_path) if args.landlock else 0
    hardening = harden_process(seccomp=args.seccomp) if args.harden else {}
    for sig in ("SIGXFSZ", "SIGINT"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), signal.SIG_IGN)

    if args.stdio:
        rfd, wfd = os.dup(0), os.dup(1)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # stray prints (C level included) go to stderr, not into the protocol
        os.close(devnull)
    elif args.fds:
        rfd, wfd = (int(x) for x in args.fds.split(","))
    else:
        ap.error("give --stdio or --fds R,W")
        return 2
    sys.stdout = sys.stderr
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 2000))
    worker = Worker(Channel(rfd, wfd))
    worker.landlock = landlock
    worker.hardening = hardening
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
