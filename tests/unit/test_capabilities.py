"""``llm_edge_agent.capabilities``: request estimates, the capability table, fitting."""

from __future__ import annotations

import math
import re
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from llm_edge_agent.capabilities import (
    BUILTIN_MODELS,
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    MEMO_MAX_ENTRIES,
    MESSAGE_OVERHEAD_TOKENS,
    WINDOW_MARGIN,
    CapabilityTable,
    Needs,
    estimate_prompt_tokens,
    needs,
    request_size,
    requested_output_tokens,
    unfit_reason,
)
from llm_edge_agent.config import ModelInfo


def tok(chars: int) -> int:
    return math.ceil(chars / 4)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# --------------------------------------------------------------------------- estimates


def test_empty_and_minimal_bodies() -> None:
    assert estimate_prompt_tokens({}) == 0
    assert estimate_prompt_tokens({"model": "m", "messages": []}) == 0
    assert estimate_prompt_tokens({"messages": [user("")]}) == MESSAGE_OVERHEAD_TOKENS


def test_string_content_counts_four_chars_per_token_rounded_up() -> None:
    body = {"messages": [{"role": "system", "content": "x" * 10}, user("y" * 7)]}
    # characters are pooled, then rounded up once
    assert estimate_prompt_tokens(body) == tok(17) + 2 * MESSAGE_OVERHEAD_TOKENS


def test_text_parts_and_names_and_refusals() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "name": "alice",  # 5
                "content": [
                    {"type": "text", "text": "a" * 40},
                    {"type": "refusal", "refusal": "b" * 8},
                    "loose string part",  # 17
                ],
            },
            {"role": "assistant", "content": None, "refusal": "no" * 5},  # 10
        ]
    }
    assert estimate_prompt_tokens(body) == tok(5 + 40 + 8 + 17 + 10) + 2 * MESSAGE_OVERHEAD_TOKENS


@pytest.mark.parametrize(
    ("part", "tokens"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9999}}, 765),
        ({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}, 765),
        ({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "auto"}}, 765),
        ({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}, 85),
        ({"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}, 85),
        ({"type": "input_image", "image_url": "https://x/y.png"}, 765),
        ({"type": "image_url", "image_url": "not a dict"}, 765),
    ],
)
def test_images_count_flat_by_detail_not_by_url(part: dict[str, Any], tokens: int) -> None:
    assert IMAGE_TOKENS_HIGH == 765 and IMAGE_TOKENS_LOW == 85
    body = {"messages": [user([{"type": "text", "text": "abcd"}, part])]}
    assert estimate_prompt_tokens(body) == 1 + tokens + MESSAGE_OVERHEAD_TOKENS
    assert needs(body).vision is True


def test_audio_and_file_parts_count_nothing() -> None:
    body = {
        "messages": [
            user(
                [
                    {"type": "input_audio", "input_audio": {"data": "A" * 5000, "format": "wav"}},
                    {"type": "file", "file": {"file_data": "B" * 5000}},
                ]
            )
        ]
    }
    assert estimate_prompt_tokens(body) == MESSAGE_OVERHEAD_TOKENS
    assert needs(body).vision is False


def test_tool_calls_tool_results_and_legacy_function_call() -> None:
    body = {
        "messages": [
            user("q" * 4),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    "garbage",
                    {"function": "not a dict"},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "r" * 20},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
        ]
    }
    chars = 4 + len("get_weather") + len('{"city":"Paris"}') + 20 + len("f") + len("{}")
    assert estimate_prompt_tokens(body) == tok(chars) + 4 * MESSAGE_OVERHEAD_TOKENS


def test_tools_definitions_count_their_compact_json() -> None:
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
    body = {"messages": [user("")], "tools": tools}
    assert estimate_prompt_tokens(body) == tok(len(orjson.dumps(tools))) + MESSAGE_OVERHEAD_TOKENS
    functions = [{"name": "f", "parameters": {}}]
    legacy = {"messages": [user("")], "functions": functions}
    assert estimate_prompt_tokens(legacy) == tok(len(orjson.dumps(functions))) + 4


