"""Stored answers replay as valid streams, and streamed answers assemble into entries."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from llm_edge_agent.cache.replay import REPLAY_PIECE_CHARS, StreamAssembler, replay_chunks
from llm_edge_agent.upstream.mock import completion_body, stream_events

USAGE = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


def body(*choices: dict[str, Any], usage: dict[str, Any] | None = USAGE) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {"index": i, "message": m, "logprobs": None, "finish_reason": f}
            for i, (m, f) in enumerate((c["message"], c["finish"]) for c in choices)
        ],
    }
    if usage is not None:
        out["usage"] = usage
    return out


TEXT = {"message": {"role": "assistant", "content": "Hello " * 100}, "finish": "stop"}
REASONING = {
    "message": {"role": "assistant", "content": "42", "reasoning_content": "Think " * 80},
    "finish": "stop",
}
TOOLS = {
    "message": {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "f", "arguments": '{"x": 1}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        ],
    },
    "finish": "tool_calls",
}
CASES = {
    "text": body(TEXT),
    "reasoning": body(REASONING),
    "tools": body(TOOLS),
    "two_choices": body(TEXT, REASONING),
    "no_usage": body(TEXT, usage=None),
}


def assemble(events: list[bytes], seed: int | None = None) -> dict[str, Any] | None:
    data = b"".join(events)
    assembler = StreamAssembler()
    if seed is None:
        assembler.feed(data)
    else:
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(data)), k=min(20, len(data) - 1)))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            assembler.feed(data[start:end])
    return assembler.result()


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_then_assembly_gives_back_the_stored_answer(name: str) -> None:
    stored = CASES[name]
    for seed in (None, 1, 2, 3):
        assert assemble(replay_chunks(stored, include_usage=True), seed) == stored


def test_replay_starts_with_the_role_streams_in_pieces_and_ends_with_done() -> None:
    events = replay_chunks(CASES["reasoning"], include_usage=False)
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    reasoning = [c for c in chunks if "reasoning_content" in c["choices"][0]["delta"]]
    assert len(reasoning) > 1
    assert all(
        len(c["choices"][0]["delta"]["reasoning_content"]) <= REPLAY_PIECE_CHARS for c in reasoning
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert all("usage" not in c for c in chunks)
    assert events[-1] == b"data: [DONE]\n\n"


def test_replayed_tool_calls_carry_index_id_and_name_in_their_first_chunk() -> None:
    chunks = [orjson.loads(e[6:]) for e in replay_chunks(CASES["tools"], True)[:-1]]
    starts = [
        call
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls") or ()
        if "id" in call
    ]
    assert [(s["index"], s["id"], s["function"]["name"]) for s in starts] == [
        (0, "call_a", "f"),
        (1, "call_b", "g"),
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE


def test_a_real_stream_assembles_into_the_non_streamed_answer() -> None:
    request = {
        "model": "mock-1",
        "messages": [{"role": "user", "content": "assemble me"}],
        "stream_options": {"include_usage": True},
    }
    assembled = assemble(stream_events(request))
    whole = completion_body(request)
    assert assembled is not None
    assert (
        assembled["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"]
    )
    assert assembled["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "events",
    [
        replay_chunks(CASES["text"], True)[:-1],  # no [DONE]
        [*replay_chunks(CASES["text"], True)[:3], b"data: [DONE]\n\n"],  # no finish reason
        [
            *replay_chunks(CASES["text"], True)[:2],
            b'data: {"error": {"message": "boom"}}\n\n',
            b"data: [DONE]\n\n",
        ],
        [b"data: not json\n\n", b"data: [DONE]\n\n"],
        [b"data: [DONE]\n\n"],
    ],
    ids=["no-done", "no-finish", "error-event", "garbage", "empty"],
)
def test_incomplete_or_failed_streams_are_never_stored(events: list[bytes]) -> None:
    assert assemble(events) is None
