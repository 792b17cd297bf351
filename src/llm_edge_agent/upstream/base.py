"""The transport interface: send an ``UpstreamRequest``, get bytes back.

Two implementations: ``client.AiohttpTransport`` (the pooled session, real network) and
``mock.MockTransport`` (the built-in ``mock`` provider, no network).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from ..providers.base import UpstreamRequest


class Timeouts:
    __slots__ = ("connect_s", "idle_s", "total_s")

    def __init__(self, total_s: float, connect_s: float, idle_s: float) -> None:
        self.total_s = total_s  # whole request; for streams, time to the response headers
        self.connect_s = connect_s
        self.idle_s = idle_s  # longest silence between two chunks of a stream

    def shortened(self, deadline_s: float | None) -> Timeouts:
        if deadline_s is None or deadline_s >= self.total_s:
            return self
        return Timeouts(deadline_s, min(self.connect_s, deadline_s), min(self.idle_s, deadline_s))

    def __repr__(self) -> str:
        return f"Timeouts(total={self.total_s}, connect={self.connect_s}, idle={self.idle_s})"


class UpstreamResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class UpstreamStream(Protocol):
    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; raises ``UpstreamError`` subclasses on failure."""
        ...

    async def read(self) -> bytes:
        """The whole (error) body."""
        ...

    def close(self) -> None:
        """Release the connection; drops it when the body was not read to the end."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...

    async def open_stream(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamStream: ...

    async def close(self) -> None: ...