def test_unserializable_tools_are_ignored() -> None:
    body = {"messages": [user("abcd")], "tools": [{1, 2}]}  # a set: not JSON
    assert estimate_prompt_tokens(body) == 1 + MESSAGE_OVERHEAD_TOKENS
    body = {"messages": [user("abcd")], "tools": [2**70]}  # too big for orjson
    assert estimate_prompt_tokens(body) == 1 + MESSAGE_OVERHEAD_TOKENS


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("x" * 9, 3),
        (["x" * 8, "y" * 5], 2 + 2),
        ([1, 2, 3, 4, 5], 5),  # one token array
        ([[1, 2, 3], [4, 5]], 5),  # token arrays
        ([], 0),
        ([None, 3.5, True, {"no": "role"}], MESSAGE_OVERHEAD_TOKENS),  # dict: a message item
        (None, 0),
        (42, 0),
    ],
)
def test_embeddings_and_legacy_inputs(value: Any, tokens: int) -> None:
    assert estimate_prompt_tokens({"model": "e", "input": value}) == tokens
    assert estimate_prompt_tokens({"model": "c", "prompt": value}) == tokens


def test_batch_window_is_the_largest_single_input() -> None:
    body = {"input": ["x" * 400, "y" * 40, "z" * 4]}
    n = needs(body)
    assert n.prompt_tokens == 100 + 10 + 1
    assert n.window_tokens == 100
    assert needs({"input": [[1] * 30, [2] * 50]}).window_tokens == 50
    assert needs({"input": "x" * 40}).window_tokens == 10
    chat = needs({"messages": [user("x" * 40)]})
    assert chat.window_tokens == chat.prompt_tokens == 10 + MESSAGE_OVERHEAD_TOKENS


def test_responses_style_input_items_are_messages() -> None:
    body = {
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "x" * 8}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://i"}]},
        ]
    }
    n = needs(body)
    assert n.prompt_tokens == 2 + IMAGE_TOKENS_HIGH + 2 * MESSAGE_OVERHEAD_TOKENS
    assert n.vision is True


@pytest.mark.parametrize(
    "body",
    [
        None,
        42,
        "a string",
        [1, 2],
        {"messages": None},
        {"messages": "hello"},
        {"messages": [None, 1, "x", [], {"content": 5}, {"content": [None, 3, {"type": None}]}]},
        {"messages": [{"content": [{"type": "text", "text": 5}]}]},
        {"messages": [{"tool_calls": "nope", "function_call": 7, "name": 3}]},
        {"messages": [{"tool_calls": [{"function": {"name": 1, "arguments": {"a": 1}}}]}]},
        {"tools": "x", "functions": 5, "input": {"a": 1}, "prompt": 3.0},
        {"tools": {}, "functions": []},
        {"max_tokens": "10", "max_completion_tokens": None},
    ],
)
def test_odd_shapes_never_raise(body: Any) -> None:
    assert estimate_prompt_tokens(body) >= 0
    assert requested_output_tokens(body) >= 0
    n = needs(body)
    assert n.prompt_tokens >= 0
    assert request_size(body).prompt_tokens == n.prompt_tokens


def test_any_mapping_is_read() -> None:
    body = MappingProxyType({"messages": [user("x" * 8)], "max_tokens": 5})
    assert estimate_prompt_tokens(body) == 2 + MESSAGE_OVERHEAD_TOKENS
    assert requested_output_tokens(body) == 5


def test_estimate_does_not_serialize_the_whole_body(monkeypatch: pytest.MonkeyPatch) -> None:
    dumped: list[Any] = []
    real = orjson.dumps

    def spy(value: Any) -> bytes:
        dumped.append(value)
        return real(value)

    monkeypatch.setattr(orjson, "dumps", spy)
    tools = [{"type": "function", "function": {"name": "f"}}]
    estimate_prompt_tokens({"messages": [user("hi")], "tools": tools})
    assert dumped == [tools]
    dumped.clear()
    estimate_prompt_tokens({"messages": [user("hi")]})
    assert dumped == []


