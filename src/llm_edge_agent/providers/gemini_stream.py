"""Gemini answers back into OpenAI's: the whole response, the SSE stream, errors.

The request side lives in ``gemini.py``; this module reads what Gemini sends: a complete
``GenerateContentResponse`` (``decode_response``), the ``alt=sse`` stream (``GeminiStream``),
``usageMetadata`` and error bodies.

References (checked 2026-11):
  https://ai.google.dev/api/generate-content  (GenerateContentResponse, Candidate,
      FinishReason, PromptFeedback, UsageMetadata, streamGenerateContent)
  https://ai.google.dev/gemini-api/docs/troubleshooting  (error statuses)
  https://ai.google.dev/gemini-api/docs/thinking  (``thought: true`` parts, thoughtsTokenCount)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from ..errors import InvalidRequestError, UpstreamClientError, UpstreamError
from ..pricing import TokenUsage
from ..sse import SSEParser
from .chunks import ChunkWriter, completion_body
from .decoding import garbage, json_event, token_count, with_tool_calls
from .http_errors import error_for_status

# Gemini ``finishReason`` -> OpenAI ``finish_reason``; anything else (OTHER, LANGUAGE,
# MALFORMED_FUNCTION_CALL, FINISH_REASON_UNSPECIFIED, values added later) is "stop".
FINISH_REASONS: Final = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}
DEFAULT_FINISH: Final = "stop"
DEFAULT_RESPONSE_ID: Final = "gemini"
TOOL_ID_HASH_CHARS: Final = 12
# An API key Gemini does not accept comes back as 400 INVALID_ARGUMENT with this
# ``google.rpc.ErrorInfo`` reason: it is the gateway's key, not the client's request.
KEY_INVALID_REASONS: Final = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
KEY_INVALID_STATUS: Final = 401
STREAM_ERROR_STATUS: Final = 500  # an in-stream error without a numeric code
# Between a tool call id and the call's thoughtSignature (a "__" never occurs in the id).
SIGNATURE_SEPARATOR: Final = "__ts__"

Json = dict[str, Any]


def finish_reason(reason: Any, had_tool_calls: bool) -> str:
    mapped = (
        FINISH_REASONS.get(reason, DEFAULT_FINISH) if isinstance(reason, str) else DEFAULT_FINISH
    )
    # Gemini ends a function-calling turn with STOP.
    return with_tool_calls(mapped, had_tool_calls)


def usage_from_gemini(meta: Any) -> TokenUsage | None:
    """``promptTokenCount`` already includes ``cachedContentTokenCount``; thinking tokens are
    billed as output but counted apart from ``candidatesTokenCount``, so they are added."""
    if not isinstance(meta, dict):
        return None
    prompt = token_count(meta.get("promptTokenCount"))
    thoughts = token_count(meta.get("thoughtsTokenCount"))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=token_count(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=min(token_count(meta.get("cachedContentTokenCount")), prompt),
        reasoning_tokens=thoughts,
    )


def tool_call_id(
    response_id: str, index: int, name: str, arguments: str, signature: str | None = None
) -> str:
    """Gemini function calls carry no id: derive a stable one, the same whether the answer
    was streamed or not, so a replayed conversation maps results to the same call.

    A ``thoughtSignature`` on the call rides along in the id (URL-safe base64 after
    ``SIGNATURE_SEPARATOR``): Gemini 3 answers 400 when a replayed ``functionCall`` lacks
    its signature (https://ai.google.dev/gemini-api/docs/thought-signatures), and the id
    is the one field OpenAI clients send back unchanged."""
    seed = f"{response_id}\x00{index}\x00{name}\x00{arguments}".encode()
    base = f"call_{index}_{hashlib.sha256(seed).hexdigest()[:TOOL_ID_HASH_CHARS]}"
    return with_signature(base, signature)


def with_signature(call_id: str, signature: str | None) -> str:
    if not signature:
        return call_id
    safe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return f"{call_id}{SIGNATURE_SEPARATOR}{safe}"


def signature_of(call_id: str) -> str | None:
    """The standard-base64 ``thoughtSignature`` carried in a tool call id, if any."""
    _, found, safe = call_id.partition(SIGNATURE_SEPARATOR)
    if not found or not safe:
        return None
    padded = safe + "=" * (-len(safe) % 4)
    return padded.replace("-", "+").replace("_", "/")


def _function_call(part: Json) -> tuple[str, str, str | None, str | None] | None:
    """(name, arguments JSON, Gemini's own id, thoughtSignature) from a ``functionCall``."""
    call = part.get("functionCall")
    if not isinstance(call, dict):
        return None
    args = call.get("args")
    arguments = orjson.dumps(args if isinstance(args, dict) else {}).decode()
    own_id = call.get("id")
    signature = part.get("thoughtSignature")
    return (
        str(call.get("name") or ""),
        arguments,
        own_id if isinstance(own_id, str) and own_id else None,
        signature if isinstance(signature, str) and signature else None,
    )


def call_id_for(
    response_id: str, index: int, found: tuple[str, str, str | None, str | None]
) -> str:
    name, arguments, own_id, signature = found
    if own_id is not None:
        return with_signature(own_id, signature)
    return tool_call_id(response_id, index, name, arguments, signature)


def _parts(candidate: Json) -> list[Json]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def blocked_prompt(parsed: Json) -> str | None:
    """The reason Gemini refused the prompt itself (no candidates), or None."""
    feedback = parsed.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not isinstance(reason, str) or not reason:
        return None
    text = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
    detail = f": {text}" if isinstance(text, str) and text else ""
    return f"Gemini blocked the prompt ({reason}){detail}"


def _message(candidate: Json, response_id: str) -> tuple[Json, str]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[Json] = []
    for part in _parts(candidate):
        text = part.get("text")
        if isinstance(text, str):
            (thoughts if part.get("thought") is True else texts).append(text)
            continue
        found = _function_call(part)
        if found is not None:
            function = {"name": found[0], "arguments": found[1]}
            call_id = call_id_for(response_id, len(calls), found)
            calls.append({"id": call_id, "type": "function", "function": function})
        # executableCode, codeExecutionResult, inlineData output: no OpenAI field.
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message, finish_reason(candidate.get("finishReason"), bool(calls))


def decode_response(
    provider: str, parsed: Any, created: int
) -> tuple[dict[str, Any], TokenUsage | None]:
    """A ``GenerateContentResponse`` -> (OpenAI ``chat.completion``, usage): one choice per
    candidate, in Gemini's candidate ``index`` order."""
    if not isinstance(parsed, dict):
        raise garbage(provider, "a body that is not a JSON object")
    if "error" in parsed:
        raise stream_error(provider, parsed)
    candidates = parsed.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        blocked = blocked_prompt(parsed)
        if blocked is not None:
            raise InvalidRequestError(blocked, param="messages", code="prompt_blocked")
        raise garbage(provider, "a response without candidates")
    response_id = str(parsed.get("responseId") or DEFAULT_RESPONSE_ID)
    ordered = sorted(
        (c for c in candidates if isinstance(c, dict)), key=lambda c: token_count(c.get("index"))
    )
    if not ordered:
        raise garbage(provider, "a response without candidates")
    usage = usage_from_gemini(parsed.get("usageMetadata"))
    model = str(parsed.get("modelVersion") or "")
    choices = [_message(candidate, response_id) for candidate in ordered]
    body = completion_body(response_id, model, choices[0][0], choices[0][1], usage, created)
    for index, (message, reason) in enumerate(choices[1:], start=1):
        body["choices"].append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
        )
    return body, usage


# ---------------------------------------------------------------------- errors


def error_fields(body: bytes) -> tuple[int | None, str | None, str | None, bool]:
    """(code, message, status, key rejected) from ``{"error": {...}}``, or the body text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:500].decode("utf-8", "replace").strip()
        return None, (text or None), None, False
    return error_from_object(parsed)


def error_from_object(parsed: Any) -> tuple[int | None, str | None, str | None, bool]:
    if isinstance(parsed, list) and parsed:  # the JSON-array form of a streamed error
        parsed = parsed[0]
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict):
        return None, (err if isinstance(err, str) else None), None, False
    code, message, status = err.get("code"), err.get("message"), err.get("status")
    details = err.get("details")
    reasons = (
        {d.get("reason") for d in details if isinstance(d, dict)}
        if isinstance(details, list)
        else set()
    )
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else None,
        status if isinstance(status, str) else None,
        bool(reasons & KEY_INVALID_REASONS),
    )


def error_from_fields(
    provider: str,
    status: int,
    fields: tuple[int | None, str | None, str | None, bool],
    headers: Mapping[str, str],
) -> UpstreamError:
    _, message, grpc_status, key_rejected = fields
    if key_rejected:
        status = KEY_INVALID_STATUS
    code = grpc_status.lower() if grpc_status else None
    return error_for_status(provider, status, message or grpc_status, headers, code=code)


def stream_error(provider: str, parsed: Any) -> UpstreamError:
    """An error object sent with a 200 status (inside a stream): its own ``code`` is the
    HTTP status it stands for."""
    fields = error_from_object(parsed)
    return error_from_fields(provider, fields[0] or STREAM_ERROR_STATUS, fields, {})


# ---------------------------------------------------------------------- stream


class GeminiStream:
    """``streamGenerateContent?alt=sse`` in, OpenAI ``chat.completion.chunk`` SSE out.

    Every ``data:`` event is a whole ``GenerateContentResponse`` holding only the new parts.
    Each ``functionCall`` part arrives whole, so it becomes one tool call (next index, id,
    name and all its arguments at once). Gemini sends no end marker: the answer is whole
    once a candidate carries a ``finishReason``; usage is the last ``usageMetadata`` seen
    and, with ``[DONE]``, is written at upstream EOF (``finish``).
    """

    __slots__ = (
        "_clock",
        "_finished",
        "_include_usage",
        "_model",
        "_parser",
        "_provider",
        "_tools",
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
        self._tools = 0
        self._finished = False
        self.usage: TokenUsage | None = None
        self.complete = False
        self.ended = False
        self.error: UpstreamError | None = None

    def __repr__(self) -> str:
        return f"GeminiStream({self._provider!r}, complete={self.complete}, done={self.ended})"

    def feed(self, data: bytes) -> bytes:
        return self._handle(self._parser.feed(data))

    def finish(self) -> bytes:
        out = self._handle(self._parser.flush())
        if self.error is not None:
            return out
        if not self.complete:
            raise UpstreamError(
                f"provider {self._provider!r} closed the stream before a finishReason",
                provider=self._provider,
            )
        self.ended = True
        writer = self._out({})
        if self.usage is not None:
            out += writer.usage(self.usage)
        return out + ChunkWriter.done()

    def _handle(self, events: list[tuple[bytes, bytes]]) -> bytes:
        out: list[bytes] = []
        for _, data in events:
            if self.error is not None:
                break  # nothing after an error reaches the client
            out.append(self._chunk(json_event(self._provider, data)))
        return b"".join(out)

    def _out(self, chunk: Json) -> ChunkWriter:
        if self._writer is None:
            model = chunk.get("modelVersion")
            self._writer = ChunkWriter(
                str(chunk.get("responseId") or DEFAULT_RESPONSE_ID),
                model if isinstance(model, str) and model else self._model,
                self._include_usage,
                int(self._clock()),
            )
        return self._writer

    def _chunk(self, chunk: Json) -> bytes:
        if "error" in chunk:
            self.error = stream_error(self._provider, chunk)
            return b"data: " + self.error.to_json() + b"\n\n"
        usage = usage_from_gemini(chunk.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidates = chunk.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(candidate, dict):
            return self._no_candidate(chunk)
        if self._finished:
            return b""  # only usage may follow the finish reason
        writer = self._out(chunk)
        out = [writer.role()]
        response_id = str(chunk.get("responseId") or DEFAULT_RESPONSE_ID)
        for part in _parts(candidate):
            out.append(self._part(writer, part, response_id))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._finished = True
            self.complete = True
            out.append(writer.finish(finish_reason(reason, self._tools > 0)))
        return b"".join(out)

    def _part(self, writer: ChunkWriter, part: Json, response_id: str) -> bytes:
        text = part.get("text")
        if isinstance(text, str):
            return writer.reasoning(text) if part.get("thought") is True else writer.content(text)
        found = _function_call(part)
        if found is None:
            return b""
        index = self._tools
        self._tools += 1
        call_id = call_id_for(response_id, index, found)
        return writer.tool_call_start(index, call_id, found[0]) + writer.tool_call_arguments(
            index, found[1]
        )

    def _no_candidate(self, chunk: Json) -> bytes:
        """A chunk with no candidate: a usage-only update, or the prompt was blocked."""
        blocked = blocked_prompt(chunk)
        if blocked is None or self._finished:
            return b""
        self.error = UpstreamClientError(
            blocked,
            provider=self._provider,
            upstream_status=200,
            status=400,
            param="messages",
            code="prompt_blocked",
        )
        return b"data: " + self.error.to_json() + b"\n\n"
