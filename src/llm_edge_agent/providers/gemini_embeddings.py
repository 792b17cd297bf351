"""``POST /v1/embeddings`` for Gemini: ``models/{model}:batchEmbedContents``.

API reference: https://ai.google.dev/api/embeddings (``models.batchEmbedContents``).

* Request: one ``EmbedContentRequest`` per input, in order, each
  ``{"model": "models/{model}", "content": {"parts": [{"text": ...}]}}``, with
  ``outputDimensionality`` when the client sent ``dimensions`` (Gemini truncates the vector
  to that size). ``taskType`` is left unset (the model's default); ``user`` is dropped.
* Gemini embeds text only: token-array inputs are refused with 400 ``param="input"``.
* Response: ``{"embeddings": [{"values": [...]}, ...]}`` in request order, made into an
  OpenAI ``list`` of ``embedding`` objects. With ``encoding_format: "base64"`` each vector is
  sent as OpenAI does: little-endian float32 bytes, base64-encoded.
* Usage: the batch response carries no token counts. ``usageMetadata.promptTokenCount`` is
  used when present; otherwise the prompt tokens are *estimated* from the input texts at
  about 4 characters a token (Google's own rule of thumb for Gemini models), when the texts
  are known to the decoder. When they are not, usage is unknown (``None``) and the body
  reports 0.

The OpenAI-shape helpers here (``texts_of``, ``openai_embeddings``, ``estimate_tokens``) are
shared with ``bedrock_embeddings``. Everything is pure: no I/O, clock or environment.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from ..errors import InvalidRequestError, UpstreamError
from ..pricing import TokenUsage

BATCH_EMBED: Final = "batchEmbedContents"
API_VERSION: Final = "v1beta"  # as gemini.API_VERSION
MODEL_PREFIXES: Final = ("models/", "tunedModels/")  # as gemini.MODEL_PREFIXES
CHARS_PER_TOKEN: Final = 4  # the usual estimate when a provider reports no token count
BASE64: Final = "base64"

Json = dict[str, Any]


# ---------------------------------------------------------------------- shared helpers


def texts_of(body: Mapping[str, Any], provider: str) -> list[str]:
    """The client's ``input`` as texts; token arrays are refused (the provider takes text).

    ``parse_embeddings_request`` has already checked the shape: a string, strings, a token
    array, or token arrays.
    """
    value = body["input"]
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidRequestError(
        f"{provider} embeds text only: 'input' must be a string or an array of strings, "
        "not token ids",
        param="input",
        code="invalid_value",
    )


def estimate_tokens(texts: Sequence[str]) -> int:
    """About 4 characters a token (rounded up per text): an estimate, not a count."""
    return sum(-(-len(text) // CHARS_PER_TOKEN) for text in texts)


def pack_base64(values: Sequence[float]) -> str:
    """A vector as OpenAI sends it with ``encoding_format: "base64"``: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def vector(values: Any, provider: str) -> list[float]:
    """A list of numbers, or ``UpstreamError`` naming the provider."""
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise UpstreamError(
            f"provider {provider!r} returned an embedding that is not a list of numbers",
            provider=provider,
        )
    return values


def openai_embeddings(
    vectors: Sequence[list[float]],
    usage: TokenUsage | None,
    *,
    encoding_format: str | None = None,
    model: str = "",
) -> Json:
    """The OpenAI ``/v1/embeddings`` response body. An empty ``model`` is filled in by the
    executor with the target's model. Unknown usage is reported as 0 tokens."""
    as_base64 = encoding_format == BASE64
    prompt = usage.prompt_tokens if usage is not None else 0
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": pack_base64(values) if as_base64 else values,
            }
            for i, values in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


# ---------------------------------------------------------------------- Gemini


def resource_name(model: str) -> str:
    """``models/<name>`` (a ``models/`` or ``tunedModels/`` prefix is kept, not doubled)."""
    return model if model.startswith(MODEL_PREFIXES) else f"models/{model}"


def embeddings_url(base_url: str, model: str) -> str:
    """``{base}/v1beta/models/{model}:batchEmbedContents`` (``base_url`` without version)."""
    path = quote(resource_name(model), safe="/-._~")
    return f"{base_url}/{API_VERSION}/{path}:{BATCH_EMBED}"


def encode_embeddings(body: Mapping[str, Any], model: str) -> Json:
    """The ``BatchEmbedContentsRequest`` for an OpenAI embeddings body."""
    name = resource_name(model)
    dimensions = body.get("dimensions")
    requests: list[Json] = []
    for text in texts_of(body, "Gemini"):
        item: Json = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return {"requests": requests}


def decode_embeddings(
    provider: str,
    parsed: Any,
    *,
    encoding_format: str | None = None,
    texts: Sequence[str] | None = None,
    model: str = "",
) -> tuple[Json, TokenUsage | None]:
    """(OpenAI embeddings body, usage) from a parsed ``BatchEmbedContentsResponse``.

    ``texts`` (the inputs, when the caller knows them) feed the token estimate.
    """
    embeddings = parsed.get("embeddings") if isinstance(parsed, dict) else None
    if not isinstance(embeddings, list) or not embeddings:
        raise UpstreamError(
            f"provider {provider!r} returned a malformed batchEmbedContents response",
            provider=provider,
        )
    vectors = [
        vector(item.get("values") if isinstance(item, dict) else None, provider)
        for item in embeddings
    ]
    usage = _usage(parsed.get("usageMetadata"), texts)
    return openai_embeddings(vectors, usage, encoding_format=encoding_format, model=model), usage


def _usage(metadata: Any, texts: Sequence[str] | None) -> TokenUsage | None:
    if isinstance(metadata, dict):
        count = metadata.get("promptTokenCount", metadata.get("totalTokenCount"))
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return TokenUsage(prompt_tokens=count)
    if texts is None:
        return None
    # Gemini's batch answer has no token count: ~4 characters a token is an estimate.
    return TokenUsage(prompt_tokens=estimate_tokens(texts))
