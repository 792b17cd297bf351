"""Anthropic Messages API: OpenAI Chat Completions requests in, Anthropic requests out.

Answers (whole and streamed) and errors are read by ``anthropic_stream.py``.
API reference: https://docs.claude.com/en/api/messages

How OpenAI fields map, where Anthropic differs:

* ``system`` / ``developer`` messages, wherever they appear, are lifted into the top-level
  ``system`` (a string for one text, else text blocks in order): Anthropic has no system
  role inside ``messages``. Consecutive messages of the same role are merged into one turn,
  since Anthropic requires user/assistant alternation; ``tool`` messages become
  ``tool_result`` blocks of a user turn, so the results of parallel calls share one turn.
* ``max_tokens`` is required by Anthropic: ``max_completion_tokens``, else ``max_tokens``,
  else a per-model default (``DEFAULT_MAX_TOKENS``, or the constructor's function).
* ``temperature``: OpenAI's range is 0-2, Anthropic's 0-1; values above 1 are sent as 1 so
  a route can fail over between the two without the request turning invalid.
* ``response_format``: Anthropic has no JSON mode. ``json_object`` and ``json_schema`` add
  a final system text asking for one JSON value and nothing else (with the schema for
  ``json_schema``). The answer is not validated or repaired by the gateway.
* ``reasoning_effort`` enables extended thinking with ``THINKING_BUDGETS`` tokens
  (low 1024, medium 2048, high 4096: LiteLLM's mapping, so clients moving from LiteLLM see
  the same budgets; ``minimal`` is raised to Anthropic's 1024 floor); ``none`` leaves it
  off. The budget is capped below ``max_tokens`` (Anthropic requires budget < max_tokens,
  budget >= 1024). With thinking on, ``temperature``/``top_p`` are dropped and a forced
  ``tool_choice`` is refused, as Anthropic rejects both
  (https://docs.claude.com/en/docs/build-with-claude/extended-thinking).
* ``user`` -> ``metadata.user_id``; ``stop`` -> ``stop_sequences``; ``n > 1`` -> 400.
* Dropped, no Anthropic equivalent: ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``logprobs``, ``top_logprobs``, ``seed``, ``store``, ``metadata``,
  ``service_tier``, ``prediction``, ``modalities``, ``audio``, ``web_search_options``,
  ``verbosity``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options`` (usage is
  always streamed by Anthropic) and any other field not named here.
* ``cache_control`` on a content part or a tool is passed through (prompt caching);
  ``image_url.detail`` and a function's ``strict`` are dropped; ``top_k`` (not OpenAI, but
  sent by clients written for other servers) is passed through.
* Not carried: thinking-block signatures. OpenAI messages have no field for them, so a
  tool-use loop with ``reasoning_effort`` cannot send the previous turn's thinking back,
  which Anthropic requires; such follow-up requests get Anthropic's 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from ..errors import InvalidRequestError, UpstreamError
from ..models import ChatRequest
from .anthropic_stream import AnthropicStream, decode_message, error_fields
from .base import Completion, UpstreamRequest
from .decoding import garbage
from .http_errors import error_for_status

DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
API_VERSION: Final = "2023-06-01"
BETA_HEADER: Final = "anthropic-beta"

# Output-token defaults when the client gives none, by model-name prefix (first match).
DEFAULT_MAX_TOKENS: Final[tuple[tuple[str, int], ...]] = (
    ("claude-sonnet-4", 64000),
    ("claude-3-7", 64000),
    ("claude-opus-4", 32000),
    ("claude-3-5", 8192),
    ("claude-haiku-4", 8192),
)
FALLBACK_MAX_TOKENS: Final = 4096

# reasoning_effort -> thinking budget_tokens; None = thinking off.
THINKING_BUDGETS: Final[Mapping[str, int | None]] = {
    "none": None,
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,  # beyond LiteLLM's table (it has no xhigh for budgets): twice "high"
}
MIN_THINKING_BUDGET: Final = 1024
MAX_TEMPERATURE: Final = 1.0

JSON_OBJECT_INSTRUCTION: Final = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it "
    "and no Markdown code fences."
)
JSON_SCHEMA_INSTRUCTION: Final = (
    "Respond with a single valid JSON value that conforms to the JSON Schema below, and "
    "nothing else: no prose before or after it and no Markdown code fences."
)
IMAGE_MEDIA_PREFIX: Final = "image/"

Block = dict[str, Any]


def max_tokens_for_model(model: str) -> int:
    """The ``DEFAULT_MAX_TOKENS`` entry for ``model`` (a prefix match), else the fallback."""
    name = model.lower()
    for prefix, tokens in DEFAULT_MAX_TOKENS:
        if name.startswith(prefix):
            return tokens
    return FALLBACK_MAX_TOKENS


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def _unsupported(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


class AnthropicTranslator:
    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        extra_headers: Mapping[str, str] | None = None,
        default_max_tokens: Callable[[str], int] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.messages_url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v1/messages"
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
        self._headers = headers
        self._max_tokens = default_max_tokens or max_tokens_for_model
        self._clock = clock

    def __repr__(self) -> str:
        return f"AnthropicTranslator({self.name!r}, {self.messages_url!r})"

    def health_request(self) -> UpstreamRequest:
        """A free probe for active health checks: the model list."""
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        url = self.messages_url.removesuffix("/messages") + "/models"
        return UpstreamRequest("GET", url, headers, b"")

    def encode_chat(self, request: ChatRequest, model: str) -> UpstreamRequest:
        body = encode_body(request.body, model, self._max_tokens)
        if request.stream:
            body["stream"] = True
        headers = self._headers
        beta = request.headers.get(BETA_HEADER)
        if beta:
            headers = {**headers, BETA_HEADER: beta}
        return UpstreamRequest("POST", self.messages_url, headers, orjson.dumps(body))

    def decode_chat(self, body: bytes) -> Completion:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise garbage(self.name, "a body that is not JSON") from exc
        answer, usage = decode_message(self.name, parsed, int(self._clock()))
        return Completion(answer, usage)

    def stream_decoder(self, request: ChatRequest) -> AnthropicStream:
        return AnthropicStream(self.name, request.model, request.include_usage, self._clock)

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        etype, message = error_fields(body)
        return error_for_status(self.name, status, message, headers, code=etype)


# ---------------------------------------------------------------------- the body


def encode_body(body: Mapping[str, Any], model: str, max_tokens_for: Callable[[str], int]) -> Block:
    """The Anthropic Messages body for an OpenAI chat body (without ``stream``)."""
    n = body.get("n")
    if n is not None and n != 1:
        raise _unsupported("n", "Anthropic returns one choice per request: 'n' must be 1")
    system, messages = encode_messages(body["messages"])
    out: Block = {"model": model}
    instruction = _json_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        only_text = len(system) == 1 and set(system[0]) == {"type", "text"}
        out["system"] = system[0]["text"] if only_text else system
    out["messages"] = messages
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or max_tokens_for(model)
    out["max_tokens"] = limit
    _sampling(body, out)
    thinking = _thinking(body.get("reasoning_effort"), limit)
    if thinking is not None:
        out["thinking"] = thinking
        # Anthropic rejects temperature/top_p changes while thinking.
        out.pop("temperature", None)
        out.pop("top_p", None)
    _tools(body, out, thinking is not None)
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _bad("user", "'user' must be a string")
        out["metadata"] = {"user_id": user}
    return out


def _sampling(body: Mapping[str, Any], out: Block) -> None:
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif stop:
        out["stop_sequences"] = list(stop)
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(temperature, MAX_TEMPERATURE)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    top_k = body.get("top_k")  # not OpenAI, but sent by clients written for vLLM/Anthropic
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        out["top_k"] = top_k


def _thinking(effort: Any, max_tokens: int) -> Block | None:
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise _bad(
            "reasoning_effort",
            f"'reasoning_effort' must be one of {', '.join(THINKING_BUDGETS)}",
        )
    budget = THINKING_BUDGETS[effort]
    if budget is None:
        return None
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        raise _bad(
            "reasoning_effort",
            f"Anthropic thinking needs max_tokens above {MIN_THINKING_BUDGET}; "
            f"raise max_completion_tokens or drop reasoning_effort",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _json_instruction(fmt: Any) -> str | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad(
                "response_format.json_schema.schema", "'json_schema.schema' must be an object"
            )
        text = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        return f"{JSON_SCHEMA_INSTRUCTION}\n\n{text}"
    raise _bad(
        "response_format.type", "'response_format.type' must be text, json_object or json_schema"
    )


def _tools(body: Mapping[str, Any], out: Block, thinking: bool) -> None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        return  # a tool_choice without tools means nothing; Anthropic would reject it
    encoded = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise _unsupported(f"tools[{i}].type", "only function tools can go to Anthropic")
        fn = tool["function"]
        params = fn.get("parameters")
        spec: Block = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            spec["description"] = fn["description"]
        # input_schema is required; OpenAI lets a function without parameters through.
        spec["input_schema"] = params if isinstance(params, dict) else {"type": "object"}
        if isinstance(tool.get("cache_control"), dict):
            spec["cache_control"] = tool["cache_control"]
        encoded.append(spec)
    out["tools"] = encoded
    mapped: Block | None = None
    if choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict):
        mapped = {"type": "tool", "name": choice["function"]["name"]}
    if thinking and mapped is not None and mapped["type"] in ("any", "tool"):
        raise _unsupported(
            "tool_choice", "Anthropic cannot force a tool call while thinking (reasoning_effort)"
        )
    if body.get("parallel_tool_calls") is False and (mapped is None or mapped["type"] != "none"):
        mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
    if mapped is not None:
        out["tool_choice"] = mapped


# ---------------------------------------------------------------------- messages


def encode_messages(messages: list[dict[str, Any]]) -> tuple[list[Block], list[Block]]:
    """(system blocks, alternating user/assistant turns)."""
    system: list[Block] = []
    turns: list[Block] = []
    for i, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
            continue
        content: str | list[Block]
        if role == "tool":
            turn_role, content = "user", [_tool_result(message, where)]
        elif role == "user":
            turn_role, content = "user", _content(message.get("content"), f"{where}.content")
        elif role == "assistant":
            turn_role, content = "assistant", _assistant(message, where)
        else:
            raise _unsupported(f"{where}.role", f"role {role!r} cannot go to Anthropic; use 'tool'")
        if content or turn_role == "user":
            _append(turns, turn_role, content)
        # else: an empty assistant message; Anthropic rejects empty turns, and dropping it
        # merges its neighbours, which Anthropic accepts.
    return system, turns


def _append(turns: list[Block], role: str, content: str | list[Block]) -> None:
    if turns and turns[-1]["role"] == role:
        last = turns[-1]
        last["content"] = _as_blocks(last["content"]) + _as_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _as_blocks(content: str | list[Block]) -> list[Block]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _content(content: Any, where: str) -> str | list[Block]:
    if isinstance(content, str):
        return content
    return [_part(part, f"{where}[{j}]") for j, part in enumerate(content or [])]


def _text_blocks(content: Any, where: str) -> list[Block]:
    blocks = _as_blocks(_content(content, where))
    for j, block in enumerate(blocks):
        if block["type"] != "text":
            raise _unsupported(f"{where}[{j}]", "system messages can only hold text")
    return blocks


def _part(part: dict[str, Any], where: str) -> Block:
    kind = part["type"]
    block: Block
    if kind == "text":
        block = {"type": "text", "text": part["text"]}
    elif kind == "refusal":  # an assistant refusal sent back as history
        block = {"type": "text", "text": str(part.get("refusal") or "")}
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part["image_url"]["url"], where)}
    elif kind == "file":
        block = _document(part.get("file"), where)
    else:
        raise _unsupported(f"{where}.type", f"content part {kind!r} cannot go to Anthropic")
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_source(url: str, where: str) -> Block:
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    media, data = _data_url(url, f"{where}.image_url.url")
    if not media.startswith(IMAGE_MEDIA_PREFIX):
        raise _bad(f"{where}.image_url.url", f"expected an image, got media type {media!r}")
    return {"type": "base64", "media_type": media, "data": data}


def _document(file: Any, where: str) -> Block:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        # file_id names an OpenAI upload, which Anthropic cannot read.
        raise _unsupported(
            f"{where}.file", "only inline file_data (a data: URL) can go to Anthropic"
        )
    media, data = _data_url(data_url, f"{where}.file.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}


def _data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<media>;base64,<data>`` -> (media, data)."""
    head, comma, data = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and comma and data):
        raise _bad(param, "expected an http(s) URL or a base64 data: URL")
    return head[len("data:") : -len(";base64")], data


def _assistant(message: dict[str, Any], where: str) -> str | list[Block]:
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not calls:
        return _content(content, f"{where}.content") if content is not None else ""
    blocks = [b for b in _as_blocks(_content(content, f"{where}.content")) if b.get("text") != ""]
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: dict[str, Any], where: str) -> Block:
    fn = call["function"]
    arguments = fn.get("arguments")
    param = f"{where}.function.arguments"
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _bad(param, f"'{param}' must be a JSON object encoded as a string") from exc
    if not isinstance(parsed, dict):
        raise _bad(param, f"'{param}' must encode a JSON object")
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": fn["name"],
        "input": parsed,
    }


def _tool_result(message: dict[str, Any], where: str) -> Block:
    content = message.get("content")
    result: Block = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    result["content"] = _content(content, f"{where}.content") if content is not None else ""
    return result
