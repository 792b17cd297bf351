"""``llm_edge_agent.rules.RuleSet``: ``[[rules]]`` matching."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from llm_edge_agent.auth import key_digest, key_id
from llm_edge_agent.config import RuleConfig
from llm_edge_agent.errors import ConfigError
from llm_edge_agent.rules import RuleSet

ALICE = "sk-alice"
BOB = "sk-bob"
CAROL = "sk-carol"


def kid(key: str) -> str:
    return key_id(key_digest(key))


class Counter:
    """A prompt-token callable that records its calls."""

    def __init__(self, tokens: int = 100) -> None:
        self.tokens = tokens
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.tokens


def route(
    rules: RuleSet,
    model: str = "gpt-4o",
    headers: Mapping[str, str] | None = None,
    tenant: str | None = None,
    body: Any = None,
    tokens: Callable[[], int] | None = None,
) -> str | None:
    return rules.route_for(
        model,
        headers or {},
        tenant,
        body if body is not None else {"model": model, "messages": []},
        tokens or Counter(),
    )


def one(**kwargs: Any) -> RuleSet:
    return RuleSet([RuleConfig(route="picked", **kwargs)], TEAMS)


TEAMS = {
    "research": (ALICE, "sha256:" + hashlib.sha256(BOB.encode()).hexdigest()),
    "ops": (BOB,),
}


# --------------------------------------------------------------------------- basics


def test_empty_rule_set() -> None:
    rules = RuleSet([], {})
    assert not rules and len(rules) == 0

    def explode() -> int:
        raise AssertionError("must not count")

    assert rules.route_for("m", {}, None, {}, explode) is None
    assert "RuleSet(rules=0" in repr(rules)


def test_rule_without_conditions_matches_everything() -> None:
    rules = one()
    assert rules and len(rules) == 1
    assert route(rules) == "picked"
    assert route(rules, model="anything", tenant=None, body={}) == "picked"


# --------------------------------------------------------------------------- conditions


def test_models_globs_case_sensitive() -> None:
    rules = one(models=("gpt-4o*", "claude-?-opus"))
    assert route(rules, model="gpt-4o-mini") == "picked"
    assert route(rules, model="claude-3-opus") == "picked"
    assert route(rules, model="GPT-4o") is None
    assert route(rules, model="o3") is None


def test_headers_present_and_value_glob_case_insensitive() -> None:
    rules = one(headers={"x-priority": "high*", "x-team": "*"})
    assert route(rules, headers={"x-priority": "HIGH-now", "x-team": ""}) == "picked"
    assert route(rules, headers={"x-priority": "high"}) is None  # x-team missing
    assert route(rules, headers={"x-priority": "low", "x-team": "a"}) is None
    assert route(rules, headers={}) is None


def test_header_names_in_rules_are_lower_cased() -> None:
    rules = one(headers={"X-Priority": "high"})
    assert route(rules, headers={"x-priority": "High"}) == "picked"


def test_keys() -> None:
    rules = one(keys=(kid(ALICE), kid(CAROL).upper()))
    assert route(rules, tenant=kid(ALICE)) == "picked"
    assert route(rules, tenant=kid(CAROL)) == "picked"
    assert route(rules, tenant=kid(BOB)) is None
    assert route(rules, tenant=None) is None


def test_teams_from_raw_and_sha256_keys() -> None:
    rules = one(teams=("research",))
    assert route(rules, tenant=kid(ALICE)) == "picked"  # raw key
    assert route(rules, tenant=kid(BOB)) == "picked"  # sha256: entry
    assert route(rules, tenant=kid(CAROL)) is None
    assert route(rules, tenant=None) is None
    assert rules.teams_of(kid(BOB)) == frozenset({"research", "ops"})
    assert rules.teams_of(kid(ALICE)) == frozenset({"research"})
    assert rules.teams_of(kid(CAROL)) == frozenset()
    assert rules.teams_of(None) == frozenset()


def test_teams_any_of() -> None:
    rules = one(teams=("ops", "nobody"))
    assert route(rules, tenant=kid(BOB)) == "picked"
    assert route(rules, tenant=kid(ALICE)) is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("sha256:zz", "invalid sha256 hex digest"),
        ("sha256:abcd", "64 hex characters"),
        ("  ", "is empty"),
    ],
)
def test_bad_team_entries(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        RuleSet([], {"ops": (BOB, entry)})
    assert info.value.key == "auth.teams.ops[1]"


def test_prompt_token_bounds_inclusive() -> None:
    rules = one(min_prompt_tokens=100, max_prompt_tokens=200)
    assert route(rules, tokens=Counter(99)) is None
    assert route(rules, tokens=Counter(100)) == "picked"
    assert route(rules, tokens=Counter(200)) == "picked"
    assert route(rules, tokens=Counter(201)) is None
    assert route(one(min_prompt_tokens=0), tokens=Counter(0)) == "picked"
    assert route(one(max_prompt_tokens=0), tokens=Counter(1)) is None


def test_metadata_values_and_types() -> None:
    rules = one(metadata={"tier": "gold*", "beta": "true", "n": "4?"})
    good = {"tier": "gold-plus", "beta": True, "n": 42}
    assert route(rules, body={"metadata": good}) == "picked"
    assert route(rules, body={"metadata": {**good, "beta": "true"}}) == "picked"
    assert route(rules, body={"metadata": {**good, "n": "42"}}) == "picked"
    assert route(rules, body={"metadata": {**good, "beta": False}}) is None
    assert route(rules, body={"metadata": {**good, "tier": "GOLD"}}) is None  # case-sensitive
    assert route(rules, body={"metadata": {**good, "n": [42]}}) is None
    assert route(rules, body={"metadata": {**good, "n": None}}) is None
    assert route(one(metadata={"x": "1.5"}), body={"metadata": {"x": 1.5}}) == "picked"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"metadata": None},
        {"metadata": "tier=gold"},
        {"metadata": ["tier", "gold"]},
        {"metadata": {}},
        {"metadata": {"other": "gold"}},
        [1, 2],
        "not a body",
        None,
    ],
)
def test_missing_or_odd_metadata_never_matches_nor_raises(body: Any) -> None:
    rules = one(metadata={"tier": "*"})
    assert rules.route_for("m", {}, None, body, Counter()) is None


def test_odd_header_values_do_not_raise() -> None:
    rules = one(headers={"x-a": "*"})
    assert rules.route_for("m", {"x-a": None}, None, {}, Counter()) is None  # type: ignore[dict-item]


# --------------------------------------------------------------------------- combining


def test_conditions_within_a_rule_are_anded() -> None:
    rules = one(
        models=("gpt-*",),
        headers={"x-env": "prod"},
        teams=("research",),
        metadata={"tier": "gold"},
        min_prompt_tokens=10,
    )
    ok: dict[str, Any] = {
        "model": "gpt-4o",
        "headers": {"x-env": "prod"},
        "tenant": kid(ALICE),
        "body": {"metadata": {"tier": "gold"}},
        "tokens": Counter(50),
    }
    assert route(rules, **ok) == "picked"
    for key, bad in [
        ("model", "claude-3"),
        ("headers", {"x-env": "dev"}),
        ("tenant", kid(CAROL)),
        ("body", {"metadata": {"tier": "silver"}}),
        ("tokens", Counter(5)),
    ]:
        assert route(rules, **{**ok, key: bad}) is None, key


def test_first_matching_rule_wins() -> None:
    rules = RuleSet(
        [
            RuleConfig(route="vip", keys=(kid(ALICE),)),
            RuleConfig(route="long", min_prompt_tokens=1000),
            RuleConfig(route="gpt", models=("gpt-*",)),
            RuleConfig(route="catch-all"),
            RuleConfig(route="never"),
        ],
        TEAMS,
    )
    assert route(rules, tenant=kid(ALICE), tokens=Counter(5000)) == "vip"
    assert route(rules, tenant=kid(BOB), tokens=Counter(5000)) == "long"
    assert route(rules, tenant=kid(BOB), tokens=Counter(10)) == "gpt"
    assert route(rules, model="claude", tokens=Counter(10)) == "catch-all"


# --------------------------------------------------------------------------- lazy counting


def test_prompt_tokens_not_counted_when_no_rule_needs_them() -> None:
    rules = RuleSet(
        [RuleConfig(route="a", models=("x*",)), RuleConfig(route="b", headers={"h": "*"})], {}
    )
    assert not rules.uses_prompt_tokens
    tokens = Counter()
    assert route(rules, model="y", tokens=tokens) is None
    assert route(rules, model="x1", tokens=tokens) == "a"
    assert tokens.calls == 0


def test_prompt_tokens_not_counted_when_other_conditions_fail() -> None:
    rules = RuleSet([RuleConfig(route="a", models=("x*",), min_prompt_tokens=1)], {})
    assert rules.uses_prompt_tokens
    tokens = Counter()
    assert route(rules, model="y", tokens=tokens) is None
    assert tokens.calls == 0


def test_prompt_tokens_counted_once_for_several_rules() -> None:
    rules = RuleSet(
        [
            RuleConfig(route="huge", min_prompt_tokens=100_000),
            RuleConfig(route="big", min_prompt_tokens=10_000),
            RuleConfig(route="small", max_prompt_tokens=50),
            RuleConfig(route="medium", max_prompt_tokens=5_000),
        ],
        {},
    )
    tokens = Counter(1_000)
    assert route(rules, tokens=tokens) == "medium"
    assert tokens.calls == 1
    tokens = Counter(10**6)
    assert route(rules, tokens=tokens) == "huge"
    assert tokens.calls == 1
    tokens = Counter(60_000)
    assert route(rules, tokens=tokens) == "big"
    assert tokens.calls == 1
