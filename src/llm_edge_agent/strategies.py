"""Balancing strategies: how a route orders its targets for one request.

A strategy is a plain object with one ``order`` method. It sees the route's targets, a
``LoadView`` (what is known about each target's provider right now) and the request's
size, and returns every target, best first. Targets the view says are unavailable (open
circuit, cooling down after a 429, bulkhead full, failing health checks) go last, in
configured order, so no strategy ever prefers them; the executor skips them anyway.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .routing import Target


class RequestSize:
    """What a strategy may know about the request: its estimated prompt tokens and the
    output it may produce (``max_tokens`` or a default)."""

    __slots__ = ("output_tokens", "prompt_tokens")

    def __init__(self, prompt_tokens: int = 0, output_tokens: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens

    def __repr__(self) -> str:
        return f"RequestSize(prompt={self.prompt_tokens}, output={self.output_tokens})"


NO_SIZE = RequestSize()


class LoadView(Protocol):
    """Live facts about providers, by provider name."""

    def available(self, provider: str) -> bool:
        """False when the circuit is open, the provider cools down, or its bulkhead is full."""
        ...

    def in_flight(self, provider: str) -> int: ...

    def latency_score(self, provider: str) -> float | None:
        """Peak-EWMA latency weighted by load (lower is better); None before any sample."""
        ...

    def cost(self, provider: str, model: str, size: RequestSize) -> float | None:
        """The request's estimated cost on this target (USD, weighted by the provider's
        ``cost_weight``); None when the model has no price."""
        ...


class StaticView:
    """A view with nothing known: every target available and idle (tests, ``/v1/models``)."""

    def available(self, provider: str) -> bool:
        return True

    def in_flight(self, provider: str) -> int:
        return 0

    def latency_score(self, provider: str) -> float | None:
        return None

    def cost(self, provider: str, model: str, size: RequestSize) -> float | None:
        return None

    def __repr__(self) -> str:
        return "StaticView()"


class Strategy(Protocol):
    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]: ...


def split_available(targets: Sequence[Target], view: LoadView) -> tuple[list[Target], list[Target]]:
    """(available, unavailable), each in configured order."""
    up: list[Target] = []
    down: list[Target] = []
    for target in targets:
        (up if view.available(target.provider) else down).append(target)
    return up, down


class Failover:
    """Priority order, as configured (unavailable targets last)."""

    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]:
        if len(targets) < 2:
            return targets
        up, down = split_available(targets, view)
        return targets if not down else [*up, *down]

    def __repr__(self) -> str:
        return "Failover()"


class RoundRobin:
    """Each request starts one further along the available targets."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]:
        if len(targets) < 2:
            return targets
        up, down = split_available(targets, view)
        if not up:
            return targets
        start = next(self._counter) % len(up)
        return [*up[start:], *up[:start], *down]

    def __repr__(self) -> str:
        return "RoundRobin()"


class SmoothWeighted:
    """Nginx's smooth weighted round robin over the available targets: an even
    interleaving that honours weights."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self._current = {id(t): 0.0 for t in targets}

    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]:
        if len(targets) < 2:
            return targets
        up, down = split_available(targets, view)
        if not up:
            return targets
        current = self._current
        total = 0.0
        best: Target | None = None
        for target in up:
            key = id(target)
            current[key] = current.get(key, 0.0) + target.weight
            total += target.weight
            if best is None or current[key] > current[id(best)]:
                best = target
        assert best is not None
        current[id(best)] -= total
        return [best, *(t for t in up if t is not best), *down]

    def __repr__(self) -> str:
        return f"SmoothWeighted({list(self._current.values())})"


def make_strategy(name: str, targets: Sequence[Target]) -> Strategy:
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted":
        return SmoothWeighted(targets)
    # TODO(issue 6): least_busy, latency, cost.
    return Failover()
