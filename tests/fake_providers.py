"""Fake providers that answer in each provider's own wire format, generated from the request.

``FakeProviders`` is a ``FakeUpstream`` (same server, thread, ``push``/``reset``/``requests``)
whose default answer depends on the path the gateway called:

==============================================================  =====================
path                                                            dialect
==============================================================  =====================
``/v1/chat/completions``                                        ``openai``
``/openai/deployments/{d}/chat/completions?api-version=...``    ``azure``
``/v1/messages`` (JSON, or SSE when ``stream``)                 ``anthropic``
``/v1beta/models/{m}:generateContent`` / ``:streamGenerate...``  ``gemini``
``/model/{id}/converse`` / ``/converse-stream`` (event stream)  ``bedrock``
==============================================================  =====================

Every dialect behaves the same way, read from what the gateway sent in that dialect
(``read_request`` turns it into a ``Seen``):

* the text is ``echo: <last user text>``, plus `` [images: N]`` when the request carried
  images;
* with tools, and a last message that is not a tool result: two parallel calls of the first
  tool, arguments ``{"city": "Oslo"}`` and ``{"city": "Rome"}``;
* when the last message holds tool results: ``tool results: <r1> | <r2>``;
* in JSON mode (however the dialect says it): ``{"echo": "<last user text>"}``;
* usage: ``FRESH_TOKENS`` fresh input, ``CACHE_READ_TOKENS`` read from the cache,
  ``CACHE_WRITE_TOKENS`` written to it (Anthropic and Bedrock count writes; the OpenAI
  dialects and Gemini fold them into the prompt), output = words of the answer + 1;
* ``FAIL-429`` / ``FAIL-500`` / ``FAIL-400`` in the last user text: that status, in the
  dialect's own error body (and headers); ``FAIL-MIDSTREAM`` in a streamed request: the
  stream starts (the first text piece, ``echo: please ``) then ends with the dialect's
  in-stream error (an SSE error event, or Bedrock's exception frame).

``scripted`` replies pushed with ``push`` still win, one per request, as in ``FakeUpstream``.
Each generated answer is appended to ``answers`` so tests can compare what the client got.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from .fake_upstream import FakeUpstream, Recorded
from .unit.providers.test_eventstream import encode_event

FRESH_TOKENS: Final = 30
CACHE_READ_TOKENS: Final = 64
CACHE_WRITE_TOKENS: Final = 8
CITIES: Final = ("Oslo", "Rome")
ERROR_TRIGGER: Final = re.compile(r"FAIL-(\d{3})")
JSON_INSTRUCTION_MARK: Final = "Respond with a single valid JSON"
OPENAI_PATH: Final = re.compile(r"^/v1/chat/completions$")
AZURE_PATH: Final = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
ANTHROPIC_PATH: Final = re.compile(r"^/v1/messages$")
GEMINI_PATH: Final = re.compile(
    r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$"
)
BEDROCK_PATH: Final = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")


@dataclass
class Seen:
    """What a request asked for, whatever its dialect."""

    dialect: str
    model: str
    stream: bool = False
    include_usage: bool = False
    system: list[str] = field(default_factory=list)
    last_user_text: str = ""
    images: int = 0
    tools: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)
    json_mode: bool = False
    turns: int = 0


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Answer:
    text: str | None
    calls: list[Call]
    fresh_tokens: int = FRESH_TOKENS
    cache_read_tokens: int = CACHE_READ_TOKENS
    cache_write_tokens: int = CACHE_WRITE_TOKENS
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's convention: the whole prompt, cached parts included."""
        return self.fresh_tokens + self.cache_read_tokens + self.cache_write_tokens


# ---------------------------------------------------------------------- reading requests


