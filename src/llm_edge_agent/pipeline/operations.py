"""The endpoints that go to a provider, as the pipeline sees them.

An ``Operation`` says how to parse the client's body and which translator methods encode
and decode it; the pipeline (routing, failover, accounting) is the same for all of them.
Chat works with every translator; embeddings and legacy completions only with translators
that list them in ``operations`` (embeddings: the OpenAI dialect, Azure, Gemini, Bedrock;
legacy completions: the OpenAI dialect); other targets are skipped with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import InvalidRequestError
from ..models import (
    ChatRequest,
    parse_chat_request,
    parse_completions_request,
    parse_embeddings_request,
)
from ..providers.base import Completion, StreamDecoder, Translator, UpstreamRequest


class Operation(Protocol):
    path: str
    kind: str  # the cache key's endpoint name

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> ChatRequest: ...

    def supported(self, translator: Translator) -> bool: ...

    def encode(
        self, translator: Translator, request: ChatRequest, model: str
    ) -> UpstreamRequest: ...

    def decode(self, translator: Translator, body: bytes, request: ChatRequest) -> Completion: ...

    def stream_decoder(self, translator: Translator, request: ChatRequest) -> StreamDecoder: ...


class ChatOperation:
    path = "/v1/chat/completions"
    kind = "chat"

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return parse_chat_request(raw, headers)

    def supported(self, translator: Translator) -> bool:
        return True

    def encode(self, translator: Translator, request: ChatRequest, model: str) -> UpstreamRequest:
        return translator.encode_chat(request, model)

    def decode(self, translator: Translator, body: bytes, request: ChatRequest) -> Completion:
        return translator.decode_chat(body)

    def stream_decoder(self, translator: Translator, request: ChatRequest) -> StreamDecoder:
        return translator.stream_decoder(request)


class JsonOperation:
    """An OpenAI endpoint forwarded as JSON to translators that implement ``kind``."""

    def __init__(
        self,
        path: str,
        kind: str,
        parse: Callable[[bytes, Mapping[str, str] | None], ChatRequest],
    ) -> None:
        self.path = path
        self.kind = kind
        self._parse = parse

    def __repr__(self) -> str:
        return f"JsonOperation({self.path!r})"

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return self._parse(raw, headers)

    def supported(self, translator: Translator) -> bool:
        return self.kind in getattr(translator, "operations", ())

    def encode(self, translator: Translator, request: ChatRequest, model: str) -> UpstreamRequest:
        encode = getattr(translator, "encode_operation", None)
        if encode is None:  # pragma: no cover - guarded by supported()
            raise InvalidRequestError(f"{self.path} is not supported by this provider")
        result: UpstreamRequest = encode(self.kind, request, model)
        return result

    def decode(self, translator: Translator, body: bytes, request: ChatRequest) -> Completion:
        # The request too: a provider may need it to shape the answer (base64 embeddings).
        result: Completion = translator.decode_operation(self.kind, body, request)  # type: ignore[attr-defined]
        return result

    def stream_decoder(self, translator: Translator, request: ChatRequest) -> StreamDecoder:
        return translator.stream_decoder(request)


def default_operations() -> dict[str, Operation]:
    return {
        "chat": ChatOperation(),
        "embeddings": JsonOperation("/v1/embeddings", "embeddings", parse_embeddings_request),
        "completions": JsonOperation("/v1/completions", "completions", parse_completions_request),
    }
