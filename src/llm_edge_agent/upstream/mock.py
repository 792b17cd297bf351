"""The built-in ``mock`` provider: an OpenAI-speaking transport with no network.

It answers deterministically from the prompt (the same request gives the same text),
reports realistic ``usage`` (about four characters a token), honours ``stream``, tools
and ``response_format``, and takes ``latency_ms`` and ``fail_rate`` so demos, CI and
benchmarks need no key.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from ..errors import UpstreamError
from ..providers.base import UpstreamRequest
from .base import Timeouts, UpstreamResponse

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
MAX_ECHO_CHARS = 200
_JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}
_SSE_HEADERS: Mapping[str, str] = {"content-type": "text/event-stream"}


def _tokens(text: str) -> int:
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def prompt_tokens(body: Mapping[str, Any]) -> int:
    total = 3
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += TOKENS_PER_MESSAGE + _tokens(_text_of(message.get("content")))
    for tool in body.get("tools") or ():
        total += _tokens(orjson.dumps(tool).decode())
    return total


def _tool_call(body: Mapping[str, Any], digest: str) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or [{}]
    if choice == "auto" and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    name = tools[0]["function"]["name"]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
    return {
        "id": f"call_{digest[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps({"query": "mock"}).decode()},
    }


def build_reply(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """(content, tool call or None, id digest) for a request: deterministic in the body."""
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    call = _tool_call(body, digest)
    if call is not None:
        return "", call, digest
    messages = body.get("messages") or []
    last = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            last = _text_of(message.get("content"))
            break
    echo = " ".join(last.split())[:MAX_ECHO_CHARS]
    text = f"This is a mock response to: {echo}" if echo else "This is a mock response."
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        text = orjson.dumps({"reply": text}).decode()
    return text, None, digest


def _usage(body: Mapping[str, Any], content: str, call: dict[str, Any] | None) -> dict[str, Any]:
    prompt = prompt_tokens(body)
    completion = _tokens(content) if call is None else _tokens(orjson.dumps(call).decode())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


DEFAULT_EMBEDDING_DIMENSIONS = 8


def embeddings_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic unit-length vectors derived from each input's hash."""
    inputs = body.get("input")
    if isinstance(inputs, str) or (
        isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
    ):
        inputs = [inputs]
    items = inputs if isinstance(inputs, list) else []
    dims = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
    data = []
    tokens = 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        tokens += _tokens(text)
        seed = hashlib.sha256(text.encode()).digest()
        raw = [(seed[j % len(seed)] - 127.5) for j in range(dims)]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        vector = [round(x / norm, 6) for x in raw]
        if body.get("encoding_format") == "base64":
            import base64
            import struct

            encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "mock"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def text_completion_body(body: Mapping[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    content = f" This is a mock completion of: {' '.join(text.split())[:MAX_ECHO_CHARS]}"
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return {
        "id": f"cmpl-mock-{digest[:20]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [{"index": 0, "text": content, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": _tokens(text),
            "completion_tokens": _tokens(content),
            "total_tokens": _tokens(text) + _tokens(content),
        },
    }


def completion_body(body: Mapping[str, Any]) -> dict[str, Any]:
    content, call, digest = build_reply(body)
    n = body.get("n") or 1
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if call is not None:
        message["tool_calls"] = [call]
    finish = "tool_calls" if call is not None else "stop"
    usage = _usage(body, content, call)
    usage["completion_tokens"] *= n
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-mock-{digest[:20]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "system_fingerprint": "fp_mock",
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ],
        "usage": usage,
    }


def stream_events(body: Mapping[str, Any]) -> list[bytes]:
    content, call, digest = build_reply(body)
    base = {
        "id": f"chatcmpl-mock-{digest[:20]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "system_fingerprint": "fp_mock",
    }
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    extra = {"usage": None} if include_usage else {}

    n = body.get("n") or 1

    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
        payload = {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
            **extra,
        }
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    events: list[bytes] = []
    for k in range(n):
        events.append(chunk({"role": "assistant", "content": ""}, index=k))
        if call is not None:
            events.append(chunk({"tool_calls": [{"index": 0, **call}]}, index=k))
        else:
            words = content.split(" ")
            for i, word in enumerate(words):
                events.append(chunk({"content": word if i == 0 else " " + word}, index=k))
        events.append(chunk({}, "tool_calls" if call is not None else "stop", index=k))
    if include_usage:
        usage = _usage(body, content, call)
        usage["completion_tokens"] *= n
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        events.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


class MockStream:
    __slots__ = ("_events", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], events: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self._events = events

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event

    async def read(self) -> bytes:
        return b"".join(self._events)

    def close(self) -> None:
        self._events = []


class MockTransport:
    def __init__(self, provider: str, latency_ms: float = 0.0, fail_rate: float = 0.0) -> None:
        self._provider = provider
        self._latency_s = latency_ms / 1000.0
        self._fail_rate = fail_rate

    def __repr__(self) -> str:
        return f"MockTransport({self._provider!r}, latency_ms={self._latency_s * 1000:g})"

    async def _prepare(self, request: UpstreamRequest, timeouts: Timeouts) -> dict[str, Any] | None:
        """The request body, or None to simulate a failure."""
        if self._latency_s:
            if self._latency_s > timeouts.total_s:
                await asyncio.sleep(timeouts.total_s)
                from ..errors import UpstreamTimeoutError

                raise UpstreamTimeoutError(
                    f"provider {self._provider!r} timed out", provider=self._provider
                )
            await asyncio.sleep(self._latency_s)
        if self._fail_rate and random.random() < self._fail_rate:
            return None
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("mock provider got a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise UpstreamError("mock provider got a body that is not a JSON object")
        return body

    @staticmethod
    def _failure() -> bytes:
        return orjson.dumps(
            {"error": {"message": "mock provider: simulated failure", "type": "server_error"}}
        )

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        if request.method == "GET":  # the model list: what active health checks ask for
            return UpstreamResponse(200, _JSON_HEADERS, b'{"object":"list","data":[]}')
        body = await self._prepare(request, timeouts)
        if body is None:
            return UpstreamResponse(500, _JSON_HEADERS, self._failure())
        if request.url.endswith("/embeddings"):
            answer = embeddings_body(body)
        elif request.url.endswith("/chat/completions"):
            answer = completion_body(body)
        else:
            answer = text_completion_body(body)
        return UpstreamResponse(200, _JSON_HEADERS, orjson.dumps(answer))

    async def open_stream(self, request: UpstreamRequest, timeouts: Timeouts) -> MockStream:
        body = await self._prepare(request, timeouts)
        if body is None:
            return MockStream(500, _JSON_HEADERS, [self._failure()])
        if request.url.endswith("/chat/completions"):
            return MockStream(200, _SSE_HEADERS, stream_events(body))
        answer = text_completion_body(body)  # a legacy completion, streamed in one chunk
        usage = answer.pop("usage")
        events = [b"data: " + orjson.dumps(answer) + b"\n\n"]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(
                b"data: " + orjson.dumps({**answer, "choices": [], "usage": usage}) + b"\n\n"
            )
        return MockStream(200, _SSE_HEADERS, [*events, b"data: [DONE]\n\n"])

    async def close(self) -> None:
        pass