def _text_of_openai(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _read_openai(dialect: str, model: str, body: dict[str, Any]) -> Seen:
    messages: list[dict[str, Any]] = body.get("messages") or []
    seen = Seen(dialect, str(body.get("model") or model), stream=bool(body.get("stream")))
    seen.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    for message in messages:
        content = message.get("content")
        if message["role"] in ("system", "developer"):
            seen.system.append(_text_of_openai(content))
            continue
        seen.turns += 1
        if isinstance(content, list):
            seen.images += sum(1 for p in content if p.get("type") == "image_url")
        if message["role"] == "user":
            seen.last_user_text = _text_of_openai(content)
    trailing = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        trailing.append(_text_of_openai(message.get("content")))
    seen.tool_results = trailing[::-1]
    seen.tools = [t["function"]["name"] for t in body.get("tools") or []]
    fmt = body.get("response_format") or {}
    seen.json_mode = fmt.get("type") in ("json_object", "json_schema")
    return seen


def _read_anthropic(body: dict[str, Any]) -> Seen:
    seen = Seen("anthropic", str(body["model"]), stream=bool(body.get("stream")))
    system = body.get("system")
    if isinstance(system, str):
        seen.system = [system]
    elif isinstance(system, list):
        seen.system = [block["text"] for block in system]
    seen.json_mode = any(text.startswith(JSON_INSTRUCTION_MARK) for text in seen.system)
    messages: list[dict[str, Any]] = body["messages"]
    seen.turns = len(messages)
    for message in messages:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        seen.images += sum(1 for b in blocks if b["type"] == "image")
        if message["role"] == "user":
            texts = [b["text"] for b in blocks if b["type"] == "text"]
            if texts:
                seen.last_user_text = "".join(texts)
            results = [b for b in blocks if b["type"] == "tool_result"]
            seen.tool_results = [_text_of_anthropic(r["content"]) for r in results]
    seen.tools = [t["name"] for t in body.get("tools") or []]
    return seen


def _text_of_anthropic(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _read_gemini(model: str, stream: bool, body: dict[str, Any]) -> Seen:
    seen = Seen("gemini", model, stream=stream)
    instruction = body.get("systemInstruction") or {}
    seen.system = [p["text"] for p in instruction.get("parts") or [] if "text" in p]
    contents: list[dict[str, Any]] = body["contents"]
    seen.turns = len(contents)
    for content in contents:
        parts = content["parts"]
        seen.images += sum(1 for p in parts if "inlineData" in p or "fileData" in p)
        if content["role"] == "user":
            texts = [p["text"] for p in parts if "text" in p]
            if texts:
                seen.last_user_text = "".join(texts)
            seen.tool_results = [
                _response_text(p["functionResponse"]["response"])
                for p in parts
                if "functionResponse" in p
            ]
    seen.tools = [
        declaration["name"]
        for tool in body.get("tools") or []
        for declaration in tool.get("functionDeclarations") or []
    ]
    config = body.get("generationConfig") or {}
    seen.json_mode = config.get("responseMimeType") == "application/json"
    return seen


def _response_text(response: dict[str, Any]) -> str:
    if set(response) == {"content"}:
        return str(response["content"])
    return orjson.dumps(response).decode()


def _read_bedrock(model: str, stream: bool, body: dict[str, Any]) -> Seen:
    seen = Seen("bedrock", model, stream=stream)
    seen.system = [block["text"] for block in body.get("system") or []]
    messages: list[dict[str, Any]] = body["messages"]
    seen.turns = len(messages)
    for message in messages:
        blocks = message["content"]
        seen.images += sum(1 for b in blocks if "image" in b)
        if message["role"] == "user":
            texts = [b["text"] for b in blocks if "text" in b]
            if texts:
                seen.last_user_text = "".join(texts)
            seen.tool_results = [
                _bedrock_result_text(b["toolResult"]["content"])
                for b in blocks
                if "toolResult" in b
            ]
    tool_config = body.get("toolConfig") or {}
    seen.tools = [t["toolSpec"]["name"] for t in tool_config.get("tools") or []]
    text_format = (body.get("outputConfig") or {}).get("textFormat") or {}
    seen.json_mode = text_format.get("type") == "json_schema"
    return seen


def _bedrock_result_text(content: list[dict[str, Any]]) -> str:
    out = []
    for block in content:
        if "text" in block:
            out.append(block["text"])
        elif "json" in block:
            out.append(orjson.dumps(block["json"]).decode())
    return "".join(out)


def read_request(path: str, query: str, body: dict[str, Any]) -> Seen | None:
    """The dialect-neutral view of a request to one of the fake providers' paths."""
    if OPENAI_PATH.match(path):
        return _read_openai("openai", "", body)
    if match := AZURE_PATH.match(path):
        assert "api-version=" in query, "Azure requires api-version"
        return _read_openai("azure", match.group(1), body)
    if ANTHROPIC_PATH.match(path):
        return _read_anthropic(body)
    if match := GEMINI_PATH.match(path):
        stream = match.group(2) == "streamGenerateContent"
        assert not stream or "alt=sse" in query, "streamGenerateContent without alt=sse"
        return _read_gemini(match.group(1), stream, body)
    if match := BEDROCK_PATH.match(path):
        model = match.group(1).replace("%3A", ":")
        return _read_bedrock(model, match.group(2) == "converse-stream", body)
    return None


# ---------------------------------------------------------------------- the behaviour


def answer_for(seen: Seen, serial: int) -> Answer:
    if seen.tool_results:
        text: str | None = "tool results: " + " | ".join(seen.tool_results)
        calls: list[Call] = []
    elif seen.tools:
        text = None
        prefix = {"anthropic": "toolu_", "bedrock": "tooluse_"}.get(seen.dialect, "call_")
        calls = [
            Call(f"{prefix}{serial:04d}{i}", seen.tools[0], {"city": city})
            for i, city in enumerate(CITIES)
        ]
    elif seen.json_mode:
        text = orjson.dumps({"echo": seen.last_user_text}).decode()
        calls = []
    else:
        text = f"echo: {seen.last_user_text}"
        if seen.images:
            text += f" [images: {seen.images}]"
        calls = []
    words = len(text.split()) if text else 0
    answer = Answer(text, calls, output_tokens=words + 1 + 10 * len(calls))
    if seen.dialect in ("openai", "azure", "gemini"):
        # No separate cache-write count in these dialects: writes are ordinary input.
        answer.fresh_tokens += answer.cache_write_tokens
        answer.cache_write_tokens = 0
    return answer


def _pieces(text: str) -> list[str]:
    """The text in small pieces (two words each), as a stream delivers it."""
    words = re.findall(r"\S+\s*", text) or [text]
    return ["".join(words[i : i + 2]) for i in range(0, len(words), 2)]


def _json_halves(arguments: dict[str, Any]) -> list[str]:
    raw = orjson.dumps(arguments).decode()
    middle = len(raw) // 2
    return [raw[:middle], raw[middle:]]


# ---------------------------------------------------------------------- openai / azure


AZURE_FILTER: Final = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def _openai_usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.prompt_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _openai_calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
        }
        for call in answer.calls
    ]


