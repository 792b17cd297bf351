"""The shared Redis tier (L2) across two gateway processes, with a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from ..fake_upstream import FakeUpstream
from ..gateway_process import GatewayProcess
from ..redis_server import RedisServer


def config(upstream: FakeUpstream, redis_url: str) -> str:
    return f"""
[[providers]]
name = "fake"
type = "openai_compatible"
base_url = "{upstream.url}"
models = ["gpt-*"]

[cache]
enabled = true
[cache.redis]
url = "{redis_url}"
"""


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def ask(client: openai.OpenAI, text: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    return str(raw.headers["x-llm-edge-cache"])


def test_two_replicas_share_entries_and_survive_redis_going_away(
    upstream: FakeUpstream, redis: RedisServer
) -> None:
    one = GatewayProcess(config(upstream, redis.url), cache=True)
    two = GatewayProcess(config(upstream, redis.url), cache=True)
    try:
        with (
            openai.OpenAI(base_url=f"{one.url}/v1", api_key="k", max_retries=0) as a,
            openai.OpenAI(base_url=f"{two.url}/v1", api_key="k", max_retries=0) as b,
        ):
            assert ask(a, "shared") == "miss"
            # The store to Redis happens off the request path: wait for it to land.
            deadline = time.monotonic() + 5
            status = ask(b, "shared")
            while status != "hit-l2" and time.monotonic() < deadline:
                status = ask(b, "shared")
            assert status == "hit-l2"
            assert ask(b, "shared") == "hit-l1"  # the L2 hit filled replica two's L1
            assert len(upstream.requests) == 1

            redis.stop()
            for i in range(5):  # no request fails while Redis is down
                assert ask(a, f"while down {i}") == "miss"
            assert len(upstream.requests) == 6

            redis.start()
            deadline = time.monotonic() + 10
            recovered = False
            attempt = 0
            while not recovered and time.monotonic() < deadline:
                attempt += 1  # a new prompt each time: each replica's L1 would answer a repeat
                ask(a, f"after recovery {attempt}")
                recovered = ask(b, f"after recovery {attempt}") == "hit-l2"
            assert recovered
        warnings = [
            r for r in one.log_lines() if "L2 cache (Redis) is unreachable" in str(r.get("msg"))
        ]
        assert len(warnings) == 1  # once per outage, not per request
        outages = sum(
            float(line.rsplit(" ", 1)[1])
            for line in httpx.get(f"{one.url}/metrics").text.splitlines()
            if line.startswith("llm_edge_cache_l2_outages_total")
        )
        assert outages == 1
    finally:
        one.cleanup()
        two.cleanup()
