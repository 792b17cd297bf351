"""The OpenAI translator: ``PassthroughStream``, ``encode_chat``/``decode_chat``, upstream errors."""

from __future__ import annotations

import email.utils
import itertools
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import UpstreamAuthError, UpstreamClientError, UpstreamError
from llm_edge_agent.models import ChatRequest, parse_chat_request
from llm_edge_agent.pricing import TokenUsage
from llm_edge_agent.providers.http_errors import (
    MAX_MESSAGE_CHARS,
    error_for_status,
    parse_retry_after,
)
from llm_edge_agent.providers.openai import DONE_EVENT, OpenAITranslator, PassthroughStream

PROVIDER_KEY = "sk-provider-secret-123456"
BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "total_tokens": 19,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
EXPECTED_USAGE = TokenUsage(
    prompt_tokens=12, completion_tokens=7, cached_tokens=4, reasoning_tokens=2
)
# Content that mentions the words the decoder looks for, quoted and unquoted.
TRICKY_TEXTS = (
    "Hello",
    ' the "error": field',
    ' and "usage": {"prompt_tokens": 1}',
    ' "finish_reason": "stop" [DONE]',
    " error usage data: done\n\nnot an event",
)


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return event({**BASE, "choices": [choice], "usage": None})


def role_chunk() -> bytes:
    return chunk({"role": "assistant", "content": ""})


def content_chunks(texts: Sequence[str] = TRICKY_TEXTS) -> list[bytes]:
    return [chunk({"content": text}) for text in texts]


def finish_chunk() -> bytes:
    return chunk({}, "stop")


def usage_chunk() -> bytes:
    return event({**BASE, "choices": [], "usage": USAGE})


def full_stream_events() -> list[bytes]:
    return [
        role_chunk(),
        *content_chunks(),
        finish_chunk(),
        usage_chunk(),
        DONE_EVENT,
    ]


def full_stream() -> bytes:
    return b"".join(full_stream_events())


def run(pieces: Sequence[bytes], include_usage: bool = False) -> tuple[bytes, PassthroughStream]:
    decoder = PassthroughStream("openai", include_usage)
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return out + decoder.finish(), decoder


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def expected(include_usage: bool) -> bytes:
    events = full_stream_events()
    if not include_usage:
        events.remove(usage_chunk())
    return b"".join(events)


def data_payloads(stream: bytes) -> list[bytes]:
    return [e[len(b"data: ") :] for e in stream.split(b"\n\n") if e]


# --------------------------------------------------------------------------- PassthroughStream


@pytest.mark.parametrize("include_usage", [False, True])
def test_whole_stream_passes_through(include_usage: bool) -> None:
    out, decoder = run([full_stream()], include_usage)
    assert out == expected(include_usage)
    assert decoder.complete is True
    assert decoder.error is None
    assert decoder.usage == EXPECTED_USAGE


def test_usage_chunk_is_dropped_when_the_client_did_not_ask_for_it() -> None:
    out, decoder = run([full_stream()], include_usage=False)
    assert b'"choices":[]' not in out
    assert b'"prompt_tokens":12' not in out
    assert decoder.usage == EXPECTED_USAGE
    assert out.endswith(DONE_EVENT)
    assert out.count(DONE_EVENT) == 1


def test_usage_chunk_is_kept_when_the_client_asked_for_it() -> None:
    out, decoder = run([full_stream()], include_usage=True)
    assert usage_chunk() in out
    assert out.index(usage_chunk()) < out.index(DONE_EVENT)
    assert decoder.usage == EXPECTED_USAGE


@pytest.mark.parametrize("include_usage", [False, True])
def test_split_at_every_byte_boundary_gives_identical_output(include_usage: bool) -> None:
    data = full_stream()
    want = expected(include_usage)
    for cut in range(1, len(data)):
        out, decoder = run([data[:cut], data[cut:]], include_usage)
        assert out == want, f"cut at byte {cut}"
        assert decoder.usage == EXPECTED_USAGE
        assert decoder.complete is True


def test_one_byte_at_a_time_gives_identical_output() -> None:
    data = full_stream()
    out, decoder = run([data[i : i + 1] for i in range(len(data))])
    assert out == expected(False)
    assert decoder.usage == EXPECTED_USAGE


@pytest.mark.parametrize("include_usage", [False, True])
def test_split_at_random_boundaries_gives_identical_output(include_usage: bool) -> None:
    rng = random.Random(20241124)
    data = full_stream()
    want = expected(include_usage)
    for trial in range(200):
        cuts = rng.sample(range(1, len(data)), rng.randint(1, 40))
        out, decoder = run(split_at(data, cuts), include_usage)
        assert out == want, f"trial {trial}: cuts {sorted(cuts)}"
        assert decoder.usage == EXPECTED_USAGE


