"""Gemini behind the gateway, driven with the openai SDK, against a fake Gemini API.

The fake replays the unit tests' wire-format fixtures (``tests/unit/providers/fixtures/gemini``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess

FIXTURES = Path(__file__).parent.parent / "unit" / "providers" / "fixtures" / "gemini"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def events(name: str) -> list[bytes]:
    raw = (FIXTURES / "streams" / f"{name}.gemini.sse").read_bytes()
    return [e + b"\n\n" for e in raw.split(b"\n\n") if e.strip()]


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    root = upstream_server.url.removesuffix("/v1")
    process = GatewayProcess(
        f"""
[[providers]]
name = "google"
type = "gemini"
base_url = "{root}"
api_key = "gemini-secret"
models = ["gemini-*"]
"""
    )
    yield process
    process.cleanup()


def test_generate_content_is_translated_with_cached_and_thinking_tokens(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    answer = json.loads((FIXTURES / "responses" / "cached_usage.gemini.json").read_text())
    upstream.push(Reply(json=answer))
    raw = client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Summary of the cached document."
    assert completion.usage is not None and completion.usage.prompt_tokens == 10000
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 8000
    seen = upstream.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == "gemini-secret"
    assert seen.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert raw.http_response.json()["metadata"]["cost_usd"] is not None


def test_streamed_tool_calls_come_out_as_openai_tool_call_chunks(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(events=events("tool_calls")))
    stream = client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=USER,
        stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    finish = None
    indexes: set[int] = set()
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            indexes.update(call.index for call in choice.delta.tool_calls or [])
    assert finish == "tool_calls"
    assert indexes and min(indexes) == 0
    seen = upstream.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert seen.query == "alt=sse"


def test_blocked_prompt_is_a_400_not_a_502(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push(Reply(json={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini-2.5-flash", messages=USER)
    assert "SAFETY" in info.value.message
