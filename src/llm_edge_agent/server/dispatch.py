"""Request dispatch shared by every HTTP server engine: (method, path) to a gateway endpoint.

An engine adapter (``aiohttp_engine``, ``rsgi``) turns its request into a ``Body`` and a
header mapping, calls ``Dispatcher.handle`` and writes the ``Response`` or
``StreamingResponse`` it gets back. Nothing here imports a server framework.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Protocol

from ..errors import GatewayError, NotFoundError, PayloadTooLargeError
from ..observability.logs import get_logger
from ..pipeline.context import RequestContext, request_ids
from ..pipeline.gateway import Gateway
from ..pipeline.responses import Response, StreamingResponse, error_response

UNIMPLEMENTED = frozenset({"/v1/messages", "/v1/messages/count_tokens", "/v1/responses"})


class Body(Protocol):
    """The request body as an engine provides it."""

    content_length: int | None

    def read(self, limit: int) -> Awaitable[bytes]:
        """The whole body; raise ``PayloadTooLargeError`` past ``limit`` bytes."""
        ...


def body_too_large(limit: int) -> PayloadTooLargeError:
    """A body of unknown length that went past ``limit`` bytes."""
    return PayloadTooLargeError(
        f"request body exceeds the limit of {limit} bytes (limits.max_body_bytes)"
    )


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """A body of unknown length (chunked), cut off with a 413 past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, config, tables) out of the cyclic collector's
    reach: full collections then walk only what requests created since (measured: ~5%
    more L1 hits a second on one core)."""
    gc.collect()
    gc.freeze()


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


Result = Response | StreamingResponse
Handler = Callable[[str, RequestContext, Body], Awaitable[Result]]
# A route is a handler, or the name of a pipeline endpoint ("chat", ...), which
# ``handle`` runs inline: one coroutine less on the path every completion takes.
Route = Handler | str


class Dispatcher:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._ids = request_ids()
        self._routes: dict[str, dict[str, Route]] = {
            "/v1/chat/completions": {"POST": "chat"},
            "/chat/completions": {"POST": "chat"},
            "/v1/embeddings": {"POST": "embeddings"},
            "/embeddings": {"POST": "embeddings"},
            "/v1/completions": {"POST": "completions"},
            "/completions": {"POST": "completions"},
            "/v1/models": {"GET": self._models},
            "/models": {"GET": self._models},
            "/health": {"GET": self._health},
            "/health/ready": {"GET": self._ready},
            "/health/live": {"GET": self._live},
            "/metrics": {"GET": self._metrics},
        }

    def __repr__(self) -> str:
        return f"Dispatcher({self.gateway!r})"

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: Body
    ) -> Result:
        ctx = RequestContext(headers, self._ids)
        try:
            methods = self._routes.get(path)
            if methods is None:
                methods = self._dynamic(path)
            handler = methods.get(method)
            if handler is None:
                if method == "HEAD" and "GET" in methods:
                    handler = methods["GET"]
                else:
                    raise MethodNotAllowed(
                        f"{method} is not allowed on {path}; use {', '.join(sorted(methods))}"
                    )
            if isinstance(handler, str):
                gateway = self.gateway
                gateway.authenticate(ctx)
                gateway.check_size(body.content_length)
                raw = await body.read(gateway.max_body_bytes)
                return await gateway.pipeline(handler).handle(ctx, raw)
            return await handler(path, ctx, body)
        except GatewayError as error:
            return self.gateway.reject(ctx, error)
        except Exception:
            get_logger().exception(
                "unhandled error", extra={"fields": {"request_id": ctx.request_id}}
            )
            return error_response(
                GatewayError(
                    f"internal gateway error; see the gateway log for request {ctx.request_id}"
                ),
                ctx.response_headers(),
            )

    def _dynamic(self, path: str) -> dict[str, Route]:
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix) and len(path) > len(prefix):
                return {"GET": self._models}
        if path in UNIMPLEMENTED:
            raise NotFoundError(
                f"{path} is not available in this version of llm-edge-agent",
                code="unknown_endpoint",
            )
        raise NotFoundError(f"no endpoint at {path}", code="unknown_endpoint")

    # ------------------------------------------------------------------ endpoints

    async def _models(self, path: str, ctx: RequestContext, body: Body) -> Result:
        self.gateway.authenticate(ctx)
        model_id = path.split("/models/", 1)[1] if "/models/" in path else None
        return self.gateway.models(ctx, model_id)

    async def _health(self, path: str, ctx: RequestContext, body: Body) -> Result:
        return self.gateway.health()

    async def _ready(self, path: str, ctx: RequestContext, body: Body) -> Result:
        return self.gateway.ready()

    async def _live(self, path: str, ctx: RequestContext, body: Body) -> Result:
        return self.gateway.live()

    async def _metrics(self, path: str, ctx: RequestContext, body: Body) -> Result:
        return await self.gateway.metrics_page()