def test_empty_feeds_are_harmless() -> None:
    data = full_stream()
    out, _ = run([b"", data[:10], b"", data[10:], b""])
    assert out == expected(False)


def test_crlf_line_endings_work() -> None:
    data = full_stream().replace(b"\n", b"\r\n")
    out, decoder = run([data])
    assert out == expected(False)
    assert decoder.complete is True
    assert decoder.usage == EXPECTED_USAGE


def test_crlf_stream_split_at_every_byte_boundary_gives_identical_output() -> None:
    data = full_stream().replace(b"\n", b"\r\n")
    want = expected(False)
    for cut in range(1, len(data)):
        out, decoder = run([data[:cut], data[cut:]])
        assert out == want, f"cut at byte {cut}: {data[cut - 3 : cut + 3]!r}"
        assert decoder.usage == EXPECTED_USAGE


def test_crlf_stream_at_random_boundaries_gives_identical_output() -> None:
    rng = random.Random(7)
    data = full_stream().replace(b"\n", b"\r\n")
    for trial in range(200):
        cuts = rng.sample(range(1, len(data)), rng.randint(1, 40))
        out, _ = run(split_at(data, cuts))
        assert out == expected(False), f"trial {trial}: cuts {sorted(cuts)}"


def test_stream_cut_before_the_finish_reason_raises_from_finish() -> None:
    decoder = PassthroughStream("openai", False)
    out = decoder.feed(role_chunk() + b"".join(content_chunks()))
    assert out == role_chunk() + b"".join(content_chunks())
    assert decoder.complete is False
    with pytest.raises(UpstreamError) as info:
        decoder.finish()
    assert info.value.provider == "openai"
    assert info.value.status == 502


def test_stream_cut_in_the_middle_of_an_event_raises_from_finish() -> None:
    data = role_chunk() + content_chunks()[0]
    decoder = PassthroughStream("openai", False)
    decoder.feed(data[: len(data) - 7])
    with pytest.raises(UpstreamError):
        decoder.finish()


def test_empty_stream_raises_from_finish() -> None:
    with pytest.raises(UpstreamError):
        PassthroughStream("openai", False).finish()


def test_stream_with_a_finish_reason_but_no_done_gets_done_appended() -> None:
    data = role_chunk() + b"".join(content_chunks()) + finish_chunk() + usage_chunk()
    decoder = PassthroughStream("openai", False)
    out = decoder.feed(data)
    tail = decoder.finish()
    assert tail == DONE_EVENT
    assert out + tail == role_chunk() + b"".join(content_chunks()) + finish_chunk() + DONE_EVENT
    assert decoder.usage == EXPECTED_USAGE


def test_stream_with_done_does_not_get_a_second_done() -> None:
    decoder = PassthroughStream("openai", True)
    out = decoder.feed(full_stream())
    assert decoder.finish() == b""
    assert out.count(DONE_EVENT) == 1


def test_last_event_without_its_blank_line_is_flushed_by_finish() -> None:
    data = role_chunk() + finish_chunk() + b"data: [DONE]"
    out, decoder = run([data])
    assert out == role_chunk() + finish_chunk() + DONE_EVENT
    assert decoder.complete is True


def test_in_stream_error_event_sets_error_and_is_forwarded() -> None:
    error_event = event({"error": {"message": "The server is overloaded", "type": "server_error"}})
    data = role_chunk() + content_chunks()[0] + error_event
    decoder = PassthroughStream("openai", False)
    out = decoder.feed(data)
    assert out == data
    assert isinstance(decoder.error, UpstreamError)
    assert "overloaded" in decoder.error.message
    assert decoder.error.provider == "openai"
    # the stream did end with an error: finish() returns instead of raising a second one
    assert decoder.finish() == b""


def test_in_stream_error_split_at_every_byte_boundary_is_detected() -> None:
    error_event = event({"error": {"message": "boom", "type": "server_error"}})
    data = role_chunk() + error_event
    for cut in range(1, len(data)):
        _, decoder = run([data[:cut], data[cut:]])
        assert decoder.error is not None, f"cut at byte {cut}"


def test_content_mentioning_error_and_usage_does_not_confuse_the_decoder() -> None:
    texts = ('{"error": "x"}', '"usage": {"total_tokens": 5}', "error", "usage")
    data = role_chunk() + b"".join(content_chunks(texts)) + finish_chunk() + DONE_EVENT
    out, decoder = run([data])
    assert out == data
    assert decoder.error is None
    assert decoder.usage is None
    assert decoder.complete is True
    contents = [
        orjson.loads(p)["choices"][0]["delta"].get("content") for p in data_payloads(out)[1:5]
    ]
    assert contents == list(texts)