# --------------------------------------------------------------------------- output, needs


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, 0),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
        ({"max_completion_tokens": 0, "max_tokens": 100}, 100),
        ({"max_completion_tokens": None, "max_tokens": 100}, 100),
        ({"max_tokens": -5}, 0),
        ({"max_tokens": True}, 0),
        ({"max_tokens": 1.5}, 0),
        ({"max_tokens": "100"}, 0),
    ],
)
def test_requested_output_tokens(body: dict[str, Any], expected: int) -> None:
    assert requested_output_tokens(body) == expected


def test_request_size() -> None:
    size = request_size({"messages": [user("x" * 40)], "max_tokens": 7})
    assert (size.prompt_tokens, size.output_tokens) == (10 + MESSAGE_OVERHEAD_TOKENS, 7)


def test_needs() -> None:
    plain = needs({"messages": [user("hi")]})
    assert (plain.tools, plain.vision, plain.output_tokens) == (False, False, 0)
    assert needs({"messages": [user("hi")], "tools": [{"type": "function"}]}).tools is True
    assert needs({"messages": [user("hi")], "functions": [{"name": "f"}]}).tools is True
    assert needs({"messages": [user("hi")], "tools": []}).tools is False
    assert needs({"messages": [user("hi")], "max_completion_tokens": 9}).output_tokens == 9
    image = {"type": "image_url", "image_url": {"url": "https://x"}}
    assert needs({"messages": [{"role": "system", "content": "s"}, user([image])]}).vision
    n = needs({"messages": [user("x" * 40)], "max_tokens": 3})
    assert (n.size().prompt_tokens, n.size().output_tokens) == (n.prompt_tokens, 3)
    assert "Needs(" in repr(n)


def test_needs_defaults_window_to_prompt() -> None:
    assert Needs(prompt_tokens=50).window_tokens == 50
    assert Needs(prompt_tokens=50, window_tokens=10).window_tokens == 10


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("model", "window", "tools", "vision"),
    [
        ("gpt-4o", 128_000, True, True),
        ("gpt-4o-2024-08-06", 128_000, True, True),
        ("GPT-4o-Mini", 128_000, True, True),
        ("openai/gpt-4o-mini", 128_000, True, True),
        ("gpt-4.1-nano", 1_047_576, True, True),
        ("gpt-3.5-turbo-0125", 16_385, True, False),
        ("gpt-3.5-turbo-instruct", 4_096, False, False),
        ("gpt-5", 400_000, True, True),
        ("gpt-5-mini-2025-08-07", 400_000, True, True),
        ("gpt-5-chat-latest", 128_000, None, True),
        ("o1", 200_000, True, True),
        ("o1-mini", 128_000, False, False),
        ("o3-mini-2025-01-31", 200_000, True, False),
        ("o4-mini", 200_000, True, True),
        ("text-embedding-3-small", 8_191, False, False),
        ("claude-3-5-sonnet-20241022", 200_000, True, True),
        ("claude-3.7-sonnet", 200_000, True, True),
        ("claude-3-haiku-20240307", 200_000, True, True),
        ("claude-opus-4-1-20250805", 200_000, True, True),
        ("claude-haiku-4-5", 200_000, True, True),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", 200_000, True, True),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 200_000, True, True),
        ("gemini-1.5-pro-002", 2_097_152, True, True),
        ("gemini-1.5-flash", 1_048_576, True, True),
        ("models/gemini-2.0-flash", 1_048_576, True, True),
        ("gemini-2.5-pro", 1_048_576, True, True),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", 131_072, True, False),
        ("meta.llama3-1-70b-instruct-v1:0", 131_072, True, False),
        ("llama3.1:8b", 131_072, True, False),
        ("amazon.titan-text-express-v1", None, None, False),
    ],
)
def test_builtin_lookups(model: str, window: int | None, tools: bool, vision: bool) -> None:
    info = CapabilityTable().lookup(model)
    assert info is not None
    assert (info.context_window, info.tools, info.vision) == (window, tools, vision)


