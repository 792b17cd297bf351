"""The response cache as the pipeline sees it: L1 in this process, then L2 in Redis.

An entry is the provider's name, when it was stored (wall clock, so ``max-age`` holds
across replicas), the answer's token usage and what it cost, and the complete OpenAI
answer body, as bytes: ``provider \\n stored_at \\n usage \\n cost \\n body``. A plain hit
is served by splicing the ``metadata`` object into the stored bytes and accounted from the
header, so the body is never parsed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ..pricing import TokenUsage
from .controls import CacheControls
from .memory import MemoryCache

# Answers a cache may keep: a model that stopped by itself or to call tools. A length cut
# or a content filter is a partial or refused answer and is never stored.
STORABLE_FINISH = frozenset({"stop", "tool_calls", "function_call", "end_turn"})


class L2(Protocol):
    @property
    def healthy(self) -> bool: ...

    async def get(self, key: str) -> bytes | None: ...

    def put_later(self, key: str, value: bytes, ttl_s: float) -> None: ...


class CachedAnswer:
    __slots__ = ("body", "cost", "provider", "status", "stored_at", "tier", "usage")

    def __init__(
        self,
        provider: str,
        stored_at: float,
        body: bytes,
        tier: str,
        usage: TokenUsage | None = None,
        cost: float | None = None,
    ) -> None:
        self.provider = provider
        self.stored_at = stored_at
        self.body = body
        self.tier = tier
        self.status = f"hit-{tier}"  # what x-llm-edge-cache says when this answers
        self.usage = usage
        self.cost = cost

    def __repr__(self) -> str:
        return f"CachedAnswer({self.tier}, {self.provider!r}, {len(self.body)} bytes)"


def _usage_field(usage: TokenUsage | None) -> bytes:
    if usage is None:
        return b""
    return b"%d,%d,%d,%d,%d" % (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


def encode_entry(
    provider: str,
    stored_at: float,
    body: bytes,
    usage: TokenUsage | None = None,
    cost: float | None = None,
) -> bytes:
    cost_field = b"" if cost is None else repr(cost).encode()
    return b"%s\n%r\n%s\n%s\n%s" % (
        provider.encode(),
        stored_at,
        _usage_field(usage),
        cost_field,
        body,
    )


def decode_entry(value: bytes, tier: str) -> CachedAnswer | None:
    """None for anything malformed (or written by another format): a miss, not an error."""
    parts = value.split(b"\n", 4)
    if len(parts) != 5:
        return None
    provider, stored_at, usage_field, cost_field, body = parts
    try:
        stamp = float(stored_at)
        counts = [int(n) for n in usage_field.split(b",")] if usage_field else None
        cost = float(cost_field) if cost_field else None
    except ValueError:
        return None
    usage = TokenUsage(*counts) if counts is not None and len(counts) == 5 else None
    return CachedAnswer(provider.decode(errors="replace"), stamp, body, tier, usage, cost)


class ResponseCache:
    def __init__(
        self,
        l1: MemoryCache,
        l2: L2 | None,
        ttl_s: float,
        *,
        on_lookup: Callable[[str, bool], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.l1 = l1
        self.l2 = l2
        self.ttl_s = ttl_s
        self._on_lookup = on_lookup or (lambda tier, hit: None)
        self._now = wall_clock

    def __repr__(self) -> str:
        return f"ResponseCache({self.l1!r}, l2={self.l2 is not None}, ttl_s={self.ttl_s:g})"

    def _fresh(self, answer: CachedAnswer | None, controls: CacheControls) -> bool:
        # Ages come from the entry's own wall-clock stamp, not from when this process's L1
        # got it, so max-age means the same on every replica.
        if answer is None:
            return False
        return controls.max_age_s is None or self._now() - answer.stored_at <= controls.max_age_s

    async def get(self, key: str, controls: CacheControls) -> CachedAnswer | None:
        """A fresh answer from L1, else from L2 (which then fills L1)."""
        answer = self.get_local(key, controls)
        if answer is None and self.l2 is not None:
            answer = await self.get_shared(key, controls)
        return answer

    def get_local(self, key: str, controls: CacheControls) -> CachedAnswer | None:
        """A fresh answer from L1: synchronous, so a hit awaits nothing."""
        entry = self.l1.get(key)
        answer: CachedAnswer | None = None
        if entry is not None:
            # Parsed once per entry, not per hit (answers are never mutated).
            decoded = entry.decoded
            if isinstance(decoded, CachedAnswer):
                answer = decoded
            else:
                answer = entry.decoded = decode_entry(entry.value, "l1")
        hit = self._fresh(answer, controls)
        self._on_lookup("l1", hit)
        return answer if hit else None

    async def get_shared(self, key: str, controls: CacheControls) -> CachedAnswer | None:
        """A fresh answer from L2 (None without one), put in L1 for the next request."""
        if self.l2 is None:
            return None
        # Called even while Redis is down: the L2 answers at once then, and uses the call
        # to probe for recovery now and then.
        value = await self.l2.get(key)
        answer = decode_entry(value, "l2") if value is not None else None
        hit = self._fresh(answer, controls)
        self._on_lookup("l2", hit)
        if not hit or answer is None or value is None:
            return None
        remaining = self.ttl_s - (self._now() - answer.stored_at)
        if remaining > 0:
            self.l1.put(key, value, remaining)  # an L2 hit fills L1
        return answer

    def put(
        self,
        key: str,
        provider: str,
        body: bytes,
        controls: CacheControls,
        usage: TokenUsage | None = None,
        cost: float | None = None,
    ) -> None:
        if not controls.store:
            return
        ttl = controls.ttl_s if controls.ttl_s is not None else self.ttl_s
        if ttl <= 0:
            return
        value = encode_entry(provider, self._now(), body, usage, cost)
        self.l1.put(key, value, ttl)
        if self.l2 is not None:
            self.l2.put_later(key, value, ttl)
