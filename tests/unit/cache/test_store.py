"""Cache entries: what is stored with an answer, and L1 in front of L2."""

from __future__ import annotations

import pytest

from llm_edge_agent.cache.controls import CacheControls
from llm_edge_agent.cache.memory import MemoryCache
from llm_edge_agent.cache.store import ResponseCache, decode_entry, encode_entry
from llm_edge_agent.pricing import TokenUsage


def test_an_entry_round_trips_with_its_usage_and_cost() -> None:
    usage = TokenUsage(12, 5, 2, 1, 0)
    value = encode_entry("openai", 1700000000.5, b'{"id":"x"}', usage, 0.00042)
    answer = decode_entry(value, "l2")
    assert answer is not None
    assert (answer.provider, answer.stored_at, answer.body, answer.tier) == (
        "openai",
        1700000000.5,
        b'{"id":"x"}',
        "l2",
    )
    assert answer.usage == usage and answer.cost == 0.00042


def test_unknown_usage_and_cost_stay_unknown() -> None:
    answer = decode_entry(encode_entry("p", 1.0, b"{}"), "l1")
    assert answer is not None and answer.usage is None and answer.cost is None


@pytest.mark.parametrize(
    "value",
    [b"", b"p\n1.0\n{}", b"p\nnot-a-time\n\n\n{}", b"p\n1.0\n1,2,x\n\n{}", b"p\n1.0\n\nfree\n{}"],
    ids=["empty", "older-format", "bad-time", "bad-usage", "bad-cost"],
)
def test_malformed_entries_are_misses_not_errors(value: bytes) -> None:
    assert decode_entry(value, "l2") is None


class DictL2:
    """The L2 protocol over a dict: the tier logic under test, not Redis (test_redis.py
    and the functional tests run a real redis-server)."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    @property
    def healthy(self) -> bool:
        return True

    async def get(self, key: str) -> bytes | None:
        return self.store.get(key)

    def put_later(self, key: str, value: bytes, ttl_s: float) -> None:
        self.store[key] = value


@pytest.mark.asyncio
async def test_an_l2_hit_fills_l1_and_max_age_uses_the_stored_time() -> None:
    now = [1000.0]
    l2 = DictL2()
    l2.store["k"] = encode_entry("p", 990.0, b"{}")
    cache = ResponseCache(MemoryCache(10, 10_000), l2, 3600, wall_clock=lambda: now[0])
    hit = await cache.get("k", CacheControls())
    assert hit is not None and hit.tier == "l2"
    again = await cache.get("k", CacheControls())
    assert again is not None and again.tier == "l1"
    # Ten seconds old, from either tier: refused by max-age=5, accepted by max-age=60.
    assert await cache.get("k", CacheControls(max_age_s=5)) is None
    fresh = await cache.get("k", CacheControls(max_age_s=60))
    assert fresh is not None


@pytest.mark.asyncio
async def test_no_store_and_zero_ttl_store_nothing() -> None:
    l2 = DictL2()
    cache = ResponseCache(MemoryCache(10, 10_000), l2, 3600)
    cache.put("a", "p", b"{}", CacheControls(store=False))
    cache.put("b", "p", b"{}", CacheControls(ttl_s=0))
    assert l2.store == {}
    assert await cache.get("a", CacheControls()) is None
