"""The pipeline's accounting: every request is logged once and releases what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from llm_edge_agent.cache.memory import MemoryCache
from llm_edge_agent.cache.store import ResponseCache
from llm_edge_agent.config import Config, ProviderConfig, RuleConfig
from llm_edge_agent.models import ChatRequest
from llm_edge_agent.observability.logs import AccessLog
from llm_edge_agent.observability.metrics import NullMetrics
from llm_edge_agent.pipeline.context import RequestContext, request_ids
from llm_edge_agent.pipeline.executor import Pipeline, with_metadata
from llm_edge_agent.pipeline.operations import ChatOperation
from llm_edge_agent.pipeline.responses import Response, StreamingResponse
from llm_edge_agent.pipeline.runtime import ProviderRuntime, build_runtime
from llm_edge_agent.pricing import PricingTable
from llm_edge_agent.routing import Router
from llm_edge_agent.rules import RuleSet
from llm_edge_agent.upstream.base import Timeouts, Transport

from ..fake_clock import FakeClock


class Captured(AccessLog):
    def __init__(self) -> None:
        super().__init__(enabled=True)
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def unused_transport(name: str, timeouts: Timeouts) -> Transport:
    raise AssertionError("the mock provider needs no HTTP transport")


def pipeline() -> tuple[Pipeline, ProviderRuntime, Captured]:
    provider = ProviderConfig(name="mock", type="mock", models=("*",))
    config = Config(providers=(provider,))
    runtime = build_runtime(provider, unused_transport)
    log = Captured()
    p = Pipeline(
        ChatOperation(),
        Router(config),
        {"mock": runtime},
        PricingTable(),
        NullMetrics(),
        log,
    )
    return p, runtime, log


def body(stream: bool) -> bytes:
    return orjson.dumps(
        {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    )


def context() -> RequestContext:
    return RequestContext({}, request_ids())


@pytest.mark.asyncio
async def test_a_stream_closed_before_its_first_chunk_is_released_and_logged_once() -> None:
    p, runtime, log = pipeline()
    result = await p.handle(context(), body(stream=True))
    assert isinstance(result, StreamingResponse)
    assert runtime.in_flight == 1
    await result.aclose()  # the client left before the headers were written
    await result.aclose()
    assert runtime.in_flight == 0
    assert [r["status"] for r in log.records] == [499]


@pytest.mark.asyncio
async def test_a_stream_read_to_the_end_is_logged_once_as_200() -> None:
    p, runtime, log = pipeline()
    result = await p.handle(context(), body(stream=True))
    assert isinstance(result, StreamingResponse)
    data = b"".join([chunk async for chunk in result.chunks])
    await result.aclose()
    assert data.endswith(b"data: [DONE]\n\n")
    assert runtime.in_flight == 0
    assert [r["status"] for r in log.records] == [200]
    assert log.records[0]["prompt_tokens"] > 0


@pytest.mark.asyncio
async def test_a_stream_abandoned_midway_is_logged_as_client_closed() -> None:
    p, runtime, log = pipeline()
    result = await p.handle(context(), body(stream=True))
    assert isinstance(result, StreamingResponse)
    async for _ in result.chunks:
        break
    await result.aclose()
    assert runtime.in_flight == 0
    assert [r["status"] for r in log.records] == [499]


@pytest.mark.asyncio
async def test_errors_are_answered_in_openai_shape_and_logged_once() -> None:
    p, runtime, log = pipeline()
    result = await p.handle(context(), b'{"model": "gpt-4o", "messages": []}')
    assert isinstance(result, Response)
    assert result.status == 400
    assert orjson.loads(result.body)["error"]["param"] == "messages"
    assert [r["status"] for r in log.records] == [400]
    assert runtime.in_flight == 0


@pytest.mark.parametrize(
    ("provider", "tier", "cost"),
    [("openai", None, 0.000125), ("bench", "l1", 0.0), ('we"ird\\ név', "l2", None)],
)
def test_metadata_is_appended_to_the_answer_object(
    provider: str, tier: str | None, cost: float | None
) -> None:
    body = orjson.dumps({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3}})
    for elapsed_s in (0.0, 0.0123456, 2.5):  # the same head, reused, with new figures
        out = orjson.loads(with_metadata(body, provider, tier, elapsed_s, cost))
        assert out["usage"] == {"prompt_tokens": 3}
        assert list(out["metadata"]) == [
            "provider",
            "cached",
            "cache_tier",
            "latency_ms",
            "cost_usd",
        ]
        assert out["metadata"] == {
            "provider": provider,
            "cached": tier is not None,
            "cache_tier": tier,
            "latency_ms": round(elapsed_s * 1000.0, 3),
            "cost_usd": cost,
        }


class CountingChat(ChatOperation):
    """Chat, counting the bodies it parses."""

    def __init__(self) -> None:
        self.parsed = 0

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
        self.parsed += 1
        return super().parse(raw, headers)


def cached_pipeline(
    clock: FakeClock, **options: Any
) -> tuple[Pipeline, CountingChat, ProviderRuntime, Captured]:
    provider = ProviderConfig(name="mock", type="mock", models=("*",))
    config = Config(providers=(provider,))
    runtime = build_runtime(provider, unused_transport)
    log = Captured()
    cache = ResponseCache(MemoryCache(100, 1 << 20, clock=clock), None, 60.0, wall_clock=clock)
    operation = CountingChat()
    p = Pipeline(
        operation,
        Router(config),
        {"mock": runtime},
        PricingTable(),
        NullMetrics(),
        log,
        cache=cache,
        **options,
    )
    return p, operation, runtime, log


def tenant_context(tenant: str, headers: Mapping[str, str] | None = None) -> RequestContext:
    ctx = RequestContext(headers or {}, request_ids())
    ctx.tenant = tenant
    return ctx


async def answer(p: Pipeline, ctx: RequestContext, raw: bytes) -> tuple[str, bytes]:
    """The cache status and the answer's bytes (a stream's whole body)."""
    result = await p.handle(ctx, raw)
    if isinstance(result, StreamingResponse):
        data = b"".join([chunk async for chunk in result.chunks])
        await result.aclose()
    else:
        assert result.status == 200, result.body
        assert result.settle is not None
        result.settle()  # what the server does once the response is written
        data = result.body
    return ctx.cache_status, data


def content(data: bytes) -> str:
    return str(orjson.loads(data)["choices"][0]["message"]["content"])


@pytest.mark.asyncio
async def test_a_body_repeated_byte_for_byte_skips_parsing_once_the_cache_answered_it() -> None:
    p, op, _, log = cached_pipeline(FakeClock())
    raw = body(stream=False)
    seen = [await answer(p, tenant_context("a"), raw) for _ in range(3)]
    assert [status for status, _ in seen] == ["miss", "hit-l1", "hit-l1"]
    assert op.parsed == 2  # the miss, and the first hit (which remembers the body)
    assert content(seen[2][1]) == content(seen[1][1]) == content(seen[0][1])
    assert [(r["model"], r["stream"], r["cache"]) for r in log.records] == [
        ("gpt-4o", False, "miss"),
        ("gpt-4o", False, "hit-l1"),
        ("gpt-4o", False, "hit-l1"),
    ]


@pytest.mark.asyncio
async def test_a_known_body_from_another_tenant_misses_and_is_parsed_in_full() -> None:
    p, op, runtime, _ = cached_pipeline(FakeClock())
    raw = body(stream=False)
    for _ in range(3):
        await answer(p, tenant_context("a"), raw)
    status, data = await answer(p, tenant_context("b"), raw)
    assert status == "miss"
    assert op.parsed == 3
    assert content(data)
    assert runtime.in_flight == 0
    assert (await answer(p, tenant_context("b"), raw))[0] == "hit-l1"


@pytest.mark.asyncio
async def test_a_known_body_whose_entry_expired_is_parsed_and_stored_again() -> None:
    clock = FakeClock()
    p, op, _, _ = cached_pipeline(clock)
    raw = body(stream=False)
    for _ in range(3):
        await answer(p, tenant_context("a"), raw)
    clock.advance(61.0)  # past the cache's 60 s TTL
    assert (await answer(p, tenant_context("a"), raw))[0] == "miss"
    assert op.parsed == 3
    assert (await answer(p, tenant_context("a"), raw))[0] == "hit-l1"
    assert op.parsed == 3  # still known: the repeat skips parsing again


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "status"),
    [({"cache-control": "no-cache"}, "miss"), ({"cache-control": "max-age=0"}, "miss")],
)
async def test_a_known_body_still_obeys_the_cache_controls(
    headers: dict[str, str], status: str
) -> None:
    clock = FakeClock()
    p, op, _, _ = cached_pipeline(clock)
    raw = body(stream=False)
    for _ in range(2):
        await answer(p, tenant_context("a"), raw)
    clock.advance(1.0)
    assert (await answer(p, tenant_context("a", headers), raw))[0] == status
    assert op.parsed == 3  # the lookup was refused, so the body went out parsed in full


@pytest.mark.asyncio
async def test_a_known_streamed_body_is_replayed_as_a_stream() -> None:
    p, op, _, _ = cached_pipeline(FakeClock())
    raw = body(stream=True)
    seen = [await answer(p, tenant_context("a"), raw) for _ in range(3)]
    assert [status for status, _ in seen] == ["miss", "hit-l1", "hit-l1"]
    assert op.parsed == 2
    assert seen[2][1].endswith(b"data: [DONE]\n\n")
    assert seen[2][1].count(b"chat.completion.chunk") == seen[1][1].count(b"chat.completion.chunk")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "options",
    [
        {"log_prompts": True},
        {"rules": RuleSet([RuleConfig(route="gpt-4o", headers={"x-team": "a"})])},
    ],
)
async def test_bodies_are_always_parsed_when_prompts_are_logged_or_rules_read_them(
    options: dict[str, Any],
) -> None:
    p, op, _, _ = cached_pipeline(FakeClock(), **options)
    raw = body(stream=False)
    statuses = [(await answer(p, tenant_context("a"), raw))[0] for _ in range(3)]
    assert statuses == ["miss", "hit-l1", "hit-l1"]
    assert op.parsed == 3


@pytest.mark.asyncio
async def test_a_whole_answer_is_accounted_when_the_server_settles_it_not_before() -> None:
    clock = FakeClock()
    p, _, _, log = cached_pipeline(clock)
    raw = body(stream=False)
    for expected in ("miss", "hit-l1"):
        result = await p.handle(tenant_context("a"), raw)
        assert isinstance(result, Response) and result.settle is not None
        assert log.records == []  # the client is not kept waiting for the bookkeeping
        ready_ms = orjson.loads(result.body)["metadata"]["latency_ms"]
        result.settle()
        assert [r["cache"] for r in log.records] == [expected]
        # The log says how long the answer took, not how long writing it out did.
        assert log.records[0]["latency_ms"] == ready_ms
        log.records.clear()


@pytest.mark.asyncio
async def test_the_clients_time_budget_runs_from_the_requests_arrival() -> None:
    # A request that spent its whole x-llm-edge-timeout-ms before reaching the pipeline (a
    # slow upload, a queue) gets the deadline error, not a fresh budget.
    p, _, _, _ = cached_pipeline(FakeClock())
    ctx = tenant_context("a", {"x-llm-edge-timeout-ms": "50"})
    ctx.started -= 0.2  # arrived 200 ms ago
    result = await p.handle(ctx, body(stream=False))
    assert isinstance(result, Response)
    assert result.status == 504
    assert orjson.loads(result.body)["error"]["code"] == "deadline_exceeded"
    fresh = await p.handle(tenant_context("a", {"x-llm-edge-timeout-ms": "50"}), body(False))
    assert isinstance(fresh, Response) and fresh.status == 200
