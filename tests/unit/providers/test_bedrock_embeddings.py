"""Bedrock ``/v1/embeddings``: InvokeModel for Amazon Titan and Cohere Embed, SigV4-signed."""

from __future__ import annotations

import base64
import datetime as dt
import struct
from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import InvalidRequestError, UpstreamError
from llm_edge_agent.models import ChatRequest, parse_embeddings_request
from llm_edge_agent.pipeline.operations import default_operations
from llm_edge_agent.pricing import TokenUsage
from llm_edge_agent.providers import bedrock, bedrock_embeddings
from llm_edge_agent.providers.bedrock import AwsCredentials, BedrockTranslator
from llm_edge_agent.providers.bedrock_embeddings import decode_embeddings, encode_embeddings
from llm_edge_agent.providers.sigv4 import sign_request

NOW = dt.datetime(2026, 11, 24, 12, 30, 45, tzinfo=dt.UTC)
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
ENDPOINT = "https://bedrock-runtime.us-east-1.amazonaws.com"
TITAN = "amazon.titan-embed-text-v2:0"
TITAN_G1 = "amazon.titan-embed-text-v1"
COHERE = "cohere.embed-english-v3"
COHERE_MULTI = "cohere.embed-multilingual-v3"
V0 = [0.5, -0.25, 1.0]
V1 = [0.125, 0.0, -2.0]


def _translator() -> BedrockTranslator:
    return BedrockTranslator("aws", "us-east-1", CREDS, clock=lambda: NOW)


def _request(model: str, **body: Any) -> ChatRequest:
    return parse_embeddings_request(orjson.dumps({"model": model, **body}))


def _encode(model: str, **body: Any) -> dict[str, Any]:
    return encode_embeddings(_request(model, **body).body, model)


def _unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _titan_answer(vector: list[float], tokens: int = 3) -> bytes:
    return orjson.dumps(
        {
            "embedding": vector,
            "inputTextTokenCount": tokens,
            "embeddingsByType": {"float": vector},
        }
    )


def _cohere_answer(texts: list[str], *vectors: list[float]) -> bytes:
    return orjson.dumps(
        {
            "embeddings": list(vectors),
            "id": "5a6b9b6e-0000-4000-8000-000000000000",
            "response_type": "embeddings_floats",
            "texts": texts,
        }
    )


# ---------------------------------------------------------------------- wiring


def test_translator_offers_embeddings_to_the_pipeline() -> None:
    translator = _translator()
    assert default_operations()["embeddings"].supported(translator)
    assert not default_operations()["completions"].supported(translator)


def test_other_operations_are_refused() -> None:
    translator = _translator()
    with pytest.raises(InvalidRequestError):
        translator.encode_operation("completions", _request(TITAN, input="x"), TITAN)
    with pytest.raises(InvalidRequestError):
        translator.decode_operation("completions", _titan_answer(V0))


def test_the_signing_service_matches_the_converse_requests() -> None:
    assert bedrock_embeddings.SERVICE == bedrock.SERVICE


# ---------------------------------------------------------------------- Titan requests


def test_titan_golden_request_is_signed_like_converse() -> None:
    request = _request(TITAN, input="hello world", dimensions=512)
    upstream = _translator().encode_operation("embeddings", request, TITAN)
    assert upstream.method == "POST"
    assert upstream.url == f"{ENDPOINT}/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert orjson.loads(upstream.body) == {
        "inputText": "hello world",
        "dimensions": 512,
        "normalize": True,
    }
    headers = upstream.headers
    assert headers["content-type"] == headers["accept"] == "application/json"
    assert headers["x-amz-date"] == "20261124T123045Z"
    assert headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/bedrock/aws4_request, "
        "SignedHeaders="
    )
    # The same signer, inputs and clock as the Converse requests: a deterministic signature.
    expected = sign_request(
        method="POST",
        url=upstream.url,
        headers={"content-type": "application/json", "accept": "application/json"},
        body=upstream.body,
        credentials=CREDS,
        region="us-east-1",
        service="bedrock",
        now=NOW,
    )
    assert headers == expected
    assert CREDS.secret_access_key not in repr(upstream)


def test_titan_without_dimensions_still_normalizes() -> None:
    assert _encode(TITAN, input=["only one"]) == {"inputText": "only one", "normalize": True}


@pytest.mark.parametrize("dimensions", [256, 512, 1024])
def test_titan_v2_accepted_dimensions(dimensions: int) -> None:
    assert _encode(TITAN, input="x", dimensions=dimensions)["dimensions"] == dimensions


