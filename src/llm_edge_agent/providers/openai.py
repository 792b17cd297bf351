"""OpenAI and every OpenAI-compatible upstream (vLLM, Ollama, Together, the mock).

The client already speaks this dialect, so the request goes out as the client's own
bytes with at most two edits (the upstream model name; ``stream_options.include_usage``
so the gateway always learns a stream's usage), and streamed events are passed through
as bytes: only events that may carry usage, a finish reason or an error are looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import UpstreamError
from ..models import ChatRequest
from ..pricing import TokenUsage
from .base import Completion, UpstreamRequest
from .http_errors import error_for_status

DONE_EVENT = b"data: [DONE]\n\n"
CHAT = "chat/completions"
EMBEDDINGS = "embeddings"
COMPLETIONS = "completions"
# What makes an event worth parsing: a usage object, a finish reason, an error, the end.
# Plain substring tests (compact and spaced JSON): a regex alternation is ~10x slower.
_MARKERS = (
    b"[DONE]",
    b'"finish_reason":"',
    b'"finish_reason": "',
    b'"usage":{',
    b'"usage": {',
    b'"error":',
    b'"error": ',
)


def _marker_positions(block: bytes) -> list[int]:
    positions = []
    for marker in _MARKERS:
        at = block.find(marker)
        while at >= 0:
            positions.append(at)
            at = block.find(marker, at + 1)
    return positions


def usage_from_openai(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    try:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        pdetails = usage.get("prompt_tokens_details") or {}
        cdetails = usage.get("completion_tokens_details") or {}
        cached = int(pdetails.get("cached_tokens") or 0) if isinstance(pdetails, dict) else 0
        reasoning = int(cdetails.get("reasoning_tokens") or 0) if isinstance(cdetails, dict) else 0
    except (TypeError, ValueError):
        return None
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )


def error_message(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, param, code) from an OpenAI-style error body, or its text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:500].decode("utf-8", "replace").strip()
        return (text or None), None, None
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        msg = err.get("message")
        param, code = err.get("param"), err.get("code")
        return (
            str(msg) if msg is not None else None,
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
    if isinstance(err, str):
        return err, None, None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return parsed["message"], None, None
    return None, None, None


class OpenAITranslator:
    operations = frozenset({EMBEDDINGS, COMPLETIONS})

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.chat_url = f"{base_url}/chat/completions"
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
        self._headers = headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.chat_url!r})"

    def url_for(self, model: str, endpoint: str = CHAT) -> str:
        return self.chat_url if endpoint == CHAT else f"{self.base_url}/{endpoint}"

    def health_request(self) -> UpstreamRequest:
        """A free probe for active health checks: the model list."""
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        return UpstreamRequest("GET", self.models_url(), headers, b"")

    def models_url(self) -> str:
        return f"{self.base_url}/models"

    def encode_chat(self, request: ChatRequest, model: str) -> UpstreamRequest:
        return self.encode_operation(CHAT, request, model)

    def encode_operation(self, kind: str, request: ChatRequest, model: str) -> UpstreamRequest:
        """The client's bytes with the upstream model name (and, for streams, usage on)."""
        body = request.raw
        if request.stream:
            options = request.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                edited = dict(request.body)
                edited["model"] = model
                edited["stream_options"] = {**(options or {}), "include_usage": True}
                body = orjson.dumps(edited)
            elif model != request.model:
                body = orjson.dumps({**request.body, "model": model})
        elif model != request.model:
            body = orjson.dumps({**request.body, "model": model})
        return UpstreamRequest("POST", self.url_for(model, kind), self._headers, body)

    def decode_operation(
        self, kind: str, body: bytes, request: ChatRequest | None = None
    ) -> Completion:
        """Embeddings (``data``) or legacy completions (``choices``)."""
        if kind == CHAT:
            return self.decode_chat(body)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"provider {self.name!r} returned a body that is not JSON", provider=self.name
            ) from exc
        field = "data" if kind == EMBEDDINGS else "choices"
        if not isinstance(parsed, dict) or not isinstance(parsed.get(field), list):
            raise UpstreamError(
                f"provider {self.name!r} returned a malformed {kind} response", provider=self.name
            )
        return Completion(parsed, usage_from_openai(parsed.get("usage")))

    def decode_chat(self, body: bytes) -> Completion:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"provider {self.name!r} returned a body that is not JSON", provider=self.name
            ) from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
            if isinstance(parsed, dict) and "error" in parsed:
                message, _, _ = error_message(body)
                raise UpstreamError(f"provider {self.name!r} failed: {message}", provider=self.name)
            raise UpstreamError(
                f"provider {self.name!r} returned a malformed chat completion", provider=self.name
            )
        return Completion(parsed, usage_from_openai(parsed.get("usage")))

    def stream_decoder(self, request: ChatRequest) -> PassthroughStream:
        return PassthroughStream(self.name, request.include_usage)

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        message, param, code = error_message(body)
        return error_for_status(self.name, status, message, headers, param=param, code=code)


