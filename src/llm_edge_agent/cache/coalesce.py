"""In-flight coalescing: identical cacheable requests share one upstream call.

The first request for a key starts the call as its own task; every identical request that
arrives before it ends waits on the same task. The call is not tied to any one client:
each waiter awaits it through ``asyncio.shield``, so the first client disconnecting does
not cancel the answer the others are waiting for. When the last waiter leaves, the call is
cancelled (nobody is left to pay for). Errors reach every waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Mark a failure as seen even when every waiter left before it happened.
    if not task.cancelled():
        task.exception()


class Flights(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def __repr__(self) -> str:
        return f"Flights(in_flight={len(self._flights)})"

    def __len__(self) -> int:
        return len(self._flights)

    async def join(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """The call's result, and whether it was another request's call (shared)."""
        flight = self._flights.get(key)
        shared = flight is not None
        if flight is None:
            flight = _Flight(asyncio.create_task(start()))
            self._flights[key] = flight
            flight.task.add_done_callback(_retrieve)
            flight.task.add_done_callback(self._lander(key, flight))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task), shared
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                flight.task.cancel()  # the last waiter left: nobody needs the answer
            raise
        finally:
            flight.waiters -= 1

    def _lander(self, key: str, flight: _Flight[T]) -> Callable[[asyncio.Task[T]], None]:
        def land(_: asyncio.Task[T]) -> None:
            self._land(key, flight)

        return land

    def _land(self, key: str, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
