"""Bare pass-through proxy on granian's RSGI interface + uvloop, 1 worker (no parsing,
no logging).

    python bench/passthrough/granian_rsgi.py --port 8002 --upstream http://127.0.0.1:9000

Forwards POST /v1/chat/completions body bytes to UPSTREAM/v1/chat/completions with one
pooled keep-alive aiohttp ClientSession and returns the upstream's bytes; SSE responses
are streamed through chunk by chunk. GET /health/live answers 200 for readiness checks.

granian runs the app in a worker process (forked from this one), so the RSS of this
target is the sum over the process tree.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
from granian import Granian
from granian.constants import Interfaces, Loops, RuntimeModes
from granian.log import LogLevels
from granian.rsgi import HTTPProtocol, Scope  # type: ignore[attr-defined]

JSON_HEADERS = [("content-type", "application/json")]
HEALTH_BODY = b'{"status":"ok"}'
NOT_FOUND_BODY = b'{"error":{"message":"not found"}}'


class PassThrough:
    """RSGI application: granian calls __rsgi_init__, then the object per request, then
    __rsgi_del__ at shutdown."""

    def __init__(self, upstream: str) -> None:
        self._url = upstream.rstrip("/") + "/v1/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        # Created lazily: aiohttp needs the running loop, which __rsgi_init__ does not have.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._session is not None:
            loop.run_until_complete(self._session.close())

    async def __call__(self, scope: Scope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":
            return
        if scope.method == "POST" and scope.path == "/v1/chat/completions":
            await self._chat_completions(scope, proto)
        elif scope.path == "/health/live":
            proto.response_bytes(200, JSON_HEADERS, HEALTH_BODY)
        else:
            proto.response_bytes(404, JSON_HEADERS, NOT_FOUND_BODY)

    async def _chat_completions(self, scope: Scope, proto: HTTPProtocol) -> None:
        body = await proto()
        session = self._session or self._new_session()
        headers = {"Content-Type": "application/json"}
        auth = scope.headers.get("authorization")
        if auth is not None:
            headers["Authorization"] = auth
        async with session.post(self._url, data=body, headers=headers) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/json")
            if not content_type.startswith("text/event-stream"):
                data = await upstream.read()
                proto.response_bytes(upstream.status, [("content-type", content_type)], data)
                return
            transport = proto.response_stream(
                upstream.status,
                [("content-type", content_type), ("cache-control", "no-cache")],
            )
            async for chunk in upstream.content.iter_any():
                await transport.send_bytes(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    app = PassThrough(args.upstream)

    def load_target(*_args: Any, **_kwargs: Any) -> PassThrough:
        return app

    server = Granian(
        target="bench.passthrough.granian_rsgi:app",  # informational: load_target is used
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        backlog=4096,
        log_level=LogLevels.warning,
        log_access=False,
        websockets=False,
    )
    server.serve(target_loader=load_target, wrap_loader=False)


if __name__ == "__main__":
    main()
