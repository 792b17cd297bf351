"""Anthropic behind the gateway, driven with the openai SDK, against a fake Messages API.

The fake upstream replays the Anthropic wire-format fixtures of the unit tests
(``tests/unit/providers/fixtures/anthropic``, checked against Anthropic's API reference).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess

FIXTURES = Path(__file__).parent.parent / "unit" / "providers" / "fixtures" / "anthropic"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def events(name: str) -> list[bytes]:
    raw = (FIXTURES / "streams" / f"{name}.anthropic.sse").read_bytes()
    return [e + b"\n\n" for e in raw.split(b"\n\n") if e.strip()]


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    root = upstream_server.url.removesuffix("/v1")
    process = GatewayProcess(
        f"""
[[providers]]
name = "claude"
type = "anthropic"
base_url = "{root}"
api_key = "sk-ant-secret"
models = ["claude-*"]
"""
    )
    yield process
    process.cleanup()


def test_completion_is_translated_both_ways_with_cached_token_cost(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    answer = json.loads((FIXTURES / "responses" / "text_cached_usage.anthropic.json").read_text())
    upstream.push(Reply(json=answer))
    raw = client.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", messages=USER, max_tokens=100
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello! How can I help?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 21 + 4000 + 1200
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4000
    # Sonnet 4.5: $3 input, $0.30 cache read, $3.75 cache write, $15 output per million.
    expected = (21 * 3 + 4000 * 0.30 + 1200 * 3.75 + 12 * 15) / 1e6
    assert raw.http_response.json()["metadata"]["cost_usd"] == pytest.approx(expected)
    seen = upstream.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-secret"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [{"role": "user", "content": "Hello"}]
    assert seen.body["max_tokens"] == 100


def test_streamed_parallel_tool_calls_keep_their_index_and_finish_as_tool_calls(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(events=events("tool_calls")))
    stream = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=USER,
        tools=[TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = call.id or entry["id"]
                entry["name"] = (call.function.name if call.function else None) or entry["name"]
                entry["arguments"] += (call.function.arguments if call.function else None) or ""
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"].startswith("toolu_") and calls[0]["name"] == "get_weather"
    assert usage is not None and usage.prompt_tokens == 472
    assert upstream.requests[-1].body["tools"][0]["input_schema"] == TOOL["function"]["parameters"]


def test_overloaded_anthropic_is_a_502_and_anthropic_beta_is_passed_on(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=529,
            json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    )
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=USER,
            extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
        )
    assert info.value.status_code == 502
    assert upstream.requests[-1].headers["anthropic-beta"] == "prompt-caching-2024-07-31"


def test_anthropic_rejection_keeps_its_status_and_message(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=400,
            json={
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "messages: too long"},
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=USER)
    assert "too long" in info.value.message
