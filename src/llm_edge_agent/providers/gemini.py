"""Google Gemini API (generativelanguage): OpenAI Chat Completions in, Gemini requests out.

Answers (whole and streamed) and errors are read by ``gemini_stream.py``.
API reference: https://ai.google.dev/api/generate-content

How OpenAI fields map, where Gemini differs:

* ``system`` / ``developer`` messages, wherever they appear, become ``systemInstruction``
  text parts, in order. ``assistant`` is Gemini's ``model`` role; consecutive turns of one
  role are merged. ``tool`` (and legacy ``function``) messages become ``functionResponse``
  parts of a ``user`` turn, so the results of parallel calls share one turn; their ``name``
  comes from the assistant tool call with the same id (Gemini matches results by name),
  their ``response`` is the JSON object the tool returned, else ``{"content": <text>}``.
  A ``thoughtSignature`` carried in a tool call id (see ``gemini_stream.tool_call_id``) is
  put back on its ``functionCall`` part, as Gemini 3 requires.
* Images: data URLs -> ``inlineData``. http(s)/gs URLs -> ``fileData`` with the URL as
  ``fileUri``: the translator makes no requests, so it cannot inline a remote image, and
  Gemini fetches it itself. ``fileData`` requires a ``mimeType``: it is guessed from the
  path's extension (``IMAGE_MIME_TYPES``), else ``image/jpeg``, the most common kind.
  ``input_audio`` and ``file`` parts with base64 data become ``inlineData``.
* ``tools`` -> one ``functionDeclarations`` tool. ``parameters`` is Gemini's OpenAPI-subset
  ``Schema``, which rejects some JSON Schema keywords: ``UNSUPPORTED_SCHEMA_KEYS`` are
  dropped at every level, ``type: [T, "null"]`` becomes ``type: T, nullable: true``, and an
  object schema without properties is omitted entirely (Gemini answers 400 "properties:
  should be non-empty for OBJECT type").
* ``tool_choice``: auto/none/required -> AUTO/NONE/ANY; a named function -> ANY with
  ``allowedFunctionNames``. ``parallel_tool_calls`` has no equivalent and is dropped.
* ``response_format``: ``json_object`` -> ``responseMimeType: application/json``;
  ``json_schema`` adds the schema as ``responseJsonSchema``, which takes JSON Schema as
  OpenAI clients write it (``$ref``/``$defs``, ``additionalProperties``...), rather than
  ``responseSchema`` (the OpenAPI subset, which would need the lossy conversion above).
* ``reasoning_effort`` -> ``thinkingConfig.thinkingBudget`` (``THINKING_BUDGETS``: the
  LiteLLM budgets, as the Anthropic translator uses) with ``includeThoughts`` so thoughts
  come back as ``reasoning_content``; ``none`` -> budget 0 (thinking off, which Gemini 2.5
  Pro refuses). Without ``reasoning_effort`` the model's default thinking applies.
* ``max_completion_tokens`` / ``max_tokens`` -> ``maxOutputTokens``; ``stop`` ->
  ``stopSequences``; ``n`` -> ``candidateCount`` (``n > 1`` cannot be streamed: the stream
  writer has one choice); ``temperature``, ``top_p``, ``top_k``, ``seed``,
  ``presence_penalty``, ``frequency_penalty`` -> their camelCase namesakes.
* Dropped, no Gemini equivalent: ``logit_bias``, ``logprobs``, ``top_logprobs``, ``user``,
  ``store``, ``metadata``, ``service_tier``, ``stream_options`` (usage always streams),
  ``parallel_tool_calls`` and any other field not named here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

import orjson

from ..errors import InvalidRequestError, UpstreamError
from ..models import ChatRequest
from . import gemini_embeddings
from .base import Completion, UpstreamRequest
from .decoding import garbage
from .gemini_stream import (
    GeminiStream,
    decode_response,
    error_fields,
    error_from_fields,
    signature_of,
)

DEFAULT_BASE_URL: Final = "https://generativelanguage.googleapis.com"
API_VERSION: Final = "v1beta"
KEY_HEADER: Final = "x-goog-api-key"
MODEL_PREFIXES: Final = ("models/", "tunedModels/")
GENERATE: Final = "generateContent"
STREAM_GENERATE: Final = "streamGenerateContent?alt=sse"

ROLES: Final = {"user": "user", "assistant": "model", "tool": "user", "function": "user"}
SYSTEM_ROLES: Final = frozenset({"system", "developer"})

# reasoning_effort -> thinkingBudget (tokens); 0 turns thinking off.
THINKING_BUDGETS: Final[Mapping[str, int]] = {
    "none": 0,
    "minimal": 128,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
}
TOOL_CHOICE_MODES: Final = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
JSON_MIME: Final = "application/json"

# JSON Schema keywords Gemini's function ``parameters`` Schema rejects with 400
# (https://ai.google.dev/api/caching#Schema lists what it accepts).
UNSUPPORTED_SCHEMA_KEYS: Final = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "additionalProperties",
        "unevaluatedProperties",
        "patternProperties",
        "propertyNames",
        "strict",
        "examples",
        "const",
        "readOnly",
        "writeOnly",
        "deprecated",
        "contentEncoding",
        "contentMediaType",
    }
)
# Keys whose values are data, not sub-schemas: never cleaned.
SCHEMA_DATA_KEYS: Final = frozenset({"enum", "default", "example", "required"})

IMAGE_MIME_TYPES: Final = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
DEFAULT_IMAGE_MIME: Final = "image/jpeg"
REMOTE_SCHEMES: Final = frozenset({"http", "https", "gs"})
AUDIO_MIME_TYPES: Final = {"wav": "audio/wav", "mp3": "audio/mp3"}

Json = dict[str, Any]


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def _unsupported(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


def model_path(model: str) -> str:
    """``models/<name>`` (a ``models/`` or ``tunedModels/`` prefix is kept, not doubled)."""
    path = model if model.startswith(MODEL_PREFIXES) else f"models/{model}"
    return quote(path, safe="/-._~")


class GeminiTranslator:
    operations = frozenset({"embeddings"})  # /v1/embeddings: see gemini_embeddings.py

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        extra_headers: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # A base URL copied from Google's examples may already end in the API version.
        self.base_url = base.removesuffix(f"/{API_VERSION}")
        headers = {"content-type": "application/json"}
        if api_key:
            headers[KEY_HEADER] = api_key
        headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
        self._headers = headers
        self._clock = clock

    def __repr__(self) -> str:
        return f"GeminiTranslator({self.name!r}, {self.base_url!r})"

    def health_request(self) -> UpstreamRequest:
        """A free probe for active health checks: the model list."""
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        return UpstreamRequest("GET", f"{self.base_url}/{API_VERSION}/models", headers, b"")

    def url_for(self, model: str, stream: bool) -> str:
        method = STREAM_GENERATE if stream else GENERATE
        return f"{self.base_url}/{API_VERSION}/{model_path(model)}:{method}"

    def encode_chat(self, request: ChatRequest, model: str) -> UpstreamRequest:
        body = encode_body(request.body, request.stream)
        url = self.url_for(model, request.stream)
        return UpstreamRequest("POST", url, self._headers, orjson.dumps(body))

    def decode_chat(self, body: bytes) -> Completion:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise garbage(self.name, "a body that is not JSON") from exc
        answer, usage = decode_response(self.name, parsed, int(self._clock()))
        return Completion(answer, usage)

    def stream_decoder(self, request: ChatRequest) -> GeminiStream:
        return GeminiStream(self.name, request.model, request.include_usage, self._clock)

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from_fields(self.name, status, error_fields(body), headers)

    def encode_operation(self, kind: str, request: ChatRequest, model: str) -> UpstreamRequest:
        if kind != "embeddings":
            raise InvalidRequestError(f"Gemini does not support {kind!r}")
        body = gemini_embeddings.encode_embeddings(request.body, model)
        url = gemini_embeddings.embeddings_url(self.base_url, model)
        return UpstreamRequest("POST", url, self._headers, orjson.dumps(body))

    def decode_operation(
        self, kind: str, body: bytes, request: ChatRequest | None = None
    ) -> Completion:
        """``request`` (not passed by the pipeline today) gives base64 and estimated usage."""
        if kind != "embeddings":
            raise InvalidRequestError(f"Gemini does not support {kind!r}")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise garbage(self.name, "a body that is not JSON") from exc
        answer, usage = gemini_embeddings.decode_embeddings(
            self.name,
            parsed,
            encoding_format=request.body.get("encoding_format") if request else None,
            texts=gemini_embeddings.texts_of(request.body, "Gemini") if request else None,
        )
        return Completion(answer, usage)


# ---------------------------------------------------------------------- the body


def encode_body(body: Mapping[str, Any], stream: bool) -> Json:
    """The ``GenerateContentRequest`` for an OpenAI chat body."""
    system, contents = encode_messages(body["messages"])
    out: Json = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = encode_tools(body)
    if tools:
        out.update(tools)
    config = generation_config(body, stream)
    if config:
        out["generationConfig"] = config
    return out


def encode_messages(messages: list[Json]) -> tuple[list[Json], list[Json]]:
    """(systemInstruction parts, contents) with same-role turns merged."""
    system: list[Json] = []
    contents: list[Json] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{i}]"
        if role in SYSTEM_ROLES:
            system.extend(_text_parts(message.get("content"), where))
            continue
        if role == "assistant":
            parts = _assistant_parts(message, where, call_names)
        elif role in ("tool", "function"):
            parts = [_function_response(message, where, call_names)]
        else:
            parts = _user_parts(message.get("content"), where)
        if not parts:
            continue  # Gemini rejects a turn without parts
        gemini_role = ROLES[role]
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


def _text_parts(content: Any, where: str) -> list[Json]:
    """Text-only content (system and assistant turns); empty texts are skipped."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Json] = []
    for j, part in enumerate(content or []):
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise _unsupported(f"{where}.content[{j}]", "only text parts are allowed here")
        if text:
            parts.append({"text": text})
    return parts