def openai_body(seen: Seen, answer: Answer, serial: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.calls:
        message["tool_calls"] = _openai_calls(answer)
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": "tool_calls" if answer.calls else "stop",
    }
    body: dict[str, Any] = {
        "id": f"chatcmpl-{serial:06d}",
        "object": "chat.completion",
        "created": 1700000000 + serial,
        "model": seen.model or "gpt-4o-2024-08-06",
        "choices": [choice],
        "usage": _openai_usage(answer),
        "system_fingerprint": "fp_fake",
    }
    if seen.dialect == "azure":
        choice["content_filter_results"] = AZURE_FILTER
        body["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": AZURE_FILTER}
        ]
    return body


def openai_events(seen: Seen, answer: Answer, serial: int) -> list[bytes]:
    head = {
        "id": f"chatcmpl-{serial:06d}",
        "object": "chat.completion.chunk",
        "created": 1700000000 + serial,
        "model": seen.model or "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice]})

    events = []
    if seen.dialect == "azure":
        # Azure's first chunk has no choices, only the prompt's content filter results.
        events.append(
            _sse(
                {
                    "id": "",
                    "object": "",
                    "created": 0,
                    "model": "",
                    "choices": [],
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": AZURE_FILTER}
                    ],
                }
            )
        )
    events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
    for piece in _pieces(answer.text) if answer.text else []:
        events.append(chunk({"content": piece}))
    for index, call in enumerate(answer.calls):
        function = {"name": call.name, "arguments": ""}
        start = {"index": index, "id": call.id, "type": "function", "function": function}
        events.append(chunk({"tool_calls": [start]}))
        for half in _json_halves(call.arguments):
            fragment = {"index": index, "function": {"arguments": half}}
            events.append(chunk({"tool_calls": [fragment]}))
    events.append(chunk({}, "tool_calls" if answer.calls else "stop"))
    if seen.include_usage:
        events.append(_sse({**head, "choices": [], "usage": _openai_usage(answer)}))
    events.append(b"data: [DONE]\n\n")
    return events


