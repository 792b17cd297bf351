"""The Anthropic translator: request encoding, whole and streamed answers, errors.

Golden files live in ``fixtures/anthropic/`` (see its README for the API pages they were
checked against). After a deliberate change, rewrite the expected files with
``python tests/unit/providers/test_anthropic.py --regen`` and review the diff.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import (
    InvalidRequestError,
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamError,
)
from llm_edge_agent.models import ChatRequest, parse_chat_request
from llm_edge_agent.pricing import PricingTable, TokenUsage
from llm_edge_agent.providers.anthropic import (
    API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_TOKENS,
    FALLBACK_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    THINKING_BUDGETS,
    AnthropicTranslator,
)
from llm_edge_agent.providers.anthropic_stream import FINISH_REASONS, AnthropicStream
from llm_edge_agent.providers.base import StreamDecoder, Translator
from llm_edge_agent.sse import SSEParser

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
REQUESTS = FIXTURES / "requests"
RESPONSES = FIXTURES / "responses"
STREAMS = FIXTURES / "streams"
CREATED = 1_764_000_000
PROVIDER_KEY = "sk-ant-provider-secret"
SPLITS_PER_FIXTURE = 120
DONE = b"data: [DONE]\n\n"

REQUEST_CASES = sorted(p.name.removesuffix(".openai.json") for p in REQUESTS.glob("*.openai.json"))
RESPONSE_CASES = sorted(
    p.name.removesuffix(".anthropic.json") for p in RESPONSES.glob("*.anthropic.json")
)
STREAM_CASES = sorted(
    p.name.removesuffix(".anthropic.sse") for p in STREAMS.glob("*.anthropic.sse")
)


def translator(**kwargs: Any) -> AnthropicTranslator:
    return AnthropicTranslator(
        "anthropic", DEFAULT_BASE_URL, PROVIDER_KEY, clock=lambda: CREATED + 0.75, **kwargs
    )


def chat(body: dict[str, Any], headers: dict[str, str] | None = None) -> ChatRequest:
    return parse_chat_request(orjson.dumps(body), headers)


def user(text: str = "Hi", **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": text}], **fields}


def encode(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    request = chat(body)
    sent: dict[str, Any] = orjson.loads(
        translator(**kwargs).encode_chat(request, request.model).body
    )
    return sent


def stream_request(include_usage: bool = True) -> ChatRequest:
    return chat(user(stream=True, stream_options={"include_usage": include_usage}))


def decoder(include_usage: bool = True) -> AnthropicStream:
    return translator().stream_decoder(stream_request(include_usage))


def run_stream(chunks: list[bytes], include_usage: bool = True) -> tuple[bytes, AnthropicStream]:
    stream = decoder(include_usage)
    out = b"".join(stream.feed(chunk) for chunk in chunks)
    return out + stream.finish(), stream


def events(sse: bytes) -> list[Any]:
    """The JSON payloads of OpenAI SSE output, ``[DONE]`` kept as a string."""
    out: list[Any] = []
    for block in sse.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[6:]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def stream_bytes(case: str) -> bytes:
    return (STREAMS / f"{case}.anthropic.sse").read_bytes()


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(40, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# ------------------------------------------------------------------ protocol


def test_translator_and_stream_satisfy_the_provider_protocols() -> None:
    instance: Translator = translator()
    stream: StreamDecoder = decoder()
    assert instance.stream_decoder(stream_request()) is not stream
    assert PROVIDER_KEY not in repr(instance)


# ------------------------------------------------------------------ requests


@pytest.mark.parametrize("case", REQUEST_CASES)
def test_request_fixture_encodes_to_the_expected_anthropic_body(case: str) -> None:
    body = orjson.loads((REQUESTS / f"{case}.openai.json").read_bytes())
    expected = orjson.loads((REQUESTS / f"{case}.anthropic.json").read_bytes())
    assert encode(body) == expected


def test_encode_posts_to_v1_messages_with_the_anthropic_headers() -> None:
    request = chat(user())
    sent = translator().encode_chat(request, "claude-sonnet-4-5-20250929")
    assert (sent.method, sent.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert sent.headers == {
        "x-api-key": PROVIDER_KEY,
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
    }
    assert orjson.loads(sent.body)["model"] == "claude-sonnet-4-5-20250929"
    assert "stream" not in orjson.loads(sent.body)


def test_base_url_is_a_root_and_a_trailing_slash_is_ignored() -> None:
    custom = AnthropicTranslator("a", "http://proxy.local:8080/", None)
    sent = custom.encode_chat(chat(user()), "claude-3-haiku")
    assert sent.url == "http://proxy.local:8080/v1/messages"
    assert "x-api-key" not in sent.headers


def test_client_anthropic_beta_header_is_passed_through_and_nothing_else() -> None:
    shared = translator(extra_headers={"X-Team": "blue"})
    beta = "prompt-caching-2024-07-31,output-128k-2025-02-19"
    headers = {"anthropic-beta": beta, "authorization": "Bearer client-key", "x-other": "1"}
    sent = shared.encode_chat(chat(user(), headers), "claude-sonnet-4-5")
    assert sent.headers["anthropic-beta"] == beta
    assert sent.headers["x-team"] == "blue"
    assert sent.headers["x-api-key"] == PROVIDER_KEY
    assert "authorization" not in sent.headers and "x-other" not in sent.headers
    # The next request without the header must not inherit it.
    assert "anthropic-beta" not in shared.encode_chat(chat(user()), "m").headers


def test_streaming_request_asks_anthropic_to_stream() -> None:
    assert encode(user(stream=True))["stream"] is True


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5-20250929", 64000),
        ("claude-sonnet-4-20250514", 64000),
        ("claude-3-7-sonnet-latest", 64000),
        ("claude-opus-4-1-20250805", 32000),
        ("claude-opus-4-5", 32000),
        ("claude-3-5-haiku-20241022", 8192),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-haiku-4-5", 8192),
        ("claude-3-haiku-20240307", FALLBACK_MAX_TOKENS),
        ("claude-3-opus-latest", 4096),
    ],
)
def test_max_tokens_defaults_per_model_family_when_the_client_sets_none(
    model: str, expected: int
) -> None:
    assert encode({**user(), "model": model})["max_tokens"] == expected
    assert dict(DEFAULT_MAX_TOKENS).get("claude-sonnet-4") == 64000


def test_constructor_function_overrides_the_default_max_tokens_table() -> None:
    assert encode(user(), default_max_tokens=lambda model: len(model))["max_tokens"] == 17
    assert encode(user(max_tokens=9), default_max_tokens=lambda model: 1)["max_tokens"] == 9


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            {"type": "tool", "name": "f"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": True}, None),
        ({}, None),
    ],
)
def test_tool_choice_maps_to_anthropic(fields: dict[str, Any], expected: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    sent = encode(user(tools=tools, **fields))
    assert sent["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert sent.get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    sent = encode(user(tool_choice="required", parallel_tool_calls=False))
    assert "tool_choice" not in sent and "tools" not in sent


def assistant_call(arguments: str) -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    }


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_tool_call_arguments_that_are_not_a_json_object_are_a_400_naming_the_param(
    arguments: str,
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        encode(assistant_call(arguments))
    assert caught.value.status == 400
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_n_above_one_is_a_400_naming_n() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        encode(user(n=2))
    assert (caught.value.status, caught.value.param) == (400, "n")


@pytest.mark.parametrize(("effort", "budget"), sorted(THINKING_BUDGETS.items()))
def test_reasoning_effort_sets_the_thinking_budget(effort: str, budget: int | None) -> None:
    sent = encode(user(reasoning_effort=effort, max_tokens=20000, temperature=0.2))
    if budget is None:
        assert "thinking" not in sent and sent["temperature"] == 0.2
    else:
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert "temperature" not in sent  # Anthropic rejects temperature with thinking


def test_thinking_budget_stays_below_max_tokens() -> None:
    sent = encode(user(reasoning_effort="high", max_tokens=2000))
    assert sent["thinking"]["budget_tokens"] == 1999
    assert sent["max_tokens"] == 2000


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "low", "max_tokens": 1024}, "reasoning_effort"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "low", "tool_choice": "required"}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"user": 42}, "user"),
        ({"tools": [{"type": "custom", "function": {"name": "f"}}]}, "tools[0].type"),
    ],
)
def test_requests_anthropic_cannot_serve_are_a_400_naming_the_param(
    fields: dict[str, Any], param: str
) -> None:
    if fields.get("tool_choice"):
        fields = {**fields, "tools": [{"type": "function", "function": {"name": "f"}}]}
    with pytest.raises(InvalidRequestError) as caught:
        encode(user(**fields))
    assert (caught.value.status, caught.value.param) == (400, param)


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            "messages[0].content[0].type",
        ),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0].file"),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_content_parts_anthropic_cannot_take_are_a_400_naming_the_part(
    part: dict[str, Any], param: str
) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [part]}]}
    with pytest.raises(InvalidRequestError) as caught:
        encode(body)
    assert caught.value.param == param


def test_inline_pdf_file_becomes_a_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [part]}]}
    assert encode(body)["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        }
    ]


def test_legacy_function_role_is_a_400() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "function", "name": "f", "content": "1"},
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        encode(body)
    assert caught.value.param == "messages[1].role"


def test_empty_assistant_messages_are_dropped_and_their_neighbours_merged() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        ],
    }
    assert encode(body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "No."}]},
    ]


def test_json_object_instruction_is_the_last_system_block() -> None:
    sent = encode(user(response_format={"type": "json_object"}))
    assert sent["system"] == JSON_OBJECT_INSTRUCTION
    assert "response_format" not in sent
    assert "system" not in encode(user(response_format={"type": "text"}))


# ------------------------------------------------------------------ whole answers


@pytest.mark.parametrize("case", RESPONSE_CASES)
def test_response_fixture_decodes_to_the_expected_openai_completion(case: str) -> None:
    completion = translator().decode_chat((RESPONSES / f"{case}.anthropic.json").read_bytes())
    expected = orjson.loads((RESPONSES / f"{case}.openai.json").read_bytes())
    assert completion.body == expected


def message_with(stop_reason: str | None, *blocks: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": list(blocks) or [{"type": "text", "text": "x"}],
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("a_reason_added_later", "stop"),
        (None, "stop"),
    ],
)
def test_every_stop_reason_maps_to_an_openai_finish_reason(
    stop_reason: str | None, finish: str
) -> None:
    body = translator().decode_chat(message_with(stop_reason)).body
    assert body["choices"][0]["finish_reason"] == finish
    assert set(FINISH_REASONS) >= {"end_turn", "max_tokens", "tool_use", "stop_sequence"}


def test_a_turn_with_tool_calls_is_never_finished_as_stop() -> None:
    call = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    body = translator().decode_chat(message_with("end_turn", call)).body
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"]["content"] is None
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_cache_tokens_count_in_prompt_tokens_and_price_as_in_anthropics_sheet() -> None:
    completion = translator().decode_chat(
        (RESPONSES / "text_cached_usage.anthropic.json").read_bytes()
    )
    # input 21 fresh + 4000 cache read + 1200 cache write; output 12.
    assert completion.usage == TokenUsage(
        prompt_tokens=5221, completion_tokens=12, cached_tokens=4000, cache_write_tokens=1200
    )
    usage = completion.body["usage"]
    assert (usage["prompt_tokens"], usage["total_tokens"]) == (5221, 5233)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4000}
    # Claude Sonnet 4.5, per 1M tokens: input $3, output $15, cache read $0.30 (0.1x input),
    # 5-minute cache write $3.75 (1.25x input).
    #   21 * 3.00     =  63.00
    # 4000 * 0.30     = 1200.00
    # 1200 * 3.75     = 4500.00
    #   12 * 15.00    = 180.00
    #   total         = 5943.00 / 1,000,000 = $0.005943
    cost = PricingTable().cost("claude-sonnet-4-5", completion.usage)
    assert cost == pytest.approx(0.005943, rel=1e-12)


def test_thinking_tokens_are_reported_as_reasoning_tokens() -> None:
    completion = translator().decode_chat((RESPONSES / "thinking.anthropic.json").read_bytes())
    assert completion.usage is not None
    assert (completion.usage.reasoning_tokens, completion.usage.completion_tokens) == (700, 900)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"type": "message"}', b'{"content": "text"}'],
)
def test_a_garbage_success_body_is_an_upstream_error(body: bytes) -> None:
    with pytest.raises(UpstreamError) as caught:
        translator().decode_chat(body)
    assert caught.value.status == 502 and caught.value.retryable


def test_an_error_object_in_a_success_body_is_an_upstream_error() -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    with pytest.raises(UpstreamError) as caught:
        translator().decode_chat(body)
    assert caught.value.retryable and "Overloaded" in caught.value.message


# ------------------------------------------------------------------ streams


@pytest.mark.parametrize("case", STREAM_CASES)
def test_stream_fixture_decodes_to_the_expected_openai_sse(case: str) -> None:
    out, _ = run_stream([stream_bytes(case)])
    assert out == (STREAMS / f"{case}.openai.sse").read_bytes()


@pytest.mark.parametrize("case", STREAM_CASES)
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_stream_split_at_random_bytes_decodes_like_the_whole_stream(
    case: str, line_end: bytes
) -> None:
    data = stream_bytes(case).replace(b"\n", line_end)
    whole, _ = run_stream([stream_bytes(case)])
    rng = random.Random(f"{case}{line_end!r}")
    for _ in range(SPLITS_PER_FIXTURE):
        out, _ = run_stream(random_splits(data, rng))
        assert out == whole


def test_stream_fed_one_byte_at_a_time_decodes_like_the_whole_stream() -> None:
    data = stream_bytes("tool_calls").replace(b"\n", b"\r\n")
    out, _ = run_stream([data[i : i + 1] for i in range(len(data))])
    assert out == run_stream([stream_bytes("tool_calls")])[0]


def test_text_stream_starts_with_the_role_and_ends_with_usage_then_done() -> None:
    out, stream = run_stream([stream_bytes("text")])
    chunks = events(out)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("role") for c in chunks[1:-1] if c["choices"]] == [
        None
    ] * 3
    assert chunks[0]["id"] == "msg_01StreamText" and chunks[0]["created"] == CREATED
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["prompt_tokens"] == 2125
    assert chunks[-1] == "[DONE]"
    assert stream.complete and stream.ended and stream.error is None
    assert stream.usage == TokenUsage(
        prompt_tokens=2125, completion_tokens=15, cached_tokens=2000, cache_write_tokens=100
    )


def test_tool_calls_get_openai_indexes_from_zero_after_a_text_block() -> None:
    out, _ = run_stream([stream_bytes("tool_calls")])
    calls = [
        call
        for chunk in events(out)
        if isinstance(chunk, dict) and chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [c["index"] for c in calls] == [0, 0, 0, 1, 1, 1]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert calls[3]["function"]["name"] == "get_weather"
    arguments = [
        "".join(c["function"]["arguments"] for c in calls if c["index"] == i) for i in (0, 1)
    ]
    assert [orjson.loads(a) for a in arguments] == [{"city": "Paris"}, {"city": "Tokyo"}]
    finish = [c["choices"][0]["finish_reason"] for c in events(out)[:-1] if c["choices"]]
    assert finish[-1] == "tool_calls"


def test_usage_chunk_is_only_sent_when_the_client_asked_but_usage_is_always_known() -> None:
    out, stream = run_stream([stream_bytes("text")], include_usage=False)
    assert all(chunk == "[DONE]" or chunk["choices"] for chunk in events(out))
    assert out.endswith(DONE)
    assert stream.usage is not None and stream.usage.completion_tokens == 15


def test_in_stream_error_becomes_a_final_error_event_without_done() -> None:
    out, stream = run_stream([stream_bytes("overloaded_error")])
    assert stream.error is not None and stream.error.retryable
    assert stream.error.status == 502 and stream.error.upstream_status == 529
    assert not stream.complete and not out.endswith(DONE)
    last = events(out)[-1]
    assert last == stream.error.to_dict() and "Overloaded" in last["error"]["message"]
    assert stream.feed(b'event: ping\ndata: {"type":"ping"}\n\n') == b""


def test_stream_cut_before_message_stop_raises_on_finish_with_usage_kept() -> None:
    data = stream_bytes("text")
    stream = decoder()
    out = stream.feed(data[: data.index(b"event: message_delta")])
    assert b"Hello" in out
    with pytest.raises(UpstreamError) as caught:
        stream.finish()
    assert caught.value.status == 502 and not stream.ended
    assert stream.usage is not None and stream.usage.prompt_tokens == 2125


def test_stream_cut_after_the_finish_reason_is_complete_but_still_an_error() -> None:
    data = stream_bytes("text")
    stream = decoder()
    stream.feed(data[: data.index(b"event: message_stop")])
    assert stream.complete and not stream.ended
    with pytest.raises(UpstreamError):
        stream.finish()


def test_last_event_without_its_blank_line_is_still_read_at_eof() -> None:
    data = stream_bytes("text").rstrip(b"\n")
    out, stream = run_stream([data])
    assert stream.ended and out.endswith(DONE)


def test_events_without_event_lines_and_with_comments_are_read_by_their_type() -> None:
    data = b"".join(
        line + b"\n" for line in stream_bytes("text").split(b"\n") if not line.startswith(b"event:")
    )
    data = b": keep-alive\n\n" + data
    assert run_stream([data])[0] == run_stream([stream_bytes("text")])[0]


def test_message_delta_cumulative_input_counts_replace_message_start_ones() -> None:
    data = stream_bytes("text").replace(
        b'"usage":{"output_tokens":15}',
        b'"usage":{"output_tokens":15,"input_tokens":30,"cache_read_input_tokens":null}',
    )
    _, stream = run_stream([data])
    assert stream.usage == TokenUsage(
        prompt_tokens=2130, completion_tokens=15, cached_tokens=2000, cache_write_tokens=100
    )


def test_sse_parser_keeps_a_crlf_split_between_chunks_as_one_line_end() -> None:
    parser = SSEParser()
    got = [parser.feed(part) for part in (b"event: x\r", b"\ndata: a\r", b"\ndata:b\r\n\r", b"\n")]
    assert got == [[], [], [], [(b"x", b"a\nb")]]
    assert parser.feed(b"data: tail") == [] and parser.flush() == [(b"", b"tail")]


def test_a_stream_event_that_is_not_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        decoder().feed(b"event: message_start\ndata: {oops\n\n")


def test_nothing_after_message_stop_reaches_the_client() -> None:
    stream = decoder()
    stream.feed(stream_bytes("text"))
    extra = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}\n\n'
    assert stream.feed(extra) == b"" and stream.finish() == b""


# ------------------------------------------------------------------ errors


def error_body(etype: str, message: str = "details here") -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}
    )


@pytest.mark.parametrize(
    ("status", "etype", "kind", "client_status", "retryable"),
    [
        (400, "invalid_request_error", UpstreamClientError, 400, False),
        (401, "authentication_error", UpstreamAuthError, 502, True),
        (403, "permission_error", UpstreamAuthError, 502, True),
        (404, "not_found_error", UpstreamClientError, 404, False),
        (413, "request_too_large", UpstreamClientError, 413, False),
        (429, "rate_limit_error", UpstreamError, 502, True),
        (500, "api_error", UpstreamError, 502, True),
        (529, "overloaded_error", UpstreamError, 502, True),
    ],
)
def test_every_anthropic_error_type_maps_through_the_status_table(
    status: int, etype: str, kind: type[UpstreamError], client_status: int, retryable: bool
) -> None:
    error = translator().decode_error(status, error_body(etype), {"retry-after": "7"})
    assert type(error) is kind
    assert (error.status, error.retryable, error.upstream_status) == (
        client_status,
        retryable,
        status,
    )
    if kind is not UpstreamAuthError:
        assert "details here" in error.message
    if retryable and kind is UpstreamError:
        assert error.retry_after_s == 7.0
    if kind is UpstreamClientError:
        assert error.code == etype


def test_auth_errors_never_relay_the_providers_message() -> None:
    error = translator().decode_error(401, error_body("authentication_error", PROVIDER_KEY), {})
    assert PROVIDER_KEY not in error.message


def test_a_non_json_error_body_is_relayed_as_text() -> None:
    error = translator().decode_error(413, b"<html>413 Request Entity Too Large</html>", {})
    assert error.status == 413 and "Too Large" in error.message


# ------------------------------------------------------------------ goldens


def _regenerate() -> None:
    """Rewrite every expected file from the current code (review the diff afterwards)."""
    for case in REQUEST_CASES:
        body = orjson.loads((REQUESTS / f"{case}.openai.json").read_bytes())
        text = orjson.dumps(encode(body), option=orjson.OPT_INDENT_2) + b"\n"
        (REQUESTS / f"{case}.anthropic.json").write_bytes(text)
    for case in RESPONSE_CASES:
        completion = translator().decode_chat((RESPONSES / f"{case}.anthropic.json").read_bytes())
        text = orjson.dumps(completion.body, option=orjson.OPT_INDENT_2) + b"\n"
        (RESPONSES / f"{case}.openai.json").write_bytes(text)
    for case in STREAM_CASES:
        (STREAMS / f"{case}.openai.sse").write_bytes(run_stream([stream_bytes(case)])[0])


if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        _regenerate()