def test_comments_and_other_fields_pass_through() -> None:
    data = b": keep-alive\n\n" + b"event: message\n" + role_chunk() + finish_chunk() + DONE_EVENT
    out, decoder = run([data])
    assert out == data
    assert decoder.complete is True


def test_usage_on_a_choice_chunk_is_read_and_the_chunk_kept() -> None:
    # Some OpenAI-compatible servers put usage on the finish chunk itself.
    choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
    last = event({**BASE, "choices": [choice], "usage": USAGE})
    out, decoder = run([role_chunk() + last + DONE_EVENT])
    assert out == role_chunk() + last + DONE_EVENT
    assert decoder.usage == EXPECTED_USAGE
    assert decoder.complete is True


def test_decoder_repr_is_short() -> None:
    assert "openai" in repr(PassthroughStream("openai", False))


# --------------------------------------------------------------------------- encode_chat


def request(**fields: Any) -> ChatRequest:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "gpt-4o",
    }
    body.update(fields)
    # a key order and spacing orjson would not produce, to tell forwarded bytes apart
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    return parse_chat_request(raw)


def translator(api_key: str | None = PROVIDER_KEY) -> OpenAITranslator:
    return OpenAITranslator("openai", "https://api.openai.com/v1", api_key, {"OpenAI-Org": "acme"})


def sent_body(req: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(translator().encode_chat(req, model).body)
    return body


def test_client_bytes_are_forwarded_untouched_when_nothing_changes() -> None:
    req = request(temperature=0.3, unknown_field={"x": 1})
    upstream = translator().encode_chat(req, "gpt-4o")
    assert upstream.body == req.raw
    assert upstream.method == "POST"
    assert upstream.url == "https://api.openai.com/v1/chat/completions"


def test_stream_with_include_usage_is_forwarded_untouched() -> None:
    req = request(stream=True, stream_options={"include_usage": True})
    assert translator().encode_chat(req, "gpt-4o").body == req.raw


def test_headers_carry_the_provider_key_and_extra_headers_lowercased() -> None:
    upstream = translator().encode_chat(request(), "gpt-4o")
    assert upstream.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert upstream.headers["content-type"] == "application/json"
    assert upstream.headers["openai-org"] == "acme"
    assert PROVIDER_KEY not in repr(upstream)


def test_no_authorization_header_without_a_key() -> None:
    upstream = translator(api_key=None).encode_chat(request(), "gpt-4o")
    assert "authorization" not in upstream.headers


def test_model_is_rewritten_and_everything_else_kept() -> None:
    req = request(temperature=0.3, unknown_field={"x": [1, 2]}, seed=7)
    body = sent_body(req, "gpt-4o-2024-08-06")
    assert body["model"] == "gpt-4o-2024-08-06"
    assert body["unknown_field"] == {"x": [1, 2]}
    assert body["temperature"] == 0.3
    assert body["seed"] == 7
    assert body["messages"] == req.body["messages"]
    assert "stream_options" not in body


def test_include_usage_is_forced_on_for_streams() -> None:
    body = sent_body(request(stream=True), "gpt-4o")
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_include_usage_false_is_turned_on_and_other_stream_options_kept() -> None:
    req = request(
        stream=True, stream_options={"include_usage": False, "continuous_usage_stats": True}
    )
    body = sent_body(req, "gpt-4o")
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert req.include_usage is False


def test_forced_include_usage_also_rewrites_the_model() -> None:
    body = sent_body(request(stream=True, foo="bar"), "other-model")
    assert body["model"] == "other-model"
    assert body["stream_options"] == {"include_usage": True}
    assert body["foo"] == "bar"


def test_stream_with_include_usage_and_a_new_model_keeps_stream_options() -> None:
    req = request(stream=True, stream_options={"include_usage": True, "extra": 1})
    body = sent_body(req, "other-model")
    assert body["model"] == "other-model"
    assert body["stream_options"] == {"include_usage": True, "extra": 1}


def test_encoding_does_not_mutate_the_client_request() -> None:
    req = request(stream=True, stream_options={"include_usage": False})
    before = orjson.dumps(req.body)
    sent_body(req, "other-model")
    assert orjson.dumps(req.body) == before
    assert req.model == "gpt-4o"


def test_stream_decoder_follows_the_clients_include_usage() -> None:
    decoder = translator().stream_decoder(
        request(stream=True, stream_options={"include_usage": True})
    )
    out = decoder.feed(full_stream()) + decoder.finish()
    assert out == expected(True)


# --------------------------------------------------------------------------- decode_chat


def test_decode_chat_returns_the_body_and_its_usage() -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }
    decoded = translator().decode_chat(orjson.dumps(completion))
    assert decoded.body == completion
    assert decoded.usage == EXPECTED_USAGE


