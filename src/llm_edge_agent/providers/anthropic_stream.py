"""Anthropic answers back into OpenAI's: the whole message, the event stream, errors.

The request side lives in ``anthropic.py``; this module is everything that reads what
Anthropic sends: a complete Messages body (``decode_message``), the SSE event stream
(``AnthropicStream``), usage objects and error bodies.

References (checked 2026-11):
  https://docs.claude.com/en/api/messages              (Message object, usage, stop_reason)
  https://docs.claude.com/en/docs/build-with-claude/streaming  (event types and order)
  https://docs.claude.com/en/api/errors                (error body and HTTP statuses)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from ..errors import UpstreamError
from ..pricing import TokenUsage
from ..sse import SSEParser
from .chunks import ChunkWriter, completion_body
from .decoding import garbage, json_event, token_count, with_tool_calls
from .http_errors import error_for_status

# Anthropic ``stop_reason`` -> OpenAI ``finish_reason``. ``pause_turn`` ends a turn that
# ran server tools for too long: the text so far is a whole answer to the client.
FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
DEFAULT_FINISH: Final = "stop"

# Error ``type`` -> the HTTP status Anthropic documents for it. Needed for errors sent
# inside a 200 stream, which carry no status of their own.
ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
UNKNOWN_ERROR_STATUS: Final = 500  # an unknown type in a stream: the provider's fault


def finish_reason(stop_reason: Any, had_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, DEFAULT_FINISH) if stop_reason else DEFAULT_FINISH
    return with_tool_calls(reason, had_tool_calls)


def usage_from_anthropic(usage: Any) -> TokenUsage | None:
    """OpenAI-convention usage: ``prompt_tokens`` counts fresh, cache-read and cache-write."""
    if not isinstance(usage, dict):
        return None
    fresh = token_count(usage.get("input_tokens"))
    read = token_count(usage.get("cache_read_input_tokens"))
    written = token_count(usage.get("cache_creation_input_tokens"))
    output = token_count(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    thinking = token_count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return TokenUsage(
        prompt_tokens=fresh + read + written,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=min(thinking, output),
    )


def error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(type, message) from ``{"type": "error", "error": {"type", "message"}}``, or text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        # 413 comes from Cloudflare before the API: its body may be HTML or plain text.
        text = body[:500].decode("utf-8", "replace").strip()
        return None, (text or None)
    return error_from_object(parsed)


def error_from_object(parsed: Any) -> tuple[str | None, str | None]:
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        etype, message = err.get("type"), err.get("message")
        return (
            etype if isinstance(etype, str) else None,
            message if isinstance(message, str) else None,
        )
    if isinstance(err, str):
        return None, err
    return None, None


def decode_message(
    provider: str, parsed: Any, created: int
) -> tuple[dict[str, Any], TokenUsage | None]:
    """A complete Anthropic ``message`` object -> (OpenAI ``chat.completion``, usage)."""
    if not isinstance(parsed, dict):
        raise garbage(provider, "a body that is not a JSON object")
    if parsed.get("type") == "error":
        etype, text = error_from_object(parsed)
        raise error_for_status(
            provider, ERROR_STATUS.get(etype or "", UNKNOWN_ERROR_STATUS), text, {}
        )
    blocks = parsed.get("content")
    if not isinstance(blocks, list):
        raise garbage(provider, "a malformed message (no content array)")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        # redacted_thinking, server_tool_use, web_search_tool_result...: no OpenAI
        # equivalent; the text blocks already carry what the model said about them.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    usage = usage_from_anthropic(parsed.get("usage"))
    body = completion_body(
        str(parsed.get("id") or "msg"),
        str(parsed.get("model") or ""),
        message,
        finish_reason(parsed.get("stop_reason"), bool(calls)),
        usage,
        created,
    )
    return body, usage


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    tool_input = block.get("input")
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(block.get("name") or ""),
            "arguments": orjson.dumps(tool_input if tool_input is not None else {}).decode(),
        },
    }


class _Block:
    """What one Anthropic content block becomes: text, reasoning, a tool call or nothing."""

    __slots__ = ("kind", "tool_index")

    def __init__(self, kind: str, tool_index: int = -1) -> None:
        self.kind = kind
        self.tool_index = tool_index


_IGNORED = _Block("ignored")


class AnthropicStream:
    """Anthropic Messages SSE in, OpenAI ``chat.completion.chunk`` SSE out.

    Each ``tool_use`` block gets the next OpenAI tool-call index (0, 1, ...) when it
    starts, whatever its Anthropic block index: text or thinking blocks before it do not
    shift it. Usage: input and cache counts from ``message_start``, output from
    ``message_delta`` (its counts are cumulative, so later values replace earlier ones).
    """

    __slots__ = (
        "_blocks",
        "_clock",
        "_finished",
        "_include_usage",
        "_model",
        "_parser",
        "_provider",
        "_tools",
        "_usage_raw",
        "_writer",
        "complete",
        "ended",
        "error",
        "usage",
    )

    def __init__(
        self, provider: str, model: str, include_usage: bool, clock: Callable[[], float]
    ) -> None:
        self._provider = provider
        self._model = model
        self._include_usage = include_usage
        self._clock = clock
        self._parser = SSEParser()
        self._writer: ChunkWriter | None = None
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._finished = False
        self._usage_raw: dict[str, Any] = {}
        self.usage: TokenUsage | None = None
        self.complete = False
        self.ended = False
        self.error: UpstreamError | None = None

    def __repr__(self) -> str:
        return f"AnthropicStream({self._provider!r}, complete={self.complete}, done={self.ended})"

    def feed(self, data: bytes) -> bytes:
        return self._handle(self._parser.feed(data))

    def finish(self) -> bytes:
        out = self._handle(self._parser.flush())
        if self.error is None and not self.ended:
            raise UpstreamError(
                f"provider {self._provider!r} closed the stream before message_stop",
                provider=self._provider,
            )
        return out

    # ------------------------------------------------------------------ events

    def _handle(self, events: list[tuple[bytes, bytes]]) -> bytes:
        if not events or self.ended or self.error is not None:
            return b""
        out: list[bytes] = []
        for name, data in events:
            if self.ended or self.error is not None:
                break  # nothing after the end marker or an error reaches the client
            event = json_event(self._provider, data)
            kind = event.get("type") or name.decode("utf-8", "replace")
            out.append(self._event(kind, event))
        return b"".join(out)

    def _event(self, kind: Any, event: dict[str, Any]) -> bytes:
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            return self._message_start(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            return self._error(event)
        return b""  # ping, content_block_stop, and event types added later

    def _out(self) -> ChunkWriter:
        if self._writer is None:
            # message_start names the answer; a stream that skips it still gets chunks.
            self._writer = ChunkWriter("msg", self._model, self._include_usage, int(self._clock()))
        return self._writer

    def _message_start(self, event: dict[str, Any]) -> bytes:
        message = event.get("message")
        message = message if isinstance(message, dict) else {}
        if self._writer is None:
            model = message.get("model")
            self._writer = ChunkWriter(
                str(message.get("id") or "msg"),
                model if isinstance(model, str) and model else self._model,
                self._include_usage,
                int(self._clock()),
            )
        self._merge_usage(message.get("usage"))
        return self._writer.role()

    def _block_start(self, event: dict[str, Any]) -> bytes:
        block = event.get("content_block")
        index = event.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return b""
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = _Block("text")
            text = block.get("text")
            return self._out().content(text) if isinstance(text, str) else self._out().role()
        if kind == "thinking":
            self._blocks[index] = _Block("thinking")
            text = block.get("thinking")
            return self._out().reasoning(text) if isinstance(text, str) else self._out().role()
        if kind == "tool_use":
            tool = _Block("tool", self._tools)
            self._tools += 1
            self._blocks[index] = tool
            name, call_id = str(block.get("name") or ""), str(block.get("id") or "")
            return self._out().tool_call_start(tool.tool_index, call_id, name)
        # redacted_thinking, server tools and their results: nothing an OpenAI client reads.
        self._blocks[index] = _IGNORED
        return b""

    def _delta(self, event: dict[str, Any]) -> bytes:
        delta = event.get("delta")
        index = event.get("index")
        if not isinstance(delta, dict) or not isinstance(index, int):
            return b""
        block = self._blocks.get(index, _IGNORED)
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            return self._out().content(_text(delta, "text"))
        if kind == "input_json_delta" and block.kind == "tool":
            return self._out().tool_call_arguments(block.tool_index, _text(delta, "partial_json"))
        if kind == "thinking_delta" and block.kind == "thinking":
            return self._out().reasoning(_text(delta, "thinking"))
        return b""  # signature_delta, citations_delta: no OpenAI field carries them

    def _message_delta(self, event: dict[str, Any]) -> bytes:
        self._merge_usage(event.get("usage"))
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop is None or self._finished:
            return b""
        return self._finish(finish_reason(stop, self._tools > 0))

    def _finish(self, reason: str) -> bytes:
        self._finished = True
        self.complete = True
        return self._out().finish(reason)

    def _message_stop(self) -> bytes:
        out = b"" if self._finished else self._finish(finish_reason(None, self._tools > 0))
        self.ended = True
        if self.usage is not None:
            out += self._out().usage(self.usage)
        return out + ChunkWriter.done()

    def _error(self, event: dict[str, Any]) -> bytes:
        etype, message = error_from_object(event)
        status = ERROR_STATUS.get(etype or "", UNKNOWN_ERROR_STATUS)
        self.error = error_for_status(self._provider, status, message or etype, {})
        return b"data: " + self.error.to_json() + b"\n\n"

    def _merge_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for key, value in usage.items():
            if value is not None:
                self._usage_raw[key] = value
        self.usage = usage_from_anthropic(self._usage_raw)


def _text(delta: dict[str, Any], key: str) -> str:
    value = delta.get(key)
    return value if isinstance(value, str) else ""
