"""Bare pass-through proxy: raw ASGI app on uvicorn with uvloop + httptools (no parsing,
no logging).

    python bench/passthrough/uvicorn_asgi.py --port 8003 --upstream http://127.0.0.1:9000

Forwards POST /v1/chat/completions body bytes to UPSTREAM/v1/chat/completions with one
pooled keep-alive aiohttp ClientSession and returns the upstream's bytes; SSE responses
are streamed through chunk by chunk. GET /health/live answers 200 for readiness checks.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
HEALTH_BODY = b'{"status":"ok"}'
NOT_FOUND_BODY = b'{"error":{"message":"not found"}}'


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self._url = upstream.rstrip("/") + "/v1/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["method"] == "POST" and scope["path"] == "/v1/chat/completions":
                await self._chat_completions(scope, receive, send)
            elif scope["path"] == "/health/live":
                await self._respond(send, 200, JSON_HEADERS, HEALTH_BODY)
            else:
                await self._respond(send, 404, JSON_HEADERS, NOT_FOUND_BODY)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
                self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _respond(
        send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            parts = [body]
            while message.get("more_body", False):
                message = await receive()
                parts.append(message.get("body", b""))
            body = b"".join(parts)
        headers = {"Content-Type": "application/json"}
        for name, value in scope["headers"]:
            if name == b"authorization":
                headers["Authorization"] = value.decode("latin-1")
        assert self._session is not None, "lifespan startup did not run"
        async with self._session.post(self._url, data=body, headers=headers) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/json")
            if not content_type.startswith("text/event-stream"):
                data = await upstream.read()
                await self._respond(
                    send, upstream.status, [(b"content-type", content_type.encode())], data
                )
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [
                        (b"content-type", content_type.encode()),
                        (b"cache-control", b"no-cache"),
                    ],
                }
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    uvicorn.run(
        PassThrough(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
