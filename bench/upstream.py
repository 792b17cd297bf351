"""A fast fake OpenAI-compatible upstream for benchmarks.

Raw asyncio Protocol on uvloop with a minimal HTTP/1.1 keep-alive parser, so that it is
never the bottleneck of a benchmark (it does well over 20k requests/s on one core).

    python bench/upstream.py --port 9000 [--latency-ms 0] [--chunk-interval-ms 0]

Routes:
    POST /v1/chat/completions  chat.completion JSON, or for "stream": true an SSE stream of
                               chat.completion.chunk events (+ a usage chunk when
                               stream_options.include_usage) and "data: [DONE]"
    GET  /v1/models            model list
    GET  /health/live          {"status": "ok"}
    GET  /stats                {"chat_completions": N}: requests answered so far, so a
                               harness can tell how many requests a cache kept away

Limits (fine for load generators and proxies, not a general HTTP server): no pipelined
requests with mixed delays, no Expect: 100-continue, request bodies up to 16 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import orjson
import uvloop

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

REPLY_PIECES = ("Hello! ", "This is a reply ", "from the fake upstream ", "used for benchmarks.")
REPLY_TEXT = "".join(REPLY_PIECES)
COMPLETION_TOKENS = 14

MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "bench"}
            for m in ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
        ],
    }
)
HEALTH_BODY = b'{"status":"ok"}'
NOT_FOUND_BODY = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
BAD_REQUEST_BODY = b'{"error":{"message":"invalid request","type":"invalid_request_error"}}'
TOO_LARGE_BODY = b'{"error":{"message":"request too large","type":"invalid_request_error"}}'

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large"}
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
)
SSE_END = b"data: [DONE]\n\n"


def json_response(status: int, body: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        REASONS.get(status, b"Error"),
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def decode_chunked(buf: bytes, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body from buf[start:]; None when it is incomplete."""
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            # Skip (empty) trailers up to the final CRLF.
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return None
        parts.append(buf[pos : pos + size])
        pos += size + 2


