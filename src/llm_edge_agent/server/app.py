"""The HTTP server: aiohttp's low-level server around a ``Gateway`` (the only framework import).

aiohttp's low-level ``web.Server`` skips the Application router and middleware machinery;
paths are matched with one dict lookup. ``handler_cancellation=True`` makes a client that
disconnects cancel its handler, which closes the upstream request it was waiting on.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from ..errors import GatewayError, NotFoundError
from ..observability.logs import get_logger
from ..pipeline.context import RequestContext, request_ids
from ..pipeline.gateway import Gateway
from ..pipeline.responses import SSE, Response, StreamingResponse, error_response

Handler = Callable[[web.BaseRequest, RequestContext], Awaitable[Response | StreamingResponse]]

UNIMPLEMENTED = frozenset(
    {
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/v1/completions",
    }
)


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class HttpHandler:
    """Dispatches requests by (method, path) to the gateway and writes its responses."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._ids = request_ids()
        chat = self._chat
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": chat},
            "/chat/completions": {"POST": chat},
            "/v1/models": {"GET": self._models},
            "/models": {"GET": self._models},
            "/health": {"GET": self._health},
            "/health/ready": {"GET": self._ready},
            "/health/live": {"GET": self._live},
            "/metrics": {"GET": self._metrics},
        }

    def __repr__(self) -> str:
        return f"HttpHandler({self.gateway!r})"

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = RequestContext(request.headers, self._ids)
        try:
            methods = self._routes.get(request.path)
            if methods is None:
                methods = self._dynamic(request.path)
            handler = methods.get(request.method)
            if handler is None:
                if request.method == "HEAD" and "GET" in methods:
                    handler = methods["GET"]
                else:
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed on {request.path}; "
                        f"use {', '.join(sorted(methods))}"
                    )
            result = await handler(request, ctx)
        except GatewayError as error:
            result = self.gateway.reject(ctx, error)
        except Exception:
            get_logger().exception(
                "unhandled error", extra={"fields": {"request_id": ctx.request_id}}
            )
            result = error_response(
                GatewayError(
                    f"internal gateway error; see the gateway log for request {ctx.request_id}"
                ),
                ctx.response_headers(),
            )
        if isinstance(result, StreamingResponse):
            return await self._write_stream(request, result)
        headers = result.headers
        headers["Content-Type"] = result.content_type
        return web.Response(status=result.status, body=result.body, headers=headers)

    def _dynamic(self, path: str) -> dict[str, Handler]:
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix) and len(path) > len(prefix):
                return {"GET": self._models}
        if path in UNIMPLEMENTED:
            raise NotFoundError(
                f"{path} is not available in this version of llm-edge-agent",
                code="unknown_endpoint",
            )
        raise NotFoundError(f"no endpoint at {path}", code="unknown_endpoint")

    async def _write_stream(
        self, request: web.BaseRequest, result: StreamingResponse
    ) -> web.StreamResponse:
        headers = result.headers
        headers["Content-Type"] = SSE
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        response = web.StreamResponse(status=result.status, headers=headers)
        chunks = result.chunks
        assert isinstance(chunks, AsyncGenerator)
        try:
            await response.prepare(request)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, ClientConnectionResetError):
            pass  # the client left; closing the generator below releases the upstream
        finally:
            await chunks.aclose()
        return response

    # ------------------------------------------------------------------ endpoints

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        gateway = self.gateway
        length = request.content_length
        gateway.check_size(length)
        if length is not None:
            return await request.content.read()
        parts: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > gateway.max_body_bytes:
                raise gateway.too_large()
            parts.append(chunk)
        return b"".join(parts)

    async def _chat(
        self, request: web.BaseRequest, ctx: RequestContext
    ) -> Response | StreamingResponse:
        self.gateway.authenticate(ctx)
        raw = await self._read_body(request)
        return await self.gateway.chat_completions(ctx, raw)

    async def _models(self, request: web.BaseRequest, ctx: RequestContext) -> Response:
        self.gateway.authenticate(ctx)
        path = request.path
        model_id = path.split("/models/", 1)[1] if "/models/" in path else None
        return self.gateway.models(ctx, model_id)

    async def _health(self, request: web.BaseRequest, ctx: RequestContext) -> Response:
        return self.gateway.health()

    async def _ready(self, request: web.BaseRequest, ctx: RequestContext) -> Response:
        return self.gateway.ready()

    async def _live(self, request: web.BaseRequest, ctx: RequestContext) -> Response:
        return self.gateway.live()

    async def _metrics(self, request: web.BaseRequest, ctx: RequestContext) -> Response:
        return await self.gateway.metrics_page()


class MetricsHandler:
    """The separate ``METRICS_PORT`` listener: ``/metrics`` only."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path not in ("/metrics", "/"):
            return web.Response(
                status=404,
                body=NotFoundError("no endpoint here").to_json(),
                content_type="application/json",
            )
        result = await self.gateway.metrics_page()
        return web.Response(
            status=result.status, body=result.body, headers={"Content-Type": result.content_type}
        )


def create_server(gateway: Gateway) -> web.Server:
    return web.Server(HttpHandler(gateway), handler_cancellation=True, access_log=None)


def create_metrics_server(gateway: Gateway) -> web.Server:
    return web.Server(MetricsHandler(gateway), access_log=None)
