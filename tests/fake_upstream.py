"""A fake OpenAI-compatible upstream: a real HTTP server on loopback, scripted by tests.

It runs its own event loop in a background thread so synchronous SDK tests can use it.
By default it answers like OpenAI (echoing the prompt, with usage, streaming when asked);
``push`` queues scripted replies (errors, delays, garbage, slow or cut streams) that are
used in order, one per request, before falling back to the default.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int = 200
    json: Any = None  # a body to send as JSON
    body: bytes | None = None  # raw body bytes (garbage, HTML, ...)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line
    events: list[bytes] | None = None  # SSE events, each sent as-is
    event_delay_s: float = 0.0
    cut_after: int | None = None  # abort the connection after this many events
    end_delay_s: float = 0.0  # after the last event ([DONE]), before the body ends


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: str = ""


def completion(request: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    messages = request.get("messages") or [{}]
    last = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
    text = content if content is not None else f"echo: {last}"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": request.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }


def embeddings(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request.get("input")
    items = (
        inputs
        if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs)
        else [inputs]
    )
    dims = request.get("dimensions") or 3
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1)] * dims}
            for i in range(len(items))
        ],
        "model": request.get("model", "fake"),
        "usage": {"prompt_tokens": 4 * len(items), "total_tokens": 4 * len(items)},
    }


def text_completion(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 1700000000,
        "model": request.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "text": f" after {request.get('prompt')}",
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def default_answer(path: str, request: dict[str, Any]) -> dict[str, Any]:
    if path.endswith("/embeddings"):
        return embeddings(request)
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return text_completion(request)
    return completion(request)


def sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def stream_events(
    request: dict[str, Any], words: tuple[str, ...] = ("Hello", " world")
) -> list[bytes]:
    model = request.get("model", "fake")
    events = [chunk(model, {"role": "assistant", "content": ""})]
    events += [chunk(model, {"content": w}) for w in words]
    events.append(chunk(model, {}, "stop"))
    options = request.get("stream_options") or {}
    if options.get("include_usage"):
        events.append(
            sse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
                }
            )
        )
    events.append(b"data: [DONE]\n\n")
    return events


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class FakeUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.completed_streams = 0
        # The delay of unscripted (default) replies; a test that sets it resets it with
        # ``reset()``. Scripted replies keep their own ``delay_s``.
        self.default_delay_s = 0.0
        self._replies: deque[Reply] = deque()
        self._handlers: dict[str, Callable[[dict[str, Any]], Reply]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")

    def __repr__(self) -> str:
        return f"FakeUpstream({self.url}, {len(self.requests)} requests)"

    # ------------------------------------------------------------------ scripting

    def push(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def reset(self) -> None:
        self._replies.clear()
        self.requests.clear()
        self.disconnects = 0
        self.completed_streams = 0
        self.default_delay_s = 0.0

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        return wait_until(predicate, timeout_s)

    # ------------------------------------------------------------------ server

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.requests.append(
            Recorded(
                request.method,
                request.raw_path.split("?", 1)[0],
                {k.lower(): v for k, v in request.headers.items()},
                body,
                request.query_string,
            )
        )
        reply = self._replies.popleft() if self._replies else Reply(delay_s=self.default_delay_s)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        request_body = body if isinstance(body, dict) else {}
        default = reply.json is None and reply.body is None and reply.status == 200
        if reply.events is not None or (default and request_body.get("stream")):
            events = reply.events if reply.events is not None else stream_events(request_body)
            return await self._stream(request, reply, events)
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        payload = (
            reply.json if reply.json is not None else default_answer(request.path, request_body)
        )
        return web.Response(
            status=reply.status,
            body=orjson.dumps(payload),
            headers={"Content-Type": "application/json", **reply.headers},
        )

    async def _stream(
        self, request: web.Request, reply: Reply, events: list[bytes]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=reply.status, headers={"Content-Type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        try:
            for i, event in enumerate(events):
                if reply.cut_after is not None and i >= reply.cut_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if reply.event_delay_s:
                    await asyncio.sleep(reply.event_delay_s)
                await response.write(event)
            if reply.end_delay_s:
                await asyncio.sleep(reply.end_delay_s)
            await response.write_eof()
            self.completed_streams += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response
