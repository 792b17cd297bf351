"""Bare pass-through proxy on aiohttp.web + uvloop (no parsing, no logging).

    python bench/passthrough/aiohttp_web.py --port 8001 --upstream http://127.0.0.1:9000

Forwards POST /v1/chat/completions body bytes to UPSTREAM/v1/chat/completions with one
pooled keep-alive ClientSession and returns the upstream's bytes; SSE responses are
streamed through chunk by chunk. GET /health/live answers 200 for readiness checks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
import uvloop
from aiohttp import web

SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM_KEY = web.AppKey("upstream", str)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    body = await request.read()
    headers = {"Content-Type": "application/json"}
    auth = request.headers.get("Authorization")
    if auth is not None:
        headers["Authorization"] = auth
    async with app[SESSION_KEY].post(app[UPSTREAM_KEY], data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            data = await upstream.read()
            return web.Response(
                status=upstream.status, body=data, headers={"Content-Type": content_type}
            )
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": content_type, "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(_request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def serve(host: str, port: int, upstream: str) -> None:
    app = web.Application()
    app[UPSTREAM_KEY] = upstream.rstrip("/") + "/v1/chat/completions"
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health/live", health)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        app[SESSION_KEY] = session
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.upstream))


if __name__ == "__main__":
    main()