def _user_parts(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Json] = []
    for j, part in enumerate(content):
        encoded = _content_part(part, f"{where}.content[{j}]")
        if encoded is not None:
            parts.append(encoded)
    return parts


def _content_part(part: Json, where: str) -> Json | None:
    kind = part["type"]
    if kind == "text":
        return {"text": part["text"]} if part["text"] else None
    if kind == "refusal":
        refusal = part.get("refusal")
        return {"text": refusal} if isinstance(refusal, str) and refusal else None
    if kind == "image_url":
        return _image(part["image_url"]["url"], f"{where}.image_url.url")
    if kind == "input_audio":
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        mime = AUDIO_MIME_TYPES.get(str(audio.get("format")))
        if mime is None or not isinstance(audio.get("data"), str):
            raise _bad(f"{where}.input_audio", "input_audio needs base64 data and wav or mp3")
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        raise _unsupported(f"{where}.file", "Gemini takes files as base64 data URLs only")
    return _data_url(data, f"{where}.file.file_data")


def _image(url: str, where: str) -> Json:
    if url.startswith("data:"):
        return _data_url(url, where)
    split = urlsplit(url)
    if split.scheme not in REMOTE_SCHEMES:
        raise _bad(where, "an image must be a base64 data URL or an http(s)/gs URL")
    dot = split.path.rfind(".")
    extension = split.path[dot:].lower() if dot >= 0 else ""
    mime = IMAGE_MIME_TYPES.get(extension, DEFAULT_IMAGE_MIME)
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _data_url(url: str, where: str) -> Json:
    header, comma, data = url.partition(",")
    mime, _, encoding = header.removeprefix("data:").partition(";")
    if not comma or encoding != "base64" or not mime or not data:
        raise _bad(where, "expected a data URL of the form data:<mime type>;base64,<data>")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(message: Json, where: str, call_names: dict[str, str]) -> list[Json]:
    parts = _text_parts(message.get("content"), where)
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        arguments = function.get("arguments") or "{}"
        param = f"{where}.tool_calls[{j}].function.arguments"
        try:
            args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError as exc:
            raise _bad(param, "tool call arguments must be a JSON object") from exc
        if not isinstance(args, dict):
            raise _bad(param, "tool call arguments must be a JSON object")
        part: Json = {"functionCall": {"name": function["name"], "args": args}}
        call_id = call.get("id")
        if isinstance(call_id, str):
            call_names[call_id] = function["name"]
            signature = signature_of(call_id)
            if signature is not None:
                part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: Json, where: str, call_names: dict[str, str]) -> Json:
    name = call_names.get(message.get("tool_call_id") or "") or message.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.tool_call_id", "no earlier assistant tool call has this tool_call_id")
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if p.get("type") == "text")
    response: Any = None
    if isinstance(content, str) and content.lstrip().startswith("{"):
        try:
            response = orjson.loads(content)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"content": content}  # Gemini's ``response`` must be an object
    return {"functionResponse": {"name": name, "response": response}}


