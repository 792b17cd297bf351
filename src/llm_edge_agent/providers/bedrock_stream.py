"""Bedrock ConverseStream (binary event stream) -> OpenAI SSE chunks, and the mappings the
streaming and non-streaming paths share: stop reasons, usage, error types.

Events (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html),
told apart by the ``:event-type`` header: ``messageStart``, ``contentBlockStart`` (a tool
call's id and name), ``contentBlockDelta`` (text, tool input fragments, reasoning text),
``contentBlockStop``, ``messageStop`` (the stop reason), ``metadata`` (usage; the last
event). A frame whose ``:message-type`` is ``exception`` carries an error such as
``throttlingException`` in its ``:exception-type`` header and ``{"message": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..errors import UpstreamError
from ..pricing import TokenUsage
from .chunks import ChunkWriter
from .eventstream import EventStreamDecoder, EventStreamError, Message
from .http_errors import error_for_status

# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseOutput.html
# (stopReason). Anything not listed (malformed_model_output, malformed_tool_use,
# model_context_window_exceeded, ...) ends the answer as "stop".
FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
DEFAULT_FINISH_REASON: Final = "stop"

# Error type (the ``x-amzn-errortype`` header, or a stream's ``:exception-type``, compared in
# lower case) -> the HTTP status Bedrock documents for it
# (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors).
ERROR_STATUS: Final = {
    "validationexception": 400,
    "accessdeniedexception": 403,
    "resourcenotfoundexception": 404,
    "modeltimeoutexception": 408,
    "throttlingexception": 429,
    "modelnotreadyexception": 429,
    "internalserverexception": 500,
    "serviceunavailableexception": 503,
    "modelerrorexception": 424,
    "modelstreamerrorexception": 424,
}
# 424 (the model itself failed) is the model's fault, not the request's: retry elsewhere.
MODEL_FAILURE_STATUS: Final = 424
UNKNOWN_ERROR_STATUS: Final = 500
EVENT_MESSAGE_TYPE: Final = "event"
EXCEPTION_MESSAGE_TYPE: Final = "exception"
ERROR_MESSAGE_TYPE: Final = "error"  # a framing-level error: :error-code / :error-message


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, DEFAULT_FINISH_REASON) if stop_reason else "stop"


def usage_from_bedrock(usage: Any) -> TokenUsage | None:
    """Bedrock's ``inputTokens`` exclude cache reads and writes (Anthropic's convention,
    https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html), so OpenAI's
    ``prompt_tokens`` is their sum."""
    if not isinstance(usage, dict):
        return None
    try:
        fresh = int(usage.get("inputTokens") or 0)
        read = int(usage.get("cacheReadInputTokens") or 0)
        written = int(usage.get("cacheWriteInputTokens") or 0)
        output = int(usage.get("outputTokens") or 0)
    except (TypeError, ValueError):
        return None
    return TokenUsage(
        prompt_tokens=fresh + read + written,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
    )


def error_type_name(raw: str | None) -> str:
    """``ValidationException:http://internal.amazon.com/...`` -> ``ValidationException``."""
    return (raw or "").split(":", 1)[0].strip()


def upstream_error(
    provider: str,
    status: int,
    error_type: str,
    message: str | None,
    headers: Mapping[str, str],
) -> UpstreamError:
    text = f"{error_type}: {message}" if error_type and message else (message or error_type)
    if status == MODEL_FAILURE_STATUS:
        return UpstreamError(
            f"provider {provider!r} failed: {text or 'the model failed'}",
            provider=provider,
            upstream_status=status,
        )
    return error_for_status(provider, status, text or None, headers, code=error_type or None)