def openai_error(status: int) -> tuple[dict[str, Any], dict[str, str]]:
    kinds = {
        400: ("invalid_request_error", "invalid_value"),
        429: ("requests", "rate_limit_exceeded"),
        500: ("server_error", None),
    }
    kind, code = kinds.get(status, ("server_error", None))
    message = f"fake openai says FAIL-{status}: {kind}"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return body, {"x-request-id": "req_fake"}


# ---------------------------------------------------------------------- anthropic


def _anthropic_usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.fresh_tokens,
        "cache_creation_input_tokens": answer.cache_write_tokens,
        "cache_read_input_tokens": answer.cache_read_tokens,
        "output_tokens": answer.output_tokens,
        "service_tier": "standard",
    }


def anthropic_body(seen: Seen, answer: Answer, serial: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text is not None:
        content.append({"type": "text", "text": answer.text})
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in answer.calls
    ]
    return {
        "id": f"msg_{serial:06d}",
        "type": "message",
        "role": "assistant",
        "model": seen.model,
        "content": content,
        "stop_reason": "tool_use" if answer.calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(answer),
    }


def _anthropic_event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\n".encode() + _sse(payload)


def anthropic_events(seen: Seen, answer: Answer, serial: int) -> list[bytes]:
    start_usage = {**_anthropic_usage(answer), "output_tokens": 1}
    message = {**anthropic_body(seen, answer, serial), "content": [], "stop_reason": None}
    message["usage"] = start_usage
    events = [
        _anthropic_event({"type": "message_start", "message": message}),
        _anthropic_event({"type": "ping"}),
    ]
    index = 0
    if answer.text is not None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        events.append(
            _anthropic_event({"type": "content_block_start", "index": 0, "content_block": block})
        )
        for piece in _pieces(answer.text):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                _anthropic_event({"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events.append(_anthropic_event({"type": "content_block_stop", "index": 0}))
        index = 1
    for call in answer.calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(
            _anthropic_event(
                {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        for half in ["", *_json_halves(call.arguments)]:
            delta = {"type": "input_json_delta", "partial_json": half}
            events.append(
                _anthropic_event({"type": "content_block_delta", "index": index, "delta": delta})
            )
        events.append(_anthropic_event({"type": "content_block_stop", "index": index}))
        index += 1
    stop = "tool_use" if answer.calls else "end_turn"
    events.append(
        _anthropic_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            }
        )
    )
    events.append(_anthropic_event({"type": "message_stop"}))
    return events


def anthropic_error(status: int) -> tuple[dict[str, Any], dict[str, str]]:
    kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(status, "api_error")
    body = {
        "type": "error",
        "error": {"type": kind, "message": f"fake anthropic says FAIL-{status}: {kind}"},
        "request_id": "req_fake",
    }
    return body, {"request-id": "req_fake"}


# ---------------------------------------------------------------------- gemini


def _gemini_usage(answer: Answer) -> dict[str, Any]:
    return {
        "promptTokenCount": answer.prompt_tokens,
        "candidatesTokenCount": answer.output_tokens,
        "totalTokenCount": answer.prompt_tokens + answer.output_tokens,
        "cachedContentTokenCount": answer.cache_read_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}],
    }


def _gemini_parts(answer: Answer) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if answer.text is not None:
        parts.append({"text": answer.text})
    parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.calls]
    return parts