# ---------------------------------------------------------------------- tools


def encode_tools(body: Mapping[str, Any]) -> Json:
    tools = body.get("tools")
    if not tools:
        return {}
    declarations = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise _unsupported(f"tools[{i}].type", "Gemini supports function tools only")
        declarations.append(_declaration(tool["function"]))
    out: Json = {"tools": [{"functionDeclarations": declarations}]}
    config = _tool_config(body.get("tool_choice"))
    if config is not None:
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def _declaration(function: Json) -> Json:
    declaration: Json = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if isinstance(parameters, dict) and parameters.get("properties"):
        declaration["parameters"] = clean_schema(parameters)
    return declaration


def clean_schema(schema: Json) -> Json:
    """A JSON Schema made acceptable to Gemini's ``Schema`` (see the module docstring)."""
    out: Json = {}
    for key, value in schema.items():
        if key in UNSUPPORTED_SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean_value(sub) for name, sub in value.items()}
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            out[key] = kinds[0] if len(kinds) == 1 else kinds
            if len(kinds) < len(value):
                out["nullable"] = True
        elif key == "enum" and isinstance(value, list) and None in value:
            # Gemini enums hold strings only: a null choice is ``nullable`` instead.
            out[key] = [item for item in value if item is not None]
            out["nullable"] = True
        elif key in SCHEMA_DATA_KEYS:
            out[key] = value
        else:
            out[key] = _clean_value(value)
    return out


