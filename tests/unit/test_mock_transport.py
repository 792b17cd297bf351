"""``llm_edge_agent.upstream.mock.MockTransport``: the built-in, network-free provider."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import UpstreamError
from llm_edge_agent.models import parse_chat_request
from llm_edge_agent.providers.base import UpstreamRequest
from llm_edge_agent.providers.openai import OpenAITranslator, PassthroughStream
from llm_edge_agent.upstream.base import Timeouts
from llm_edge_agent.upstream.mock import MockTransport

TIMEOUTS = Timeouts(total_s=5.0, connect_s=1.0, idle_s=1.0)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


def chat(prompt: str = "Hello there", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "mock-1", "messages": [{"role": "user", "content": prompt}]}
    body.update(fields)
    return body


def upstream(body: dict[str, Any]) -> UpstreamRequest:
    return UpstreamRequest("POST", "mock://chat/completions", {}, orjson.dumps(body))


async def complete(body: dict[str, Any], transport: MockTransport | None = None) -> dict[str, Any]:
    response = await (transport or MockTransport("mock")).send(upstream(body), TIMEOUTS)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    parsed: dict[str, Any] = orjson.loads(response.body)
    return parsed


async def stream(body: dict[str, Any]) -> list[bytes]:
    opened = await MockTransport("mock").open_stream(upstream({**body, "stream": True}), TIMEOUTS)
    assert opened.status == 200
    assert opened.headers["content-type"] == "text/event-stream"
    return [piece async for piece in opened.chunks()]


def payloads(events: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for raw in events:
        assert raw.startswith(b"data: ")
        assert raw.endswith(b"\n\n")
        data = raw[len(b"data: ") : -2]
        out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


def without_created(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "created"}


# --------------------------------------------------------------------------- replies


@pytest.mark.asyncio
async def test_equal_requests_get_equal_replies() -> None:
    first = await complete(chat("What is the capital of France?"))
    second = await complete(chat("What is the capital of France?"))
    assert without_created(first) == without_created(second)


@pytest.mark.asyncio
async def test_json_key_order_does_not_change_the_reply() -> None:
    body = chat("Same question")
    reordered = dict(reversed(list(body.items())))
    first = await complete(body)
    second = await complete(reordered)
    assert without_created(first) == without_created(second)


@pytest.mark.asyncio
async def test_different_prompts_get_different_replies() -> None:
    first = await complete(chat("Tell me about cats"))
    second = await complete(chat("Tell me about dogs"))
    assert first["choices"][0]["message"]["content"] != second["choices"][0]["message"]["content"]
    assert first["id"] != second["id"]


@pytest.mark.asyncio
async def test_reply_is_an_openai_chat_completion() -> None:
    body = await complete(chat("Hi"))
    assert body["object"] == "chat.completion"
    assert body["model"] == "mock-1"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert "Hi" in choice["message"]["content"]
    # the OpenAI translator accepts it
    decoded = OpenAITranslator("mock", "mock://", None).decode_chat(orjson.dumps(body))
    assert decoded.usage is not None
    assert decoded.usage.prompt_tokens == body["usage"]["prompt_tokens"]


@pytest.mark.asyncio
async def test_usage_is_realistic_and_grows_with_the_prompt() -> None:
    short = (await complete(chat("Hi")))["usage"]
    long = (await complete(chat("word " * 1000)))["usage"]
    for usage in (short, long):
        assert usage["prompt_tokens"] > 0
        assert usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert long["prompt_tokens"] > short["prompt_tokens"] + 900  # about four characters a token
    assert long["prompt_tokens"] < 5000 / 2


@pytest.mark.asyncio
async def test_completion_tokens_match_the_content_length() -> None:
    body = await complete(chat("x" * 150))
    content = body["choices"][0]["message"]["content"]
    tokens = body["usage"]["completion_tokens"]
    assert len(content) / 8 <= tokens <= len(content) / 2


@pytest.mark.asyncio
async def test_n_gives_n_choices_and_multiplies_completion_tokens() -> None:
    one = await complete(chat("Hi"))
    three = await complete(chat("Hi", n=3))
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert three["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    assert three["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]


@pytest.mark.asyncio
async def test_content_parts_are_read_as_the_prompt() -> None:
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this image"},
    ]
    body = await complete(chat(prompt="", messages=[{"role": "user", "content": parts}]))
    assert "Describe this image" in body["choices"][0]["message"]["content"]


@pytest.mark.asyncio
async def test_response_format_json_gives_parseable_json_content() -> None:
    for fmt in (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
    ):
        body = await complete(chat('Say "hi" in JSON', response_format=fmt))
        content = body["choices"][0]["message"]["content"]
        assert isinstance(orjson.loads(content), dict)


# --------------------------------------------------------------------------- tools


@pytest.mark.asyncio
async def test_tools_give_a_tool_call() -> None:
    body = await complete(chat("Weather in Paris?", tools=TOOLS))
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.asyncio
async def test_named_tool_choice_is_honoured() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    body = await complete(chat("What time is it?", tools=TOOLS, tool_choice=choice))
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"


@pytest.mark.asyncio
async def test_tool_choice_none_gives_text() -> None:
    body = await complete(chat("Weather?", tools=TOOLS, tool_choice="none"))
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]
    assert body["choices"][0]["message"]["content"]


@pytest.mark.asyncio
async def test_no_tool_call_after_a_tool_result_with_auto() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"},
    ]
    body = await complete(chat(messages=messages, tools=TOOLS, tool_choice="auto"))
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert "21 degrees and sunny" in choice["message"]["content"]
    implicit = await complete(chat(messages=messages, tools=TOOLS))
    assert implicit["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- streaming


@pytest.mark.asyncio
async def test_stream_is_a_valid_openai_stream() -> None:
    events = await stream(chat("Stream me a reply", stream_options={"include_usage": True}))
    parsed = payloads(events)
    assert parsed[-1] == "[DONE]"
    chunks = parsed[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    # and the gateway's own decoder takes it whole
    decoder = PassthroughStream("mock", include_usage=True)
    out = b"".join(decoder.feed(e) for e in events) + decoder.finish()
    assert out == b"".join(events)
    assert decoder.complete is True
    assert decoder.error is None
    assert decoder.usage is not None


@pytest.mark.asyncio
async def test_streamed_deltas_concatenate_to_the_non_streamed_content() -> None:
    for prompt in ("Hi", "Tell me  a longer   story about a mock provider", "x" * 500):
        expected = (await complete(chat(prompt)))["choices"][0]["message"]["content"]
        chunks = payloads(await stream(chat(prompt)))[:-1]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == expected


@pytest.mark.asyncio
async def test_streamed_usage_equals_the_non_streamed_usage() -> None:
    body = chat("Count my tokens please", stream_options={"include_usage": True})
    usage = (await complete(body))["usage"]
    chunks = payloads(await stream(body))[:-1]
    assert chunks[-1]["usage"] == usage


@pytest.mark.asyncio
async def test_streamed_n_gives_n_choices_with_the_non_streamed_content_and_usage() -> None:
    body = chat("Two answers please", n=2, stream_options={"include_usage": True})
    whole = await complete(body)
    chunks = payloads(await stream(body))[:-1]
    texts: dict[int, str] = {}
    for c in chunks:
        for choice in c["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    assert texts == {c["index"]: c["message"]["content"] for c in whole["choices"]}
    assert chunks[-1]["usage"] == whole["usage"]


@pytest.mark.asyncio
async def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    chunks = payloads(await stream(chat("Hi")))[:-1]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


@pytest.mark.asyncio
async def test_stream_with_tools_gives_a_tool_call_delta() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    chunks = payloads(await stream(chat("Time?", tools=TOOLS, tool_choice=choice)))[:-1]
    calls = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(calls) == 1
    assert calls[0][0]["index"] == 0
    assert calls[0][0]["function"]["name"] == "get_time"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.asyncio
async def test_stream_read_returns_the_whole_body_and_close_empties_it() -> None:
    opened = await MockTransport("mock").open_stream(upstream(chat(stream=True)), TIMEOUTS)
    whole = await opened.read()
    assert whole.endswith(b"data: [DONE]\n\n")
    opened.close()
    assert [piece async for piece in opened.chunks()] == []


# --------------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_fail_rate_one_always_gives_status_500() -> None:
    transport = MockTransport("mock", fail_rate=1.0)
    for _ in range(50):
        response = await transport.send(upstream(chat()), TIMEOUTS)
        assert response.status == 500
        assert "error" in orjson.loads(response.body)
        opened = await transport.open_stream(upstream(chat(stream=True)), TIMEOUTS)
        assert opened.status == 500
        assert "error" in orjson.loads(await opened.read())


@pytest.mark.asyncio
async def test_failure_body_decodes_to_a_retryable_upstream_error() -> None:
    response = await MockTransport("mock", fail_rate=1.0).send(upstream(chat()), TIMEOUTS)
    error = OpenAITranslator("mock", "mock://", None).decode_error(
        response.status, response.body, response.headers
    )
    assert error.retryable is True
    assert error.status == 502
    assert "simulated failure" in error.message


@pytest.mark.asyncio
async def test_fail_rate_zero_never_fails() -> None:
    transport = MockTransport("mock", fail_rate=0.0)
    for _ in range(50):
        assert (await transport.send(upstream(chat()), TIMEOUTS)).status == 200


@pytest.mark.asyncio
async def test_a_body_that_is_not_json_is_an_upstream_error() -> None:
    transport = MockTransport("mock")
    with pytest.raises(UpstreamError):
        await transport.send(UpstreamRequest("POST", "mock://", {}, b"not json"), TIMEOUTS)
    with pytest.raises(UpstreamError):
        await transport.send(UpstreamRequest("POST", "mock://", {}, b"[1, 2]"), TIMEOUTS)


@pytest.mark.asyncio
async def test_the_translators_encoded_request_is_answered() -> None:
    request = parse_chat_request(orjson.dumps(chat("Through the translator", stream=True)))
    encoded = OpenAITranslator("mock", "mock://", None).encode_chat(request, "mock-2")
    opened = await MockTransport("mock").open_stream(encoded, TIMEOUTS)
    decoder = PassthroughStream("mock", request.include_usage)
    out = b"".join([decoder.feed(e) async for e in opened.chunks()]) + decoder.finish()
    assert decoder.usage is not None  # the translator forced include_usage on
    assert b'"choices":[]' not in out  # and the decoder hid it from this client
    assert b'"model":"mock-2"' in out
    assert out.endswith(b"data: [DONE]\n\n")


@pytest.mark.asyncio
async def test_close_is_a_no_op() -> None:
    transport = MockTransport("mock", latency_ms=0.0)
    await transport.close()
    assert "mock" in repr(transport)


# --------------------------------------------------------------------------- Timeouts


def test_timeouts_shortened_only_shortens() -> None:
    assert TIMEOUTS.shortened(None) is TIMEOUTS
    assert TIMEOUTS.shortened(10.0) is TIMEOUTS
    short = TIMEOUTS.shortened(0.5)
    assert (short.total_s, short.connect_s, short.idle_s) == (0.5, 0.5, 0.5)
    medium = TIMEOUTS.shortened(2.0)
    assert (medium.total_s, medium.connect_s, medium.idle_s) == (2.0, 1.0, 1.0)


@pytest.mark.asyncio
async def test_the_health_probe_is_answered_locally() -> None:
    translator = OpenAITranslator("mock", "http://mock.invalid/v1", None)
    response = await MockTransport("mock").send(
        translator.health_request(), Timeouts(1.0, 1.0, 1.0)
    )
    assert response.status == 200
    assert orjson.loads(response.body)["object"] == "list"
