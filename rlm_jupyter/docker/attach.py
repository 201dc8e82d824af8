"""A container's stdio over the Docker API's attach socket, as two binary file objects.

Why not the ``docker`` command line: a ``docker run -i`` client per sandbox is one more process,
one more copy of every byte, and cannot reach a daemon that does not share our filesystem
anyway. The SDK's ``attach_socket`` hands back the hijacked HTTP connection itself; this module
turns it into what :class:`~rlm_jupyter.sandbox.worker_sandbox.WorkerSandbox` expects from ``_spawn``:
a writer (the container's stdin) and a reader (its stdout).

The container runs without a TTY, so the daemon multiplexes stdout and stderr on the one
connection: each chunk comes after an 8-byte header (stream id, three zero bytes, a big-endian
32-bit length). :class:`AttachedStdio` strips the headers, hands stdout to a buffered reader (so
``readline(limit)`` works as on a pipe) and passes stderr to a callback (for crash messages).

The writer is the write end of a local pipe, not the connection: the host writes to a worker
with non-blocking ``os.write`` on ``writer.fileno()`` under a deadline (so a stuck worker never
hangs the kernel), and neither a TLS socket (``os.write`` would bypass the encryption), a
paramiko channel (its ``fileno`` is an event pipe) nor a plain socket whose other user, the
reader thread, expects blocking reads can take that. A small pump thread moves the bytes from
the pipe to the connection with ``sendall``; at the pipe's end it half-closes the connection,
so the worker reads the end of its input.

Standard library only; nothing here imports the SDK.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from typing import Any, Callable

#: Stream ids in a frame header (stdin is never sent back to us).
STDOUT, STDERR = 1, 2
_HEADER = 8


def raw_connection(sock: Any) -> Any:
    """The object that has ``recv``/``sendall``/``shutdown``.

    ``attach_socket`` returns a :class:`socket.SocketIO` over unix sockets and plain TCP (its
    ``_sock`` is the socket), the socket itself over TLS, and a paramiko channel over ssh://.
    """
    return sock._sock if isinstance(sock, socket.SocketIO) else sock


class AttachedStdio:
    """One attach connection, split into :attr:`writer` (stdin) and :attr:`reader` (stdout).

    Attach *before* the container starts: the HTTP client may already have buffered bytes that
    follow the upgrade response, and we read the socket below that buffer. Before start there
    is nothing to buffer, and the worker speaks only when spoken to.
    """

    def __init__(self, sock: Any, on_stderr: Callable[[bytes], None]) -> None:
        self._sock = sock  # keeps the HTTP response (and so the connection) referenced
        self._conn = raw_connection(sock)
        # requests leaves the client's timeout (60 s by default) on the socket: an idle REPL
        # between two cells must not read that as a dead worker.
        if hasattr(self._conn, "settimeout"):
            self._conn.settimeout(None)
        self._on_stderr = on_stderr
        self._closed = False
        self._close_lock = threading.Lock()
        #: Bytes passed on to the container's stdin so far (tests show what crossed).
        self.sent = 0
        pipe_r, pipe_w = os.pipe()
        self.writer: io.BufferedWriter = os.fdopen(pipe_w, "wb")
        self.reader = io.BufferedReader(_StdoutReader(self), buffer_size=64 * 1024)
        threading.Thread(target=self._pump, args=(pipe_r,), daemon=True,
                         name="rlm-docker-stdin").start()

    # ---- low level ------------------------------------------------------------------------

    def recv_into(self, view: memoryview) -> int:
        recv_into = getattr(self._conn, "recv_into", None)
        if recv_into is not None:
            return int(recv_into(view))
        data = self._conn.recv(len(view))  # paramiko channels have no recv_into
        view[:len(data)] = data
        return len(data)

    def recv_exact(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None at end of stream."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    def _pump(self, pipe_r: int) -> None:
        """Pipe -> connection until the host closes the writer or the connection fails.

        Closing the pipe's read end on the way out makes the host's next write fail with
        EPIPE, which it reports as a dead worker."""
        try:
            while True:
                data = os.read(pipe_r, 1 << 20)
                if not data:
                    self.close_stdin()
                    return
                self._conn.sendall(data)
                self.sent += len(data)
        except (OSError, ValueError, AttributeError):
            pass
        finally:
            os.close(pipe_r)

    def stderr(self, data: bytes) -> None:
        try:
            self._on_stderr(data)
        except Exception:  # pragma: no cover - a broken callback must not kill the reader
            pass

    # ---- closing --------------------------------------------------------------------------

    def close_stdin(self) -> None:
        """Half-close: the worker reads end of input and exits on its own."""
        shutdown = getattr(self._conn, "shutdown_write", None)  # paramiko
        try:
            if shutdown is not None:
                shutdown()
            else:
                self._conn.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Hang up both ways, then release the socket.

        ``shutdown`` wakes the reader thread blocked in ``recv`` (closing alone does not); that
        thread closes the reader itself at the end of the stream (closing it from here would
        wait for its lock, held during the read).
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._conn.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError):
            pass
        for closable in (self.writer, self._conn, self._sock):
            try:
                closable.close()
            except Exception:
                pass


class _StdoutReader(io.RawIOBase):
    """The container's stdout with the frame headers removed; stderr frames go aside."""

    def __init__(self, stdio: AttachedStdio) -> None:
        super().__init__()
        self._stdio = stdio
        self._left = 0  # stdout bytes still due in the current frame

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        while self._left == 0:
            header = self._stdio.recv_exact(_HEADER)
            if header is None:
                return 0
            size = int.from_bytes(header[4:8], "big")
            if header[0] == STDOUT:
                self._left = size
                continue
            data = self._stdio.recv_exact(size) if size else b""
            if data is None:
                return 0
            self._stdio.stderr(data)
        n = self._stdio.recv_into(view[:min(len(view), self._left)])
        self._left -= n
        return n
