"""Bedrock Converse / ConverseStream: golden request, response and stream fixtures, SigV4
signing against known vectors, error mapping, cost with cache tokens."""

from __future__ import annotations

import datetime as dt
import random
import re
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest

from llm_edge_agent.errors import (
    InvalidRequestError,
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamError,
)
from llm_edge_agent.models import parse_chat_request
from llm_edge_agent.pricing import PricingTable, TokenUsage
from llm_edge_agent.providers.bedrock import AwsCredentials, BedrockTranslator
from llm_edge_agent.providers.sigv4 import sign_request

from .test_eventstream import encode_event

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOW = dt.datetime(2026, 11, 24, 12, 30, 45, tzinfo=dt.UTC)
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TEMP_CREDS = AwsCredentials("ASIAEXAMPLE", "secret-example", "session-token-example")
ID = re.compile(rb"chatcmpl-[0-9a-f]{32}")
SPLITS_PER_STREAM = 120
ERROR_CLASSES: dict[str, type[UpstreamError]] = {
    "UpstreamError": UpstreamError,
    "UpstreamAuthError": UpstreamAuthError,
    "UpstreamClientError": UpstreamClientError,
}


def _translator(credentials: AwsCredentials = CREDS, **kwargs: Any) -> BedrockTranslator:
    return BedrockTranslator("bedrock", "us-east-1", credentials, clock=lambda: NOW, **kwargs)


def _load(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def _names(pattern: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(pattern))


def _request(body: dict[str, Any]) -> Any:
    return parse_chat_request(orjson.dumps(body))


def _same_ids(data: bytes) -> bytes:
    return ID.sub(b"chatcmpl-ID", data)


# ------------------------------------------------------------------ requests


@pytest.mark.parametrize(
    "name", [n for n in _names("request_*.json") if n != "request_errors.json"]
)
def test_request_fixture_encodes_to_the_expected_converse_body(name: str) -> None:
    case = _load(name)
    up = _translator().encode_chat(_request(case["request"]), case["request"]["model"])
    assert orjson.loads(up.body) == case["expected"]


@pytest.mark.parametrize("case", _load("request_errors.json"), ids=lambda c: c["case"])
def test_unsupported_request_features_are_rejected_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translator().encode_chat(_request(case["request"]), case.get("model", MODEL))
    assert info.value.status == 400
    assert info.value.param == case["param"]
    assert case.get("message_contains", "") in info.value.message


def test_urls_percent_encode_the_model_id_and_pick_the_action_by_stream() -> None:
    t = _translator()
    base = "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
    plain = t.encode_chat(
        _request({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}), MODEL
    )
    assert plain.url == base + "anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert plain.headers["accept"] == "application/json"
    streamed = t.encode_chat(
        _request({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}]}),
        MODEL,
    )
    assert streamed.url == base + "anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    assert streamed.headers["accept"] == "application/vnd.amazon.eventstream"
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude"
    assert t.url_for(arn, False) == base + (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude"
        "/converse"
    )


def test_endpoint_override_is_used_without_a_trailing_slash() -> None:
    t = _translator(endpoint="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/")
    assert (
        t.url_for("m", True)
        == "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/model/m/converse-stream"
    )


# ------------------------------------------------------------------- signing


def test_sigv4_matches_the_aws_test_suite_get_vanilla_vector() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
    # test suite case "get-vanilla": fixed key, time, region and service.
    headers = sign_request(
        method="GET",
        url="https://example.amazonaws.com/",
        headers={},
        body=b"",
        credentials=CREDS,
        region="us-east-1",
        service="service",
        now=dt.datetime(2015, 8, 30, 12, 36, 0),
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert headers["x-amz-date"] == "20150830T123600Z"


def _botocore_headers(up: Any, credentials: AwsCredentials) -> dict[str, str]:
    """What botocore's own SigV4Auth.add_auth produces with its clock pinned to NOW."""
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    request = AWSRequest(
        method="POST",
        url=up.url,
        data=up.body,
        headers={"content-type": up.headers["content-type"], "accept": up.headers["accept"]},
    )
    creds = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    naive_now = NOW.replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive_now):
        SigV4Auth(creds, "bedrock", "us-east-1").add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


