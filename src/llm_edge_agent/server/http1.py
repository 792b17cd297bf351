"""HTTP/1.1 framing for the native engine: pure functions from a response to bytes.

Nothing here does I/O. ``native.py`` parses requests with httptools (llhttp) and writes
what these functions return.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from functools import cache
from http import HTTPStatus
from urllib.parse import unquote

SSE_HEADERS = "cache-control: no-cache\r\nx-accel-buffering: no\r\n"
LAST_CHUNK = b"0\r\n\r\n"


@cache
def status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


class DateHeader:
    """The ``date`` header line, formatted at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = ""

    def __repr__(self) -> str:
        return f"DateHeader({self._line.strip()!r})"

    def line(self, now: float | None = None) -> str:
        second = int(time.time() if now is None else now)
        if second != self._second:
            self._second = second
            self._line = f"date: {formatdate(second, usegmt=True)}\r\n"
        return self._line


def encode_head(
    status: int,
    headers: dict[str, str],
    fixed: str,
    *,
    content_type: str,
    content_length: int | None,
    chunked: bool = False,
    keep_alive: bool,
) -> bytes:
    """Status line and header block. ``fixed`` holds ready header lines (``date``, ...);
    a body is framed by ``content_length``, by chunks, or (neither) by closing."""
    if content_length is not None:
        framing = f"content-length: {content_length}\r\n"
    else:
        framing = "transfer-encoding: chunked\r\n" if chunked else ""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    close = "" if keep_alive else "connection: close\r\n"
    head = (
        f"{status_line(status)}{lines}content-type: {content_type}\r\n{framing}{fixed}{close}\r\n"
    )
    return head.encode("latin-1", "replace")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a ``transfer-encoding: chunked`` body (never the empty last one)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def request_path(target: bytes) -> str:
    """The decoded path of a request target: origin form (``/p?q``) or absolute form."""
    if not target.startswith(b"/"):
        scheme_end = target.find(b"://")
        if scheme_end < 0:
            return target.decode("latin-1")  # "*" or an authority: no route matches
        slash = target.find(b"/", scheme_end + 3)
        target = target[slash:] if slash >= 0 else b"/"
    path = target.partition(b"?")[0].partition(b"#")[0].decode("latin-1")
    if "%" in path:
        path = unquote(path)  # percent-escapes are UTF-8, as aiohttp and granian read them
    return path
