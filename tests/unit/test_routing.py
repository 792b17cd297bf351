"""``llm_edge_agent.routing.Router``: from a client's model name to ordered targets."""

from __future__ import annotations

from collections import Counter

import pytest

from llm_edge_agent.config import Config, ProviderConfig, RouteConfig, TargetConfig
from llm_edge_agent.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from llm_edge_agent.routing import MEMO_MAX_ENTRIES, Router, Target


def provider(name: str, *models: str) -> ProviderConfig:
    return ProviderConfig(name=name, type="openai", models=tuple(models))


def route(
    model: str,
    *targets: tuple[str, str] | tuple[str, str, float],
    strategy: str = "failover",
    fallbacks: tuple[str, ...] = (),
) -> RouteConfig:
    return RouteConfig(
        model=model,
        strategy=strategy,
        targets=tuple(TargetConfig(*t) for t in targets),
        fallbacks=fallbacks,
    )


def pairs(targets: list[Target]) -> list[tuple[str, str]]:
    return [(t.provider, t.model) for t in targets]


def router(*providers: ProviderConfig, routes: tuple[RouteConfig, ...] = ()) -> Router:
    return Router(Config(providers=providers, routes=routes))


# --------------------------------------------------------------------------- globs


def test_glob_match_picks_the_first_provider_in_config_order() -> None:
    r = router(provider("narrow", "gpt-4*"), provider("wide", "gpt-*"))
    assert pairs(r.resolve("gpt-4o")) == [("narrow", "gpt-4o")]
    assert pairs(r.resolve("gpt-3.5-turbo")) == [("wide", "gpt-3.5-turbo")]


def test_glob_match_follows_config_order_not_specificity() -> None:
    r = router(provider("wide", "gpt-*"), provider("narrow", "gpt-4*"))
    assert pairs(r.resolve("gpt-4o")) == [("wide", "gpt-4o")]


def test_glob_must_match_the_whole_model_name() -> None:
    r = router(provider("a", "gpt-4"), provider("b", "*-mini"))
    assert pairs(r.resolve("gpt-4")) == [("a", "gpt-4")]
    with pytest.raises(NotFoundError):
        r.resolve("gpt-4o")
    assert pairs(r.resolve("o4-mini")) == [("b", "o4-mini")]
    with pytest.raises(NotFoundError):
        r.resolve("o4-mini-2025")


def test_glob_character_classes_and_single_character_wildcards_work() -> None:
    r = router(provider("a", "o[13]-??"))
    assert pairs(r.resolve("o1-pr")) == [("a", "o1-pr")]
    with pytest.raises(NotFoundError):
        r.resolve("o4-pr")


def test_glob_with_a_slash_matches_namespaced_model_names() -> None:
    r = router(provider("together", "meta-llama/*"))
    assert pairs(r.resolve("meta-llama/Llama-3.3-70B")) == [
        ("together", "meta-llama/Llama-3.3-70B")
    ]


def test_unknown_model_is_not_found_with_param_model() -> None:
    r = router(provider("a", "gpt-*"))
    with pytest.raises(NotFoundError) as info:
        r.resolve("claude-3-5-haiku")
    assert info.value.status == 404
    assert info.value.param == "model"
    assert "claude-3-5-haiku" in info.value.message


def test_no_providers_is_service_unavailable() -> None:
    r = router()
    assert r.configured is False
    with pytest.raises(ServiceUnavailableError) as info:
        r.resolve("gpt-4o")
    assert info.value.status == 503


def test_no_providers_is_service_unavailable_even_with_a_pin() -> None:
    with pytest.raises(ServiceUnavailableError):
        router().resolve("gpt-4o", "openai")


def test_resolving_twice_gives_equal_fresh_lists() -> None:
    r = router(provider("a", "gpt-*"))
    first = r.resolve("gpt-4o")
    first.append(Target("x", "y"))
    assert pairs(r.resolve("gpt-4o")) == [("a", "gpt-4o")]


# --------------------------------------------------------------------------- provider/model


