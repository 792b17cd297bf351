"""A deferred flush: work piles up per request and is written out once per interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FlushTimer:
    """Calls ``flush`` once, ``interval_s`` after the first ``schedule()`` since the last
    flush; outside an event loop it flushes at once (nothing would ever fire later)."""

    __slots__ = ("_flush", "_handle", "_interval_s")

    def __init__(self, interval_s: float, flush: Callable[[], None]) -> None:
        self._interval_s = interval_s
        self._flush = flush
        self._handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"FlushTimer({self._interval_s}s, pending={self._handle is not None})"

    def schedule(self) -> None:
        if self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
                return
            self._handle = loop.call_later(self._interval_s, self._flush)

    def cancel(self) -> None:
        """Called by ``flush`` itself: the pending call, if any, is no longer needed."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