def gemini_body(seen: Seen, answer: Answer, serial: int) -> dict[str, Any]:
    # Gemini says STOP for function calls too; the gateway tells them apart itself.
    candidate = {
        "content": {"role": "model", "parts": _gemini_parts(answer)},
        "finishReason": "STOP",
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": _gemini_usage(answer),
        "modelVersion": seen.model,
        "responseId": f"resp-{serial:06d}",
    }


def gemini_events(seen: Seen, answer: Answer, serial: int) -> list[bytes]:
    def event(parts: list[dict[str, Any]], output: int, finish: bool) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        usage = {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": answer.prompt_tokens + output,
        }
        if finish:
            usage = _gemini_usage(answer)
        payload = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": seen.model,
            "responseId": f"resp-{serial:06d}",
        }
        # Google's SSE ends each event with CRLF CRLF.
        return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"

    pieces: list[list[dict[str, Any]]] = [[{"text": p}] for p in _pieces(answer.text or "")]
    if answer.calls:
        # Each functionCall part arrives whole; parallel calls share one chunk.
        pieces.append(_gemini_parts(Answer(None, answer.calls)))
    return [
        event(parts, min(answer.output_tokens, i + 1), i == len(pieces) - 1)
        for i, parts in enumerate(pieces)
    ]


def gemini_error(status: int) -> tuple[dict[str, Any], dict[str, str]]:
    kind = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED"}.get(status, "INTERNAL")
    message = f"fake gemini says FAIL-{status}: {kind}"
    return {"error": {"code": status, "message": message, "status": kind}}, {}


# ---------------------------------------------------------------------- bedrock


def _bedrock_usage(answer: Answer) -> dict[str, Any]:
    return {
        "inputTokens": answer.fresh_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.prompt_tokens + answer.output_tokens,
        "cacheReadInputTokens": answer.cache_read_tokens,
        "cacheWriteInputTokens": answer.cache_write_tokens,
    }


