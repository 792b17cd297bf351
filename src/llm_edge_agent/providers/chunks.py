"""Building OpenAI answers from another provider's: usage objects and streamed chunks.

Every translator whose upstream does not speak OpenAI produces its client stream with a
``ChunkWriter``, so the chunk shapes (role first, one tool call ``index`` per call, the
finish chunk, the optional usage chunk, ``[DONE]``) are written in one place.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..pricing import TokenUsage

DONE = b"data: [DONE]\n\n"


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    """An OpenAI ``usage`` object; ``prompt_tokens`` includes cached and cache-write tokens."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_body(
    response_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str | None,
    usage: TokenUsage | None,
    created: int | None = None,
) -> dict[str, Any]:
    """A non-streaming OpenAI ``chat.completion`` with one choice."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        body["usage"] = openai_usage(usage)
    return body


class ChunkWriter:
    """SSE bytes of ``chat.completion.chunk`` events for one streamed answer (choice 0)."""

    __slots__ = ("_prefix", "include_usage", "role_sent")

    def __init__(
        self, response_id: str, model: str, include_usage: bool, created: int | None = None
    ) -> None:
        head = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": model,
        }
        # Every chunk starts the same way: serialize that part once.
        self._prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":'
        self.include_usage = include_usage
        self.role_sent = False

    def __repr__(self) -> str:
        return f"ChunkWriter(role_sent={self.role_sent})"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._prefix + orjson.dumps([choice]) + b"}\n\n"

    def role(self) -> bytes:
        """The first chunk: the assistant role (sent once; later calls return nothing)."""
        if self.role_sent:
            return b""
        self.role_sent = True
        return self._chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> bytes:
        return self.role() + self._chunk({"content": text}) if text else b""

    def reasoning(self, text: str) -> bytes:
        return self.role() + self._chunk({"reasoning_content": text}) if text else b""

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        call = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self.role() + self._chunk({"tool_calls": [call]})

    def tool_call_arguments(self, index: int, fragment: str) -> bytes:
        if not fragment:
            return b""
        call = {"index": index, "function": {"arguments": fragment}}
        return self.role() + self._chunk({"tool_calls": [call]})

    def finish(self, reason: str) -> bytes:
        return self.role() + self._chunk({}, reason)

    def usage(self, usage: TokenUsage) -> bytes:
        """The final usage chunk (``choices: []``), only when the client asked for it."""
        if not self.include_usage:
            return b""
        return self._prefix + b"[]," + orjson.dumps({"usage": openai_usage(usage)})[1:] + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return DONE