def test_encode_signs_exactly_as_botocore_does_with_the_injected_clock() -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    up = _translator().encode_chat(_request(body), MODEL)
    assert up.headers == _botocore_headers(up, CREDS)
    assert up.headers["x-amz-date"] == "20261124T123045Z"
    assert "x-amz-security-token" not in up.headers
    # Pinned: the canonical path double-encodes %3A, the body is hashed, four headers signed.
    assert up.headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date, "
        "Signature=" + _load("signature.json")["plain_text"]
    )


def test_a_session_token_is_sent_and_signed() -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hello"}]}
    up = _translator(TEMP_CREDS).encode_chat(_request(body), MODEL)
    assert up.headers["x-amz-security-token"] == "session-token-example"
    assert "x-amz-security-token" in up.headers["authorization"]
    assert up.headers == _botocore_headers(up, TEMP_CREDS)


def test_credentials_come_from_the_standard_variables_and_never_show_the_secret() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAKEY",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
        "AWS_SESSION_TOKEN": "token-secret",
    }
    creds = AwsCredentials.from_env(env)
    assert creds == AwsCredentials("AKIAKEY", "very-secret", "token-secret")
    assert "very-secret" not in repr(creds) and "token-secret" not in repr(creds)
    assert AwsCredentials.from_env({"AWS_ACCESS_KEY_ID": "AKIAKEY"}) is None
    assert AwsCredentials.from_env({**env, "AWS_SESSION_TOKEN": ""}) == AwsCredentials(
        "AKIAKEY", "very-secret"
    )
    assert creds is not None
    up = _translator(creds).encode_chat(
        _request({"model": "m", "messages": [{"role": "user", "content": "x"}]}), "m"
    )
    assert "very-secret" not in repr(up)


# ----------------------------------------------------------------- responses


@pytest.mark.parametrize("name", _names("response_*.json"))
def test_response_fixture_decodes_to_the_expected_openai_body(name: str) -> None:
    case = _load(name)
    completion = _translator().decode_chat(orjson.dumps(case["bedrock"]))
    assert orjson.loads(_same_ids(orjson.dumps(completion.body))) == case["expected"]


def test_cached_usage_counts_cache_reads_and_writes_into_prompt_tokens() -> None:
    completion = _translator().decode_chat(
        orjson.dumps(_load("response_cached_usage.json")["bedrock"])
    )
    assert completion.usage == TokenUsage(
        prompt_tokens=3220, completion_tokens=8, cached_tokens=3000, cache_write_tokens=200
    )


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"output": {}}', b'{"message": "x"}'])
def test_a_garbage_success_body_is_an_upstream_error(body: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        _translator().decode_chat(body)
    assert info.value.status == 502


def test_bedrock_cost_with_cache_tokens_matches_a_hand_computation() -> None:
    usage = (
        _translator()
        .decode_chat(orjson.dumps(_load("response_cached_usage.json")["bedrock"]))
        .usage
    )
    assert usage is not None
    # Claude 3.5 Haiku: $0.80 / 1M input, $4.00 output, read 0.1x = $0.08, write 1.25x = $1.00.
    by_hand = (20 * 0.80 + 3000 * 0.08 + 200 * 1.00 + 8 * 4.00) / 1_000_000
    assert PricingTable().cost(MODEL, usage) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.000488)


# ------------------------------------------------------------------- streams


def _stream_bytes(case: dict[str, Any]) -> bytes:
    return b"".join(encode_event(f["headers"], orjson.dumps(f["payload"])) for f in case["frames"])


def _decoder(case: dict[str, Any]) -> Any:
    body: dict[str, Any] = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    if case["include_usage"]:
        body["stream_options"] = {"include_usage": True}
    return _translator().stream_decoder(_request(body))


def _run(case: dict[str, Any], pieces: list[bytes]) -> bytes:
    decoder = _decoder(case)
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return _same_ids(out + decoder.finish())


