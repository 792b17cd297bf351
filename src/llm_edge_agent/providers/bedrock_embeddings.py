"""``POST /v1/embeddings`` for Bedrock: ``InvokeModel`` on an embeddings model.

``POST {endpoint}/model/{modelId}/invoke`` with the model's own JSON body, signed with
SigV4 (service ``bedrock``) exactly like the Converse requests
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html).
Two families are supported, recognised from the model id (a cross-region prefix such as
``us.`` is allowed):

Amazon Titan text embeddings (``amazon.titan-embed-text-v2:0``, and the G1 model
``amazon.titan-embed-text-v1``; docs: model-parameters-titan-embed-text):

* One text per call: ``{"inputText": ..., "dimensions": n, "normalize": true}`` (V2; G1
  takes ``inputText`` only) -> ``{"embedding": [...], "inputTextTokenCount": n, ...}``.
  The gateway makes one upstream call per client request, so an ``input`` list of several
  texts is refused with 400 ``param="input"`` (a one-item list is fine): the client should
  send one text per request. ``normalize`` is always true, as OpenAI's vectors are unit
  length. ``dimensions`` must be one V2 accepts (256, 512, 1024); G1 has no ``dimensions``.

Cohere Embed v3 (``cohere.embed-english-v3``, ``cohere.embed-multilingual-v3``; docs:
model-parameters-embed-v3):

* ``{"texts": [...], "input_type": "search_document"}`` -> ``{"embeddings": [[...], ...],
  "id": ..., "response_type": "embeddings_floats", "texts": [...]}``. Up to 96 texts a call.
* ``input_type`` is required by Cohere and has no OpenAI equivalent. The default is
  ``search_document``: ``/v1/embeddings`` is mostly used to embed a corpus for retrieval,
  and Cohere says to embed documents with it. Queries should be embedded with
  ``search_query``: a client may say so with an extra body field ``input_type`` (one of
  ``COHERE_INPUT_TYPES``; the openai SDK sends it with ``extra_body``).
* v3 vectors have a fixed size (1024): ``dimensions`` is refused with 400.
* The answer has no token count: prompt tokens are estimated from the echoed ``texts`` at
  about 4 characters a token (Cohere's own rule of thumb).

Decoding sees only the answer body, not the model, so the family is told from the body's
shape: Titan answers with one ``embedding``, Cohere with a list of ``embeddings`` (or, when
``embedding_types`` was asked for, ``embeddings: {"float": [...]}``). Both are documented
and disjoint, so no model id is needed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import orjson

from ..errors import InvalidRequestError
from ..pricing import TokenUsage
from .base import UpstreamRequest
from .decoding import garbage
from .gemini_embeddings import estimate_tokens, openai_embeddings, texts_of, vector
from .sigv4 import AwsCredentials, sign_request

SERVICE: Final = "bedrock"  # as bedrock.SERVICE: the SigV4 signing name of bedrock-runtime
JSON: Final = "application/json"
TITAN_MARKERS: Final = ("amazon.titan-embed-text", "amazon.titan-embed-g1-text")
TITAN_V2_MARKER: Final = "amazon.titan-embed-text-v2"
TITAN_V2_DIMENSIONS: Final = frozenset({256, 512, 1024})
COHERE_MARKER: Final = "cohere.embed-"
COHERE_INPUT_TYPES: Final = frozenset(
    {"search_document", "search_query", "classification", "clustering"}
)
COHERE_DEFAULT_INPUT_TYPE: Final = "search_document"
COHERE_MAX_TEXTS: Final = 96

Json = dict[str, Any]


def _bad(param: str, message: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def is_titan(model: str) -> bool:
    return any(marker in model for marker in TITAN_MARKERS)


def is_cohere(model: str) -> bool:
    return COHERE_MARKER in model


def invoke_url(endpoint: str, model: str) -> str:
    """``{endpoint}/model/{modelId}/invoke``, the id percent-encoded as it is signed."""
    return f"{endpoint}/model/{quote(model, safe='')}/invoke"


def encode_embeddings(body: Mapping[str, Any], model: str) -> Json:
    """The ``InvokeModel`` body for an OpenAI embeddings body and a Bedrock model id."""
    if is_titan(model):
        return _titan(body, model)
    if is_cohere(model):
        return _cohere(body)
    raise _bad(
        "model",
        f"Bedrock model {model!r} is not an embeddings model the gateway supports "
        "(Amazon Titan text embeddings or Cohere Embed v3)",
        code="model_not_supported",
    )


def _titan(body: Mapping[str, Any], model: str) -> Json:
    texts = texts_of(body, "Amazon Titan")
    if len(texts) != 1:
        raise _bad(
            "input",
            f"Amazon Titan embeds one text per request, but 'input' holds {len(texts)}; "
            "send one string per request",
        )
    out: Json = {"inputText": texts[0]}
    dimensions = body.get("dimensions")
    if TITAN_V2_MARKER not in model:
        if dimensions is not None:
            raise _bad("dimensions", f"{model!r} has a fixed size: 'dimensions' is not supported")
        return out
    if dimensions is not None:
        if dimensions not in TITAN_V2_DIMENSIONS:
            allowed = ", ".join(str(d) for d in sorted(TITAN_V2_DIMENSIONS))
            raise _bad("dimensions", f"Amazon Titan V2 'dimensions' must be one of {allowed}")
        out["dimensions"] = dimensions
    out["normalize"] = True
    return out


def _cohere(body: Mapping[str, Any]) -> Json:
    texts = texts_of(body, "Cohere Embed")
    if len(texts) > COHERE_MAX_TEXTS:
        raise _bad(
            "input", f"Cohere Embed takes at most {COHERE_MAX_TEXTS} texts a request on Bedrock"
        )
    if body.get("dimensions") is not None:
        raise _bad("dimensions", "Cohere Embed v3 vectors have a fixed size (1024)")
    input_type = body.get("input_type", COHERE_DEFAULT_INPUT_TYPE)
    if input_type not in COHERE_INPUT_TYPES:
        allowed = ", ".join(sorted(COHERE_INPUT_TYPES))
        raise _bad("input_type", f"'input_type' must be one of {allowed}")
    return {"texts": texts, "input_type": input_type}


def encode_request(
    body: Mapping[str, Any],
    model: str,
    *,
    endpoint: str,
    region: str,
    credentials: AwsCredentials,
    now: dt.datetime,
) -> UpstreamRequest:
    """The signed ``InvokeModel`` request (the clock reading is the caller's)."""
    payload = orjson.dumps(encode_embeddings(body, model))
    url = invoke_url(endpoint, model)
    signed = sign_request(
        method="POST",
        url=url,
        headers={"content-type": JSON, "accept": JSON},
        body=payload,
        credentials=credentials,
        region=region,
        service=SERVICE,
        now=now,
    )
    return UpstreamRequest("POST", url, signed, payload)


def decode_embeddings(
    provider: str,
    body: bytes,
    *,
    encoding_format: str | None = None,
    model: str = "",
) -> tuple[Json, TokenUsage | None]:
    """(OpenAI embeddings body, usage) from a Titan or Cohere ``InvokeModel`` answer."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise garbage(provider, "a body that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise garbage(provider, "a malformed embeddings response")
    if "embedding" in parsed:  # Titan: one vector
        vectors = [vector(parsed["embedding"], provider)]
        usage = _titan_usage(parsed.get("inputTextTokenCount"))
    elif "embeddings" in parsed:  # Cohere: one vector per text
        vectors = _cohere_vectors(provider, parsed["embeddings"])
        texts = parsed.get("texts")
        usage = (
            TokenUsage(prompt_tokens=estimate_tokens(texts))  # ~4 characters a token
            if isinstance(texts, list) and all(isinstance(t, str) for t in texts)
            else None
        )
    else:
        raise garbage(provider, "a malformed embeddings response")
    return openai_embeddings(vectors, usage, encoding_format=encoding_format, model=model), usage


def _titan_usage(count: Any) -> TokenUsage | None:
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return TokenUsage(prompt_tokens=count)
    return None


def _cohere_vectors(provider: str, embeddings: Any) -> list[list[float]]:
    if isinstance(embeddings, dict):  # response_type "embeddings_by_type"
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list) or not embeddings:
        raise garbage(provider, "a malformed Cohere embeddings response")
    return [vector(item, provider) for item in embeddings]
