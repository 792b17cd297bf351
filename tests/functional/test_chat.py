"""Chat completions through the real gateway, driven by the official ``openai`` SDK."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionMessageToolCallParam

from ..fake_upstream import FakeUpstream, Reply, chunk, sse
from ..gateway_process import GatewayProcess
from .conftest import UPSTREAM_KEY

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]


def test_completion_passes_through_with_metadata_and_headers(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: Say hi"
    assert completion.usage is not None and completion.usage.total_tokens == 17
    assert raw.headers["x-llm-edge-provider"] == "fake"
    assert raw.headers["x-llm-edge-cache"] == "bypass"  # the cache is off here
    assert len(raw.headers["x-request-id"]) >= 16
    assert float(raw.headers["x-llm-edge-overhead-ms"]) >= 0
    body = json.loads(raw.http_response.text)
    meta = body["metadata"]
    assert meta["provider"] == "fake" and meta["cached"] is False and meta["cache_tier"] is None
    assert meta["latency_ms"] > 0
    # gpt-4o: 10 fresh + 2 cached prompt tokens, 5 completion tokens.
    assert abs(meta["cost_usd"] - (10 * 2.5 + 2 * 1.25 + 5 * 10.0) / 1e6) < 1e-12


def test_provider_key_replaces_client_key_and_unknown_fields_pass_through(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        seed=7,
        extra_body={"vendor_knob": {"depth": 3}, "top_k": 5},
    )
    seen = upstream.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "sk-client" not in json.dumps(seen.headers)
    assert seen.body["vendor_knob"] == {"depth": 3}
    assert seen.body["top_k"] == 5 and seen.body["seed"] == 7
    assert seen.body["model"] == "gpt-4o"


def test_client_request_id_is_echoed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=USER,
        extra_headers={"x-request-id": "trace-abc-123"},
    )
    assert raw.headers["x-request-id"] == "trace-abc-123"


def test_stream_yields_text_and_hides_usage_the_client_did_not_ask_for(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway asked the upstream for usage so it can account for the stream.
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_with_include_usage_ends_with_usage_chunk(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 14
    assert chunks[-1].choices == []


def test_stream_response_headers(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    import httpx

    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": USER, "stream": True},
    ) as response:
        body = response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-llm-edge-provider"] == "fake"
    assert response.headers["x-llm-edge-cache"] == "bypass"  # the cache is off here
    assert "x-request-id" in response.headers and "x-llm-edge-overhead-ms" in response.headers
    assert body.rstrip().endswith(b"data: [DONE]")


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tool_calls_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    calls: list[ChatCompletionMessageToolCallParam] = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    upstream.push(
        Reply(
            json={
                "id": "chatcmpl-t",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "tool_calls": calls},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
            }
        )
    )
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        tools=[TOOL],
        tool_choice="auto",
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert [c.function.arguments for c in message.tool_calls] == [
        '{"city":"Oslo"}',
        '{"city":"Rome"}',
    ]
    assert upstream.requests[-1].body["tools"] == [TOOL]
    # The tool results go back up untouched.
    client.chat.completions.create(
        model="gpt-4o",
        messages=[
            *USER,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        ],
        tools=[TOOL],
    )
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[1]["tool_calls"] == calls


def test_streamed_tool_call_deltas_pass_through(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            events=[
                chunk("gpt-4o", {"role": "assistant", "content": None}),
                chunk(
                    "gpt-4o",
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                ),
                chunk(
                    "gpt-4o", {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}
                ),
                chunk(
                    "gpt-4o", {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}
                ),
                chunk("gpt-4o", {}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        )
    )
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        tools=[TOOL],
        stream=True,
    )
    arguments = ""
    finish = None
    for c in stream:
        for choice in c.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert arguments == '{"city":"Oslo"}'
    assert finish == "tool_calls"


def test_response_format_reaches_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    }
    upstream.push(Reply(json={**_completion_with('{"a": 1}')}))
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        response_format=schema,
    )
    assert json.loads(completion.choices[0].message.content or "") == {"a": 1}
    assert upstream.requests[-1].body["response_format"] == schema


def _completion_with(content: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-j",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def test_images_and_n_and_stop_pass_through(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    client.chat.completions.create(model="gpt-4o", messages=messages, n=2, stop=["END"])
    body = upstream.requests[-1].body
    assert body["messages"] == messages and body["n"] == 2 and body["stop"] == ["END"]


def test_route_alias_fails_over_to_the_next_target(
    client: openai.OpenAI, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    upstream.push(Reply(status=500, json={"error": {"message": "boom"}}))
    raw = client.chat.completions.with_raw_response.create(model="ha", messages=USER)
    assert raw.headers["x-llm-edge-provider"] == "backup"
    assert raw.parse().choices[0].message.content == "echo: Say hi"
    assert upstream.requests[-1].body["model"] == "fake-primary"
    assert backup.requests[-1].body["model"] == "backup-model"


def test_stream_that_fails_before_starting_fails_over(
    client: openai.OpenAI, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    upstream.push(Reply(status=503, json={"error": {"message": "overloaded"}}))
    stream = client.chat.completions.create(model="ha", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello world"
    assert len(backup.requests) == 1


def test_provider_slash_model_and_pin_header(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="mock/anything", messages=USER)
    assert raw.headers["x-llm-edge-provider"] == "mock"
    assert raw.parse().model == "anything"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=USER,
        extra_headers={"x-llm-edge-provider": "mock"},
    )
    assert raw.headers["x-llm-edge-provider"] == "mock"
    assert upstream.requests == []


def test_mock_provider_is_deterministic_and_streams(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="mock-1", messages=USER)
    second = client.chat.completions.create(model="mock-1", messages=USER)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert "Say hi" in (first.choices[0].message.content or "")
    assert first.usage is not None and first.usage.prompt_tokens > 0
    stream = client.chat.completions.create(
        model="mock-1",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[-1].usage is not None


def test_models_endpoint_lists_routes(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "ha" in ids
    assert "gpt-4o" in ids  # a known model admitted by the fake provider's glob
    assert client.models.retrieve("ha").id == "ha"


def test_upstream_error_event_inside_a_stream_reaches_the_client(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            events=[
                chunk("gpt-4o", {"role": "assistant", "content": "Hi"}),
                sse({"error": {"message": "model overloaded mid-stream", "type": "server_error"}}),
            ],
            event_delay_s=0.05,  # the content reaches the client before the error
        )
    )
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in stream:
            pass