@pytest.mark.parametrize(
    "model",
    [
        "my-finetune",
        "gpt-5.9",
        "claude-opus-4-9",
        "gemini-2.0-pro-exp",  # 2M context: not claimed by the 2.0 Flash entry
        "nvidia/llama-3.1-nemotron-nano-vl-8b-v1",  # a fine-tune keeps the prefix
        "meta.llama3-8b-instruct-v1:0",  # Llama 3 (8K), not 3.1
        "",
    ],
)
def test_unknown_models_are_none(model: str) -> None:
    assert CapabilityTable().lookup(model) is None


def test_builtin_table_is_sane() -> None:
    for glob, info in BUILTIN_MODELS.items():
        assert glob == glob.lower() and glob.strip() == glob, glob
        assert info.max_output_tokens is None, glob
        assert info.context_window is None or info.context_window > 1000, glob
    with pytest.raises(TypeError):
        BUILTIN_MODELS["x"] = ModelInfo()  # type: ignore[index]


def test_most_specific_builtin_wins() -> None:
    table = CapabilityTable(
        builtin={
            "m-*": ModelInfo(context_window=1),
            "m-big*": ModelInfo(context_window=2),
            "m-big-x?": ModelInfo(context_window=3),
            "m-big-xyz": ModelInfo(context_window=4),
        }
    )
    assert [table.lookup(m) for m in ("m-a", "m-big", "m-big-xy", "m-big-xyz")] == [
        ModelInfo(context_window=1),
        ModelInfo(context_window=2),
        ModelInfo(context_window=3),
        ModelInfo(context_window=4),
    ]


def test_override_beats_builtin_and_merges_per_field() -> None:
    table = CapabilityTable({"gpt-4o*": ModelInfo(vision=False, max_output_tokens=16_384)})
    assert table.lookup("gpt-4o") == ModelInfo(
        context_window=128_000, max_output_tokens=16_384, tools=True, vision=False
    )


def test_overrides_in_config_order_then_builtin() -> None:
    table = CapabilityTable(
        {
            "my-*": ModelInfo(context_window=1000),
            "my-model*": ModelInfo(context_window=2000, tools=False),
            "*": ModelInfo(vision=True, tools=True, context_window=3),
        }
    )
    # the first matching override sets each field; later ones fill its gaps
    assert table.lookup("my-model") == ModelInfo(context_window=1000, tools=False, vision=True)
    assert table.lookup("other") == ModelInfo(context_window=3, tools=True, vision=True)
    # the catch-all override beats the built-in on fields it sets, the rest fall through
    assert table.lookup("o3-mini") == ModelInfo(context_window=3, tools=True, vision=True)


