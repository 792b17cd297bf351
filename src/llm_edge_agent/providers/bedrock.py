"""Amazon Bedrock through the Converse / ConverseStream APIs, signed with SigV4.

``POST {endpoint}/model/{modelId}/converse`` (or ``/converse-stream``), the model id
percent-encoded (``anthropic.claude-3-5-haiku-20241022-v1:0`` -> ``...-v1%3A0``)
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html).
The request is signed at encode time with the injected credentials and clock, service
``bedrock``. The request body is built in ``bedrock_request``; the stream is decoded in
``bedrock_stream``. Errors are ``{"message": ...}`` with the error type in the
``x-amzn-errortype`` header.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import orjson

from ..errors import InvalidRequestError, UpstreamError
from ..models import ChatRequest
from . import bedrock_embeddings
from .base import Completion, UpstreamRequest
from .bedrock_request import converse_body
from .bedrock_stream import (
    BedrockStream,
    aws_error_message,
    error_type_name,
    finish_reason,
    upstream_error,
    usage_from_bedrock,
)
from .chunks import ChunkWriter, completion_body
from .decoding import garbage
from .sigv4 import AwsCredentials, sign_request

__all__ = ["AwsCredentials", "BedrockStream", "BedrockTranslator"]

SERVICE: Final = "bedrock"  # the SigV4 signing name of bedrock-runtime
DEFAULT_ENDPOINT: Final = "https://bedrock-runtime.{region}.amazonaws.com"
JSON: Final = "application/json"
EVENT_STREAM: Final = "application/vnd.amazon.eventstream"
ERROR_TYPE_HEADER: Final = "x-amzn-errortype"
ID_PREFIX: Final = "chatcmpl-"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _response_id() -> str:
    # Converse answers carry no id in the body (only an x-amzn-requestid header).
    return ID_PREFIX + uuid.uuid4().hex


class BedrockTranslator:
    operations = frozenset({"embeddings"})  # /v1/embeddings: see bedrock_embeddings.py

    def __init__(
        self,
        name: str,
        region: str,
        credentials: AwsCredentials,
        endpoint: str | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.name = name
        self.region = region
        self.endpoint = (endpoint or DEFAULT_ENDPOINT.format(region=region)).rstrip("/")
        self._credentials = credentials
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.endpoint!r})"

    def url_for(self, model: str, stream: bool) -> str:
        action = "converse-stream" if stream else "converse"
        return f"{self.endpoint}/model/{quote(model, safe='')}/{action}"

    def encode_chat(self, request: ChatRequest, model: str) -> UpstreamRequest:
        body = orjson.dumps(converse_body(request.body, model))
        url = self.url_for(model, request.stream)
        headers = {"content-type": JSON, "accept": EVENT_STREAM if request.stream else JSON}
        signed = sign_request(
            method="POST",
            url=url,
            headers=headers,
            body=body,
            credentials=self._credentials,
            region=self.region,
            service=SERVICE,
            now=self._clock(),
        )
        return UpstreamRequest("POST", url, signed, body)

    def decode_chat(self, body: bytes) -> Completion:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise garbage(self.name, "a body that is not JSON") from exc
        output = parsed.get("output") if isinstance(parsed, dict) else None
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise garbage(self.name, "a malformed Converse response")
        usage = usage_from_bedrock(parsed.get("usage"))
        answer = self._message(content)
        # The Converse body names no model: the executor fills in the target's model.
        return Completion(
            completion_body(
                _response_id(),
                "",
                answer,
                finish_reason(parsed.get("stopReason")),
                usage,
                created=self._created(),
            ),
            usage,
        )

    def stream_decoder(self, request: ChatRequest) -> BedrockStream:
        writer = ChunkWriter(
            _response_id(), request.model, request.include_usage, created=self._created()
        )
        return BedrockStream(self.name, writer)

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        error_type = error_type_name(_header(headers, ERROR_TYPE_HEADER))
        return upstream_error(self.name, status, error_type, aws_error_message(body), headers)

    def encode_operation(self, kind: str, request: ChatRequest, model: str) -> UpstreamRequest:
        if kind != "embeddings":
            raise InvalidRequestError(f"Bedrock does not support {kind!r}")
        return bedrock_embeddings.encode_request(
            request.body,
            model,
            endpoint=self.endpoint,
            region=self.region,
            credentials=self._credentials,
            now=self._clock(),
        )

    def decode_operation(
        self, kind: str, body: bytes, request: ChatRequest | None = None
    ) -> Completion:
        """Titan or Cohere is told from the body's shape (see bedrock_embeddings.py);
        ``request`` (not passed by the pipeline today) gives base64."""
        if kind != "embeddings":
            raise InvalidRequestError(f"Bedrock does not support {kind!r}")
        answer, usage = bedrock_embeddings.decode_embeddings(
            self.name,
            body,
            encoding_format=request.body.get("encoding_format") if request else None,
        )
        return Completion(answer, usage)

    def _created(self) -> int:
        return int(self._clock().timestamp())

    def _message(self, content: list[Any]) -> dict[str, Any]:
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif isinstance(block.get("reasoningContent"), dict):
                text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
                if isinstance(text, str):
                    reasoning.append(text)
            elif isinstance(block.get("toolUse"), dict):
                calls.append(self._tool_call(block["toolUse"]))
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = calls
        return message

    @staticmethod
    def _tool_call(tool: dict[str, Any]) -> dict[str, Any]:
        arguments = orjson.dumps(tool.get("input") if tool.get("input") is not None else {})
        return {
            "id": str(tool.get("toolUseId") or ""),
            "type": "function",
            "function": {"name": str(tool.get("name") or ""), "arguments": arguments.decode()},
        }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value
