"""In-flight coalescing: one call per key, safe under cancellation."""

from __future__ import annotations

import asyncio

import pytest

from llm_edge_agent.cache.coalesce import Flights


class Upstream:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.cancelled = False

    async def answer(self) -> str:
        self.calls += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "answer"


@pytest.mark.asyncio
async def test_identical_requests_in_flight_share_one_call() -> None:
    flights: Flights[str] = Flights()
    upstream = Upstream()
    waiters = [asyncio.create_task(flights.join("k", upstream.answer)) for _ in range(50)]
    await asyncio.sleep(0)
    upstream.release.set()
    results = await asyncio.gather(*waiters)
    assert upstream.calls == 1
    assert {r for r, _ in results} == {"answer"}
    assert sorted(shared for _, shared in results) == [False] + [True] * 49
    assert len(flights) == 0


@pytest.mark.asyncio
async def test_the_first_client_leaving_does_not_cancel_the_others_answer() -> None:
    flights: Flights[str] = Flights()
    upstream = Upstream()
    first = asyncio.create_task(flights.join("k", upstream.answer))
    await asyncio.sleep(0)
    second = asyncio.create_task(flights.join("k", upstream.answer))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    upstream.release.set()
    assert await second == ("answer", True)
    assert upstream.calls == 1 and not upstream.cancelled


@pytest.mark.asyncio
async def test_when_every_waiter_leaves_the_call_is_cancelled() -> None:
    flights: Flights[str] = Flights()
    upstream = Upstream()
    waiters = [asyncio.create_task(flights.join("k", upstream.answer)) for _ in range(3)]
    await asyncio.sleep(0)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.sleep(0)
    assert upstream.cancelled
    assert len(flights) == 0


@pytest.mark.asyncio
async def test_an_error_reaches_every_waiter_and_the_next_request_calls_again() -> None:
    flights: Flights[str] = Flights()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise ValueError("upstream failed")

    results = await asyncio.gather(
        *(flights.join("k", failing) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, ValueError) for r in results)
    with pytest.raises(ValueError, match="upstream failed"):
        await flights.join("k", failing)
    assert calls == 2


@pytest.mark.asyncio
async def test_different_keys_do_not_share() -> None:
    flights: Flights[str] = Flights()
    upstream = Upstream()
    upstream.release.set()
    await asyncio.gather(flights.join("a", upstream.answer), flights.join("b", upstream.answer))
    assert upstream.calls == 2
