from __future__ import annotations

import dataclasses
import math

import pytest

from llm_edge_agent.pricing import (
    DEFAULT_PRICES,
    MEMO_MAX_ENTRIES,
    ModelPrice,
    PricingTable,
    TokenUsage,
    normalize_model_name,
)

REQUIRED_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-3.5-turbo",
    "gpt-4-turbo",
    "gpt-4",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "claude-3-haiku",
    "claude-3-5-haiku",
    "claude-3-5-sonnet",
    "claude-3-7-sonnet",
    "claude-sonnet-4",
    "claude-sonnet-4-5",
    "claude-opus-4",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-3-opus",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
]


def _price(table: PricingTable, name: str) -> ModelPrice:
    price = table.lookup(name)
    assert price is not None, name
    return price


# ------------------------------------------------------------------ table contents


def test_required_models_present_with_sane_prices() -> None:
    for name in REQUIRED_MODELS:
        price = DEFAULT_PRICES[name]
        assert price.input > 0, name
        assert price.output >= 0, name
        if price.cached_input is not None:
            assert 0 < price.cached_input <= price.input, name


def test_default_prices_immutable() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PRICES["gpt-4o"] = ModelPrice(input=0.0, output=0.0)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PRICES["gpt-4o"].input = 0.0  # type: ignore[misc]


def test_anthropic_cache_prices() -> None:
    sonnet = DEFAULT_PRICES["claude-sonnet-4-5"]
    assert (sonnet.input, sonnet.cached_input, sonnet.cache_write, sonnet.output) == (
        3.0,
        0.3,
        3.75,
        15.0,
    )
    opus = DEFAULT_PRICES["claude-opus-4-1"]
    assert (opus.cached_input, opus.cache_write) == (1.5, 18.75)
    assert DEFAULT_PRICES["gpt-4o"].cache_write is None


# ---------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("  gpt-4o  ", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("azure/gpt-4o", "gpt-4o"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("o1-2024-12-17", "o1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic/claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("bedrock/us.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
        ("models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite"),
        ("google/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-1.5-flash-latest", "gemini-1.5-flash"),
        ("text-embedding-3-small", "text-embedding-3-small"),
    ],
)
def test_aliases_resolve_to_base(name: str, base: str) -> None:
    table = PricingTable()
    assert table.lookup(name) is DEFAULT_PRICES[base]


def test_longest_prefix_wins() -> None:
    table = PricingTable()
    # gpt-4o-mini vs gpt-4o
    assert table.lookup("gpt-4o-mini-2024-07-18") is DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup("gpt-4o-2024-11-20") is DEFAULT_PRICES["gpt-4o"]
    # gpt-4 must not swallow gpt-4o / gpt-4-turbo / gpt-4.1
    assert table.lookup("gpt-4") is DEFAULT_PRICES["gpt-4"]
    assert table.lookup("gpt-4o") is DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("gpt-4-turbo") is DEFAULT_PRICES["gpt-4-turbo"]
    assert table.lookup("gpt-4-turbo-preview") is DEFAULT_PRICES["gpt-4-turbo"]
    assert table.lookup("gpt-4.1") is DEFAULT_PRICES["gpt-4.1"]
    assert _price(table, "gpt-4").input == 30.0
    assert _price(table, "gpt-4o").input == 2.5
    assert _price(table, "gpt-4-turbo").input == 10.0
    # o3 vs o3-mini
    assert table.lookup("o3") is DEFAULT_PRICES["o3"]
    assert table.lookup("o3-2025-04-16") is DEFAULT_PRICES["o3"]
    assert table.lookup("o3-mini") is DEFAULT_PRICES["o3-mini"]
    assert table.lookup("o3-mini-2025-01-31") is DEFAULT_PRICES["o3-mini"]
    assert _price(table, "o3").input != _price(table, "o3-mini").input
    # claude-3-5-haiku vs claude-3-haiku
    assert table.lookup("claude-3-haiku-20240307") is DEFAULT_PRICES["claude-3-haiku"]
    assert table.lookup("claude-3-5-haiku-20241022") is DEFAULT_PRICES["claude-3-5-haiku"]
    assert _price(table, "claude-3-haiku").input == 0.25
    assert _price(table, "claude-3-5-haiku").input == 0.8
    # claude-opus-4 vs claude-opus-4-1
    assert table.lookup("claude-opus-4-20250514") is DEFAULT_PRICES["claude-opus-4"]
    assert table.lookup("claude-opus-4-1") is DEFAULT_PRICES["claude-opus-4-1"]
    # a snapshot priced differently from its family
    assert _price(table, "gpt-4o-2024-05-13").input == 5.0


