"""``/v1/embeddings`` through the real gateway to Gemini and Bedrock (Titan, Cohere), driven
with the openai SDK against the fake upstream speaking each provider's wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess

GEMINI = "gemini-embedding-001"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
# Exactly representable in float32, so they survive any float/base64 round trip.
V0 = [0.5, -0.25, 1.0]
V1 = [0.125, 0.0, -2.0]


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

[[providers]]
name = "aws"
type = "bedrock"
region = "us-west-2"
base_url = "{root}"
models = ["amazon.*", "cohere.*"]
""",
        env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret"},
    )
    yield process
    process.cleanup()


# ---------------------------------------------------------------------- Gemini


def test_gemini_batch_embed_contents(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push(Reply(json={"embeddings": [{"values": V0}, {"values": V1}]}))
    raw = client.embeddings.with_raw_response.create(
        model=GEMINI, input=["first", "second"], dimensions=3
    )
    result = raw.parse()
    assert [d.embedding for d in result.data] == [V0, V1]
    assert [d.index for d in result.data] == [0, 1]
    assert result.model == GEMINI
    assert raw.headers["x-llm-edge-provider"] == "google"
    seen = upstream.requests[-1]
    assert seen.path == f"/v1beta/models/{GEMINI}:batchEmbedContents"
    assert seen.headers["x-goog-api-key"] == "gemini-secret"
    assert seen.body == {
        "requests": [
            {
                "model": f"models/{GEMINI}",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 3,
            }
            for text in ("first", "second")
        ]
    }


def test_gemini_usage_metadata_is_reported(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push(
        Reply(json={"embeddings": [{"values": V0}], "usageMetadata": {"promptTokenCount": 5}})
    )
    result = client.embeddings.create(model=GEMINI, input="hello", encoding_format="float")
    assert result.data[0].embedding == V0
    assert result.usage.prompt_tokens == 5
    assert result.usage.total_tokens == 5


def test_gemini_token_arrays_are_400_before_any_upstream_call(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=GEMINI, input=[[1, 2, 3]])
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "input"
    assert upstream.requests == []


def test_gemini_upstream_error_reaches_the_client(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=400,
            json={
                "error": {
                    "code": 400,
                    "message": "outputDimensionality is out of range",
                    "status": "INVALID_ARGUMENT",
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=GEMINI, input="x", dimensions=99999)
    assert "outputDimensionality" in str(info.value)


# ---------------------------------------------------------------------- Bedrock Titan


def test_titan_invoke_model_is_signed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push(
        Reply(
            json={
                "embedding": V0,
                "inputTextTokenCount": 7,
                "embeddingsByType": {"float": V0},
            }
        )
    )
    raw = client.embeddings.with_raw_response.create(model=TITAN, input="hello", dimensions=256)
    result = raw.parse()
    assert result.data[0].embedding == V0
    assert result.model == TITAN
    assert result.usage.prompt_tokens == 7
    assert raw.headers["x-llm-edge-provider"] == "aws"
    seen = upstream.requests[-1]
    # The model id's ':' stays percent-encoded on the wire, as it was signed.
    assert seen.path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert seen.body == {"inputText": "hello", "dimensions": 256, "normalize": True}
    auth = seen.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-west-2/bedrock/aws4_request" in auth
    assert "very-secret" not in json.dumps(seen.headers)


def test_titan_refuses_several_inputs(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/embeddings", json={"model": TITAN, "input": ["a", "b"]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "input"
    assert "one text per request" in error["message"]
    assert upstream.requests == []


# ---------------------------------------------------------------------- Bedrock Cohere


def test_cohere_invoke_model_with_estimated_usage(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    texts = ["abcdefgh", "abcde"]
    upstream.push(
        Reply(
            json={
                "embeddings": [V0, V1],
                "id": "5a6b9b6e-0000-4000-8000-000000000000",
                "response_type": "embeddings_floats",
                "texts": texts,
            }
        )
    )
    result = client.embeddings.create(model=COHERE, input=texts)
    assert [d.embedding for d in result.data] == [V0, V1]
    assert result.model == COHERE
    assert result.usage.prompt_tokens == 4  # estimated: ~4 characters a token
    seen = upstream.requests[-1]
    assert seen.path == f"/model/{COHERE}/invoke"
    assert seen.body == {"texts": texts, "input_type": "search_document"}
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_cohere_input_type_from_extra_body(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push(Reply(json={"embeddings": [V0], "id": "x", "response_type": "embeddings_floats"}))
    result = client.embeddings.create(
        model=COHERE, input="what is x?", extra_body={"input_type": "search_query"}
    )
    assert result.data[0].embedding == V0
    assert upstream.requests[-1].body == {"texts": ["what is x?"], "input_type": "search_query"}


def test_cohere_dimensions_are_400(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=COHERE, input="x", dimensions=256)
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "dimensions"
    assert upstream.requests == []


def test_bedrock_validation_error_reaches_the_client(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=400,
            json={"message": "Malformed input request: #: extraneous key [foo]"},
            headers={"x-amzn-errortype": "ValidationException:http://internal.amazon.com/"},
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=COHERE, input="x")
    assert "Malformed input request" in str(info.value)


def test_explicit_base64_is_encoded_by_the_gateway_with_estimated_usage(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    import base64
    import struct

    upstream.push(Reply(json={"embeddings": [{"values": V0}]}))
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": GEMINI, "input": "some text to embed", "encoding_format": "base64"},
    )
    assert response.status_code == 200
    body = response.json()
    vector = struct.unpack("<3f", base64.b64decode(body["data"][0]["embedding"]))
    assert list(vector) == V0
    assert body["usage"]["prompt_tokens"] > 0
    assert body["metadata"]["cost_usd"] is not None
