from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

import orjson
import pytest

from llm_edge_agent.cache.keys import (
    EXCLUDED_FIELDS,
    KEY_VERSION,
    cache_key,
    canonical_body,
    key_for,
)


def chat_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.7,
        "max_tokens": 64,
    }
    body.update(extra)
    return body


def key(
    body: dict[str, Any],
    *,
    endpoint: str = "chat",
    model: str = "gpt-4o-mini",
    scope: str | None = "tenant-a",
) -> str:
    return cache_key(endpoint, body, model, scope)


def test_key_is_a_hex_digest_of_at_least_16_bytes() -> None:
    assert re.fullmatch(r"[0-9a-f]{32,}", key(chat_body()))


def test_equal_requests_give_equal_keys() -> None:
    assert key(chat_body()) == key(chat_body())


def test_key_order_does_not_matter_at_any_depth() -> None:
    body = chat_body(
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"a": 1, "b": 2}}}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "strict": True}},
    )
    reordered = orjson.loads(
        orjson.dumps(
            {
                "response_format": {
                    "json_schema": {"strict": True, "name": "x"},
                    "type": "json_schema",
                },
                "tools": [
                    {"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"}
                ],
                "max_tokens": 64,
                "temperature": 0.7,
                "messages": [
                    {"content": "You are terse.", "role": "system"},
                    {"content": "Capital of France?", "role": "user"},
                ],
                "model": "gpt-4o-mini",
            }
        )
    )
    assert key(body) == key(reordered)


@pytest.mark.parametrize(
    ("name", "as_int", "as_float"),
    [
        ("temperature", 1, 1.0),
        ("top_p", 1, 1.0),
        ("presence_penalty", 0, 0.0),
        ("frequency_penalty", -1, -1.0),
    ],
)
def test_integral_float_parameters_match_their_int_spelling(
    name: str, as_int: int, as_float: float
) -> None:
    assert key(chat_body(**{name: as_int})) == key(chat_body(**{name: as_float}))


def test_logit_bias_values_match_across_number_spellings() -> None:
    assert key(chat_body(logit_bias={"50256": -100})) == key(
        chat_body(logit_bias={"50256": -100.0})
    )


def test_stop_string_matches_a_one_element_stop_list() -> None:
    assert key(chat_body(stop="END")) == key(chat_body(stop=["END"]))


def test_null_field_matches_an_absent_field() -> None:
    assert key(chat_body(seed=None)) == key(chat_body())


def test_stream_flags_do_not_matter() -> None:
    streamed = chat_body(stream=True, stream_options={"include_usage": True})
    assert key(streamed) == key(chat_body()) == key(chat_body(stream=False))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("stream", True),
        ("stream_options", {"include_usage": True}),
        ("user", "end-user-42"),
        ("metadata", {"trace": "abc"}),
        ("store", True),
        ("safety_identifier", "hash-of-user"),
        ("prompt_cache_key", "conversation-7"),
        ("service_tier", "flex"),
    ],
)
def test_fields_that_cannot_change_the_output_are_ignored(name: str, value: Any) -> None:
    assert name in EXCLUDED_FIELDS
    assert key(chat_body(**{name: value})) == key(chat_body())


def test_body_model_is_replaced_by_the_resolved_model() -> None:
    assert key(chat_body(model="alias-a"), model="gpt-4o") == key(
        chat_body(model="alias-b"), model="gpt-4o"
    )


OUTPUT_CHANGING: list[tuple[str, Any]] = [
    ("temperature", 0.2),
    ("top_p", 0.5),
    ("n", 2),
    ("seed", 7),
    ("stop", ["\n"]),
    ("max_tokens", 65),
    ("max_completion_tokens", 64),
    ("presence_penalty", 0.5),
    ("frequency_penalty", 0.5),
    ("logit_bias", {"50256": -100}),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("reasoning_effort", "high"),
    ("response_format", {"type": "json_object"}),
    ("tools", [{"type": "function", "function": {"name": "lookup"}}]),
    ("tool_choice", "required"),
    ("parallel_tool_calls", False),
    ("input", "hello"),
    ("prompt", "hello"),
    ("dimensions", 256),
    ("encoding_format", "base64"),
    ("some_future_knob", {"anything": 1}),
]


