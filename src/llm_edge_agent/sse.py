"""Server-sent events: an incremental parser shared by every translator that reads them."""

from __future__ import annotations


class SSEParser:
    """Server-sent events from arbitrary byte chunks: ``event:``/``data:`` fields, comments,
    LF, CRLF or CR line ends (https://html.spec.whatwg.org/multipage/server-sent-events.html).
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Complete events so far, as (event name, data)."""
        buf = self._buf + data if self._buf else data
        hold = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                buf, hold = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n")
        if end < 0:
            self._buf = buf + hold
            return []
        self._buf = buf[end + 1 :] + hold
        events: list[tuple[bytes, bytes]] = []
        for line in buf[:end].split(b"\n"):
            self._line(line, events)
        return events

    def flush(self) -> list[tuple[bytes, bytes]]:
        """At EOF: the last event even without its closing blank line."""
        events: list[tuple[bytes, bytes]] = []
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        if rest:
            self._line(rest, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[tuple[bytes, bytes]]) -> None:
        if not line:
            if self._data:
                events.append((self._event, b"\n".join(self._data)))
            self._event, self._data = b"", []
            return
        if line.startswith(b":"):
            return  # a comment (keep-alive)
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value
