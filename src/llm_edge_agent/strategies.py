"""Balancing strategies: how a route orders its targets for one request.

A strategy is a plain object with one ``order`` method. It sees the route's targets, a
``LoadView`` (what is known about each target's provider right now) and the request's
size, and returns every target, best first. Targets the view says are unavailable (open
circuit, cooling down after a 429, bulkhead full, failing health checks) go last, in
configured order, so no strategy ever prefers them; the executor skips them anyway.

The strategies, by ``[[routes]] strategy`` name:

* ``failover``: configured priority order.
* ``round_robin``: each request starts one further along the available targets.
* ``weighted``: nginx's smooth weighted round robin (honours ``weight``).
* ``least_busy``: fewest in-flight requests first; equal loads take turns (a
  round-robin counter rotates the list before a stable sort), so idle targets share
  traffic instead of the first configured one taking it all.
* ``latency``: peak EWMA with the power of two choices (Finagle, linkerd): two distinct
  available targets drawn at random, the lower ``latency_score`` first, the others by
  score. A target with no sample yet scores 0, so it is tried at once, unless it has a
  request in flight already (then it ranks last until that one reports: Finagle's
  penalty, which stops a new, slow target from soaking up every request while its
  first answer is pending). Greedy choice starves a slow target of samples, so it could
  never be seen to recover; with probability ``explore`` (default 5%) a uniformly random
  available target goes first instead. A target that gets slow loses its traffic at
  once (the peak rule); one that recovers is re-sampled that way and, with the default
  ``LatencyStats`` tau of 3 s, wins its share back in about 10 s after a 10x slow spell.
* ``cost``: cheapest estimated cost first (the view applies ``cost_weight``), unpriced
  targets after the priced ones, ties and unpriced in configured order.

Randomness is injected (``rand``: a ``Callable[[], float]`` in [0, 1)), so tests can fix it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .routing import Target


class RequestSize:
    """What a strategy may know about the request: its estimated prompt tokens and the
    output it may produce (``max_tokens`` or a default). With ``measure``, both are
    computed on first use only (most strategies never ask)."""

    __slots__ = ("_measure", "_output", "_prompt")

    def __init__(
        self,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
        measure: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._prompt = prompt_tokens
        self._output = output_tokens
        self._measure = measure

    def _resolve(self) -> None:
        measure, self._measure = self._measure, None
        if measure is not None:
            self._prompt, self._output = measure()

    @property
    def prompt_tokens(self) -> int:
        if self._measure is not None:
            self._resolve()
        return self._prompt

    @property
    def output_tokens(self) -> int:
        if self._measure is not None:
            self._resolve()
        return self._output

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


def _rotated(targets: list[Target], counter: Iterator[int]) -> list[Target]:
    """``targets`` starting one further along than the previous call with ``counter``."""
    start = next(counter) % len(targets)
    return [*targets[start:], *targets[:start]]


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
        return [*_rotated(up, self._counter), *down]

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


class LeastBusy:
    """Fewest in-flight requests first; ties rotate so equal loads share traffic."""

    __slots__ = ("_counter",)

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
        rotated = _rotated(up, self._counter)
        loads = {t.provider: view.in_flight(t.provider) for t in rotated}
        rotated.sort(key=lambda t: loads[t.provider])  # stable: the rotation breaks ties
        return [*rotated, *down]

    def __repr__(self) -> str:
        return "LeastBusy()"


DEFAULT_EXPLORE = 0.05


class Latency:
    """Peak-EWMA latency with the power of two choices, plus random exploration.

    Random draws per request (two or more available targets): one to decide whether to
    explore; then one (the explored target's index) or two (the p2c pair's indexes).
    """

    __slots__ = ("_rand", "explore")

    def __init__(
        self, rand: Callable[[], float] = random.random, explore: float = DEFAULT_EXPLORE
    ) -> None:
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore must be within [0, 1], got {explore!r}")
        self._rand = rand
        self.explore = explore

    def _index(self, n: int) -> int:
        return min(int(self._rand() * n), n - 1)

    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]:
        if len(targets) < 2:
            return targets
        up, down = split_available(targets, view)
        if len(up) < 2:
            return targets if not down else [*up, *down]
        scores: dict[str, float] = {}
        for target in up:
            provider = target.provider
            if provider not in scores:
                scores[provider] = _latency_rank(view, provider)
        n = len(up)
        if self._rand() < self.explore:
            first = up[self._index(n)]
        else:
            i = self._index(n)
            j = self._index(n - 1)
            if j >= i:
                j += 1
            a, b = up[i], up[j]
            first = b if scores[b.provider] < scores[a.provider] else a
        rest = sorted((t for t in up if t is not first), key=lambda t: scores[t.provider])
        return [first, *rest, *down]

    def __repr__(self) -> str:
        return f"Latency(explore={self.explore})"


def _latency_rank(view: LoadView, provider: str) -> float:
    """The view's score; unknown is 0 (explore it) unless a request is already out."""
    score = view.latency_score(provider)
    if score is not None:
        return score
    return math.inf if view.in_flight(provider) > 0 else 0.0


class Cost:
    """Cheapest estimated cost first; unpriced after priced; ties in configured order."""

    __slots__ = ()

    def order(
        self, targets: Sequence[Target], view: LoadView, size: RequestSize
    ) -> Sequence[Target]:
        if len(targets) < 2:
            return targets
        up, down = split_available(targets, view)
        priced: list[tuple[float, Target]] = []
        unpriced: list[Target] = []
        for target in up:
            cost = view.cost(target.provider, target.model, size)
            if cost is None:
                unpriced.append(target)
            else:
                priced.append((cost, target))
        priced.sort(key=lambda pair: pair[0])  # stable: ties keep configured order
        return [*(t for _, t in priced), *unpriced, *down]

    def __repr__(self) -> str:
        return "Cost()"


def make_strategy(
    name: str, targets: Sequence[Target], *, rand: Callable[[], float] = random.random
) -> Strategy:
    """The strategy called ``name`` (unknown names fall back to ``failover``)."""
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted":
        return SmoothWeighted(targets)
    if name == "least_busy":
        return LeastBusy()
    if name == "latency":
        return Latency(rand)
    if name == "cost":
        return Cost()
    return Failover()
