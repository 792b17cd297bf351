"""``llm_edge_agent.models.parse_chat_request``: validation of client chat requests."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_edge_agent.errors import InvalidRequestError
from llm_edge_agent.models import MAX_MODEL_CHARS, parse_chat_request, parse_json_object

USER = {"role": "user", "content": "Hello"}


def body(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "gpt-4o", "messages": [USER]}
    out.update(fields)
    return out


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def invalid(raw: bytes) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(raw)
    error = info.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.to_dict()["error"]["param"] == error.param
    return error


# --------------------------------------------------------------------------- valid


def test_text_request_is_parsed_and_keeps_the_raw_bytes() -> None:
    raw = encode(body(temperature=0.2, max_tokens=50))
    request = parse_chat_request(raw)
    assert request.model == "gpt-4o"
    assert request.stream is False
    assert request.include_usage is False
    assert request.raw is raw
    assert request.body["temperature"] == 0.2


def test_unknown_fields_are_kept_in_the_body() -> None:
    request = parse_chat_request(encode(body(foo={"bar": [1, 2]}, logit_bias={"50256": -100})))
    assert request.body["foo"] == {"bar": [1, 2]}
    assert request.body["logit_bias"] == {"50256": -100}


def test_stream_with_include_usage_is_read() -> None:
    request = parse_chat_request(encode(body(stream=True, stream_options={"include_usage": True})))
    assert request.stream is True
    assert request.include_usage is True


def test_stream_without_stream_options_does_not_include_usage() -> None:
    request = parse_chat_request(encode(body(stream=True)))
    assert request.stream is True
    assert request.include_usage is False
    assert parse_chat_request(encode(body(stream=True, stream_options={}))).include_usage is False


def test_image_content_parts_are_valid() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
        ],
    }
    request = parse_chat_request(encode(body(messages=[message])))
    assert len(request.body["messages"][0]["content"]) == 3


def test_tools_tool_choice_tool_calls_and_tool_results_are_valid() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "x"}}):
        request = parse_chat_request(
            encode(body(messages=messages, tools=tools, tool_choice=choice))
        )
        assert request.body["tools"] == tools


def test_assistant_message_without_content_key_is_valid() -> None:
    messages = [USER, {"role": "assistant", "tool_calls": []}, USER]
    assert parse_chat_request(encode(body(messages=messages))).model == "gpt-4o"


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant"])
def test_every_plain_role_is_accepted(role: str) -> None:
    parse_chat_request(encode(body(messages=[{"role": role, "content": "x"}])))


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 1.5},
        {"top_p": 1},
        {"n": 3},
        {"stop": "END"},
        {"stop": ["a", "b"]},
        {"stop": None},
        {"seed": -5},
        {"presence_penalty": -2.0},
        {"response_format": {"type": "json_object"}},
        {"max_completion_tokens": 1},
    ],
)
def test_parameters_in_range_are_accepted(fields: dict[str, Any]) -> None:
    parse_chat_request(encode(body(**fields)))


def test_parse_json_object_returns_the_dict() -> None:
    assert parse_json_object(b'{"a": 1}') == {"a": 1}


# --------------------------------------------------------------------------- invalid: body


def test_empty_body_is_invalid() -> None:
    error = invalid(b"")
    assert error.param is None
    assert "empty" in error.message


def test_invalid_json_is_invalid() -> None:
    error = invalid(b'{"model": "gpt-4o", "messages": [')
    assert error.param is None
    assert "JSON" in error.message


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b"true"])
def test_non_object_body_is_invalid(raw: bytes) -> None:
    error = invalid(raw)
    assert error.param is None
    assert "object" in error.message


def test_invalid_utf8_is_invalid() -> None:
    invalid(b'{"model": "gpt-4o\xff\xfe", "messages": [{"role": "user", "content": "hi"}]}')


def test_deeply_nested_json_is_invalid_without_crashing() -> None:
    depth = 5000
    nested = b"[" * depth + b"]" * depth
    invalid(b'{"model": "gpt-4o", "messages": [], "x": ' + nested + b"}")
    invalid(b'{"a":' * depth + b"1" + b"}" * depth)


# --------------------------------------------------------------------------- invalid: fields


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"model": "   "}, "model"),
        ({"model": 4}, "model"),
        ({"model": ["gpt-4o"]}, "model"),
        ({"model": "gpt\n4o"}, "model"),
        ({"model": "g" * (MAX_MODEL_CHARS + 1)}, "model"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "Hello"}, "messages"),
        ({"messages": {"role": "user", "content": "x"}}, "messages"),
        ({"messages": ["Hello"]}, "messages[0]"),
        ({"messages": [USER, 7]}, "messages[1]"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "tool", "content": "r", "tool_call_id": 1}]},
            "messages[0].tool_call_id",
        ),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [USER, {"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[1].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
            "messages[0].tool_calls",
        ),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": {"id": "1"}}]},
            "messages[0].tool_calls",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"n": 0}, "n"),
        ({"n": 1.5}, "n"),
        ({"n": "2"}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"seed": "1"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", 1]}, "stop"),
        ({"stop": {"s": "x"}}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream_options": "include_usage"}, "stream_options"),
        ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["get_weather"]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function"}]},
            "tools[1].function.name",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": 1}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": 3}}}, "tool_choice"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"schema": {}}}, "response_format"),
    ],
)
def test_invalid_field_names_its_param(fields: dict[str, Any], param: str) -> None:
    data = body()
    for key, value in fields.items():
        if value is None and key in ("model", "messages"):
            del data[key]
        else:
            data[key] = value
    error = invalid(encode(data))
    assert error.param == param


def test_missing_model_has_a_missing_parameter_code() -> None:
    error = invalid(encode({"messages": [USER]}))
    assert error.param == "model"
    assert error.code == "missing_required_parameter"


def test_missing_messages_has_a_missing_parameter_code() -> None:
    error = invalid(encode({"model": "gpt-4o"}))
    assert error.param == "messages"
    assert error.code == "missing_required_parameter"


def test_null_model_is_reported_as_missing() -> None:
    error = invalid(b'{"model": null, "messages": [{"role": "user", "content": "x"}]}')
    assert error.param == "model"


def test_error_renders_as_the_openai_error_shape() -> None:
    error = invalid(encode(body(temperature=9)))
    rendered = orjson.loads(error.to_json())
    assert rendered == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    assert "9" in error.message