class PassthroughStream:
    """OpenAI SSE in, OpenAI SSE out: complete events are forwarded as bytes.

    An event is looked at only when it may matter: the usage chunk (dropped when the client
    did not ask for it, since the gateway added ``include_usage`` itself), a finish reason,
    ``[DONE]``, or an in-stream error.
    """

    __slots__ = ("_buf", "_include_usage", "_provider", "complete", "ended", "error", "usage")

    def __init__(self, provider: str, include_usage: bool) -> None:
        self._provider = provider
        self._include_usage = include_usage
        self._buf = b""
        self.ended = False
        self.complete = False
        self.error: UpstreamError | None = None
        self.usage: TokenUsage | None = None

    def __repr__(self) -> str:
        return f"PassthroughStream({self._provider!r}, complete={self.complete}, done={self.ended})"

    def feed(self, data: bytes) -> bytes:
        carry = b""
        if b"\r" in data or self._buf.endswith(b"\r"):
            buf = (self._buf + data).replace(b"\r\n", b"\n")
            if buf.endswith(b"\r"):
                buf, carry = buf[:-1], b"\r"
        else:
            buf = self._buf + data if self._buf else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf + carry
            return b""
        self._buf = buf[end + 2 :] + carry
        return self._events(buf[: end + 2])

    def finish(self) -> bytes:
        out = b""
        rest = self._buf.strip()
        self._buf = b""
        if rest:
            out = self._events(rest + b"\n\n")
        if self.error is not None:
            return out
        if not self.complete:
            raise UpstreamError(
                f"provider {self._provider!r} closed the stream before it was complete",
                provider=self._provider,
            )
        if not self.ended:
            out += DONE_EVENT
        return out

    def _events(self, block: bytes) -> bytes:
        """Complete events in, client bytes out; only events holding a marker are parsed."""
        hits = sorted(_marker_positions(block))
        if not hits:
            return block
        out: list[bytes] = []
        done = 0  # block[:done] is handled
        for position in hits:
            if position < done:
                continue  # a second marker in an event already looked at
            start = block.rfind(b"\n\n", done, position)
            start = done if start < 0 else start + 2
            end = block.find(b"\n\n", position) + 2  # the block ends with a blank line
            out.append(block[done:start])
            if self._inspect(block[start : end - 2]):
                out.append(block[start:end])
            done = end
        out.append(block[done:])
        return b"".join(out)

    def _inspect(self, event: bytes) -> bool:
        """Look at one event; False drops it."""
        data = _event_data(event)
        if data is None:
            return True
        if data == b"[DONE]":
            self.ended = True
            self.complete = True
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        if "error" in chunk and "choices" not in chunk:
            message, _, _ = error_message(data)
            self.error = UpstreamError(
                f"provider {self._provider!r} failed mid-stream: {message}", provider=self._provider
            )
            return True
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self.complete = True
        usage = usage_from_openai(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
            if not self._include_usage and not choices:
                return False
        return True


def _event_data(event: bytes) -> bytes | None:
    """The payload of an SSE event's ``data:`` line(s); None for comments and other fields."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].strip()
    lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