def bedrock_body(seen: Seen, answer: Answer, serial: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text is not None:
        content.append({"text": answer.text})
    content += [
        {"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in answer.calls
    ]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use" if answer.calls else "end_turn",
        "usage": _bedrock_usage(answer),
        "metrics": {"latencyMs": 120 + serial},
    }


def _frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    # Real frames pad the payload with a "p" field of random length.
    return encode_event(headers, orjson.dumps({**payload, "p": "abcdefgh"}))


def bedrock_events(seen: Seen, answer: Answer, serial: int) -> list[bytes]:
    frames = [_frame("messageStart", {"role": "assistant"})]
    index = 0
    if answer.text is not None:
        for piece in _pieces(answer.text):
            delta = {"contentBlockIndex": 0, "delta": {"text": piece}}
            frames.append(_frame("contentBlockDelta", delta))
        frames.append(_frame("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for call in answer.calls:
        start = {"toolUse": {"toolUseId": call.id, "name": call.name}}
        frames.append(_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for half in _json_halves(call.arguments):
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": half}}}
            frames.append(_frame("contentBlockDelta", delta))
        frames.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    stop = "tool_use" if answer.calls else "end_turn"
    frames.append(_frame("messageStop", {"stopReason": stop}))
    usage = {"usage": _bedrock_usage(answer), "metrics": {"latencyMs": 120 + serial}}
    frames.append(_frame("metadata", usage))
    return frames


def bedrock_error(status: int) -> tuple[dict[str, Any], dict[str, str]]:
    kind = {400: "ValidationException", 429: "ThrottlingException"}.get(
        status, "InternalServerException"
    )
    body = {"message": f"fake bedrock says FAIL-{status}: {kind}"}
    return body, {
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    }


def midstream_error(dialect: str) -> bytes:
    """The in-stream error each dialect sends after its stream has started."""
    message = f"fake {dialect} says FAIL-MIDSTREAM"
    if dialect in ("openai", "azure"):
        error: dict[str, Any] = {
            "message": message,
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return _sse({"error": error})
    if dialect == "anthropic":
        error = {"type": "overloaded_error", "message": message}
        return _anthropic_event({"type": "error", "error": error})
    if dialect == "gemini":
        error = {"code": 503, "message": message, "status": "UNAVAILABLE"}
        return b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n"
    headers = {
        ":message-type": "exception",
        ":exception-type": "throttlingException",
        ":content-type": "application/json",
    }
    return encode_event(headers, orjson.dumps({"message": message}))


# How many events of a stream carry the first text piece (see ``midstream_error``).
MIDSTREAM_PAUSE_S: Final = 0.05
MIDSTREAM_PREFIX: Final = {"openai": 2, "azure": 3, "anthropic": 4, "gemini": 1, "bedrock": 2}

RENDER: Final = {
    "openai": (openai_body, openai_events, openai_error),
    "azure": (openai_body, openai_events, openai_error),
    "anthropic": (anthropic_body, anthropic_events, anthropic_error),
    "gemini": (gemini_body, gemini_events, gemini_error),
    "bedrock": (bedrock_body, bedrock_events, bedrock_error),
}
STREAM_CONTENT_TYPE: Final = {
    "bedrock": "application/vnd.amazon.eventstream",
    "gemini": "text/event-stream",
}


def _sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


# ---------------------------------------------------------------------- the server


@dataclass
class Exchange:
    """One request a fake provider answered: what it saw and what it said."""

    request: Recorded
    seen: Seen
    answer: Answer | None  # None when it answered with an error
    status: int = 200


class FakeProviders(FakeUpstream):
    """A ``FakeUpstream`` whose default answers speak the dialect of the path called."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._serial = 0
        super().__init__()
        self.root = self.url.removesuffix("/v1")

    def __repr__(self) -> str:
        return f"FakeProviders({self.root}, {len(self.requests)} requests)"

    def reset(self) -> None:
        super().reset()
        self.exchanges.clear()

    @property
    def last(self) -> Exchange:
        assert self.exchanges, "no request reached the fake providers"
        return self.exchanges[-1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._replies:  # scripted replies win, exactly as in FakeUpstream
            return await super()._handle(request)
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        path = request.raw_path.split("?", 1)[0]
        recorded = Recorded(
            request.method,
            path,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            request.query_string,
        )
        self.requests.append(recorded)
        seen = read_request(path, request.query_string, body) if isinstance(body, dict) else None
        if seen is None:
            return web.json_response({"error": {"message": f"no fake at {path}"}}, status=404)
        self._serial += 1
        to_body, to_events, to_error = RENDER[seen.dialect]
        failure = ERROR_TRIGGER.search(seen.last_user_text)
        if failure and not seen.tool_results:
            status = int(failure.group(1))
            self.exchanges.append(Exchange(recorded, seen, None, status))
            error, headers = to_error(status)
            return web.json_response(error, status=status, headers=headers)
        answer = answer_for(seen, self._serial)
        self.exchanges.append(Exchange(recorded, seen, answer))
        if not seen.stream:
            return web.json_response(to_body(seen, answer, self._serial))
        content_type = STREAM_CONTENT_TYPE.get(seen.dialect, "text/event-stream")
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        events = to_events(seen, answer, self._serial)
        cut = "FAIL-MIDSTREAM" in seen.last_user_text
        if cut:
            events = [*events[: MIDSTREAM_PREFIX[seen.dialect]], midstream_error(seen.dialect)]
        for i, event in enumerate(events):
            if cut and i == len(events) - 1:
                # The error comes after the first content has reached the client (not in
                # the same read), so the gateway can no longer fail over.
                await asyncio.sleep(MIDSTREAM_PAUSE_S)
            await response.write(event)
        await response.write_eof()
        self.completed_streams += 1
        return response
