"""Streams and cache entries: assemble a streamed answer, replay a stored one as a stream.

A cache entry is the complete OpenAI ``chat.completion`` body. ``StreamAssembler`` builds
one from the OpenAI SSE bytes sent to a client (content, reasoning, tool calls, finish
reasons and usage, for every choice), so a streamed miss can be stored; ``replay_chunks``
turns a stored body back into a valid stream (role first, reasoning and content, each tool
call with its index, id and name first, the finish chunk, usage when asked, ``[DONE]``), so
a streamed request can be answered from any entry, and a non-streamed one from a streamed.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
REPLAY_PIECE_CHARS = 256  # replayed text comes in pieces of this size, not one lump


class _Choice:
    __slots__ = ("calls", "content", "finish_reason", "reasoning", "refusal", "role")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content or not self.calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return message


class StreamAssembler:
    """Fed the client's OpenAI SSE bytes in any chunking; ``result()`` gives the whole body,
    or None when the stream was not a complete, successful answer."""

    __slots__ = ("_broken", "_buf", "_choices", "_done", "_head", "_usage")

    def __init__(self) -> None:
        self._buf = b""
        self._choices: dict[int, _Choice] = {}
        self._head: dict[str, Any] = {}
        self._usage: Any = None
        self._done = False
        self._broken = False

    def __repr__(self) -> str:
        return f"StreamAssembler(choices={len(self._choices)}, done={self._done})"

    def feed(self, data: bytes) -> None:
        buf = self._buf + data
        *events, self._buf = buf.split(b"\n\n")
        for event in events:
            self._event(event)

    def _event(self, event: bytes) -> None:
        event = event.strip()
        if not event.startswith(b"data:"):
            return
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self._done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self._broken = True
            return
        if not self._head:
            self._head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for raw in chunk.get("choices") or ():
            self._choice(raw)

    def _choice(self, raw: dict[str, Any]) -> None:
        choice = self._choices.setdefault(int(raw.get("index") or 0), _Choice())
        delta = raw.get("delta") or {}
        if delta.get("role"):
            choice.role = delta["role"]
        if delta.get("content"):
            choice.content.append(delta["content"])
        if delta.get("reasoning_content"):
            choice.reasoning.append(delta["reasoning_content"])
        if delta.get("refusal"):
            choice.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            entry = choice.calls.setdefault(
                int(call.get("index") or 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                entry["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                entry["function"]["name"] = fn["name"]
            entry["function"]["arguments"] += fn.get("arguments") or ""
        if raw.get("finish_reason"):
            choice.finish_reason = raw["finish_reason"]

    def result(self) -> dict[str, Any] | None:
        """The whole answer; None unless every choice finished and nothing went wrong."""
        if self._broken or not self._done or not self._choices:
            return None
        if any(c.finish_reason is None for c in self._choices.values()):
            return None
        body: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "chat.completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": self._choices[i].message(),
                    "logprobs": None,
                    "finish_reason": self._choices[i].finish_reason,
                }
                for i in sorted(self._choices)
            ],
        }
        if self._head.get("system_fingerprint"):
            body["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            body["usage"] = self._usage
        return body


def _pieces(text: str) -> list[str]:
    return [text[i : i + REPLAY_PIECE_CHARS] for i in range(0, len(text), REPLAY_PIECE_CHARS)]


def replay_chunks(body: dict[str, Any], include_usage: bool) -> list[bytes]:
    """A stored ``chat.completion`` as OpenAI SSE events, ``[DONE]`` last."""
    head = orjson.dumps(
        {
            "id": body.get("id"),
            "object": "chat.completion.chunk",
            "created": body.get("created"),
            "model": body.get("model"),
        }
    )[:-1]

    def event(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + head + b',"choices":' + orjson.dumps([choice]) + b"}\n\n"

    events: list[bytes] = []
    for choice in body.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        events.append(event(index, {"role": message.get("role", "assistant"), "content": ""}))
        for piece in _pieces(message.get("reasoning_content") or ""):
            events.append(event(index, {"reasoning_content": piece}))
        for piece in _pieces(message.get("content") or ""):
            events.append(event(index, {"content": piece}))
        if message.get("refusal"):
            events.append(event(index, {"refusal": message["refusal"]}))
        for n, call in enumerate(message.get("tool_calls") or ()):
            fn = call.get("function") or {}
            start = {
                "index": n,
                "id": call.get("id"),
                "type": "function",
                "function": {"name": fn.get("name"), "arguments": ""},
            }
            events.append(event(index, {"tool_calls": [start]}))
            for piece in _pieces(fn.get("arguments") or ""):
                args = {"index": n, "function": {"arguments": piece}}
                events.append(event(index, {"tool_calls": [args]}))
        events.append(event(index, {}, choice.get("finish_reason") or "stop"))
    if include_usage and body.get("usage"):
        events.append(
            b"data: " + head + b',"choices":[],"usage":' + orjson.dumps(body["usage"]) + b"}\n\n"
        )
    events.append(DONE)
    return events