def test_prefix_must_end_at_hyphen() -> None:
    table = PricingTable()
    assert table.lookup("gpt-4oo") is None
    assert table.lookup("o3x") is None
    assert table.lookup("gpt-5.9") is None  # not "gpt-5" followed by "-"
    assert table.lookup("gpt-") is None


def test_unknown_models_are_none_not_zero() -> None:
    table = PricingTable()
    for name in ["", "   ", "my-local-model", "llama3:8b", "claude", "gemini", "gpt"]:
        assert table.lookup(name) is None, name
        assert table.cost(name, TokenUsage(prompt_tokens=100, completion_tokens=10)) is None


def test_new_minor_version_does_not_inherit_old_price() -> None:
    table = PricingTable()
    assert table.lookup("claude-opus-4-9") is None
    assert table.lookup("claude-opus-4-9-20270101") is None
    assert table.lookup("claude-sonnet-4-7") is None


def test_normalize_model_name() -> None:
    assert normalize_model_name("us.anthropic.claude-3-5-haiku-20241022-v1:0") == (
        "claude-3-5-haiku-20241022-v1"
    )
    assert normalize_model_name("models/gemini-2.0-flash-001") == "gemini-2.0-flash-001"
    assert normalize_model_name("anthropic/claude-sonnet-4.5") == "claude-sonnet-4-5"
    assert normalize_model_name("gpt-3.5-turbo") == "gpt-3.5-turbo"
    assert normalize_model_name("Azure/GPT-35-Turbo") == "gpt-35-turbo"


# -------------------------------------------------------------------------- costs


def test_cost_gpt4o_with_cached_prompt() -> None:
    table = PricingTable()
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    # 600 fresh * 2.50 + 400 cached * 1.25 + 200 out * 10.00 = 1500 + 500 + 2000
    cost = table.cost("gpt-4o-2024-08-06", usage)
    assert cost is not None
    assert math.isclose(cost, 4000 / 1e6, rel_tol=1e-12)


def test_cost_anthropic_cache_read_and_write() -> None:
    table = PricingTable()
    usage = TokenUsage(
        prompt_tokens=10_000,
        completion_tokens=500,
        cached_tokens=6_000,
        cache_write_tokens=3_000,
    )
    # fresh 1000*3 + read 6000*0.30 + write 3000*3.75 + out 500*15
    # = 3000 + 1800 + 11250 + 7500 = 23550
    cost = table.cost("anthropic/claude-sonnet-4-5-20250929", usage)
    assert cost is not None
    assert math.isclose(cost, 23_550 / 1e6, rel_tol=1e-12)


def test_cost_gemini_with_thinking_tokens() -> None:
    table = PricingTable()
    usage = TokenUsage(
        prompt_tokens=20_000,
        completion_tokens=3_000,
        cached_tokens=10_000,
        reasoning_tokens=2_000,
    )
    # fresh 10000*0.30 + cached 10000*0.03 + (1000 visible + 2000 reasoning)*2.50
    # = 3000 + 300 + 7500 = 10800
    cost = table.cost("models/gemini-2.5-flash", usage)
    assert cost is not None
    assert math.isclose(cost, 10_800 / 1e6, rel_tol=1e-12)


def test_cost_reasoning_price_and_defaults() -> None:
    table = PricingTable(
        prices={"r": ModelPrice(input=1.0, output=2.0, reasoning=8.0)},
    )
    usage = TokenUsage(
        prompt_tokens=1000,
        completion_tokens=100,
        cached_tokens=300,
        cache_write_tokens=200,
        reasoning_tokens=40,
    )
    # cached/cache_write default to input: 1000*1 ; 60 visible*2 + 40*8 = 440
    cost = table.cost("r", usage)
    assert cost is not None
    assert math.isclose(cost, 1440 / 1e6, rel_tol=1e-12)