def test_provider_slash_model_picks_that_provider() -> None:
    r = router(provider("openai", "gpt-*"), provider("anthropic", "claude-*"))
    assert pairs(r.resolve("anthropic/claude-3-5-haiku-latest")) == [
        ("anthropic", "claude-3-5-haiku-latest")
    ]
    # even when the model would glob-match another provider
    assert pairs(r.resolve("anthropic/gpt-4o")) == [("anthropic", "gpt-4o")]


def test_provider_slash_model_keeps_further_slashes_in_the_model() -> None:
    r = router(provider("together"))
    assert pairs(r.resolve("together/meta-llama/Llama-3")) == [("together", "meta-llama/Llama-3")]


def test_unknown_prefix_is_not_a_provider_pick() -> None:
    r = router(provider("openai", "gpt-*"))
    with pytest.raises(NotFoundError):
        r.resolve("nope/gpt-4o")


def test_provider_slash_with_an_empty_model_is_not_found() -> None:
    r = router(provider("openai", "gpt-*"))
    with pytest.raises(NotFoundError):
        r.resolve("openai/")


# --------------------------------------------------------------------------- pin


def test_pin_picks_a_known_provider_over_the_glob_match() -> None:
    r = router(provider("openai", "gpt-*"), provider("backup"))
    assert pairs(r.resolve("gpt-4o", "backup")) == [("backup", "gpt-4o")]


def test_pin_strips_the_provider_prefix_from_the_model() -> None:
    r = router(provider("openai", "gpt-*"), provider("backup"))
    assert pairs(r.resolve("backup/gpt-4o", "backup")) == [("backup", "gpt-4o")]


def test_pin_serves_a_model_no_glob_matches() -> None:
    r = router(provider("openai", "gpt-*"))
    assert pairs(r.resolve("my-finetune", "openai")) == [("openai", "my-finetune")]


def test_pin_to_an_unknown_provider_is_an_invalid_request() -> None:
    r = router(provider("openai", "gpt-*"))
    with pytest.raises(InvalidRequestError) as info:
        r.resolve("gpt-4o", "nope")
    assert info.value.status == 400
    assert info.value.param == "x-llm-edge-provider"
    assert "nope" in info.value.message


def test_pin_with_a_route_alias_picks_that_providers_targets() -> None:
    r = router(
        provider("openai"),
        provider("anthropic"),
        routes=(
            route(
                "smart",
                ("openai", "gpt-4o"),
                ("anthropic", "claude-3-5-sonnet"),
                ("anthropic", "claude-3-5-haiku"),
            ),
        ),
    )
    assert pairs(r.resolve("smart", "anthropic")) == [
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-haiku"),
    ]
    assert pairs(r.resolve("smart", "openai")) == [("openai", "gpt-4o")]


def test_pin_with_a_route_alias_includes_fallback_route_targets_on_that_provider() -> None:
    r = router(
        provider("openai"),
        provider("anthropic"),
        routes=(
            route("smart", ("openai", "gpt-4o"), fallbacks=("cheap",)),
            route("cheap", ("anthropic", "claude-3-5-haiku"), ("openai", "gpt-4o-mini")),
        ),
    )
    assert pairs(r.resolve("smart", "openai")) == [("openai", "gpt-4o"), ("openai", "gpt-4o-mini")]


def test_pin_with_a_route_alias_lists_each_target_once() -> None:
    r = router(
        provider("openai"),
        routes=(
            route("smart", ("openai", "gpt-4o"), fallbacks=("cheap",)),
            route("cheap", ("openai", "gpt-4o"), ("openai", "gpt-4o-mini")),
        ),
    )
    assert pairs(r.resolve("smart", "openai")) == [("openai", "gpt-4o"), ("openai", "gpt-4o-mini")]


def test_pin_does_not_pollute_the_unpinned_resolution() -> None:
    r = router(provider("openai", "gpt-*"), provider("backup"))
    r.resolve("gpt-4o", "backup")
    assert pairs(r.resolve("gpt-4o")) == [("openai", "gpt-4o")]


# --------------------------------------------------------------------------- routes


