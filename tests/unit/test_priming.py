"""Holding a stream until its first content: ``has_content`` and ``prime``.

``prime`` reads a fake upstream stream through the real OpenAI pass-through decoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from llm_edge_agent.errors import UpstreamError, UpstreamTimeoutError
from llm_edge_agent.pipeline.priming import has_content, prime
from llm_edge_agent.providers.openai import PassthroughStream

ROLE = b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
CONTENT = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
MORE = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}\n\n'
FINISH = b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"
COMMENT = b": keep-alive\n\n"
ERROR = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'


class FakeStream:
    """An ``UpstreamStream``: the given parts, then an error, a stall, or the end."""

    def __init__(
        self,
        parts: list[bytes],
        *,
        error: BaseException | None = None,
        stall: asyncio.Event | None = None,
    ) -> None:
        self.status = 200
        self.headers: Mapping[str, str] = {"content-type": "text/event-stream"}
        self.parts = parts
        self.error = error
        self.stall = stall
        self.closed = False
        self.sent = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.sent += 1
            yield part
        if self.stall is not None:
            await self.stall.wait()
        if self.error is not None:
            raise self.error

    async def read(self) -> bytes:
        return b"".join(self.parts)

    def close(self) -> None:
        self.closed = True


def decoder(include_usage: bool = False) -> PassthroughStream:
    return PassthroughStream("p", include_usage)


# ------------------------------------------------------------------ has_content


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        pytest.param(
            b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n', False, id="role-only"
        ),
        pytest.param(ROLE, False, id="role-with-empty-content"),
        pytest.param(
            b'data: {"choices":[{"delta":{"role": "assistant", "content": ""}}]}\n\n',
            False,
            id="spaced-empty-content",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"content":null}}]}\n\n', False, id="null-content"
        ),
        pytest.param(CONTENT, True, id="content"),
        pytest.param(
            b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n', True, id="spaced-content"
        ),
        pytest.param(b'data: {"choices":[{"delta":{"content":"\\""}}]}\n\n', True, id="a-quote"),
        pytest.param(
            b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1",'
            b'"type":"function","function":{"name":"f","arguments":""}}]}}]}\n\n',
            True,
            id="tool-calls",
        ),
        pytest.param(FINISH, True, id="finish-reason"),
        pytest.param(
            b'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}\n\n',
            True,
            id="spaced-finish-reason",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"reasoning_content":"Let me think"}}]}\n\n',
            True,
            id="reasoning-content",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"reasoning_content":""}}]}\n\n',
            False,
            id="empty-reasoning-content",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"refusal":"I can\'t help with that"}}]}\n\n',
            True,
            id="refusal",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"refusal":null}}]}\n\n', False, id="null-refusal"
        ),
        pytest.param(b'data: {"choices":[{"text":"Once","index":0}]}\n\n', True, id="legacy-text"),
        pytest.param(USAGE, False, id="usage-only"),
        pytest.param(DONE, False, id="done"),
        pytest.param(COMMENT, False, id="comment"),
        pytest.param(ROLE + CONTENT, True, id="content-after-an-empty-one"),
        pytest.param(b'data: {"choices":[{"delta":{"content":"', False, id="marker-at-the-end"),
    ],
)
def test_has_content(chunk: bytes, expected: bool) -> None:
    assert has_content(chunk) is expected


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(
            b'data: {"choices":[{"delta":{"role":"assistant","content":"","tool_calls":null}}]}\n\n',
            id="null-tool-calls",
        ),
        pytest.param(
            b'data: {"choices":[{"delta":{"role":"assistant","content":"","tool_calls":[]}}]}\n\n',
            id="empty-tool-calls",
        ),
    ],
)
def test_a_role_chunk_with_no_tool_calls_is_no_content(chunk: bytes) -> None:
    """Some OpenAI-compatible servers write ``"tool_calls":null`` (or ``[]``) in every
    delta, the role chunk included; that is not "any tool_calls"."""
    assert has_content(chunk) is False


# ------------------------------------------------------------------ prime


@pytest.mark.asyncio
async def test_an_error_after_a_role_chunk_with_null_tool_calls_is_not_relayed() -> None:
    """The consequence for ``prime``: the role chunk ends priming, so an error event
    right after it would reach the client instead of causing a retry or failover."""
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":"","tool_calls":null}}]}\n\n'
    stream = FakeStream([role, ERROR])
    with pytest.raises(UpstreamError):
        await prime(stream, decoder(), "p", limit_s=5.0)


@pytest.mark.asyncio
async def test_bytes_before_the_first_content_are_held_and_the_rest_is_left() -> None:
    stream = FakeStream([COMMENT, ROLE, CONTENT, MORE, FINISH, DONE])
    primed = await prime(stream, decoder(), "p", limit_s=5.0)
    assert primed.held == [COMMENT, ROLE, CONTENT]
    assert not primed.ended
    assert primed.stream is stream
    assert stream.sent == 3  # nothing read beyond the first content
    rest = [chunk async for chunk in primed.chunks]
    assert rest == [MORE, FINISH, DONE]
    assert not stream.closed
    primed.close()
    assert stream.closed


@pytest.mark.asyncio
async def test_content_split_across_chunks_is_found_when_its_event_completes() -> None:
    body = ROLE + CONTENT + FINISH + DONE
    cut = len(ROLE) + CONTENT.index(b'"content":"') + 5  # inside the marker itself
    stream = FakeStream([body[:cut], body[cut : cut + 10], body[cut + 10 :]])
    primed = await prime(stream, decoder(), "p", limit_s=5.0)
    assert primed.held[0] == ROLE
    assert b"".join(primed.held).startswith(ROLE + CONTENT)
    assert not primed.ended


@pytest.mark.asyncio
async def test_content_fed_byte_by_byte() -> None:
    body = ROLE + CONTENT + FINISH + DONE
    stream = FakeStream([body[i : i + 1] for i in range(len(body))])
    primed = await prime(stream, decoder(), "p", limit_s=5.0)
    assert primed.held == [ROLE, CONTENT]
    assert stream.sent == len(ROLE) + len(CONTENT)


@pytest.mark.asyncio
async def test_an_error_event_before_content_raises() -> None:
    stream = FakeStream([ROLE, ERROR, CONTENT])
    with pytest.raises(UpstreamError) as raised:
        await prime(stream, decoder(), "p", limit_s=5.0)
    assert "overloaded" in raised.value.message
    assert raised.value.provider == "p"
    assert raised.value.retryable
    assert not stream.closed  # the caller closes it


@pytest.mark.asyncio
async def test_an_answer_that_ends_before_any_content_is_whole() -> None:
    stream = FakeStream([ROLE, USAGE, DONE])
    primed = await prime(stream, decoder(include_usage=False), "p", limit_s=5.0)
    assert primed.ended
    assert primed.held == [ROLE, DONE]  # the usage chunk the gateway asked for is dropped
    assert primed.decoder.usage is not None
    assert primed.decoder.usage.completion_tokens == 2


@pytest.mark.asyncio
async def test_an_answer_that_ends_before_content_keeps_asked_for_usage() -> None:
    stream = FakeStream([ROLE, USAGE, DONE])
    primed = await prime(stream, decoder(include_usage=True), "p", limit_s=5.0)
    assert primed.ended
    assert primed.held == [ROLE, USAGE, DONE]


@pytest.mark.asyncio
async def test_a_done_without_its_blank_line_still_ends_the_answer() -> None:
    stream = FakeStream([ROLE, b"data: [DONE]"])
    primed = await prime(stream, decoder(), "p", limit_s=5.0)
    assert primed.ended
    assert primed.held == [ROLE, DONE]


@pytest.mark.asyncio
async def test_a_stream_cut_before_content_raises() -> None:
    stream = FakeStream([COMMENT, ROLE])
    with pytest.raises(UpstreamError) as raised:
        await prime(stream, decoder(), "p", limit_s=5.0)
    assert "before it was complete" in raised.value.message
    assert raised.value.retryable


@pytest.mark.asyncio
async def test_a_transport_error_before_content_raises_it() -> None:
    error = UpstreamError("connection reset", provider="p")
    stream = FakeStream([ROLE], error=error)
    with pytest.raises(UpstreamError) as raised:
        await prime(stream, decoder(), "p", limit_s=5.0)
    assert raised.value is error


@pytest.mark.asyncio
async def test_no_content_within_the_limit_is_a_timeout() -> None:
    stream = FakeStream([ROLE], stall=asyncio.Event())
    with pytest.raises(UpstreamTimeoutError) as raised:
        await prime(stream, decoder(), "p", limit_s=0.01)
    assert raised.value.provider == "p"
    assert raised.value.status == 504
    assert raised.value.retryable


@pytest.mark.asyncio
async def test_no_bytes_at_all_within_the_limit_is_a_timeout() -> None:
    stream = FakeStream([], stall=asyncio.Event())
    with pytest.raises(UpstreamTimeoutError):
        await prime(stream, decoder(), "p", limit_s=0.01)
