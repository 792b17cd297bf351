"""One upstream stream fanned out to every client that asked for the same answer.

Streaming coalescing: identical cacheable streamed requests in flight share one upstream
stream. The first request starts a *pump*, a task that belongs to no client: it opens the
stream (with every retry and failover of the resilience executor), then appends each piece
of client bytes to a ``Broadcast``. Every client, the first included, is a reader of the
broadcast: it gets everything from the start, then each new piece as it arrives, so a
client that joins late still receives a whole, valid stream.

The pump outlives any one client: the first client leaving does not cut the others. When
the last reader leaves, the pump is cancelled (nobody is left to pay for) and the flight is
forgotten, so the next identical request starts afresh. A failure before the first content
reaches every reader as an error response; after it, as the SSE error event the pump
appended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..errors import GatewayError
from ..pricing import TokenUsage


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A failure nobody waited for any more is still marked as seen.
    if not future.cancelled():
        future.exception()


class Broadcast:
    """An append-only list of byte pieces with readers that wait for more."""

    __slots__ = ("_changed", "done", "pieces")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.done = False
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Broadcast({len(self.pieces)} pieces, done={self.done})"

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def append(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self._wake()

    def close(self) -> None:
        self.done = True
        self._wake()

    async def read(self) -> AsyncIterator[bytes]:
        """Every piece from the first, then new ones as they come, until ``close``."""
        position = 0
        while True:
            pieces = self.pieces
            while position < len(pieces):
                yield pieces[position]
                position += 1
            if self.done:
                return
            await self._changed.wait()


class StreamFlight:
    """One in-flight upstream stream shared by its readers."""

    __slots__ = (
        "broadcast",
        "cost",
        "failure",
        "key",
        "leader_left",
        "opened",
        "pump",
        "readers",
        "usage",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.broadcast = Broadcast()
        # Resolved when the stream produced its first content (with the provider's name),
        # or failed before it (with the error every reader answers with).
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.opened.add_done_callback(_retrieve)
        self.pump: asyncio.Task[None] | None = None
        self.readers = 0
        # Known once the pump is done: what the stream used and cost, and how it failed.
        self.usage: TokenUsage | None = None
        self.cost: float | None = None
        self.failure: GatewayError | None = None
        self.leader_left = False  # the first client left before the end: nobody paid yet

    def __repr__(self) -> str:
        return f"StreamFlight(readers={self.readers}, {self.broadcast!r})"

    def join(self) -> None:
        self.readers += 1

    def leave(self) -> None:
        """A reader is done; the last one out cancels the pump if it still runs."""
        self.readers -= 1
        if self.readers <= 0 and self.pump is not None and not self.pump.done():
            self.pump.cancel()