def test_route_alias_wins_over_globs() -> None:
    r = router(
        provider("openai", "*"),
        provider("anthropic"),
        routes=(route("smart", ("anthropic", "claude-3-5-sonnet")),),
    )
    targets = r.resolve("smart")
    assert pairs(targets) == [("anthropic", "claude-3-5-sonnet")]
    assert targets[0].route == "smart"


def test_route_alias_wins_over_provider_slash_model() -> None:
    r = router(
        provider("openai"),
        provider("anthropic"),
        routes=(route("openai/gpt-4o", ("anthropic", "claude-3-5-sonnet")),),
    )
    assert pairs(r.resolve("openai/gpt-4o")) == [("anthropic", "claude-3-5-sonnet")]


def test_route_targets_then_fallbacks_in_order() -> None:
    r = router(
        provider("a"),
        provider("b"),
        provider("c"),
        routes=(
            route("smart", ("a", "m1"), ("b", "m2"), fallbacks=("cheap", "local")),
            route("cheap", ("b", "m3")),
            route("local", ("c", "m4"), ("c", "m5")),
        ),
    )
    assert pairs(r.resolve("smart")) == [
        ("a", "m1"),
        ("b", "m2"),
        ("b", "m3"),
        ("c", "m4"),
        ("c", "m5"),
    ]
    assert [t.route for t in r.resolve("smart")] == ["smart", "smart", "cheap", "local", "local"]


def test_fallback_chains_visit_each_route_once() -> None:
    r = router(
        provider("a"),
        routes=(
            route("one", ("a", "m1"), fallbacks=("two", "three")),
            route("two", ("a", "m2"), fallbacks=("three", "one")),
            route("three", ("a", "m3"), fallbacks=("one",)),
        ),
    )
    assert pairs(r.resolve("one")) == [("a", "m1"), ("a", "m2"), ("a", "m3")]
    assert pairs(r.resolve("three")) == [("a", "m3"), ("a", "m1"), ("a", "m2")]


def test_fallbacks_are_not_used_when_resolving_the_fallback_route_itself() -> None:
    r = router(
        provider("a"),
        routes=(route("smart", ("a", "big"), fallbacks=("cheap",)), route("cheap", ("a", "small"))),
    )
    assert pairs(r.resolve("cheap")) == [("a", "small")]


def test_a_target_shared_by_a_route_and_its_fallback_is_listed_once() -> None:
    r = router(
        provider("a"),
        provider("b"),
        routes=(
            route("smart", ("a", "gpt-4o"), ("b", "claude"), fallbacks=("cheap",)),
            route("cheap", ("a", "gpt-4o"), ("b", "haiku")),
        ),
    )
    assert pairs(r.resolve("smart")) == [("a", "gpt-4o"), ("b", "claude"), ("b", "haiku")]


def test_a_target_repeated_inside_one_route_is_listed_once() -> None:
    r = router(provider("a"), routes=(route("smart", ("a", "m"), ("a", "m")),))
    assert pairs(r.resolve("smart")) == [("a", "m")]


def test_route_names_and_listed_models() -> None:
    r = router(
        provider("openai", "gpt-4o", "gpt-4o*", "o3"),
        provider("other", "gpt-4o", "x-[ab]"),
        routes=(route("smart", ("openai", "gpt-4o")), route("cheap", ("openai", "o3"))),
    )
    assert r.configured is True
    assert r.route_names() == ["smart", "cheap"]
    assert r.listed_models() == [
        ("smart", "llm-edge-agent"),
        ("cheap", "llm-edge-agent"),
        ("gpt-4o", "openai"),
        ("o3", "openai"),
    ]


# --------------------------------------------------------------------------- memo


def test_memo_stays_bounded_with_ten_thousand_distinct_model_names() -> None:
    r = router(provider("a", "gpt-*"))
    for i in range(10_000):
        assert pairs(r.resolve(f"gpt-{i}")) == [("a", f"gpt-{i}")]
    assert len(r._memo) <= MEMO_MAX_ENTRIES


def test_memo_stays_bounded_with_ten_thousand_unknown_model_names() -> None:
    r = router(provider("a", "gpt-*"))
    for i in range(10_000):
        with pytest.raises(NotFoundError):
            r.resolve(f"unknown-{i}")
    assert len(r._memo) <= MEMO_MAX_ENTRIES
    assert pairs(r.resolve("unknown-0", "a")) == [("a", "unknown-0")]