STREAMS = _names("stream_*.json")


@pytest.mark.parametrize("name", STREAMS)
def test_stream_fixture_gives_the_expected_sse(name: str) -> None:
    case = _load(name)
    expected = (FIXTURES / name.replace(".json", ".sse")).read_bytes()
    assert _run(case, [_stream_bytes(case)]) == expected


@pytest.mark.parametrize("name", STREAMS)
def test_stream_fixture_split_at_random_boundaries_gives_identical_output(name: str) -> None:
    case = _load(name)
    data = _stream_bytes(case)
    whole = _run(case, [data])
    rng = random.Random(name)
    for _ in range(SPLITS_PER_STREAM):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _run(case, pieces) == whole


def test_stream_state_after_a_whole_answer() -> None:
    case = _load("stream_cached_usage.json")
    decoder = _decoder(case)
    decoder.feed(_stream_bytes(case))
    assert decoder.complete and decoder.ended and decoder.error is None
    assert decoder.usage == TokenUsage(
        prompt_tokens=3220, completion_tokens=8, cached_tokens=3000, cache_write_tokens=200
    )
    assert decoder.finish() == b""


@pytest.mark.parametrize(
    ("name", "error_class", "retryable"),
    [
        ("stream_throttling_exception.json", UpstreamError, True),
        ("stream_model_stream_error_exception.json", UpstreamError, True),
        ("stream_validation_exception.json", UpstreamClientError, False),
    ],
)
def test_an_in_stream_exception_becomes_the_error_and_a_final_error_event(
    name: str, error_class: type[UpstreamError], retryable: bool
) -> None:
    case = _load(name)
    decoder = _decoder(case)
    out = decoder.feed(_stream_bytes(case))
    assert type(decoder.error) is error_class and decoder.error.retryable is retryable
    assert out.endswith(b"data: " + decoder.error.to_json() + b"\n\n")
    assert b"[DONE]" not in out
    assert decoder.finish() == b""
    assert decoder.feed(encode_event({":event-type": "messageStop"}, b"{}")) == b""


def test_eof_before_message_stop_is_an_upstream_error() -> None:
    case = _load("stream_text.json")
    decoder = _decoder(case)
    frames = [encode_event(f["headers"], orjson.dumps(f["payload"])) for f in case["frames"]]
    decoder.feed(b"".join(frames[:3]))
    assert not decoder.complete
    with pytest.raises(UpstreamError, match="before it was complete"):
        decoder.finish()


def test_eof_after_message_stop_without_metadata_still_ends_with_done() -> None:
    case = _load("stream_text.json")
    decoder = _decoder(case)
    frames = [encode_event(f["headers"], orjson.dumps(f["payload"])) for f in case["frames"]]
    out = decoder.feed(b"".join(frames[:-1]))
    assert decoder.complete and not decoder.ended and b"[DONE]" not in out
    assert decoder.finish() == b"data: [DONE]\n\n"
    assert decoder.usage is None


def test_a_corrupt_frame_is_an_upstream_error() -> None:
    case = _load("stream_text.json")
    data = bytearray(_stream_bytes(case))
    data[30] ^= 0xFF
    with pytest.raises(UpstreamError, match="corrupt event stream"):
        _decoder(case).feed(bytes(data))


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "case",
    _load("errors.json"),
    ids=lambda c: c["headers"].get("x-amzn-errortype") or str(c["status"]),
)
def test_error_responses_map_through_the_status_table(case: dict[str, Any]) -> None:
    error = _translator().decode_error(case["status"], orjson.dumps(case["body"]), case["headers"])
    assert type(error) is ERROR_CLASSES[case["class"]]
    assert error.status == case["client_status"]
    assert error.code == case["code"]
    assert error.upstream_status == case["status"]
    assert error.retry_after_s == case.get("retry_after_s")
    if case["status"] != 403:  # an auth failure's text is never relayed: it may echo a key
        assert case["body"]["message"] in error.message
    else:
        assert "AKIA" not in error.message
