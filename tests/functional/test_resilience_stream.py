"""Resilience of streams through the real gateway: a stream that fails before its first
token is retried or failed over invisibly; one that fails after it ends with an SSE error
event (INTERFACE §7); a slow first byte is hedged."""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from ..fake_upstream import FakeUpstream, Reply, chunk, sse, wait_until
from .resilience_harness import (
    USER,
    Edge,
    GatewayFactory,
    assert_error,
)

ERROR_EVENT = sse({"error": {"message": "model overloaded", "type": "server_error"}})


def read_stream(
    gateway: Edge, model: str = "ha", request_id: str | None = None
) -> tuple[str, str | None, str]:
    """Streams a completion with the SDK: (text, last finish_reason, provider header)."""
    headers = {"x-request-id": request_id} if request_id else {}
    with gateway.sdk() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=USER, stream=True, extra_headers=headers
        )
        assert raw.http_response.status_code == 200
        provider = raw.headers["x-llm-edge-provider"]
        text = ""
        finish = None
        for c in raw.parse():
            for choice in c.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    return text, finish, provider


def collect(stream: Iterable[ChatCompletionChunk], texts: list[str]) -> None:
    """Reads a stream to its end, keeping its text; no chunk may finish it."""
    for c in stream:
        for choice in c.choices:
            texts.append(choice.delta.content or "")
            assert choice.finish_reason is None


ROLE = chunk("primary-model", {"role": "assistant", "content": ""})


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=500, json={"error": {"message": "boom"}}),
        Reply(status=503, body=b"<html>Service Unavailable</html>"),
        Reply(events=[ERROR_EVENT]),
        Reply(events=[ROLE, ERROR_EVENT], event_delay_s=0.05),
        Reply(events=[ROLE, chunk("primary-model", {"content": "lost"})], cut_after=1),
        Reply(events=[b": keep-alive\n\n", ROLE]),  # ends without a word or [DONE]
    ],
    ids=["500", "503-html", "error-event", "error-after-role", "cut-after-role", "no-content"],
)
def test_stream_failing_before_its_first_token_fails_over_invisibly(
    make_gateway: GatewayFactory, upstream: FakeUpstream, backup: FakeUpstream, failure: Reply
) -> None:
    gateway = make_gateway(resilience="max_retries = 0")
    upstream.push(failure)
    text, finish, provider = read_stream(gateway, request_id="stream-failover")
    assert text == "Hello world"  # what the backup sent, and nothing of the primary's
    assert finish == "stop"
    assert provider == "backup"
    assert len(upstream.requests) == 1 and len(backup.requests) == 1
    assert backup.requests[0].body["stream"] is True
    line = gateway.access_line("stream-failover")
    assert line["status"] == 200 and line["provider"] == "backup"
    assert line["attempts"] == 2 and len(line["failovers"]) == 1
    assert wait_until(gateway.idle, 1.0), gateway.health()


