"""The pipeline's accounting: every request is logged once and releases what it holds."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_edge_agent.config import Config, ProviderConfig
from llm_edge_agent.observability.logs import AccessLog
from llm_edge_agent.observability.metrics import NullMetrics
from llm_edge_agent.pipeline.context import RequestContext, request_ids
from llm_edge_agent.pipeline.executor import Pipeline, with_metadata
from llm_edge_agent.pipeline.operations import ChatOperation
from llm_edge_agent.pipeline.responses import Response, StreamingResponse
from llm_edge_agent.pipeline.runtime import ProviderRuntime, build_runtime
from llm_edge_agent.pricing import PricingTable
from llm_edge_agent.routing import Router
from llm_edge_agent.upstream.base import Timeouts, Transport


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
