"""OpenAI chat request -> Bedrock Converse request body.

Field names follow the Converse API reference
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..errors import InvalidRequestError

# Converse takes images as inline bytes (base64 in JSON) of these formats, or S3 locations
# (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ImageBlock.html).
IMAGE_FORMATS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
SYSTEM_ROLES: Final = frozenset({"system", "developer"})
# Claude's extended thinking on Bedrock goes through additionalModelRequestFields; OpenAI's
# reasoning_effort becomes a thinking budget (the minimum budget Anthropic accepts is 1024).
THINKING_BUDGETS: Final = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
THINKING_MODEL_MARKER: Final = "anthropic.claude"
ANSWER_TOKENS_AFTER_THINKING: Final = 4096


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


def converse_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    _reject_unsupported(body)
    system, messages = _messages(body["messages"])
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference = _inference_config(body)
    _add_thinking(body, model, out, inference)
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    output_config = _output_config(body.get("response_format"))
    if output_config is not None:
        out["outputConfig"] = output_config
    return out


def _reject_unsupported(body: dict[str, Any]) -> None:
    if (body.get("n") or 1) > 1:
        raise _bad("n", "Bedrock Converse returns one choice per request; 'n' must be 1")
    if body.get("logprobs"):
        raise _bad("logprobs", "Bedrock Converse does not return log probabilities")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise _bad(name, f"Bedrock Converse has no '{name}'")
    if body.get("logit_bias"):
        raise _bad("logit_bias", "Bedrock Converse has no 'logit_bias'")


def _text_of(content: Any, where: str) -> str:
    """The text of a system/tool message: a string or text parts joined."""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content or []):
        if part.get("type") != "text":
            raise _bad(f"{where}.content[{j}]", "only text parts are allowed here")
        texts.append(part["text"])
    return "\n".join(texts)


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message["role"]
        if role in SYSTEM_ROLES:
            text = _text_of(message.get("content"), where)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
            _append(turns, "user", blocks)
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, where))
        elif role == "tool":
            # A tool result goes back in a user turn; parallel results merge into one turn.
            _append(turns, "user", [_tool_result(message, where)])
        else:
            raise _bad(f"{where}.role", f"role {role!r} is not supported by Bedrock Converse")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Converse wants user/assistant turns to alternate: consecutive ones are merged."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part["type"]
        if kind == "text":
            if part["text"]:  # Converse rejects blank text blocks
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part["image_url"]["url"], f"{where}.content[{j}].image_url.url"))
        else:
            raise _bad(
                f"{where}.content[{j}].type", f"content parts of type {kind!r} are not supported"
            )
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        raise _bad(
            param,
            "Bedrock Converse accepts images only as inline bytes or S3 locations, not URLs; "
            "send the image as a base64 data URL (data:image/png;base64,...)",
        )
    head, _, data = url[len("data:") :].partition(",")
    mime, _, encoding = head.partition(";")
    image_format = IMAGE_FORMATS.get(mime.lower())
    if image_format is None or encoding != "base64" or not data:
        raise _bad(
            param,
            "image data URLs must be base64 PNG, JPEG, GIF or WebP (data:image/png;base64,...)",
        )
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"text": content})
    elif content:
        for part in content:
            text = part.get("text") or part.get("refusal")
            if text:
                blocks.append({"text": text})
    for j, call in enumerate(message.get("tool_calls") or []):
        fn = call["function"]
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.get("id") or "",
                    "name": fn["name"],
                    "input": _arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
                }
            }
        )
    return blocks


def _arguments(arguments: Any, where: str) -> Any:
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        return arguments
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            "tool call arguments must be a JSON string",
            param=f"{where}.function.arguments",
            code="invalid_value",
        ) from exc


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    text = _text_of(message.get("content"), where)
    # A JSON object result is sent as a json block, anything else as text
    # (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolResultContentBlock.html).
    parsed: Any = None
    if text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
    block = {"json": parsed} if isinstance(parsed, dict) else {"text": text}
    return {"toolResult": {"toolUseId": message["tool_call_id"], "content": [block]}}


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _add_thinking(
    body: dict[str, Any], model: str, out: dict[str, Any], inference: dict[str, Any]
) -> None:
    effort = body.get("reasoning_effort")
    if effort is None:
        return
    budget = THINKING_BUDGETS.get(effort)
    if budget is None or THINKING_MODEL_MARKER not in model:
        raise _bad(
            "reasoning_effort",
            "reasoning_effort (minimal/low/medium/high) is supported on Bedrock only for "
            "Anthropic Claude models",
        )
    max_tokens = inference.get("maxTokens")
    if max_tokens is None:
        inference["maxTokens"] = budget + ANSWER_TOKENS_AFTER_THINKING
    elif max_tokens <= budget:
        raise _bad(
            "max_tokens",
            f"with reasoning_effort {effort!r} the thinking budget is {budget} tokens; "
            "max_tokens must be larger",
        )
    out["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    specs = []
    for tool in tools:
        fn = tool["function"]
        spec: dict[str, Any] = {
            "name": fn["name"],
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        if isinstance(fn.get("strict"), bool):
            spec["strict"] = fn["strict"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice)
    return config


def _tool_choice(choice: Any) -> dict[str, Any]:
    # https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolChoice.html
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return {"tool": {"name": fn["name"]}}
    raise InvalidRequestError(
        "tool_choice must be 'none', 'auto', 'required' or a named function",
        param="tool_choice",
        code="invalid_value",
    )


def _output_config(fmt: Any) -> dict[str, Any] | None:
    # Structured output: outputConfig.textFormat
    # (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_OutputFormat.html).
    if not isinstance(fmt, dict) or fmt.get("type") == "text":
        return None
    if fmt.get("type") != "json_schema":
        raise _bad(
            "response_format",
            "Bedrock Converse has no schema-less JSON mode; use response_format "
            "{'type': 'json_schema', 'json_schema': {...}}",
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise _bad("response_format.json_schema", "json_schema needs a 'schema' object")
    definition: dict[str, Any] = {"schema": orjson.dumps(spec["schema"]).decode()}
    if isinstance(spec.get("name"), str):
        definition["name"] = spec["name"]
    if isinstance(spec.get("description"), str):
        definition["description"] = spec["description"]
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