def test_override_matching_is_case_insensitive_and_sees_normalized_names() -> None:
    table = CapabilityTable({"Claude-3-5-*": ModelInfo(context_window=100)})
    info = table.lookup("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert info is not None and info.context_window == 100 and info.vision is True
    info = CapabilityTable({"acme/*": ModelInfo(tools=False)}).lookup("ACME/Thing")
    assert info == ModelInfo(tools=False)


def test_override_only_model() -> None:
    table = CapabilityTable({"local-*": ModelInfo(context_window=8192)})
    assert table.lookup("local-llm") == ModelInfo(context_window=8192)
    assert CapabilityTable({}, builtin={}).lookup("gpt-4o") is None


def test_memo_is_bounded_and_consistent() -> None:
    table = CapabilityTable()
    assert table.lookup("gpt-4o") is table.lookup("gpt-4o")
    for i in range(MEMO_MAX_ENTRIES + 50):
        table.lookup(f"client-model-{i}")
    assert table.memo_size() == MEMO_MAX_ENTRIES
    info = table.lookup("gpt-4o")
    assert info is not None and info.context_window == 128_000
    assert "CapabilityTable(" in repr(table)


# --------------------------------------------------------------------------- fitting

WINDOWED = ModelInfo(context_window=10_000, tools=True, vision=True)


def test_unknown_fits_everything() -> None:
    big = Needs(tools=True, vision=True, prompt_tokens=10**9, output_tokens=10**6)
    assert unfit_reason(None, big, "m") is None
    assert unfit_reason(ModelInfo(), big, "m") is None


def test_tools_and_vision() -> None:
    no_tools = ModelInfo(tools=False, vision=False)
    assert unfit_reason(no_tools, Needs(), "o1-mini") is None
    reason = unfit_reason(no_tools, Needs(tools=True), "o1-mini")
    assert reason is not None and "o1-mini" in reason and "tools" in reason
    reason = unfit_reason(no_tools, Needs(vision=True), "o1-mini")
    assert reason is not None and "image" in reason
    assert unfit_reason(ModelInfo(tools=True, vision=True), Needs(True, True), "m") is None


def test_output_limit() -> None:
    info = ModelInfo(max_output_tokens=4096)
    assert unfit_reason(info, Needs(output_tokens=4096), "m") is None
    reason = unfit_reason(info, Needs(output_tokens=4097), "m")
    assert reason is not None and "4097" in reason and "4096" in reason


def test_context_window_message() -> None:
    reason = unfit_reason(WINDOWED, Needs(prompt_tokens=20_000), "gpt-x")
    assert reason == "the prompt (~20000 tokens) exceeds gpt-x's context window of 10000 tokens"
    reason = unfit_reason(WINDOWED, Needs(prompt_tokens=10_000, output_tokens=2_000), "gpt-x")
    assert reason is not None and "plus 2000 output tokens" in reason
    assert "the model's" in (unfit_reason(WINDOWED, Needs(prompt_tokens=20_000)) or "")


def test_window_margin_only_skips_clear_misfits() -> None:
    assert WINDOW_MARGIN == 0.9
    # 11_000 * 0.9 = 9_900 <= 10_000: the estimate may be high, keep the target
    assert unfit_reason(WINDOWED, Needs(prompt_tokens=11_000), "m") is None
    assert unfit_reason(WINDOWED, Needs(prompt_tokens=11_111), "m") is None
    assert unfit_reason(WINDOWED, Needs(prompt_tokens=11_112), "m") is not None
    # output tokens are what the client asked for: no margin on them
    assert unfit_reason(WINDOWED, Needs(prompt_tokens=10_000, output_tokens=1_000), "m") is None
    assert unfit_reason(WINDOWED, Needs(prompt_tokens=10_000, output_tokens=1_001), "m")


def test_window_uses_the_largest_batch_input() -> None:
    info = ModelInfo(context_window=8191)
    batch = needs({"input": ["x" * 4 * 5000] * 20})  # 100k tokens in all, 5k each
    assert batch.prompt_tokens == 100_000
    assert unfit_reason(info, batch, "text-embedding-3-small") is None
    too_long = needs({"input": ["x" * 4 * 10_000]})
    assert unfit_reason(info, too_long, "text-embedding-3-small") is not None


def test_end_to_end_with_builtins() -> None:
    table = CapabilityTable()
    image = {"type": "image_url", "image_url": {"url": "https://x"}}
    request = needs({"messages": [user([image])], "tools": [{"type": "function"}]})
    assert unfit_reason(table.lookup("gpt-4o"), request, "gpt-4o") is None
    assert unfit_reason(table.lookup("o3-mini"), request, "o3-mini") is not None
    assert unfit_reason(table.lookup("my-local-model"), request, "my-local-model") is None
    huge = needs({"messages": [user("x" * 4 * 200_000)]})
    assert unfit_reason(table.lookup("gpt-4o"), huge, "gpt-4o") is not None
    assert unfit_reason(table.lookup("gpt-4.1"), huge, "gpt-4.1") is None
    assert re.search(r"~200004 tokens", unfit_reason(table.lookup("gpt-4o"), huge, "g") or "")
