"""Bedrock (Converse) behind the gateway, driven with the openai SDK, against a fake endpoint.

The fake replays the unit tests' Converse fixtures (``tests/unit/providers/fixtures/bedrock``)
and, for streams, their frames in AWS's binary event-stream framing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess
from ..unit.providers.test_eventstream import encode_event

FIXTURES = Path(__file__).parent.parent / "unit" / "providers" / "fixtures" / "bedrock"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def fixture(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    root = upstream_server.url.removesuffix("/v1")
    process = GatewayProcess(
        f"""
[[providers]]
name = "aws"
type = "bedrock"
region = "us-west-2"
base_url = "{root}"
models = ["anthropic.*"]
""",
        env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret"},
    )
    yield process
    process.cleanup()


def test_converse_request_is_signed_and_the_answer_translated(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(json=fixture("response_cached_usage.json")["bedrock"]))
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "From cache."
    assert completion.model == MODEL
    assert completion.usage is not None and completion.usage.prompt_tokens == 20 + 3000 + 200
    assert raw.http_response.json()["metadata"]["cost_usd"] is not None
    seen = upstream.requests[-1]
    # The model id's ':' stays percent-encoded on the wire, as it was signed.
    assert seen.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    auth = seen.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-west-2/bedrock/aws4_request" in auth
    assert "very-secret" not in json.dumps(seen.headers)
    assert seen.body["system"] == [{"text": "Be brief."}]


def test_converse_stream_is_decoded_from_binary_frames(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    case = fixture("stream_tool_calls.json")
    frames = case["frames"]
    assert isinstance(frames, list)
    upstream.push(
        Reply(events=[encode_event(f["headers"], orjson.dumps(f["payload"])) for f in frames])
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    indexes: set[int] = set()
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            indexes.update(call.index for call in choice.delta.tool_calls or [])
    assert finish == "tool_calls"
    assert indexes and min(indexes) == 0
    assert upstream.requests[-1].path.endswith("/converse-stream")


def test_throttling_inside_the_stream_ends_with_an_error_event(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    case = fixture("stream_throttling_exception.json")
    frames = case["frames"]
    assert isinstance(frames, list)
    # The frames arrive apart, so the content reaches the client before the exception: too
    # late to fail over (a failure before the first content is retried: test_resilience).
    events = [encode_event(f["headers"], orjson.dumps(f["payload"])) for f in frames]
    upstream.push(Reply(events=events, event_delay_s=0.05))
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