@pytest.mark.parametrize(("name", "value"), OUTPUT_CHANGING)
def test_each_output_changing_field_changes_the_key(name: str, value: Any) -> None:
    assert key(chat_body(**{name: value})) != key(chat_body())


def test_unknown_fields_count_and_their_values_too() -> None:
    assert key(chat_body(vendor_mode="a")) != key(chat_body(vendor_mode="b"))


def test_changed_message_changes_the_key() -> None:
    body = chat_body()
    changed = copy.deepcopy(body)
    changed["messages"][1]["content"] = "Capital of Spain?"
    assert key(changed) != key(body)


def test_message_order_and_role_matter() -> None:
    body = chat_body()
    swapped = copy.deepcopy(body)
    swapped["messages"].reverse()
    renamed = copy.deepcopy(body)
    renamed["messages"][0]["role"] = "developer"
    assert len({key(body), key(swapped), key(renamed)}) == 3


def test_changed_tool_definition_changes_the_key() -> None:
    tool: dict[str, Any] = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}},
    }
    other = copy.deepcopy(tool)
    other["function"]["description"] = "looks things up"
    assert key(chat_body(tools=[tool])) != key(chat_body(tools=[other]))


def test_stop_list_order_and_content_matter() -> None:
    assert key(chat_body(stop=["a", "b"])) != key(chat_body(stop=["b", "a"]))
    assert key(chat_body(stop="a")) != key(chat_body(stop=["a", "b"]))


def test_non_integral_float_differs_from_nearby_int() -> None:
    assert key(chat_body(temperature=1.5)) != key(chat_body(temperature=1))


def test_boolean_differs_from_number() -> None:
    assert key(chat_body(logprobs=True)) != key(chat_body(logprobs=1))


def test_model_changes_the_key() -> None:
    assert key(chat_body(), model="gpt-4o") != key(chat_body(), model="gpt-4o-mini")


@pytest.mark.parametrize(("a", "b"), [("chat", "completions"), ("chat", "embeddings")])
def test_endpoint_changes_the_key(a: str, b: str) -> None:
    assert key(chat_body(), endpoint=a) != key(chat_body(), endpoint=b)


def test_scopes_never_collide_with_each_other_or_the_shared_scope() -> None:
    keys = {
        key(chat_body(), scope="tenant-a"),
        key(chat_body(), scope="tenant-b"),
        key(chat_body(), scope=""),
        key(chat_body(), scope=None),
        key(chat_body(), scope="null"),
    }
    assert len(keys) == 5


def test_fields_cannot_bleed_into_each_other() -> None:
    # With a naive separator-joined form these two would hash the same bytes.
    assert cache_key("chat", {}, "a\x00b", "t") != cache_key("chat", {}, "a", "b\x00t")


def test_embeddings_inputs_distinguish_requests() -> None:
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    assert key(body, endpoint="embeddings") != key(
        {**body, "input": ["a", "c"]}, endpoint="embeddings"
    )


def test_hand_built_mapping_with_non_json_values_still_gets_a_stable_key() -> None:
    body = chat_body(seed=2**70)
    assert key(body) == key(chat_body(seed=2**70)) != key(chat_body(seed=2**71))


def test_the_key_hashes_one_json_array_of_version_endpoint_scope_model_and_body() -> None:
    # The documented form, spelled whole: the spliced head and body must give these bytes.
    body = chat_body(stop="x", temperature=1.0)
    form = orjson.dumps(
        [KEY_VERSION, "chat", "tenant-a", "m", {**body, "stop": ["x"], "temperature": 1}],
        option=orjson.OPT_SORT_KEYS,
    ).replace(b'"model":"gpt-4o-mini",', b"")
    assert key_for("chat", canonical_body(body), "m", "tenant-a") == (
        hashlib.blake2b(form, digest_size=16).hexdigest()
    )
    assert cache_key("chat", body, "m", "tenant-a") == key_for(
        "chat", canonical_body(body), "m", "tenant-a"
    )


def test_a_stored_canonical_body_gives_the_key_of_its_request_in_every_scope() -> None:
    canonical = canonical_body(chat_body())
    for scope in ("tenant-a", "tenant-b", None):
        assert key_for("chat", canonical, "gpt-4o-mini", scope) == key(chat_body(), scope=scope)
