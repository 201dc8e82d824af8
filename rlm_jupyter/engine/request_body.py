"""The JSON body of a chat request, with the resent history encoded once.

A root call resends the whole conversation every turn, so encoding the body is O(history) per
turn: 0.15 ms for 80 short messages on the benchmark machine, the largest single piece of the
client's time against a fast server, and ten times that for a real history full of printed
output. Each message's JSON is kept, keyed by its content (a ``str`` caches its hash, so a
lookup does not rehash the text), and the body is joined from the pieces. The bytes are the
same as ``json.dumps`` would write, so a server cannot tell the difference.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

#: Kept across calls and runs of the process: the recent histories of the runs that are live.
MEMO_BYTES = 16 * 1024 * 1024


class MessageMemo:
    """Encoded ``{"role", "content"}`` messages, bounded by their total size; the oldest are
    dropped first."""

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pieces: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # content -> role, JSON
        self._size = 0
        self._lock = threading.Lock()

    def encode_all(self, messages: list[dict[str, Any]]) -> bytes:
        """The messages as a JSON array."""
        get = self._pieces.get
        pieces = []
        for message in messages:
            content = message.get("content")
            hit = get(content) if type(content) is str else None
            if hit is not None and hit[0] == message.get("role") and len(message) == 2:
                pieces.append(hit[1])
            else:
                pieces.append(self._encode(message))
        return b"[%s]" % b", ".join(pieces)

    def _encode(self, message: dict[str, Any]) -> bytes:
        piece = json.dumps(message).encode()
        role, content = message.get("role"), message.get("content")
        if len(message) != 2 or type(role) is not str or type(content) is not str:
            return piece  # tool calls, images...: not kept
        with self._lock:
            if content not in self._pieces:
                self._pieces[content] = (role, piece)
                self._size += len(piece)
                while self._size > self.max_bytes and self._pieces:
                    _, (_, dropped) = self._pieces.popitem(last=False)
                    self._size -= len(dropped)
        return piece

    def __len__(self) -> int:
        return len(self._pieces)


def chat_body(memo: MessageMemo, messages: list[dict[str, Any]], fields: dict[str, Any]) -> bytes:
    """``json.dumps({**fields, "messages": messages})`` as bytes, the messages from the memo.

    A single message (a sub-call's prompt, seen once) skips the memo: it would only push out
    history that will be sent again.
    """
    if len(messages) < 2:
        return json.dumps({**fields, "messages": messages}).encode()
    head = json.dumps(fields).encode()
    if head == b"{}":
        return b'{"messages": %s}' % memo.encode_all(messages)
    return b'%s, "messages": %s}' % (head[:-1], memo.encode_all(messages))
