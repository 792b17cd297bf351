"""Framework-free responses: what the pipeline returns and ``server/`` writes out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from ..errors import GatewayError

JSON = "application/json"
SSE = "text/event-stream"


class Response:
    """A whole response. ``settle``, when set, accounts for the request (metrics, the log
    line): the server must call it once it has written the response, or failed to, so the
    client never waits for the bookkeeping."""

    __slots__ = ("body", "content_type", "headers", "settle", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = JSON,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        self.content_type = content_type
        self.settle = settle

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes)"


class StreamingResponse:
    """SSE: ``chunks`` yields the body. The server must always await ``aclose()`` when it is
    done with the response, whether it sent everything, the client left, or it never
    started: that releases the upstream and accounts for the request."""

    __slots__ = ("aclose", "chunks", "headers", "status")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        headers: dict[str, str],
        aclose: Callable[[], Awaitable[None]],
    ) -> None:
        self.status = 200
        self.chunks = chunks
        self.headers = headers
        self.aclose = aclose

    def __repr__(self) -> str:
        return "StreamingResponse(200)"


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    headers = headers if headers is not None else {}
    retry_after = getattr(error, "retry_after_s", None)
    if error.status == 429 and retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(error.status, error.to_json(), headers)


def sse_error_event(error: GatewayError) -> bytes:
    """An error after the stream started: a final ``data: {"error": ...}`` event."""
    return b"data: " + error.to_json() + b"\n\n"
