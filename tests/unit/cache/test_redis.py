"""The L2 tier against a real redis-server: storage, expiry, sharing, outages, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from llm_edge_agent.cache.redis import OUTAGE_AFTER_TIMEOUTS, RETRY_INTERVAL_S, RedisCache

from ...fake_clock import FakeClock
from ...redis_server import RedisServer, free_port

# Where the bound itself is under test. Not the 50 ms default: a loaded CI machine can stall
# the event loop that long, and a stall is (rightly) an outage to the cache.
OP_TIMEOUT_S = 0.2
RELAXED_OP_TIMEOUT_S = 2.0  # everywhere else: a slow CI machine must not look like an outage
PROMPT_S = 1.0  # bound for "returns promptly" across many calls


class Outages:
    """Records every on_outage call, as the gateway's logger and metric would see them."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[bool] = []

    def __call__(self, down: bool) -> None:
        self.events.append(down)


@asynccontextmanager
async def running(
    url: str,
    key_prefix: str,
    clock: Callable[[], float] | None = None,
    *,
    op_timeout_s: float = RELAXED_OP_TIMEOUT_S,
    **kwargs: Any,
) -> AsyncIterator[RedisCache]:
    if clock is not None:
        kwargs["clock"] = clock
    cache = RedisCache(url, key_prefix=key_prefix, op_timeout_s=op_timeout_s, **kwargs)
    await cache.start()
    try:
        yield cache
    finally:
        await cache.close()


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def command_calls(url: str, command: str) -> int:
    """How many times the server ran ``command`` since it started (INFO commandstats)."""
    async with raw(url) as client:
        stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def knock_down(cache: RedisCache, server: RedisServer) -> None:
    server.stop()
    assert await cache.get("anything") is None
    assert not cache.healthy


@pytest.mark.asyncio
async def test_put_then_get_returns_the_same_bytes(redis_url: str, key_prefix: str) -> None:
    value = b'{"id":"chatcmpl-1"}\x00\xff binary-safe'
    async with running(redis_url, key_prefix) as cache:
        await cache.put("k1", value, ttl_s=60)
        assert await cache.get("k1") == value
        assert cache.healthy and cache.outages == 0