def test_stream_failing_before_its_first_token_is_retried_on_the_same_target(
    make_gateway: GatewayFactory, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    gateway = make_gateway(resilience="max_retries = 2")
    upstream.push(Reply(events=[ROLE, ERROR_EVENT], event_delay_s=0.05), Reply(status=502, json={}))
    text, finish, provider = read_stream(gateway)
    assert (text, finish, provider) == ("Hello world", "stop", "primary")
    assert len(upstream.requests) == 3
    assert backup.requests == []


@pytest.mark.parametrize(
    "failure",
    [
        Reply(
            events=[
                chunk("primary-model", {"role": "assistant", "content": "Hel"}),
                chunk("primary-model", {"content": "lo"}),
                chunk("primary-model", {"content": " there"}),
                chunk("primary-model", {}, "stop"),
                b"data: [DONE]\n\n",
            ],
            event_delay_s=0.05,  # the content reaches the client before the cut
            cut_after=2,
        ),
        Reply(
            events=[
                chunk("primary-model", {"role": "assistant", "content": "Hel"}),
                chunk("primary-model", {"content": "lo"}),
                ERROR_EVENT,
            ],
            event_delay_s=0.05,
        ),
    ],
    ids=["cut", "error-event"],
)
def test_stream_failing_after_its_first_token_ends_with_an_sse_error_event(
    make_gateway: GatewayFactory, upstream: FakeUpstream, backup: FakeUpstream, failure: Reply
) -> None:
    gateway = make_gateway(resilience="max_retries = 2")
    upstream.push(failure)
    received: list[str] = []
    with gateway.sdk() as client:
        stream = client.chat.completions.create(model="ha", messages=USER, stream=True)
        with pytest.raises(openai.APIError):
            collect(stream, received)
    assert "".join(received) == "Hello"  # what was sent before the failure, and no more
    # Too late to retry or fail over: the client already has part of the answer.
    assert len(upstream.requests) == 1
    assert backup.requests == []

    # On the wire: the content, then one error event in the contract's shape, no [DONE].
    upstream.push(failure)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "ha", "messages": USER, "stream": True},
        timeout=15,
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    events = [e.removeprefix("data: ") for e in body.split("\n\n") if e.strip()]
    assert "[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert {"message", "type"} <= set(error) and error["message"]
    assert all("error" not in orjson.loads(e) for e in events[:-1])
    assert len(backup.requests) == 0
    assert wait_until(gateway.idle, 1.0), gateway.health()  # the broken streams' slots


def test_stream_hedge_answers_from_the_backup_when_the_primary_is_slow(
    make_gateway: GatewayFactory, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    gateway = make_gateway(resilience="max_retries = 0", route="hedge_after_ms = 100")
    upstream.push(Reply(delay_s=2))
    started = time.monotonic()
    text, finish, provider = read_stream(gateway)
    assert time.monotonic() - started < 1.0
    assert (text, finish, provider) == ("Hello world", "stop", "backup")
    assert len(upstream.requests) == 1 and len(backup.requests) == 1
    # The losing stream was cancelled and its slot released: the primary answers next.
    assert wait_until(gateway.idle, 1.0), gateway.health()
    assert read_stream(gateway)[2] == "primary"


def test_stream_timeout_header_bounds_the_wait_for_the_first_token(
    make_gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    gateway = make_gateway(resilience="max_retries = 2", primary_extra="timeout_s = 5")
    upstream.push(*[Reply(delay_s=1)] * 3)
    started = time.monotonic()
    response = gateway.http.post(
        "/v1/chat/completions",
        json={"model": "primary-model", "messages": USER, "stream": True},
        headers={"x-llm-edge-timeout-ms": "200"},
    )
    assert time.monotonic() - started < 0.7
    assert_error(response, 504)


def test_a_stream_holds_its_bulkhead_slot_until_it_ends(
    make_gateway: GatewayFactory, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    gateway = make_gateway(resilience="max_retries = 0", primary_extra="max_concurrency = 1")
    words = [chunk("primary-model", {"content": f"w{i}"}) for i in range(5)]
    upstream.push(
        Reply(
            events=[ROLE, *words, chunk("primary-model", {}, "stop"), b"data: [DONE]\n\n"],
            event_delay_s=0.1,
        )
    )
    text = ""
    with gateway.sdk() as client:
        stream = client.chat.completions.create(model="ha", messages=USER, stream=True)
        for i, c in enumerate(stream):
            text += "".join(choice.delta.content or "" for choice in c.choices)
            if i == 1:  # mid-stream, the primary's only slot is taken
                response = gateway.post()
                assert response.status_code == 200, response.text
                assert response.headers["x-llm-edge-provider"] == "backup"
    assert text == "w0w1w2w3w4"
    assert len(backup.requests) == 1
    assert wait_until(gateway.idle, 1.0), gateway.health()
    assert gateway.post().headers["x-llm-edge-provider"] == "primary"
