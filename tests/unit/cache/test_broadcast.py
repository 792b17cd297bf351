"""The broadcast behind streaming coalescing: every reader gets every piece, in order, from
the first, however late it starts; the last reader out cancels the pump."""

from __future__ import annotations

import asyncio

import pytest

from llm_edge_agent.cache.broadcast import Broadcast, StreamFlight


async def collect(broadcast: Broadcast) -> list[bytes]:
    return [piece async for piece in broadcast.read()]


@pytest.mark.asyncio
async def test_readers_early_and_late_get_every_piece_in_order() -> None:
    broadcast = Broadcast()
    early = asyncio.ensure_future(collect(broadcast))
    await asyncio.sleep(0)
    broadcast.append(b"a")
    broadcast.append(b"b")
    await asyncio.sleep(0)
    late = asyncio.ensure_future(collect(broadcast))  # joins after two pieces
    await asyncio.sleep(0)
    broadcast.append(b"c")
    broadcast.close()
    assert await early == [b"a", b"b", b"c"]
    assert await late == [b"a", b"b", b"c"]
    assert await collect(broadcast) == [b"a", b"b", b"c"]  # even after the end


@pytest.mark.asyncio
async def test_a_reader_waits_until_the_broadcast_closes() -> None:
    broadcast = Broadcast()
    reader = asyncio.ensure_future(collect(broadcast))
    await asyncio.sleep(0.01)
    assert not reader.done()
    broadcast.close()
    assert await reader == []


@pytest.mark.asyncio
async def test_the_last_reader_leaving_cancels_the_pump() -> None:
    flight = StreamFlight("k")
    started = asyncio.Event()

    async def pump() -> None:
        started.set()
        await asyncio.Event().wait()  # runs until cancelled

    flight.pump = asyncio.ensure_future(pump())
    await started.wait()
    flight.join()
    flight.join()
    flight.leave()
    await asyncio.sleep(0)
    assert not flight.pump.done()  # one reader is left: the stream goes on
    flight.leave()
    await asyncio.sleep(0)
    assert flight.pump.cancelled()


@pytest.mark.asyncio
async def test_a_failure_nobody_waits_for_is_not_reported_as_unretrieved() -> None:
    flight = StreamFlight("k")
    flight.opened.set_exception(RuntimeError("upstream down"))
    await asyncio.sleep(0)
    # The done callback retrieved it: the loop would otherwise log "never retrieved".
    assert flight.opened.exception() is not None
