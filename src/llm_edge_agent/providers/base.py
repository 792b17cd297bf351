"""The provider interface: pure translators between the client's dialect and a provider's.

A translator never touches sockets, clocks or loggers. ``encode_chat`` builds the bytes to
send, ``decode_chat`` turns a complete upstream body into an OpenAI ``chat.completion``,
``stream_decoder`` returns an incremental decoder fed raw upstream bytes that yields the
client's SSE bytes, and ``decode_error`` maps an upstream failure onto the error tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ..errors import UpstreamError
from ..models import ChatRequest
from ..pricing import TokenUsage


class UpstreamRequest:
    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:  # headers hold credentials: never shown
        return f"UpstreamRequest({self.method} {self.url}, {len(self.body)} bytes)"


class Completion:
    """A decoded non-streaming answer: the OpenAI body and what it cost in tokens."""

    __slots__ = ("body", "usage")

    def __init__(self, body: dict[str, Any], usage: TokenUsage | None) -> None:
        self.body = body
        self.usage = usage


class StreamDecoder(Protocol):
    """Fed upstream bytes in arbitrary chunks; returns client bytes (OpenAI SSE)."""

    usage: TokenUsage | None
    complete: bool  # the answer is whole (a finish reason was seen)
    ended: bool  # the upstream's end-of-stream marker was seen: nothing more will come
    error: UpstreamError | None

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes:
        """Upstream ended. Returns the remaining client bytes; raises ``UpstreamError`` when
        the stream was cut before its end (the caller turns that into an SSE error event)."""
        ...


@runtime_checkable
class HealthProbed(Protocol):
    """A translator that knows a free request proving its provider is up (the model list),
    for active health checks."""

    def health_request(self) -> UpstreamRequest: ...


class Translator(Protocol):
    def encode_chat(self, request: ChatRequest, model: str) -> UpstreamRequest: ...

    def decode_chat(self, body: bytes) -> Completion: ...

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder: ...

    def decode_error(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> UpstreamError: ...
