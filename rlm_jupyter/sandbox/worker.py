"""The sandbox worker program: a REPL server for model-written code.

Runs as ``python3 -I -B worker.py --fds R,W`` (local backend) or ``--stdio`` (``docker run
-i``). Standard library only and Python >= 3.9, so any Python image can run it: the host ships
the policy (``policy.py``) and RestrictedPython as source inside the ``init`` message, and this
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
        self.max_message = 32 * MB
        self.landlock = 0

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
            raise ValueError("arguments to %s() are %d bytes; the limit is %d"
                             % (name, len(line), self.max_message))
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
                        "landlock": self.landlock})

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
    args = ap.parse_args(argv)

    apply_rlimits(args.memory_mb, args.cpu_s, args.nofile)
    landlock = apply_landlock(args.read_path) if args.landlock else 0
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
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
