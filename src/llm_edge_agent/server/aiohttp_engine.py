"""The aiohttp engine: aiohttp's low-level server around the ``Dispatcher``.

aiohttp's low-level ``web.Server`` skips the Application router and middleware machinery.
``handler_cancellation=True`` makes a client that disconnects cancel its handler, which
closes the upstream request it was waiting on.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from ..observability.logs import get_logger
from ..pipeline.gateway import Gateway
from ..pipeline.responses import SSE, StreamingResponse
from .dispatch import Dispatcher, read_limited

SSE_HEADERS = {"Content-Type": SSE, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class AiohttpBody:
    __slots__ = ("_request", "content_length")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        self.content_length = request.content_length

    def read(self, limit: int) -> Awaitable[bytes]:
        content = self._request.content
        if self.content_length is not None:
            return content.read()  # the parser stops at Content-Length
        return read_limited(content.iter_any(), limit)


class HttpHandler:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def __repr__(self) -> str:
        return f"HttpHandler({self.dispatcher!r})"

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        result = await self.dispatcher.handle(
            request.method, request.path, request.headers, AiohttpBody(request)
        )
        if isinstance(result, StreamingResponse):
            return await self._write_stream(request, result)
        headers = result.headers
        headers["Content-Type"] = result.content_type
        response = web.Response(status=result.status, body=result.body, headers=headers)
        if result.settle is None:
            return response
        try:  # written here rather than by aiohttp after the return, to settle after it
            await response.prepare(request)
            await response.write_eof()
        finally:
            result.settle()
        return response

    @staticmethod
    async def _write_stream(
        request: web.BaseRequest, result: StreamingResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=result.status, headers={**result.headers, **SSE_HEADERS}
        )
        try:
            await response.prepare(request)
            async for chunk in result.chunks:
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, ClientConnectionResetError):
            pass  # the client left; aclose() below releases the upstream
        finally:
            await result.aclose()
        return response


class MetricsHandler:
    """The separate ``METRICS_PORT`` listener: ``/metrics`` only."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path not in ("/metrics", "/"):
            return web.Response(
                status=404,
                body=b'{"error":{"message":"only /metrics is served here","type":'
                b'"invalid_request_error","param":null,"code":"unknown_endpoint"}}',
                content_type="application/json",
            )
        result = await self.gateway.metrics_page()
        return web.Response(
            status=result.status, body=result.body, headers={"Content-Type": result.content_type}
        )


def create_server(dispatcher: Dispatcher) -> web.Server:
    return web.Server(HttpHandler(dispatcher), handler_cancellation=True, access_log=None)


def create_metrics_server(gateway: Gateway) -> web.Server:
    return web.Server(MetricsHandler(gateway), access_log=None)


async def start_metrics_listener(
    gateway: Gateway, host: str, port: int, *, quiet: bool = False
) -> web.ServerRunner | None:
    """The ``METRICS_PORT`` listener, or None when the port is taken (logged unless quiet)."""
    runner = web.ServerRunner(create_metrics_server(gateway))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=False).start()
    except OSError as exc:
        await runner.cleanup()
        if not quiet:
            get_logger().warning(
                f"metrics listener could not bind port {port}: {exc.strerror}; "
                "/metrics is still served on the main port",
                extra={"fields": {"metrics_port": port}},
            )
        return None
    return runner