class Completions:
    """Builds chat.completion responses; shared by all connections."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.served = 0
        deltas: list[tuple[dict[str, str], str | None]] = [
            ({"role": "assistant", "content": ""}, None)
        ]
        deltas += [({"content": piece}, None) for piece in REPLY_PIECES]
        deltas.append(({}, "stop"))
        self._chunk_tails: dict[bool, list[bytes]] = {
            include_usage: [
                orjson.dumps(
                    {
                        "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}],
                        **({"usage": None} if include_usage else {}),
                    }
                )[1:]
                for d, f in deltas
            ]
            for include_usage in (False, True)
        }

    def handle(self, body: bytes, close: bool) -> list[bytes] | None:
        """Return the response as one or more writes, or None for a bad request."""
        try:
            req: Any = orjson.loads(body)
            model = str(req.get("model") or "gpt-4o-mini")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        self.served += 1
        cid = f"chatcmpl-bench{next(self._ids)}"
        created = int(time.time())
        prompt_tokens = max(1, len(body) // 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": prompt_tokens + COMPLETION_TOKENS,
        }
        if req.get("stream") is not True:
            out = orjson.dumps(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": REPLY_TEXT},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": "fp_bench",
                }
            )
            return [json_response(200, out, close)]
        options = req.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        # '{"id":...,"model":...,' + a pre-serialized '"choices":[...]}' per event.
        prefix = orjson.dumps(
            {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        )[:-1]
        events = [b"data: %s,%s\n\n" % (prefix, tail) for tail in self._chunk_tails[include_usage]]
        if include_usage:
            events.append(b'data: %s,"choices":[],"usage":%s}\n\n' % (prefix, orjson.dumps(usage)))
        events.append(SSE_END)
        writes = [http_chunk(e) for e in events]
        head = SSE_HEAD + (b"Connection: close\r\n\r\n" if close else b"\r\n")
        writes[0] = head + writes[0]
        writes[-1] += b"0\r\n\r\n"
        return writes


class AnthropicMessages:
    """Builds Anthropic Messages API answers (JSON, or the SSE event stream)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.served = 0
        self._deltas = [
            b"event: content_block_delta\ndata: "
            + orjson.dumps(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            + b"\n\n"
            for piece in REPLY_PIECES
        ]

    def handle(self, body: bytes, close: bool) -> list[bytes] | None:
        try:
            req: Any = orjson.loads(body)
            model = str(req.get("model") or "claude-sonnet-4-5")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        self.served += 1
        mid = f"msg_bench{next(self._ids)}"
        input_tokens = max(1, len(body) // 4)
        if req.get("stream") is not True:
            out = orjson.dumps(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": REPLY_TEXT}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": COMPLETION_TOKENS},
                }
            )
            return [json_response(200, out, close)]
        start = {
            "type": "message_start",
            "message": {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": COMPLETION_TOKENS},
        }
        events = [
            b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n",
            b"event: content_block_start\ndata: "
            b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
            b"\n\n",
            *self._deltas,
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            b"event: message_delta\ndata: " + orjson.dumps(delta) + b"\n\n",
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ]
        writes = [http_chunk(e) for e in events]
        head = SSE_HEAD + (b"Connection: close\r\n\r\n" if close else b"\r\n")
        writes[0] = head + writes[0]
        writes[-1] += b"0\r\n\r\n"
        return writes


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection."""

    def __init__(self, server: Upstream) -> None:
        self._server = server
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parse(self._buf + data if self._buf else data)
        except ValueError:  # malformed Content-Length or chunk size
            self._buf = b""
            self._reply([json_response(400, BAD_REQUEST_BODY, True)], True)

    def _parse(self, buf: bytes) -> None:
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._buf = b""
                    self._reply([json_response(413, TOO_LARGE_BODY, True)], True)
                    return
                break
            line_end = buf.find(b"\r\n", 0, end)
            request_line = buf[:end] if line_end < 0 else buf[:line_end]
            method, _, rest = request_line.partition(b" ")
            path, _, version = rest.partition(b" ")
            length = 0
            chunked = False
            close = version == b"HTTP/1.0"
            if line_end >= 0:
                for raw in buf[line_end + 2 : end].split(b"\r\n"):
                    name, _, value = raw.partition(b":")
                    lname = name.strip().lower()
                    if lname == b"content-length":
                        length = int(value)
                    elif lname == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif lname == b"connection":
                        close = value.strip().lower() == b"close"
            start = end + 4
            if chunked:
                decoded = decode_chunked(buf, start)
                if decoded is None:
                    break
                body, next_start = decoded
            else:
                if length > MAX_BODY:
                    self._buf = b""
                    self._reply([json_response(413, TOO_LARGE_BODY, True)], True)
                    return
                next_start = start + length
                if len(buf) < next_start:
                    break
                body = buf[start:next_start]
            buf = buf[next_start:]
            self._reply(self._server.route(method, path.partition(b"?")[0], body, close), close)
            if close:
                buf = b""
                break
        self._buf = buf

    def _reply(self, writes: list[bytes], close: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        server = self._server
        if server.latency == 0 and (server.chunk_interval == 0 or len(writes) == 1):
            transport.write(b"".join(writes) if len(writes) > 1 else writes[0])
            if close:
                transport.close()
            return
        loop = server.loop
        delay = server.latency
        if server.chunk_interval == 0:
            writes = [b"".join(writes)]
        for i, data in enumerate(writes):
            last = i == len(writes) - 1
            loop.call_later(delay, self._write_later, data, close and last)
            delay += server.chunk_interval

    def _write_later(self, data: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if close:
            transport.close()


class Upstream:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, latency_ms: float, chunk_interval_ms: float
    ) -> None:
        self.loop = loop
        self.latency = latency_ms / 1000.0
        self.chunk_interval = chunk_interval_ms / 1000.0
        self._completions = Completions()
        self._messages = AnthropicMessages()
        self._models = json_response(200, MODELS_BODY)
        self._health = json_response(200, HEALTH_BODY)
        self._routes: dict[tuple[bytes, bytes], Callable[[bytes, bool], list[bytes] | None]] = {
            (b"POST", b"/v1/chat/completions"): self._completions.handle,
            (b"POST", b"/chat/completions"): self._completions.handle,
            (b"POST", b"/v1/messages"): self._messages.handle,
            (b"GET", b"/v1/models"): self._static(self._models, MODELS_BODY),
            (b"GET", b"/models"): self._static(self._models, MODELS_BODY),
            (b"GET", b"/health/live"): self._static(self._health, HEALTH_BODY),
            (b"GET", b"/stats"): self._stats,
        }

    @staticmethod
    def _static(keep_alive: bytes, body: bytes) -> Callable[[bytes, bool], list[bytes] | None]:
        closing = json_response(200, body, True)

        def handler(_body: bytes, close: bool) -> list[bytes] | None:
            return [closing if close else keep_alive]

        return handler

    def _stats(self, _body: bytes, close: bool) -> list[bytes] | None:
        # Anthropic-dialect answers count too: "upstream calls" for the harness.
        served = self._completions.served + self._messages.served
        body = orjson.dumps({"chat_completions": served})
        return [json_response(200, body, close)]

    def route(self, method: bytes, path: bytes, body: bytes, close: bool) -> list[bytes]:
        handler = self._routes.get((method, path))
        if handler is None:
            return [json_response(404, NOT_FOUND_BODY, close)]
        writes = handler(body, close)
        if writes is None:
            return [json_response(400, BAD_REQUEST_BODY, close)]
        return writes


async def serve(host: str, port: int, latency_ms: float, chunk_interval_ms: float) -> None:
    loop = asyncio.get_running_loop()
    upstream = Upstream(loop, latency_ms, chunk_interval_ms)
    server = await loop.create_server(
        lambda: UpstreamProtocol(upstream), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before the response starts"
    )
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=0.0, help="delay between SSE events"
    )
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.latency_ms, args.chunk_interval_ms))


if __name__ == "__main__":
    main()