def test_decode_chat_without_usage_has_none() -> None:
    decoded = translator().decode_chat(b'{"choices": []}')
    assert decoded.usage is None


@pytest.mark.parametrize(
    "garbage",
    [b"", b"<html>502 Bad Gateway</html>", b"[]", b'"text"', b'{"choices": "x"}', b"{}"],
)
def test_decode_chat_garbage_is_an_upstream_error(garbage: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        translator().decode_chat(garbage)
    assert info.value.status == 502
    assert info.value.provider == "openai"
    assert info.value.retryable is True


def test_decode_chat_error_body_with_status_200_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as info:
        translator().decode_chat(b'{"error": {"message": "model overloaded"}}')
    assert "model overloaded" in info.value.message


# --------------------------------------------------------------------------- decode_error


def error_body(message: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    )


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_a_502_that_does_not_relay_the_providers_text(status: int) -> None:
    text = "Incorrect API key provided: sk-prov************3456"
    error = translator().decode_error(status, error_body(text), {})
    assert isinstance(error, UpstreamAuthError)
    assert error.status == 502
    assert error.upstream_status == status
    assert "sk-prov" not in error.message
    assert "Incorrect API key" not in error.message
    assert "openai" in error.message


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_fault_keeps_status_message_and_param(status: int) -> None:
    body = error_body("Invalid value for 'temperature'", param="temperature", code="bad_value")
    error = translator().decode_error(status, body, {})
    assert isinstance(error, UpstreamClientError)
    assert error.status == status
    assert error.upstream_status == status
    assert error.message == "Invalid value for 'temperature'"
    assert error.param == "temperature"
    assert error.code == "bad_value"
    assert error.retryable is False
    assert error.to_dict()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_retryable_failures_are_502_upstream_errors(status: int) -> None:
    error = translator().decode_error(status, error_body("try again"), {})
    assert type(error) is UpstreamError
    assert error.status == 502
    assert error.upstream_status == status
    assert error.retryable is True
    assert "try again" in error.message
    assert error.retry_after_s is None


def test_retry_after_ms_header_sets_retry_after() -> None:
    error = translator().decode_error(429, b"", {"retry-after-ms": "1500"})
    assert error.retry_after_s == 1.5


def test_retry_after_seconds_header_sets_retry_after() -> None:
    error = translator().decode_error(503, b"", {"retry-after": "7"})
    assert error.retry_after_s == 7.0


def test_retry_after_http_date_header_sets_retry_after() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    error = translator().decode_error(500, b"", {"retry-after": when})
    assert error.retry_after_s is not None
    assert 100.0 < error.retry_after_s <= 121.0


def test_non_json_error_body_text_is_the_message() -> None:
    error = translator().decode_error(502, b"<html>Bad gateway from nginx</html>", {})
    assert "Bad gateway from nginx" in error.message


def test_empty_error_body_names_the_status() -> None:
    error = translator().decode_error(500, b"", {})
    assert "HTTP 500" in error.message
    client = translator().decode_error(404, b"", {})
    assert client.message == "HTTP 404"


def test_string_error_and_top_level_message_bodies_are_read() -> None:
    assert translator().decode_error(400, b'{"error": "bad thing"}', {}).message == "bad thing"
    assert (
        translator().decode_error(400, b'{"message": "other thing"}', {}).message == "other thing"
    )


def test_long_provider_messages_are_truncated() -> None:
    error = translator().decode_error(400, error_body("x" * 5000), {})
    assert len(error.message) == MAX_MESSAGE_CHARS


def test_unexpected_status_is_a_502() -> None:
    error = error_for_status("p", 302, "moved", {})
    assert error.status == 502
    assert error.upstream_status == 302


# --------------------------------------------------------------------------- parse_retry_after


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


def test_invalid_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0


def test_retry_after_fractional_seconds() -> None:
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5


def test_negative_retry_after_is_ignored() -> None:
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({"retry-after-ms": "-3", "retry-after": "2"}) == 2.0


def test_retry_after_http_date_is_relative_to_now() -> None:
    now = 1_700_000_000.0
    when = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=now) == 30.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = 1_700_000_000.0
    when = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=now) == 0.0


@pytest.mark.parametrize("headers", [{}, {"retry-after": ""}, {"retry-after": "whenever"}])
def test_missing_or_unparseable_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "inf"},
        {"retry-after": "nan"},
        {"retry-after-ms": "inf"},
        {"retry-after-ms": "nan"},
        {"retry-after": "1e400"},
    ],
)
def test_non_finite_retry_after_is_ignored(headers: dict[str, str]) -> None:
    # A delay must be a finite number of seconds: "inf" or "nan" from an upstream must not
    # become an infinite cool-down (or a NaN that compares false with every cap).
    assert parse_retry_after(headers) is None
