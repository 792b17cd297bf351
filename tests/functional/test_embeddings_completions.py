"""``/v1/embeddings`` and legacy ``/v1/completions`` through the gateway with the openai SDK."""

from __future__ import annotations

import base64
from typing import cast

import httpx
import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess


def test_embeddings_pass_through_with_usage_and_cost(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"], dimensions=4
    )
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 4
    assert result.usage.prompt_tokens == 8
    assert raw.headers["x-llm-edge-provider"] == "fake"
    seen = upstream.requests[-1]
    assert seen.path == "/v1/embeddings"
    assert seen.body["input"] == ["a", "b"] and seen.body["dimensions"] == 4
    meta = raw.http_response.json()["metadata"]
    assert meta["cost_usd"] == pytest.approx(8 * 0.02 / 1e6)


def test_embeddings_base64_encoding_reaches_the_upstream(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    vector = base64.b64encode(b"\x00\x00\x80\x3f" * 3).decode()
    upstream.push(
        Reply(
            json={
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )
    )
    result = client.embeddings.create(
        model="text-embedding-3-small", input="x", encoding_format="base64"
    )
    assert upstream.requests[-1].body["encoding_format"] == "base64"
    assert cast(object, result.data[0].embedding) == vector  # the SDK leaves base64 as is


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": [1, "a"]}, "input"),
        (
            {"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"},
            "encoding_format",
        ),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_embeddings_requests_are_400(
    gateway: GatewayProcess, upstream: FakeUpstream, body: dict[str, object], param: str
) -> None:
    response = httpx.post(f"{gateway.url}/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


def test_mock_provider_answers_embeddings_deterministically(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="mock-embed", input=["same", "other"])
    second = client.embeddings.create(model="mock-embed", input="same")
    assert first.data[0].embedding == second.data[0].embedding
    assert first.data[0].embedding != first.data[1].embedding
    assert abs(sum(x * x for x in first.data[0].embedding) - 1.0) < 1e-3
    assert first.usage.prompt_tokens > 0


def test_legacy_completions_pass_through(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once")
    assert completion.choices[0].text == " after Once"
    assert upstream.requests[-1].path == "/v1/completions"


def test_legacy_completions_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunk = (
        b'data: {"id":"c","object":"text_completion","created":1,"model":"m",'
        b'"choices":[{"index":0,"text":"%s","logprobs":null,"finish_reason":%s}]}\n\n'
    )
    upstream.push(
        Reply(events=[chunk % (b"Hel", b"null"), chunk % (b"lo", b'"stop"'), b"data: [DONE]\n\n"])
    )
    stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Hello"
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