@pytest.mark.parametrize("dimensions", [1, 384, 1536])
def test_titan_v2_other_dimensions_are_400(dimensions: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _encode(TITAN, input="x", dimensions=dimensions)
    assert info.value.param == "dimensions"
    assert "256, 512, 1024" in info.value.message


def test_titan_g1_takes_input_text_only() -> None:
    assert _encode(TITAN_G1, input="x") == {"inputText": "x"}
    with pytest.raises(InvalidRequestError) as info:
        _encode(TITAN_G1, input="x", dimensions=256)
    assert info.value.param == "dimensions"


def test_titan_refuses_several_inputs_naming_input() -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translator().encode_operation("embeddings", _request(TITAN, input=["a", "b"]), TITAN)
    assert info.value.status == 400
    assert info.value.param == "input"
    assert "one text per request" in info.value.message


@pytest.mark.parametrize("model", [TITAN, COHERE])
@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_token_arrays_are_refused_naming_input(model: str, tokens: list[Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _encode(model, input=tokens)
    assert info.value.param == "input"


# ---------------------------------------------------------------------- Cohere requests


@pytest.mark.parametrize("model", [COHERE, COHERE_MULTI, "us.cohere.embed-english-v3"])
def test_cohere_golden_request_defaults_to_search_document(model: str) -> None:
    upstream = _translator().encode_operation(
        "embeddings", _request(model, input=["doc one", "doc two"]), model
    )
    assert upstream.url == f"{ENDPOINT}/model/{model}/invoke"
    assert orjson.loads(upstream.body) == {
        "texts": ["doc one", "doc two"],
        "input_type": "search_document",
    }
    assert upstream.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_cohere_single_string_and_input_type_override() -> None:
    assert _encode(COHERE, input="query?", input_type="search_query") == {
        "texts": ["query?"],
        "input_type": "search_query",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "input_type": "image"}, "input_type"),
        ({"input": "x", "input_type": 3}, "input_type"),
        ({"input": "x", "dimensions": 256}, "dimensions"),
        ({"input": ["t"] * 97}, "input"),
    ],
)
def test_cohere_bad_requests_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _encode(COHERE, **body)
    assert info.value.status == 400
    assert info.value.param == param


def test_cohere_takes_96_texts() -> None:
    assert len(_encode(COHERE, input=["t"] * 96)["texts"]) == 96


@pytest.mark.parametrize("model", ["anthropic.claude-3-5-haiku-20241022-v1:0", "cohere.command-r"])
def test_other_models_are_refused_naming_model(model: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translator().encode_operation("embeddings", _request(model, input="x"), model)
    assert info.value.param == "model"


# ---------------------------------------------------------------------- responses


def test_titan_golden_response_with_token_count() -> None:
    completion = _translator().decode_operation("embeddings", _titan_answer(V0, tokens=7))
    assert completion.body == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": V0}],
        "model": "",  # filled in by the executor with the target's model
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    assert completion.usage == TokenUsage(prompt_tokens=7)


def test_titan_without_token_count_has_unknown_usage() -> None:
    completion = _translator().decode_operation("embeddings", orjson.dumps({"embedding": V0}))
    assert completion.usage is None
    assert completion.body["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


def test_cohere_golden_response_with_estimated_usage() -> None:
    texts = ["abcdefgh", "abcde"]
    completion = _translator().decode_operation("embeddings", _cohere_answer(texts, V0, V1))
    assert completion.body["data"] == [
        {"object": "embedding", "index": 0, "embedding": V0},
        {"object": "embedding", "index": 1, "embedding": V1},
    ]
    # No token count from Cohere: ~4 characters a token, 8 -> 2, 5 -> 2.
    assert completion.usage == TokenUsage(prompt_tokens=4)
    assert completion.body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_cohere_embeddings_by_type_uses_the_float_vectors() -> None:
    body = orjson.dumps(
        {
            "embeddings": {"float": [V0, V1], "int8": [[1, 2, 3], [4, 5, 6]]},
            "id": "x",
            "response_type": "embeddings_by_type",
            "texts": ["a", "b"],
        }
    )
    completion = _translator().decode_operation("embeddings", body)
    assert [d["embedding"] for d in completion.body["data"]] == [V0, V1]
    assert completion.usage == TokenUsage(prompt_tokens=2)


@pytest.mark.parametrize(
    "answer", [_titan_answer(V0), _cohere_answer(["a", "b"], V0, V1)], ids=["titan", "cohere"]
)
def test_base64_is_little_endian_float32(answer: bytes) -> None:
    body, _ = decode_embeddings("aws", answer, encoding_format="base64")
    vectors = [V0, V1][: len(body["data"])]
    for item, expected in zip(body["data"], vectors, strict=True):
        assert item["embedding"] == base64.b64encode(struct.pack("<3f", *expected)).decode()
        assert _unpack(item["embedding"]) == expected


def test_the_request_when_given_selects_base64() -> None:
    request = _request(TITAN, input="x", encoding_format="base64")
    completion = _translator().decode_operation("embeddings", _titan_answer(V0), request)
    assert _unpack(completion.body["data"][0]["embedding"]) == V0
    float_request = _request(TITAN, input="x", encoding_format="float")
    completion = _translator().decode_operation("embeddings", _titan_answer(V0), float_request)
    assert completion.body["data"][0]["embedding"] == V0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"message": "hi"}',
        b'{"embedding": "nope"}',
        b'{"embedding": [1, null]}',
        b'{"embeddings": []}',
        b'{"embeddings": [[1], "x"]}',
        b'{"embeddings": {"int8": [[1]]}}',
    ],
)
def test_malformed_answers_are_upstream_errors(body: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        _translator().decode_operation("embeddings", body)
    assert info.value.status == 502
    assert "aws" in info.value.message


def test_bedrock_errors_still_map_through_decode_error() -> None:
    error = _translator().decode_error(
        400,
        b'{"message": "Malformed input request: expected maxLength: 50000"}',
        {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/"},
    )
    assert error.status == 400
    assert "Malformed input request" in error.message