def _clean_value(value: Any) -> Any:
    if isinstance(value, dict):
        return clean_schema(value)
    if isinstance(value, list):
        return [_clean_value(item) for item in value]
    return value


def _tool_config(choice: Any) -> Json | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"mode": TOOL_CHOICE_MODES[choice]}
    return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}


# ---------------------------------------------------------------------- generationConfig

# OpenAI field -> generationConfig field, copied as they are.
SAMPLING_FIELDS: Final = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),  # not OpenAI, but sent by clients written for vLLM/Gemini
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def generation_config(body: Mapping[str, Any], stream: bool) -> Json:
    config: Json = {}
    for source, target in SAMPLING_FIELDS:
        if body.get(source) is not None:
            config[target] = body[source]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    n = body.get("n")
    if n is not None:
        if n != 1 and stream:
            raise _unsupported("n", "a streamed Gemini answer has one choice: 'n' must be 1")
        config["candidateCount"] = n
    config.update(_response_format(body.get("response_format")))
    thinking = _thinking(body.get("reasoning_effort"))
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _response_format(fmt: Any) -> Json:
    if fmt is None or fmt["type"] == "text":
        return {}
    if fmt["type"] == "json_object":
        return {"responseMimeType": JSON_MIME}
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema", "a JSON schema object is required")
        return {"responseMimeType": JSON_MIME, "responseJsonSchema": schema}
    raise _unsupported("response_format.type", "must be text, json_object or json_schema")


def _thinking(effort: Any) -> Json | None:
    if effort is None:
        return None
    if effort not in THINKING_BUDGETS:
        allowed = ", ".join(THINKING_BUDGETS)
        raise _bad("reasoning_effort", f"'reasoning_effort' must be one of {allowed}")
    budget = THINKING_BUDGETS[effort]
    return {"thinkingBudget": budget, "includeThoughts": True} if budget else {"thinkingBudget": 0}
