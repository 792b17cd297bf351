"""``RequestFacts``: lazy facts about one request, and the cheap capability pre-test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from llm_edge_agent import capabilities
from llm_edge_agent.capabilities import Needs, estimate_prompt_tokens, unfit_reason
from llm_edge_agent.config import ModelInfo
from llm_edge_agent.pipeline import facts as facts_module
from llm_edge_agent.pipeline.facts import NOMINAL_OUTPUT_TOKENS, RequestFacts

IMAGE = "data:image/png;base64,iVBORw0KGgo="


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **extra}


def with_images(count: int, part_type: str = "image_url") -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "what is this?"}]
    for _ in range(count):
        if part_type == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": IMAGE}})
        else:
            parts.append({"type": "input_image", "image_url": IMAGE})
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def facts_for(body: dict[str, Any]) -> RequestFacts:
    return RequestFacts(body, orjson.dumps(body))


class NeedsSpy:
    """Counts the scans of the request body."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: Mapping[str, Any]) -> Needs:
        self.calls += 1
        return capabilities.needs(body)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> NeedsSpy:
    counter = NeedsSpy()
    monkeypatch.setattr(facts_module, "needs", counter)
    return counter


# ------------------------------------------------------------------ laziness


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(None, id="unknown-model"),
        pytest.param(ModelInfo(), id="nothing-known"),
        pytest.param(ModelInfo(context_window=128_000, tools=True, vision=True), id="roomy"),
        pytest.param(ModelInfo(tools=False, vision=False), id="no-tools-no-images-asked"),
    ],
)
def test_a_plain_request_is_never_scanned(info: ModelInfo | None, spy: NeedsSpy) -> None:
    facts = facts_for(chat())
    assert facts.unfit(info, "m") is None
    assert spy.calls == 0
    assert facts._needs is None
    assert "measured=False" in repr(facts)


def test_the_body_is_scanned_at_most_once(spy: NeedsSpy) -> None:
    body = chat(max_tokens=50)
    facts = facts_for(body)
    strict = ModelInfo(context_window=100_000, max_output_tokens=4_096)
    assert facts.unfit(strict, "m") is None
    assert facts.unfit(strict, "other") is None
    assert facts.prompt_tokens() == estimate_prompt_tokens(body)
    assert facts.size.prompt_tokens == estimate_prompt_tokens(body)
    assert facts.size.output_tokens == 50
    assert spy.calls == 1
    assert "measured=True" in repr(facts)


# ------------------------------------------------------------------ the size pre-test


@pytest.mark.parametrize("output", [{}, {"max_tokens": 300}, {"max_completion_tokens": 700}])
def test_the_window_pre_test_compares_body_bytes_plus_output_with_the_window(
    output: dict[str, int], spy: NeedsSpy
) -> None:
    body = chat(**output)
    raw = orjson.dumps(body)
    asked = next(iter(output.values()), 0)
    limit = len(raw) + asked

    above = RequestFacts(body, raw)
    assert above.unfit(ModelInfo(context_window=limit + 1), "m") is None
    assert above._needs is None  # surely fits: not scanned

    at = RequestFacts(body, raw)
    assert at.unfit(ModelInfo(context_window=limit), "m") is None  # fits, once measured
    assert at._needs is not None
    assert spy.calls == 1


def test_max_completion_tokens_wins_over_max_tokens_in_the_pre_test() -> None:
    body = chat(max_tokens=10, max_completion_tokens=5_000)
    raw = orjson.dumps(body)
    facts = RequestFacts(body, raw)
    assert facts.unfit(ModelInfo(context_window=len(raw) + 5_000), "m") is None
    assert facts._needs is not None


