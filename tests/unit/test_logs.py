"""``observability.logs``: timestamps and the batched request log."""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest

from llm_edge_agent.observability.logs import AccessLog, _Clock

from ..fake_clock import FakeClock

# 2026-11-24T21:36:54.000Z
T0 = 1795556214.0


def test_timestamps_are_rfc3339_with_milliseconds_in_utc() -> None:
    clock = FakeClock(T0 + 0.0071)
    stamp = _Clock(clock)
    assert stamp.now() == "2026-11-24T21:36:54.007Z"
    clock.advance(0.9)
    assert stamp.now() == "2026-11-24T21:36:54.907Z"


def test_a_timestamp_follows_the_clock_across_milliseconds_seconds_and_days() -> None:
    clock = FakeClock(T0 + 0.0004)
    stamp = _Clock(clock)
    assert stamp.now() == "2026-11-24T21:36:54.000Z"
    clock.advance(0.0003)  # same millisecond: same stamp
    assert stamp.now() == "2026-11-24T21:36:54.000Z"
    clock.advance(0.0006)
    assert stamp.now() == "2026-11-24T21:36:54.001Z"
    clock.now = T0 + 1.9995
    assert stamp.now() == "2026-11-24T21:36:55.999Z"
    clock.now = T0 + 2.0
    assert stamp.now() == "2026-11-24T21:36:56.000Z"
    clock.now = T0 + 86400.25
    assert stamp.now() == "2026-11-25T21:36:54.250Z"
    clock.now = T0 - 3600.5  # a clock stepped back is followed too
    assert stamp.now() == "2026-11-24T20:36:53.500Z"


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def test_request_lines_are_written_on_flush_as_json_lines_with_a_timestamp(
    pipe: tuple[int, int],
) -> None:
    read, write = pipe
    log = AccessLog(fd=write)
    log._clock = _Clock(FakeClock(T0))
    # Outside an event loop nothing would fire a timer, so each line is written at once.
    log.write({"level": "info", "msg": "request", "status": 200})
    log.write({"level": "info", "msg": "request", "status": 404})
    lines = os.read(read, 65536).splitlines()
    assert [orjson.loads(line)["status"] for line in lines] == [200, 404]
    assert orjson.loads(lines[0])["ts"] == "2026-11-24T21:36:54.000Z"


@pytest.mark.asyncio
async def test_inside_a_loop_lines_wait_for_the_flush(pipe: tuple[int, int]) -> None:
    read, write = pipe
    os.set_blocking(read, False)
    log = AccessLog(fd=write)
    log.write({"msg": "request", "status": 200})
    with pytest.raises(BlockingIOError):
        os.read(read, 65536)  # batched: nothing written yet
    log.flush()
    assert orjson.loads(os.read(read, 65536))["status"] == 200


def test_text_format_names_the_fields(pipe: tuple[int, int]) -> None:
    read, write = pipe
    log = AccessLog(fd=write, json=False)
    log._clock = _Clock(FakeClock(T0))
    log.write({"level": "info", "msg": "request", "status": 200, "tenant": None})
    line = os.read(read, 65536).decode()
    assert line == "2026-11-24T21:36:54.000Z INFO request status=200\n"