@pytest.mark.asyncio
async def test_unknown_key_is_a_miss(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as cache:
        assert await cache.get("never-stored") is None
        assert cache.healthy


@pytest.mark.asyncio
async def test_entries_live_under_the_key_prefix(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as cache, raw(redis_url) as client:
        await cache.put("abc", b"v", ttl_s=60)
        assert await client.get(f"{key_prefix}abc") == b"v"
        assert await client.exists("abc") == 0
    async with running(redis_url, f"other-{key_prefix}") as other:
        assert await other.get("abc") is None


@pytest.mark.asyncio
async def test_put_sets_the_ttl_as_a_redis_expiry(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as cache, raw(redis_url) as client:
        await cache.put("ttl", b"v", ttl_s=30)
        pttl = await client.pttl(f"{key_prefix}ttl")
        assert 29_000 < pttl <= 30_000


@pytest.mark.asyncio
async def test_entry_is_gone_once_redis_expires_it(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as cache:
        await cache.put("short", b"v", ttl_s=0.01)
        assert await cache.get("short") == b"v"
        # Redis checks the expiry time on access, so once it has passed the entry is gone.
        await asyncio.sleep(0.03)
        assert await cache.get("short") is None


@pytest.mark.asyncio
async def test_non_positive_ttl_stores_nothing(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as cache:
        await cache.put("zero", b"v", ttl_s=0)
        await cache.put("negative", b"v", ttl_s=-5)
        assert await cache.get("zero") is None
        assert await cache.get("negative") is None


@pytest.mark.asyncio
async def test_two_replicas_share_an_entry(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as a, running(redis_url, key_prefix) as b:
        await a.put("shared", b"answer", ttl_s=60)
        assert await b.get("shared") == b"answer"
        await b.put("shared", b"newer", ttl_s=60)
        assert await a.get("shared") == b"newer"


@pytest.mark.asyncio
async def test_put_later_stores_in_the_background_and_drain_awaits_it(
    redis_url: str, key_prefix: str
) -> None:
    async with running(redis_url, key_prefix) as cache:
        for i in range(20):
            cache.put_later(f"bg{i}", b"v%d" % i, ttl_s=60)
        assert cache.pending == 20
        assert await cache.drain() == 0
        assert cache.pending == 0
        assert [await cache.get(f"bg{i}") for i in range(20)] == [b"v%d" % i for i in range(20)]


@pytest.mark.asyncio
async def test_stopped_redis_answers_promptly_with_exactly_one_outage(
    own_redis: RedisServer, key_prefix: str
) -> None:
    outages = Outages()
    async with running(
        own_redis.url, key_prefix, FakeClock(), on_outage=outages, op_timeout_s=OP_TIMEOUT_S
    ) as cache:
        await cache.put("k", b"v", ttl_s=60)
        assert await cache.get("k") == b"v"
        own_redis.stop()
        async with asyncio.timeout(PROMPT_S):
            for _ in range(200):
                assert await cache.get("k") is None
                await cache.put("k", b"v", ttl_s=60)
                cache.put_later("k", b"v", ttl_s=60)
        assert not cache.healthy
        assert outages.events == [True]
        assert cache.outages == 1
        assert cache.pending == 0  # while down, put_later creates no tasks at all


@pytest.mark.asyncio
async def test_hung_redis_costs_a_request_at_most_the_op_timeout(
    own_redis: RedisServer, key_prefix: str
) -> None:
    outages = Outages()
    async with running(
        own_redis.url, key_prefix, FakeClock(), on_outage=outages, op_timeout_s=OP_TIMEOUT_S
    ) as cache:
        await cache.put("k", b"v", ttl_s=60)
        own_redis.freeze()
        try:
            # A timeout alone might be this worker's busy loop: the outage is declared on
            # the OUTAGE_AFTER_TIMEOUTS-th in a row, each one costing at most the budget.
            for _ in range(OUTAGE_AFTER_TIMEOUTS):
                async with asyncio.timeout(OP_TIMEOUT_S * 3):
                    assert await cache.get("k") is None
            async with asyncio.timeout(OP_TIMEOUT_S):
                for _ in range(100):  # skipped now: no waiting at all
                    assert await cache.get("k") is None
                    await cache.put("k", b"v", ttl_s=60)
        finally:
            own_redis.thaw()
        assert outages.events == [True]


@pytest.mark.asyncio
async def test_recovers_after_the_retry_interval_with_one_ping(
    own_redis: RedisServer, key_prefix: str
) -> None:
    clock, outages = FakeClock(), Outages()
    async with running(own_redis.url, key_prefix, clock, on_outage=outages) as cache:
        await knock_down(cache, own_redis)
        own_redis.start()  # back, and empty
        pings = await command_calls(own_redis.url, "ping")  # the helper's readiness PING

        clock.advance(RETRY_INTERVAL_S / 2)
        for _ in range(50):
            assert await cache.get("k") is None
            await cache.put("k", b"v", ttl_s=60)
        await cache.drain()
        assert not cache.healthy
        # Skipped, not hammered: the restarted server has not seen a single command.
        assert await command_calls(own_redis.url, "ping") == pings
        assert await command_calls(own_redis.url, "get") == 0
        assert await command_calls(own_redis.url, "set") == 0

        clock.advance(RETRY_INTERVAL_S / 2)
        for _ in range(50):  # many requests, one probe
            assert await cache.get("k") is None
        await cache.drain()
        assert cache.healthy
        assert outages.events == [True, False]
        assert cache.outages == 1
        assert await command_calls(own_redis.url, "ping") == pings + 1
        assert await command_calls(own_redis.url, "get") == 0

        await cache.put("k", b"again", ttl_s=60)
        assert await cache.get("k") == b"again"


@pytest.mark.asyncio
async def test_failed_probe_stays_down_and_waits_another_interval(
    own_redis: RedisServer, key_prefix: str
) -> None:
    clock, outages = FakeClock(), Outages()
    async with running(own_redis.url, key_prefix, clock, on_outage=outages) as cache:
        await knock_down(cache, own_redis)
        clock.advance(RETRY_INTERVAL_S)
        assert await cache.get("k") is None  # starts the probe, which fails
        await cache.drain()
        assert not cache.healthy

        own_redis.start()
        pings = await command_calls(own_redis.url, "ping")  # the helper's readiness PING
        assert await cache.get("k") is None  # the next probe is a full interval away
        await cache.drain()
        assert not cache.healthy
        assert await command_calls(own_redis.url, "ping") == pings

        clock.advance(RETRY_INTERVAL_S)
        assert await cache.get("k") is None
        await cache.drain()
        assert cache.healthy
        assert outages.events == [True, False]


@pytest.mark.asyncio
async def test_a_second_outage_is_reported_again(own_redis: RedisServer, key_prefix: str) -> None:
    clock, outages = FakeClock(), Outages()
    async with running(own_redis.url, key_prefix, clock, on_outage=outages) as cache:
        for _ in range(2):
            await knock_down(cache, own_redis)
            own_redis.start()
            clock.advance(RETRY_INTERVAL_S)
            await cache.get("k")
            await cache.drain()
            assert cache.healthy
        assert outages.events == [True, False, True, False]
        assert cache.outages == 2


@pytest.mark.asyncio
async def test_redis_down_at_start_starts_unhealthy_without_failing(key_prefix: str) -> None:
    outages = Outages()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with asyncio.timeout(PROMPT_S):
        async with running(
            url, key_prefix, FakeClock(), on_outage=outages, op_timeout_s=OP_TIMEOUT_S
        ) as cache:
            assert not cache.healthy
            assert await cache.get("k") is None
            await cache.put("k", b"v", ttl_s=60)
    assert outages.events == [True]


@pytest.mark.asyncio
async def test_unstarted_cache_misses_and_does_nothing(key_prefix: str) -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", key_prefix=key_prefix)
    assert await cache.get("k") is None
    await cache.put("k", b"v", ttl_s=60)
    cache.put_later("k", b"v", ttl_s=60)
    assert cache.pending == 0
    await cache.close()


def test_repr_is_readable_and_hides_the_password() -> None:
    cache = RedisCache("redis://user:s3cret@cache.internal:6380/2", key_prefix="p:")
    text = repr(cache)
    assert "s3cret" not in text
    assert "redis://user:***@cache.internal:6380/2" in text
    assert "healthy" in text and "outages=0" in text and "not started" in text


@pytest.mark.asyncio
async def test_a_lone_timeout_is_not_an_outage(own_redis: RedisServer, key_prefix: str) -> None:
    outages = Outages()
    async with running(
        own_redis.url, key_prefix, FakeClock(), on_outage=outages, op_timeout_s=OP_TIMEOUT_S
    ) as cache:
        await cache.put("k", b"v", ttl_s=60)
        for _ in range(3):  # a busy loop now and then, Redis itself fine in between
            own_redis.freeze()
            try:
                for _ in range(OUTAGE_AFTER_TIMEOUTS - 1):
                    assert await cache.get("k") is None
            finally:
                own_redis.thaw()
            assert await cache.get("k") == b"v"  # a success resets the count
        assert outages.events == []
        assert cache.healthy
