"""Gemini ``/v1/embeddings``: ``batchEmbedContents`` request and response translation."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import InvalidRequestError, UpstreamError
from llm_edge_agent.models import ChatRequest, parse_embeddings_request
from llm_edge_agent.pipeline.operations import default_operations
from llm_edge_agent.pricing import TokenUsage
from llm_edge_agent.providers import gemini, gemini_embeddings
from llm_edge_agent.providers.gemini import GeminiTranslator
from llm_edge_agent.providers.gemini_embeddings import (
    decode_embeddings,
    encode_embeddings,
    estimate_tokens,
    pack_base64,
)

KEY = "AIza-provider-secret"
MODEL = "gemini-embedding-001"
BASE = "https://generativelanguage.googleapis.com"
# Exactly representable in float32, so base64 round trips compare equal.
V0 = [0.5, -0.25, 1.0]
V1 = [0.125, 0.0, -2.0]


def _translator() -> GeminiTranslator:
    return GeminiTranslator("google", BASE, KEY, clock=lambda: 0.0)


def _request(**body: Any) -> ChatRequest:
    return parse_embeddings_request(orjson.dumps({"model": MODEL, **body}))


def _answer(*vectors: list[float], **extra: Any) -> bytes:
    return orjson.dumps({"embeddings": [{"values": v} for v in vectors], **extra})


def _unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---------------------------------------------------------------------- wiring


def test_translator_offers_embeddings_to_the_pipeline() -> None:
    translator = _translator()
    assert default_operations()["embeddings"].supported(translator)
    assert not default_operations()["completions"].supported(translator)


@pytest.mark.parametrize("kind", ["completions", "chat/completions"])
def test_other_operations_are_refused(kind: str) -> None:
    translator = _translator()
    with pytest.raises(InvalidRequestError):
        translator.encode_operation(kind, _request(input="x"), MODEL)
    with pytest.raises(InvalidRequestError):
        translator.decode_operation(kind, _answer(V0))


def test_constants_match_the_chat_translator() -> None:
    assert gemini_embeddings.API_VERSION == gemini.API_VERSION
    assert gemini_embeddings.MODEL_PREFIXES == gemini.MODEL_PREFIXES


# ---------------------------------------------------------------------- requests


def test_golden_request_for_several_texts_with_dimensions() -> None:
    upstream = _translator().encode_operation(
        "embeddings", _request(input=["first", "second"], dimensions=768), MODEL
    )
    assert upstream.method == "POST"
    assert upstream.url == f"{BASE}/v1beta/models/{MODEL}:batchEmbedContents"
    assert upstream.headers["x-goog-api-key"] == KEY
    assert upstream.headers["content-type"] == "application/json"
    assert orjson.loads(upstream.body) == {
        "requests": [
            {
                "model": f"models/{MODEL}",
                "content": {"parts": [{"text": "first"}]},
                "outputDimensionality": 768,
            },
            {
                "model": f"models/{MODEL}",
                "content": {"parts": [{"text": "second"}]},
                "outputDimensionality": 768,
            },
        ]
    }


def test_a_single_string_without_dimensions() -> None:
    body = encode_embeddings(_request(input="hello", user="u-1").body, MODEL)
    assert body == {
        "requests": [{"model": f"models/{MODEL}", "content": {"parts": [{"text": "hello"}]}}]
    }


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("models/text-embedding-004", "models/text-embedding-004"),
        ("tunedModels/my-embedder", "tunedModels/my-embedder"),
    ],
)
def test_a_model_prefix_is_kept_not_doubled(model: str, path: str) -> None:
    upstream = _translator().encode_operation("embeddings", _request(input="x"), model)
    assert upstream.url == f"{BASE}/v1beta/{path}:batchEmbedContents"
    assert orjson.loads(upstream.body)["requests"][0]["model"] == path


def test_a_base_url_ending_in_the_version_is_not_doubled() -> None:
    translator = GeminiTranslator("google", f"{BASE}/v1beta/", KEY)
    upstream = translator.encode_operation("embeddings", _request(input="x"), MODEL)
    assert upstream.url == f"{BASE}/v1beta/models/{MODEL}:batchEmbedContents"


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_token_arrays_are_refused_naming_input(tokens: list[Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translator().encode_operation("embeddings", _request(input=tokens), MODEL)
    assert info.value.status == 400
    assert info.value.param == "input"
    assert "text" in info.value.message


# ---------------------------------------------------------------------- responses


def test_golden_response_as_floats() -> None:
    completion = _translator().decode_operation("embeddings", _answer(V0, V1))
    assert completion.body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": V0},
            {"object": "embedding", "index": 1, "embedding": V1},
        ],
        "model": "",  # filled in by the executor with the target's model
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    # No usageMetadata and no input texts: the usage is unknown, not zero.
    assert completion.usage is None


def test_base64_is_little_endian_float32() -> None:
    body, _ = decode_embeddings("google", orjson.loads(_answer(V0, V1)), encoding_format="base64")
    encoded = [item["embedding"] for item in body["data"]]
    assert all(isinstance(e, str) for e in encoded)
    assert encoded[0] == base64.b64encode(struct.pack("<3f", *V0)).decode()
    assert [_unpack(e) for e in encoded] == [V0, V1]


def test_base64_rounds_to_float32_like_openai() -> None:
    assert _unpack(pack_base64([0.1])) == [struct.unpack("<f", struct.pack("<f", 0.1))[0]]
    assert pack_base64([]) == ""


def test_float_format_is_the_default_and_explicit() -> None:
    parsed = orjson.loads(_answer(V0))
    for fmt in (None, "float"):
        body, _ = decode_embeddings("google", parsed, encoding_format=fmt)
        assert body["data"][0]["embedding"] == V0


def test_the_request_when_given_selects_base64_and_estimates_usage() -> None:
    request = _request(input=["abcdefgh", "abcde"], encoding_format="base64")
    completion = _translator().decode_operation("embeddings", _answer(V0, V1), request)
    assert [_unpack(d["embedding"]) for d in completion.body["data"]] == [V0, V1]
    # ~4 characters a token, rounded up per text: 8 -> 2, 5 -> 2.
    assert completion.usage == TokenUsage(prompt_tokens=4)
    assert completion.body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_usage_metadata_wins_over_the_estimate() -> None:
    parsed = orjson.loads(_answer(V0, usageMetadata={"promptTokenCount": 11}))
    body, usage = decode_embeddings("google", parsed, texts=["a" * 400])
    assert usage == TokenUsage(prompt_tokens=11)
    assert body["usage"] == {"prompt_tokens": 11, "total_tokens": 11}


@pytest.mark.parametrize(
    ("texts", "tokens"),
    [([""], 0), (["a"], 1), (["abcd"], 1), (["abcde"], 2), (["héllo wörld", "x"], 4)],
)
def test_token_estimate(texts: list[str], tokens: int) -> None:
    assert estimate_tokens(texts) == tokens


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        b"{}",
        b'{"embeddings": []}',
        b'{"embeddings": [{"values": "nope"}]}',
        b'{"embeddings": [{"values": [1, true]}]}',
        b'{"embeddings": ["x"]}',
    ],
)
def test_malformed_answers_are_upstream_errors(body: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        _translator().decode_operation("embeddings", body)
    assert info.value.status == 502
    assert "google" in info.value.message


def test_gemini_errors_still_map_through_decode_error() -> None:
    error = _translator().decode_error(
        400,
        orjson.dumps({"error": {"code": 400, "message": "bad dims", "status": "INVALID_ARGUMENT"}}),
        {},
    )
    assert error.status == 400
    assert "bad dims" in error.message