def aws_error_message(payload: bytes) -> str | None:
    """The ``message`` of an AWS JSON error body, or the body's text."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = payload[:500].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(parsed, dict):
        message = parsed.get("message") or parsed.get("Message")
        return str(message) if message is not None else None
    return None


class BedrockStream:
    """Fed the raw ConverseStream body in arbitrary chunks; returns OpenAI SSE bytes."""

    __slots__ = (
        "_frames",
        "_provider",
        "_tool_index",
        "_writer",
        "complete",
        "ended",
        "error",
        "usage",
    )

    def __init__(self, provider: str, writer: ChunkWriter) -> None:
        self._provider = provider
        self._writer = writer
        self._frames = EventStreamDecoder()
        self._tool_index: dict[int, int] = {}  # Bedrock block index -> OpenAI tool index
        self.usage: TokenUsage | None = None
        self.complete = False
        self.ended = False
        self.error: UpstreamError | None = None

    def __repr__(self) -> str:
        return f"BedrockStream({self._provider!r}, complete={self.complete}, ended={self.ended})"

    def feed(self, data: bytes) -> bytes:
        if self.error is not None or self.ended:
            return b""  # nothing after the error event or the end marker is relayed
        try:
            messages = self._frames.feed(data)
        except EventStreamError as exc:
            raise UpstreamError(
                f"provider {self._provider!r} sent a corrupt event stream: {exc}",
                provider=self._provider,
            ) from exc
        out: list[bytes] = []
        for message in messages:
            out.append(self._message(message))
            if self.error is not None or self.ended:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        if self.error is not None or self.ended:
            return b""
        if not self.complete:
            raise UpstreamError(
                f"provider {self._provider!r} closed the stream before it was complete",
                provider=self._provider,
            )
        # messageStop came but not the metadata event: the answer is whole, usage unknown.
        self.ended = True
        return self._writer.done()

    def _message(self, message: Message) -> bytes:
        kind = message.header_str(":message-type") or EVENT_MESSAGE_TYPE
        if kind == EXCEPTION_MESSAGE_TYPE:
            error_type = message.header_str(":exception-type") or ""
            return self._fail(error_type, aws_error_message(message.payload))
        if kind == ERROR_MESSAGE_TYPE:
            error_type = message.header_str(":error-code") or ""
            return self._fail(error_type, message.header_str(":error-message"))
        try:
            event = orjson.loads(message.payload) if message.payload else {}
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"provider {self._provider!r} sent an event that is not JSON",
                provider=self._provider,
            ) from exc
        if not isinstance(event, dict):
            event = {}
        return self._event(message.header_str(":event-type") or "", event)

    def _fail(self, error_type: str, text: str | None) -> bytes:
        status = ERROR_STATUS.get(error_type.lower(), UNKNOWN_ERROR_STATUS)
        self.error = upstream_error(self._provider, status, error_type, text, {})
        return b"data: " + self.error.to_json() + b"\n\n"

    def _event(self, event_type: str, event: dict[str, Any]) -> bytes:
        writer = self._writer
        if event_type == "messageStart":
            return writer.role()
        if event_type == "contentBlockStart":
            return self._block_start(event)
        if event_type == "contentBlockDelta":
            return self._delta(event)
        if event_type == "messageStop":
            self.complete = True
            return writer.finish(finish_reason(event.get("stopReason")))
        if event_type == "metadata":
            self.usage = usage_from_bedrock(event.get("usage"))
            self.ended = True
            usage = writer.usage(self.usage) if self.usage is not None else b""
            return usage + writer.done()
        return b""  # contentBlockStop and event types added later carry nothing for us

    def _block_start(self, event: dict[str, Any]) -> bytes:
        start = event.get("start")
        tool = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(tool, dict):
            return b""
        index = len(self._tool_index)
        self._tool_index[_block_index(event)] = index
        call_id = str(tool.get("toolUseId") or "")
        return self._writer.tool_call_start(index, call_id, str(tool.get("name") or ""))

    def _delta(self, event: dict[str, Any]) -> bytes:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return b""
        writer = self._writer
        if isinstance(delta.get("text"), str):
            return writer.content(delta["text"])
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            text = reasoning.get("text")
            return writer.reasoning(text) if isinstance(text, str) else b""
        tool = delta.get("toolUse")
        if isinstance(tool, dict) and isinstance(tool.get("input"), str):
            index = self._tool_index.get(_block_index(event))
            if index is None:
                raise UpstreamError(
                    f"provider {self._provider!r} sent tool input for a block it never started",
                    provider=self._provider,
                )
            return writer.tool_call_arguments(index, tool["input"])
        return b""


def _block_index(event: dict[str, Any]) -> int:
    index = event.get("contentBlockIndex")
    return index if isinstance(index, int) else -1
