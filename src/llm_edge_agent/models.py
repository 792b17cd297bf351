"""Client requests: parsed once, validated, kept as the client's own dict.

The body stays a plain ``dict`` so unknown fields reach OpenAI-compatible upstreams
untouched; ``ChatRequest`` only lifts out what the gateway itself needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import orjson

from .errors import InvalidRequestError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})
MAX_MODEL_CHARS = 256


class ChatRequest:
    """A validated chat completion request."""

    __slots__ = ("body", "headers", "include_usage", "model", "raw", "stream")

    def __init__(
        self, body: dict[str, Any], raw: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.raw = raw
        # The client's request headers (lower-case names), for the few a provider honours
        # (e.g. ``anthropic-beta``); never forwarded wholesale.
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.model: str = body["model"]
        self.stream: bool = bool(body.get("stream"))
        options = body.get("stream_options")
        self.include_usage: bool = bool(options.get("include_usage")) if options else False

    def __repr__(self) -> str:
        return f"ChatRequest(model={self.model!r}, stream={self.stream})"


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


def parse_chat_request(raw: bytes, headers: Mapping[str, str] | None = None) -> ChatRequest:
    body = parse_json_object(raw)
    validate_chat_body(body)
    return ChatRequest(body, raw, headers)


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def _check_number(body: dict[str, Any], name: str, lo: float | None, hi: float | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"'{name}' must be a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _bad(name, f"'{name}' must be between {lo} and {hi}, got {value}")


def _check_int(body: dict[str, Any], name: str, lo: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"'{name}' must be an integer")
    if value < lo:
        raise _bad(name, f"'{name}' must be >= {lo}, got {value}")


def validate_chat_body(body: dict[str, Any]) -> None:
    _check_model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequestError(
            "'messages' is required", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _bad("messages", "'messages' must be an array of message objects")
    if not messages:
        raise _bad("messages", "'messages' must contain at least one message")
    for i, message in enumerate(messages):
        _validate_message(i, message)
    # Only the optional fields the body has: a typical request sets two or three of them,
    # so this is a few dict probes rather than one per field the gateway knows.
    for name in body:
        check = _CHAT_FIELD_CHECKS.get(name)
        if check is not None:
            check(body)


def _check_stream(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be a boolean")


def _check_stream_options(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options", "'stream_options' must be an object")
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise _bad("stream_options.include_usage", "'include_usage' must be a boolean")


def _check_stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if not (stop is None or isinstance(stop, str)) and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise _bad("stop", "'stop' must be a string or an array of strings")


def _check_response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str)):
        raise _bad("response_format", "'response_format' must be an object with a 'type'")


def _validate_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad(where, f"'{where}' must be an object")
    role = message.get("role")
    if role is None:
        raise _bad(f"{where}.role", f"'{where}.role' is required")
    if role not in ROLES:
        raise _bad(
            f"{where}.role",
            f"'{where}.role' must be one of {', '.join(sorted(ROLES))}, got {role!r}",
        )
    content = message.get("content")
    if content is None:
        if role != "assistant":
            raise _bad(f"{where}.content", f"'{where}.content' is required for role {role!r}")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _validate_part(f"{where}.content[{j}]", part)
    elif not isinstance(content, str):
        raise _bad(f"{where}.content", f"'{where}.content' must be a string or an array of parts")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _bad(f"{where}.tool_call_id", f"'{where}.tool_call_id' is required for role 'tool'")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant" or not isinstance(tool_calls, list):
            raise _bad(
                f"{where}.tool_calls", "'tool_calls' must be an array on an assistant message"
            )
        for j, call in enumerate(tool_calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise _bad(
                    f"{where}.tool_calls[{j}]", "each tool call needs a function with a name"
                )


def _validate_part(where: str, part: Any) -> None:
    if not isinstance(part, dict):
        raise _bad(where, f"'{where}' must be an object")
    ptype = part.get("type")
    if ptype not in PART_TYPES:
        raise _bad(
            f"{where}.type", f"'{where}.type' must be one of {', '.join(sorted(PART_TYPES))}"
        )
    if ptype == "text" and not isinstance(part.get("text"), str):
        raise _bad(f"{where}.text", f"'{where}.text' must be a string")
    if ptype == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise _bad(f"{where}.image_url.url", f"'{where}.image_url.url' must be a string")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "'tools' must be an array")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise _bad(f"tools[{i}].function.name", "each tool needs a function with a name")


def _check_tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None or (isinstance(choice, str) and choice in TOOL_CHOICES):
        return
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return
    raise _bad("tool_choice", "'tool_choice' must be none, auto, required or a named function")


# The optional chat fields the gateway checks, by name (``validate_chat_body``).
_CHAT_FIELD_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "stream": _check_stream,
    "stream_options": _check_stream_options,
    "temperature": partial(_check_number, name="temperature", lo=0, hi=2),
    "top_p": partial(_check_number, name="top_p", lo=0, hi=1),
    "presence_penalty": partial(_check_number, name="presence_penalty", lo=-2, hi=2),
    "frequency_penalty": partial(_check_number, name="frequency_penalty", lo=-2, hi=2),
    "n": partial(_check_int, name="n", lo=1),
    "max_tokens": partial(_check_int, name="max_tokens", lo=1),
    "max_completion_tokens": partial(_check_int, name="max_completion_tokens", lo=1),
    "seed": partial(_check_int, name="seed", lo=-(2**63)),
    "stop": _check_stop,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "response_format": _check_response_format,
}


ENCODING_FORMATS = frozenset({"float", "base64"})


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def _check_inputs(body: dict[str, Any], name: str) -> None:
    """``input``/``prompt``: a string, strings, a token array, or token arrays; not empty."""
    value = body.get(name)
    if value is None:
        raise InvalidRequestError(
            f"'{name}' is required", param=name, code="missing_required_parameter"
        )
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise _bad(name, f"'{name}' must be a string or a non-empty array")
    if all(isinstance(v, str) for v in value) or _is_tokens(value):
        return
    if all(_is_tokens(v) and v for v in value):
        return
    raise _bad(name, f"'{name}' must be strings or arrays of token ids")


def _check_model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise InvalidRequestError(
            "'model' is required", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise _bad("model", "'model' must be a non-empty string")
    if not model.isprintable() or len(model) > MAX_MODEL_CHARS:
        raise _bad(
            "model", f"'model' must be printable text of at most {MAX_MODEL_CHARS} characters"
        )


def parse_embeddings_request(raw: bytes, headers: Mapping[str, str] | None = None) -> ChatRequest:
    """``POST /v1/embeddings``: the same request object, never streamed."""
    body = parse_json_object(raw)
    _check_model(body)
    _check_inputs(body, "input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODING_FORMATS:
        raise _bad("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    _check_int(body, "dimensions", 1)
    if body.get("stream"):
        raise _bad("stream", "embeddings cannot be streamed")
    return ChatRequest(body, raw, headers)


def parse_completions_request(raw: bytes, headers: Mapping[str, str] | None = None) -> ChatRequest:
    """``POST /v1/completions`` (legacy text completions)."""
    body = parse_json_object(raw)
    _check_model(body)
    _check_inputs(body, "prompt")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be a boolean")
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)
    _check_int(body, "n", 1)
    _check_int(body, "max_tokens", 1)
    return ChatRequest(body, raw, headers)