def test_cost_embedding_and_zero_usage() -> None:
    table = PricingTable()
    cost = table.cost("text-embedding-3-small", TokenUsage(prompt_tokens=1_000_000))
    assert cost is not None
    assert math.isclose(cost, 0.02, rel_tol=1e-12)
    assert table.cost("gpt-4o", TokenUsage()) == 0.0


def test_cost_fresh_never_negative() -> None:
    table = PricingTable()
    # inconsistent counts (cached > prompt): fresh clamps to 0
    usage = TokenUsage(prompt_tokens=100, cached_tokens=150, completion_tokens=0)
    cost = table.cost("gpt-4o", usage)
    assert cost is not None
    assert math.isclose(cost, 150 * 1.25 / 1e6, rel_tol=1e-12)


# ---------------------------------------------------------------------- overrides


def test_overrides_replace_and_add() -> None:
    custom = ModelPrice(input=1.0, output=1.0)
    new = ModelPrice(input=7.0, output=9.0, cached_input=0.7)
    table = PricingTable(overrides={"gpt-4o": custom, "acme/my-model": new})
    assert table.lookup("gpt-4o") is custom
    assert table.lookup("gpt-4o-2024-08-06") is custom
    assert table.lookup("gpt-4o-mini") is DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup("my-model") is new
    assert table.lookup("acme/my-model-2025-01-01") is new
    # the defaults themselves are untouched
    assert PricingTable().lookup("gpt-4o") is DEFAULT_PRICES["gpt-4o"]
    assert PricingTable().lookup("my-model") is None


def test_override_adds_more_specific_snapshot() -> None:
    special = ModelPrice(input=0.5, output=0.5)
    table = PricingTable(overrides={"gpt-4o-2099-01-01": special})
    assert table.lookup("gpt-4o-2099-01-01") is special
    assert table.lookup("gpt-4o-2024-08-06") is DEFAULT_PRICES["gpt-4o"]


def test_explicit_prices_replace_defaults() -> None:
    only = ModelPrice(input=1.0, output=2.0)
    table = PricingTable(prices={"only-model": only})
    assert table.lookup("only-model") is only
    assert table.lookup("gpt-4o") is None
    assert PricingTable(prices={}).lookup("gpt-4o") is None


# -------------------------------------------------------------------------- memo


def test_memo_returns_same_results() -> None:
    table = PricingTable()
    first = table.lookup("gpt-4o-mini-2024-07-18")
    assert table.memo_size() == 1
    assert table.lookup("gpt-4o-mini-2024-07-18") is first
    assert table.lookup("nope") is None
    assert table.lookup("nope") is None
    assert table.memo_size() == 2


def test_memo_is_bounded() -> None:
    table = PricingTable()
    for i in range(10_000):
        assert table.lookup(f"unknown-model-{i}") is None
        assert table.memo_size() <= MEMO_MAX_ENTRIES
    assert table.memo_size() == MEMO_MAX_ENTRIES
    # still correct after heavy eviction
    assert table.lookup("gpt-4o") is DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("unknown-model-0") is None
    assert table.memo_size() == MEMO_MAX_ENTRIES


def test_provider_embedding_models_and_gemini_3_have_prices() -> None:
    table = PricingTable()
    usage = TokenUsage(prompt_tokens=1_000_000)
    assert table.cost("amazon.titan-embed-text-v2:0", usage) == pytest.approx(0.02)
    assert table.cost("cohere.embed-english-v3", usage) == pytest.approx(0.10)
    assert table.cost("cohere.embed-multilingual-v3", usage) == pytest.approx(0.10)
    assert table.cost("models/gemini-embedding-001", usage) == pytest.approx(0.15)
    cached = TokenUsage(prompt_tokens=1_000_000, cached_tokens=500_000, completion_tokens=100_000)
    # Gemini 3 Pro preview: $2 input, $0.20 cached input, $12 output per million.
    assert table.cost("gemini-3-pro-preview", cached) == pytest.approx(
        0.5 * 2 + 0.5 * 0.2 + 0.1 * 12
    )