def test_a_request_too_large_for_the_window_is_unfit() -> None:
    body = chat(messages=[{"role": "user", "content": "word " * 4_000}])
    facts = facts_for(body)
    reason = facts.unfit(ModelInfo(context_window=2_000), "small-model")
    assert reason is not None
    assert "context window of 2000 tokens" in reason
    assert "small-model" in reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(chat(), id="short"),
        pytest.param(chat(messages=[{"role": "user", "content": "x" * 5_000}]), id="long-text"),
        pytest.param(chat(messages=[{"role": "user", "content": "é€😀" * 1_000}]), id="non-ascii"),
        pytest.param(chat(messages=[{"role": "user", "content": "a\nb\t" * 1_000}]), id="escapes"),
        pytest.param(
            chat(messages=[{"role": "user", "content": ""} for _ in range(500)]),
            id="many-messages",
        ),
        pytest.param(
            chat(
                tools=[
                    {"type": "function", "function": {"name": f"f{i}", "parameters": {}}}
                    for i in range(50)
                ],
                max_tokens=1_000,
            ),
            id="tools",
        ),
        pytest.param({"model": "e", "input": list(range(2_000))}, id="token-ids"),
        pytest.param({"model": "e", "input": [[1, 2], [3], [4, 5, 6]] * 300}, id="id-batches"),
        pytest.param({"model": "c", "prompt": "y" * 3_000, "max_tokens": 10}, id="prompt"),
    ],
)
def test_skipping_the_scan_below_the_window_is_safe(body: dict[str, Any]) -> None:
    """Whatever the pre-test lets through unscanned really fits (no images)."""
    raw = orjson.dumps(body)
    facts = RequestFacts(body, raw)
    window = len(raw) + capabilities.requested_output_tokens(body) + 1
    info = ModelInfo(context_window=window)
    assert facts.unfit(info, "m") is None
    assert facts._needs is None
    assert unfit_reason(info, capabilities.needs(body), "m") is None


# ------------------------------------------------------------------ images


@pytest.mark.parametrize("part_type", ["image_url", "input_image"])
def test_images_force_the_window_check(part_type: str) -> None:
    body = with_images(2, part_type)
    raw = orjson.dumps(body)
    assert len(raw) < 1_000  # small in bytes, but two images count 765 tokens each
    facts = RequestFacts(body, raw)
    reason = facts.unfit(ModelInfo(context_window=1_000, vision=True), "m")
    assert facts._needs is not None
    assert reason is not None and "context window" in reason


def test_images_to_a_model_without_vision_are_unfit() -> None:
    facts = facts_for(with_images(1))
    reason = facts.unfit(ModelInfo(vision=False), "text-only")
    assert reason == "text-only does not support image input"


def test_images_with_no_limit_known_are_not_scanned() -> None:
    facts = facts_for(with_images(3))
    assert facts.unfit(ModelInfo(vision=True), "m") is None
    assert facts.unfit(ModelInfo(), "m") is None
    assert facts._needs is None


# ------------------------------------------------------------------ tools


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            id="tools",
        ),
        pytest.param({"functions": [{"name": "f", "parameters": {}}]}, id="functions"),
    ],
)
def test_tools_to_a_model_without_tools_are_unfit(extra: dict[str, Any]) -> None:
    facts = facts_for(chat(**extra))
    reason = facts.unfit(ModelInfo(tools=False), "no-tools")
    assert reason == "no-tools does not support tools (function calling)"


def test_tools_to_a_model_with_tools_are_not_scanned() -> None:
    body = chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    facts = facts_for(body)
    assert facts.unfit(ModelInfo(tools=True), "m") is None
    assert facts.unfit(ModelInfo(tools=None), "m") is None
    assert facts._needs is None


def test_no_tools_and_an_empty_tools_list_are_fine_without_tools() -> None:
    for body in (chat(), chat(tools=[])):
        facts = facts_for(body)
        assert facts.unfit(ModelInfo(tools=False), "m") is None
        assert facts._needs is None


# ------------------------------------------------------------------ output limits


def test_a_known_output_limit_always_checks() -> None:
    over = facts_for(chat(max_tokens=200))
    reason = over.unfit(ModelInfo(max_output_tokens=100), "m")
    assert reason is not None and "output limit of 100" in reason

    none_asked = facts_for(chat())
    assert none_asked.unfit(ModelInfo(max_output_tokens=100), "m") is None
    assert none_asked._needs is not None


# ------------------------------------------------------------------ size


def test_size_is_measured_on_first_use_only(spy: NeedsSpy) -> None:
    body = chat()
    facts = facts_for(body)
    assert facts._needs is None
    size = facts.size
    assert spy.calls == 0
    assert size.output_tokens == NOMINAL_OUTPUT_TOKENS
    assert spy.calls == 1
    assert size.prompt_tokens == estimate_prompt_tokens(body)
    assert spy.calls == 1


@pytest.mark.parametrize(
    ("extra", "output"),
    [
        ({}, NOMINAL_OUTPUT_TOKENS),
        ({"max_tokens": 0}, NOMINAL_OUTPUT_TOKENS),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 1_234}, 1_234),
    ],
)
def test_size_output_is_the_requested_tokens_or_the_nominal_default(
    extra: dict[str, int], output: int
) -> None:
    assert NOMINAL_OUTPUT_TOKENS == 256
    facts = facts_for(chat(**extra))
    assert facts.size.output_tokens == output
