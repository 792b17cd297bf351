"""The Gemini translator: request encoding, whole and streamed answers, errors.

Golden files live in ``fixtures/gemini/`` (see its README for the API pages they were
checked against). After a deliberate change, rewrite the expected files with
``python tests/unit/providers/test_gemini.py --regen`` and review the diff.
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
from llm_edge_agent.providers.base import StreamDecoder, Translator
from llm_edge_agent.providers.gemini import (
    DEFAULT_BASE_URL,
    THINKING_BUDGETS,
    UNSUPPORTED_SCHEMA_KEYS,
    GeminiTranslator,
    clean_schema,
)
from llm_edge_agent.providers.gemini_stream import FINISH_REASONS, GeminiStream, tool_call_id

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
REQUESTS = FIXTURES / "requests"
RESPONSES = FIXTURES / "responses"
STREAMS = FIXTURES / "streams"
CREATED = 1_764_000_000
PROVIDER_KEY = "AIza-provider-secret"
MODEL = "gemini-2.5-flash"
SPLITS_PER_FIXTURE = 120
DONE = b"data: [DONE]\n\n"

REQUEST_CASES = sorted(p.name.removesuffix(".openai.json") for p in REQUESTS.glob("*.openai.json"))
RESPONSE_CASES = sorted(
    p.name.removesuffix(".gemini.json") for p in RESPONSES.glob("*.gemini.json")
)
STREAM_CASES = sorted(p.name.removesuffix(".gemini.sse") for p in STREAMS.glob("*.gemini.sse"))


def translator(base_url: str = DEFAULT_BASE_URL, **kwargs: Any) -> GeminiTranslator:
    return GeminiTranslator("gemini", base_url, PROVIDER_KEY, clock=lambda: CREATED + 0.5, **kwargs)


def chat(body: dict[str, Any]) -> ChatRequest:
    return parse_chat_request(orjson.dumps(body))


def user(text: str = "Hi", **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **fields}


def encode(body: dict[str, Any]) -> dict[str, Any]:
    request = chat(body)
    sent: dict[str, Any] = orjson.loads(translator().encode_chat(request, request.model).body)
    return sent


def decode(response: dict[str, Any]) -> dict[str, Any]:
    return translator().decode_chat(orjson.dumps(response)).body


def stream_request(include_usage: bool = True) -> ChatRequest:
    return chat(user(stream=True, stream_options={"include_usage": include_usage}))


def decoder(include_usage: bool = True) -> GeminiStream:
    return translator().stream_decoder(stream_request(include_usage))


def run_stream(chunks: list[bytes], include_usage: bool = True) -> tuple[bytes, GeminiStream]:
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


def deltas(sse: bytes) -> list[dict[str, Any]]:
    return [
        e["choices"][0]["delta"] for e in events(sse) if isinstance(e, dict) and e.get("choices")
    ]


def stream_bytes(case: str) -> bytes:
    return (STREAMS / f"{case}.gemini.sse").read_bytes()


def sse_of(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(40, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def finish_stream(chunks: list[bytes]) -> bytes:
    """Whole-stream output, or the error event the executor would send for a cut stream."""
    stream = decoder()
    out = b"".join(stream.feed(chunk) for chunk in chunks)
    try:
        return out + stream.finish()
    except UpstreamError as error:
        return out + b"data: " + error.to_json() + b"\n\n"


# ------------------------------------------------------------------ protocol


def test_translator_and_stream_satisfy_the_provider_protocols() -> None:
    instance: Translator = translator()
    stream: StreamDecoder = decoder()
    assert instance.stream_decoder(stream_request()) is not stream
    assert PROVIDER_KEY not in repr(instance)
    assert PROVIDER_KEY not in repr(instance.encode_chat(chat(user()), MODEL))


# ------------------------------------------------------------------ requests


@pytest.mark.parametrize("case", REQUEST_CASES)
def test_request_fixture_encodes_to_the_expected_gemini_body(case: str) -> None:
    body = orjson.loads((REQUESTS / f"{case}.openai.json").read_bytes())
    expected = orjson.loads((REQUESTS / f"{case}.gemini.json").read_bytes())
    assert encode(body) == expected


def test_generate_content_url_and_key_header() -> None:
    sent = translator().encode_chat(chat(user()), MODEL)
    assert (sent.method, sent.url) == (
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
    )
    assert sent.headers == {"content-type": "application/json", "x-goog-api-key": PROVIDER_KEY}


def test_streaming_request_uses_stream_generate_content_with_alt_sse() -> None:
    sent = translator("https://proxy.example/").encode_chat(chat(user(stream=True)), MODEL)
    assert sent.url == (
        "https://proxy.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert b'"stream"' not in sent.body


def test_models_prefix_on_the_model_name_is_not_doubled() -> None:
    sent = translator().encode_chat(chat(user()), "models/gemini-2.0-flash")
    assert sent.url.endswith("/v1beta/models/gemini-2.0-flash:generateContent")


def test_base_url_ending_in_the_api_version_is_not_doubled() -> None:
    instance = translator("https://generativelanguage.googleapis.com/v1beta/")
    assert instance.encode_chat(chat(user()), MODEL).url.count("/v1beta/") == 1


def test_empty_base_url_falls_back_to_the_public_endpoint_and_no_key_sends_no_header() -> None:
    instance = GeminiTranslator("g", "", None, {"X-Goog-User-Project": "p1"})
    sent = instance.encode_chat(chat(user()), MODEL)
    assert sent.url.startswith(DEFAULT_BASE_URL + "/v1beta/")
    assert sent.headers == {"content-type": "application/json", "x-goog-user-project": "p1"}


def test_tool_result_without_a_matching_call_is_a_400_naming_the_message() -> None:
    body = user()
    body["messages"].append({"role": "tool", "tool_call_id": "nope", "content": "x"})
    with pytest.raises(InvalidRequestError) as info:
        encode(body)
    assert info.value.param == "messages[1].tool_call_id"


def test_legacy_function_message_uses_its_own_name() -> None:
    body = user()
    body["messages"].append({"role": "function", "name": "lookup", "content": "[1, 2]"})
    sent = encode(body)
    assert sent["contents"][0]["parts"][1] == {
        "functionResponse": {"name": "lookup", "response": {"content": "[1, 2]"}}
    }


def test_tool_call_arguments_that_are_not_a_json_object_are_a_400() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    body = user()
    body["messages"].append({"role": "assistant", "content": None, "tool_calls": [call]})
    with pytest.raises(InvalidRequestError) as info:
        encode(body)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_streamed_request_with_n_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        encode(user(stream=True, n=2))
    assert info.value.param == "n"


def test_unknown_reasoning_effort_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as info:
        encode(user(reasoning_effort="extreme"))
    assert info.value.param == "reasoning_effort"


def test_every_reasoning_effort_maps_to_its_thinking_budget() -> None:
    for effort, budget in THINKING_BUDGETS.items():
        config = encode(user(reasoning_effort=effort))["generationConfig"]["thinkingConfig"]
        assert config["thinkingBudget"] == budget
        assert config.get("includeThoughts", False) is (budget > 0)


def test_image_url_that_is_neither_data_nor_http_is_a_400() -> None:
    part = {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}
    with pytest.raises(InvalidRequestError) as info:
        encode({"model": MODEL, "messages": [{"role": "user", "content": [part]}]})
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_audio_and_pdf_parts_become_inline_data() -> None:
    parts = [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
    ]
    sent = encode({"model": MODEL, "messages": [{"role": "user", "content": parts}]})
    assert sent["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


def test_clean_schema_drops_rejected_keywords_at_every_level_but_keeps_property_names() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "strict": {"type": "array", "items": {"type": "object", "$schema": "x", "const": 1}},
            "tag": {"anyOf": [{"type": "string", "examples": ["a"]}, {"type": "null"}]},
        },
        "required": ["strict"],
    }
    cleaned = clean_schema(schema)
    assert cleaned == {
        "type": "object",
        "properties": {
            "strict": {"type": "array", "items": {"type": "object"}},
            "tag": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["strict"],
    }
    assert "additionalProperties" in UNSUPPORTED_SCHEMA_KEYS


# ------------------------------------------------------------------ responses


@pytest.mark.parametrize("case", RESPONSE_CASES)
def test_response_fixture_decodes_to_the_expected_openai_body(case: str) -> None:
    response = orjson.loads((RESPONSES / f"{case}.gemini.json").read_bytes())
    expected = orjson.loads((RESPONSES / f"{case}.openai.json").read_bytes())
    assert decode(response) == expected


def test_every_documented_finish_reason_maps_as_openai_expects() -> None:
    text = {"content": {"role": "model", "parts": [{"text": "x"}]}}
    call = {"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}}
    expected = {
        "STOP": "stop",
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
        "RECITATION": "content_filter",
        "BLOCKLIST": "content_filter",
        "PROHIBITED_CONTENT": "content_filter",
        "SPII": "content_filter",
        "OTHER": "stop",
        "LANGUAGE": "stop",
        "MALFORMED_FUNCTION_CALL": "stop",
        "FINISH_REASON_UNSPECIFIED": "stop",
    }
    for reason, openai in expected.items():
        body = decode({"candidates": [{**text, "finishReason": reason}]})
        assert body["choices"][0]["finish_reason"] == openai, reason
        assert FINISH_REASONS.get(reason, "stop") == openai
    tool_body = decode({"candidates": [{**call, "finishReason": "STOP"}]})
    assert tool_body["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_ids_are_deterministic_and_distinct() -> None:
    first = tool_call_id("r", 0, "f", "{}")
    assert first == tool_call_id("r", 0, "f", "{}")
    assert first.startswith("call_0_")
    assert len({first, tool_call_id("r", 1, "f", "{}"), tool_call_id("s", 0, "f", "{}")}) == 3


def test_thought_signature_survives_a_round_trip_through_the_tool_call_id() -> None:
    signature = "Cv8B+/sigA=="  # valid base64: + / and padding
    part = {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": signature}
    answer = decode({"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]})
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert all(c.isalnum() or c in "_-" for c in call["id"])
    follow_up = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "done"},
        ],
    }
    model_turn = encode(follow_up)["contents"][1]
    assert model_turn["parts"] == [part]


def test_cached_and_thinking_usage_costs_what_googles_price_sheet_says() -> None:
    completion = translator().decode_chat((RESPONSES / "cached_usage.gemini.json").read_bytes())
    usage = completion.usage
    assert usage == TokenUsage(
        prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=8_000, reasoning_tokens=1_500
    )
    # gemini-2.5-flash, paid tier, per 1M tokens: input $0.30, cached input $0.03,
    # output (thinking included) $2.50.
    #   fresh input  (10,000 - 8,000) x 0.30 =   600
    #   cached input          8,000   x 0.03 =   240
    #   output (500 + 1,500 thoughts) x 2.50 = 5,000
    #   total 5,840 / 1,000,000 = $0.00584
    cost = PricingTable().cost(MODEL, usage)
    assert cost == pytest.approx(0.00584, rel=1e-12)


def test_blocked_prompt_is_a_400_with_the_reason_not_a_502() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    with pytest.raises(InvalidRequestError) as info:
        translator().decode_chat(orjson.dumps(body))
    assert info.value.status == 400
    assert "SAFETY" in info.value.message
    assert info.value.param == "messages"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"candidates": []}',
        b'{"usageMetadata": {}}',
        b'{"candidates": [1]}',
    ],
)
def test_garbage_success_body_is_an_upstream_error(body: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        translator().decode_chat(body)
    assert info.value.status == 502
    assert not isinstance(info.value, UpstreamClientError)


# ------------------------------------------------------------------ errors


def error_body(code: int, status: str, message: str, reason: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return orjson.dumps({"error": err})


@pytest.mark.parametrize(
    ("code", "status", "kind", "client_status"),
    [
        (400, "INVALID_ARGUMENT", UpstreamClientError, 400),
        (400, "FAILED_PRECONDITION", UpstreamClientError, 400),
        (404, "NOT_FOUND", UpstreamClientError, 404),
        (403, "PERMISSION_DENIED", UpstreamAuthError, 502),
        (429, "RESOURCE_EXHAUSTED", UpstreamError, 502),
        (500, "INTERNAL", UpstreamError, 502),
        (503, "UNAVAILABLE", UpstreamError, 502),
    ],
)
def test_error_statuses_map_through_the_shared_table(
    code: int, status: str, kind: type[UpstreamError], client_status: int
) -> None:
    error = translator().decode_error(code, error_body(code, status, "went wrong"), {})
    assert type(error) is kind
    assert error.status == client_status
    assert error.upstream_status == code
    if kind is not UpstreamAuthError:
        assert "went wrong" in error.message
    if kind is UpstreamClientError:
        assert error.code == status.lower()
        assert not error.retryable
    else:
        assert error.retryable


def test_rate_limit_error_keeps_retry_after() -> None:
    body = error_body(429, "RESOURCE_EXHAUSTED", "quota")
    error = translator().decode_error(429, body, {"retry-after": "7"})
    assert error.retry_after_s == 7.0


def test_invalid_api_key_reported_as_400_is_an_auth_error_that_hides_the_message() -> None:
    body = error_body(400, "INVALID_ARGUMENT", "API key not valid: AIza-xyz", "API_KEY_INVALID")
    error = translator().decode_error(400, body, {})
    assert isinstance(error, UpstreamAuthError)
    assert "AIza" not in error.message


def test_non_json_error_body_is_relayed_as_text() -> None:
    error = translator().decode_error(502, b"<html>Bad Gateway</html>", {})
    assert "Bad Gateway" in error.message
    assert error.status == 502


def test_error_body_in_a_200_answer_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as info:
        translator().decode_chat(error_body(500, "INTERNAL", "boom"))
    assert "boom" in info.value.message


# ------------------------------------------------------------------ streams


@pytest.mark.parametrize("case", STREAM_CASES)
def test_stream_fixture_decodes_to_the_expected_openai_sse(case: str) -> None:
    expected = (STREAMS / f"{case}.openai.sse").read_bytes()
    assert finish_stream([stream_bytes(case)]) == expected


@pytest.mark.parametrize("case", STREAM_CASES)
def test_stream_fixture_split_at_random_bytes_gives_identical_output(case: str) -> None:
    data = stream_bytes(case)
    whole = finish_stream([data])
    rng = random.Random(f"gemini-{case}")
    for _ in range(SPLITS_PER_FIXTURE):
        assert finish_stream(random_splits(data, rng)) == whole
    assert finish_stream([bytes([b]) for b in data]) == whole


def test_stream_role_comes_first_exactly_once() -> None:
    out, _ = run_stream([stream_bytes("tool_calls")])
    roles = [d for d in deltas(out) if "role" in d]
    assert roles == [{"role": "assistant", "content": ""}]
    assert deltas(out)[0] == roles[0]


def test_streamed_function_calls_get_stable_indexes_ids_names_and_whole_arguments() -> None:
    out, stream = run_stream([stream_bytes("tool_calls")])
    calls = [d["tool_calls"][0] for d in deltas(out) if "tool_calls" in d]
    starts = [c for c in calls if "id" in c]
    assert [(c["index"], c["function"]["name"]) for c in starts] == [
        (0, "get_weather"),
        (1, "get_time"),
        (2, "get_weather"),
    ]
    assert len({c["id"] for c in starts}) == 3
    fragments = [c for c in calls if "id" not in c]
    assert [(c["index"], orjson.loads(c["function"]["arguments"])) for c in fragments] == [
        (0, {"city": "Paris", "unit": "celsius"}),
        (1, {}),
        (2, {"city": "Oslo"}),
    ]
    finishes = [
        e["choices"][0]["finish_reason"]
        for e in events(out)
        if isinstance(e, dict) and e["choices"]
    ]
    assert [f for f in finishes if f] == ["tool_calls"]
    assert stream.complete and stream.ended


def test_streamed_and_whole_answers_give_a_call_the_same_id() -> None:
    call = {"functionCall": {"name": "f", "args": {"a": 1}}}
    chunk = {
        "candidates": [{"content": {"parts": [call]}, "finishReason": "STOP"}],
        "responseId": "r9",
    }
    whole = decode(chunk)["choices"][0]["message"]["tool_calls"][0]["id"]
    out, _ = run_stream([sse_of(chunk)])
    assert deltas(out)[1]["tool_calls"][0]["id"] == whole


def test_stream_usage_chunk_only_when_include_usage() -> None:
    with_usage, stream = run_stream([stream_bytes("text")], include_usage=True)
    without, _ = run_stream([stream_bytes("text")], include_usage=False)
    assert events(with_usage)[-2]["usage"]["completion_tokens"] == 4
    assert events(with_usage)[-2]["choices"] == []
    assert all("usage" not in e for e in events(without) if isinstance(e, dict))
    assert events(without)[-1] == "[DONE]"
    assert stream.usage == TokenUsage(prompt_tokens=5, completion_tokens=4)


def test_stream_usage_is_the_last_usage_metadata_and_counts_thoughts() -> None:
    _, stream = run_stream([stream_bytes("thinking")])
    assert stream.usage == TokenUsage(prompt_tokens=9, completion_tokens=97, reasoning_tokens=85)


def test_stream_cut_before_a_finish_reason_raises_at_eof() -> None:
    data = stream_bytes("text")
    cut = data[: data.rfind(b"data:")]
    stream = decoder()
    out = stream.feed(cut)
    assert b"Hel" in out
    with pytest.raises(UpstreamError):
        stream.finish()
    assert not stream.complete


def test_midstream_error_is_the_last_event_and_no_done_follows() -> None:
    out, stream = run_stream([stream_bytes("midstream_error")])
    assert stream.error is not None
    assert stream.error.upstream_status == 503
    assert events(out)[-1]["error"]["message"].endswith("Please try again later.")
    assert DONE not in out


def test_blocked_prompt_in_a_stream_is_a_400_error_event() -> None:
    out, stream = run_stream([stream_bytes("prompt_blocked")])
    assert isinstance(stream.error, UpstreamClientError)
    assert stream.error.status == 400
    assert "PROHIBITED_CONTENT" in events(out)[-1]["error"]["message"]
    assert DONE not in out


def test_chunks_after_the_finish_reason_only_update_usage() -> None:
    finish = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}]}
    late = {
        "candidates": [{"content": {"parts": [{"text": "late"}]}}],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1},
    }
    out, stream = run_stream([sse_of(finish, late)])
    assert b"late" not in out
    assert stream.usage == TokenUsage(prompt_tokens=2, completion_tokens=1)


@pytest.mark.parametrize("data", [b"data: {oops\n\n", b"data: [1]\n\n"])
def test_garbage_stream_event_is_an_upstream_error(data: bytes) -> None:
    with pytest.raises(UpstreamError):
        decoder().feed(data)


# ------------------------------------------------------------------ regeneration


def regenerate() -> None:
    """Rewrite every expected file from the current code (review the diff afterwards)."""
    for case in REQUEST_CASES:
        body = orjson.loads((REQUESTS / f"{case}.openai.json").read_bytes())
        out = orjson.dumps(encode(body), option=orjson.OPT_INDENT_2) + b"\n"
        (REQUESTS / f"{case}.gemini.json").write_bytes(out)
    for case in RESPONSE_CASES:
        response = orjson.loads((RESPONSES / f"{case}.gemini.json").read_bytes())
        out = orjson.dumps(decode(response), option=orjson.OPT_INDENT_2) + b"\n"
        (RESPONSES / f"{case}.openai.json").write_bytes(out)
    for case in STREAM_CASES:
        (STREAMS / f"{case}.openai.sse").write_bytes(finish_stream([stream_bytes(case)]))


if __name__ == "__main__" and "--regen" in sys.argv:
    regenerate()