def test_evicted_names_still_resolve_correctly() -> None:
    r = router(provider("a", "gpt-*"), routes=(route("smart", ("a", "gpt-4o")),))
    assert pairs(r.resolve("smart")) == [("a", "gpt-4o")]
    for i in range(MEMO_MAX_ENTRIES + 10):
        r.resolve(f"gpt-{i}")
    assert pairs(r.resolve("smart")) == [("a", "gpt-4o")]
    assert pairs(r.resolve("gpt-0")) == [("a", "gpt-0")]


# --------------------------------------------------------------------------- strategies


def test_failover_keeps_the_configured_order() -> None:
    r = router(
        provider("a"),
        provider("b"),
        routes=(route("smart", ("a", "m"), ("b", "m")),),
    )
    for _ in range(5):
        assert pairs(r.resolve("smart")) == [("a", "m"), ("b", "m")]


def test_round_robin_rotates_the_first_target() -> None:
    r = router(
        provider("a"),
        provider("b"),
        provider("c"),
        routes=(route("rr", ("a", "m"), ("b", "m"), ("c", "m"), strategy="round_robin"),),
    )
    orders = [pairs(r.resolve("rr")) for _ in range(6)]
    assert [o[0][0] for o in orders] == ["a", "b", "c", "a", "b", "c"]
    assert orders[1] == [("b", "m"), ("c", "m"), ("a", "m")]
    for order in orders:
        assert sorted(order) == [("a", "m"), ("b", "m"), ("c", "m")]


def test_round_robin_then_fallbacks() -> None:
    r = router(
        provider("a"),
        provider("b"),
        provider("c"),
        routes=(
            route("rr", ("a", "m"), ("b", "m"), strategy="round_robin", fallbacks=("fb",)),
            route("fb", ("c", "m")),
        ),
    )
    assert pairs(r.resolve("rr")) == [("a", "m"), ("b", "m"), ("c", "m")]
    assert pairs(r.resolve("rr")) == [("b", "m"), ("a", "m"), ("c", "m")]


def test_weighted_gives_a_three_to_one_split_smoothly() -> None:
    r = router(
        provider("heavy"),
        provider("light"),
        routes=(route("w", ("heavy", "m", 3.0), ("light", "m", 1.0), strategy="weighted"),),
    )
    firsts: list[str] = []
    for _ in range(400):
        order = r.resolve("w")
        assert sorted(pairs(order)) == [("heavy", "m"), ("light", "m")]
        firsts.append(order[0].provider)
    assert Counter(firsts) == {"heavy": 300, "light": 100}
    longest = run = 0
    previous = ""
    for name in firsts:
        run = run + 1 if name == previous else 1
        previous = name
        if name == "heavy":
            longest = max(longest, run)
    assert longest <= 3


def test_weighted_with_three_targets_honours_every_weight() -> None:
    r = router(
        provider("a"),
        provider("b"),
        provider("c"),
        routes=(
            route("w", ("a", "m", 5.0), ("b", "m", 3.0), ("c", "m", 2.0), strategy="weighted"),
        ),
    )
    firsts = Counter(r.resolve("w")[0].provider for _ in range(1000))
    assert firsts == {"a": 500, "b": 300, "c": 200}


def test_weighted_zero_weight_target_is_only_a_backup() -> None:
    r = router(
        provider("a"),
        provider("b"),
        routes=(route("w", ("a", "m", 1.0), ("b", "m", 0.0), strategy="weighted"),),
    )
    for _ in range(10):
        assert pairs(r.resolve("w")) == [("a", "m"), ("b", "m")]


def test_single_target_routes_are_stable_under_every_strategy() -> None:
    strategies = ("failover", "round_robin", "weighted", "least_busy", "latency", "cost")
    r = router(
        provider("a"),
        routes=tuple(route(s, ("a", "m"), strategy=s) for s in strategies),
    )
    for s in strategies:
        for _ in range(3):
            assert pairs(r.resolve(s)) == [("a", "m")]
