"""``llm_edge_agent.strategies``: how a route orders its targets for one request.

Failover / round robin / weighted ordering is covered through the router in
``test_routing.py``; here: the newer strategies, and that every strategy puts
unavailable targets last.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import pytest

from llm_edge_agent.resilience.latency import LatencyStats
from llm_edge_agent.routing import Target
from llm_edge_agent.strategies import (
    NO_SIZE,
    Cost,
    Failover,
    Latency,
    LeastBusy,
    RequestSize,
    RoundRobin,
    SmoothWeighted,
    Strategy,
    make_strategy,
)


class FakeView:
    """A LoadView from plain dicts, by provider name."""

    def __init__(
        self,
        *,
        down: Iterable[str] = (),
        in_flight: dict[str, int] | None = None,
        scores: dict[str, float | None] | None = None,
        costs: dict[tuple[str, str], float | None] | None = None,
    ) -> None:
        self.down = set(down)
        self.loads = in_flight or {}
        self.scores = scores or {}
        self.costs = costs or {}
        self.sizes: list[RequestSize] = []

    def available(self, provider: str) -> bool:
        return provider not in self.down

    def in_flight(self, provider: str) -> int:
        return self.loads.get(provider, 0)

    def latency_score(self, provider: str) -> float | None:
        return self.scores.get(provider)

    def cost(self, provider: str, model: str, size: RequestSize) -> float | None:
        self.sizes.append(size)
        return self.costs.get((provider, model))


class Draws:
    """A ``rand`` returning the given values in turn (fails when exhausted)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        assert self.values, "unexpected random draw"
        return self.values.pop(0)


def targets(*providers: str) -> list[Target]:
    return [Target(p, f"m-{p}") for p in providers]


def names(ordered: Sequence[Target]) -> list[str]:
    return [t.provider for t in ordered]


# --------------------------------------------------------------------------- least_busy


def test_least_busy_orders_by_in_flight() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(in_flight={"a": 5, "b": 0, "c": 2})
    assert names(LeastBusy().order(ts, view, NO_SIZE)) == ["b", "c", "a"]


def test_least_busy_ties_rotate_so_equal_loads_share() -> None:
    ts = targets("a", "b", "c")
    strategy = LeastBusy()
    view = FakeView()
    firsts = [strategy.order(ts, view, NO_SIZE)[0].provider for _ in range(9)]
    assert Counter(firsts) == {"a": 3, "b": 3, "c": 3}


def test_least_busy_rotates_only_among_the_tied() -> None:
    ts = targets("a", "b", "c")
    strategy = LeastBusy()
    view = FakeView(in_flight={"a": 3, "b": 1, "c": 1})
    orders = [names(strategy.order(ts, view, NO_SIZE)) for _ in range(4)]
    assert all(o[2] == "a" for o in orders)
    assert {o[0] for o in orders} == {"b", "c"}


# --------------------------------------------------------------------------- latency


def test_latency_p2c_puts_the_lower_score_of_the_pair_first() -> None:
    ts = targets("a", "b", "c", "d")
    view = FakeView(scores={"a": 0.01, "b": 0.05, "c": 0.02, "d": 0.001})
    # no explore (0.9 >= 0.05); pair: i = int(0.3 * 4) = 1 ("b"), j = int(0.5 * 3) = 1,
    # shifted past i -> 2 ("c"). c (0.02) beats b (0.05); the rest follow by score.
    strategy = Latency(Draws(0.9, 0.3, 0.5))
    assert names(strategy.order(ts, view, NO_SIZE)) == ["c", "d", "a", "b"]


def test_latency_p2c_pair_is_always_distinct() -> None:
    ts = targets("a", "b")
    view = FakeView(scores={"a": 0.05, "b": 0.01})
    # both draws land on index 0: the second one is shifted to the other target
    strategy = Latency(Draws(0.99, 0.0, 0.0))
    assert names(strategy.order(ts, view, NO_SIZE)) == ["b", "a"]


def test_latency_with_two_targets_the_faster_always_leads_without_exploring() -> None:
    ts = targets("slow", "fast")
    view = FakeView(scores={"slow": 0.05, "fast": 0.005})
    strategy = Latency(random.Random(7).random, explore=0.0)
    assert {strategy.order(ts, view, NO_SIZE)[0].provider for _ in range(200)} == {"fast"}


def test_latency_explores_a_uniformly_random_target() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(scores={"a": 0.001, "b": 0.5, "c": 0.1})
    # explore (0.01 < 0.05), index int(0.5 * 3) = 1 -> "b" first, then the rest by score
    strategy = Latency(Draws(0.01, 0.5))
    assert names(strategy.order(ts, view, NO_SIZE)) == ["b", "a", "c"]


def test_latency_exploration_rate() -> None:
    ts = targets("slow", "fast")
    view = FakeView(scores={"slow": 0.05, "fast": 0.005})
    strategy = Latency(random.Random(3).random, explore=0.2)
    firsts = Counter(strategy.order(ts, view, NO_SIZE)[0].provider for _ in range(5000))
    # explored half of 20% of the time
    assert 0.07 < firsts["slow"] / 5000 < 0.13


def test_latency_unknown_score_is_explored_first() -> None:
    ts = targets("known", "new")
    view = FakeView(scores={"known": 0.001})
    strategy = Latency(Draws(0.9, 0.0, 0.0))
    assert names(strategy.order(ts, view, NO_SIZE)) == ["new", "known"]


def test_latency_unknown_score_with_a_request_out_ranks_last() -> None:
    ts = targets("new", "known", "other")
    view = FakeView(scores={"known": 0.5, "other": 0.2}, in_flight={"new": 1})
    strategy = Latency(Draws(0.9, 0.0, 0.0))  # pair: new, known -> known wins
    assert names(strategy.order(ts, view, NO_SIZE)) == ["known", "other", "new"]


def test_latency_single_available_target_draws_nothing() -> None:
    ts = targets("a", "b")
    strategy = Latency(Draws())
    assert names(strategy.order(ts, FakeView(down={"a"}), NO_SIZE)) == ["b", "a"]
    assert names(strategy.order(ts[:1], FakeView(), NO_SIZE)) == ["a"]


def test_latency_rejects_a_bad_explore() -> None:
    with pytest.raises(ValueError, match="explore"):
        Latency(explore=1.5)


class SimView:
    """A LoadView over real ``LatencyStats`` with simulated in-flight counts."""

    def __init__(self, stats: dict[str, LatencyStats]) -> None:
        self.stats = stats
        self.loads = dict.fromkeys(stats, 0)

    def available(self, provider: str) -> bool:
        return True

    def in_flight(self, provider: str) -> int:
        return self.loads[provider]

    def latency_score(self, provider: str) -> float | None:
        return self.stats[provider].score(self.loads[provider])

    def cost(self, provider: str, model: str, size: RequestSize) -> float | None:
        return None


class Simulation:
    """Requests at a fixed rate through the latency strategy; each completes after its
    target's current latency, jittered by +-20% (TTFT = half of it), feeding real
    ``LatencyStats``. Time is simulated: nothing sleeps."""

    def __init__(self, seed: int, rate: float = 100.0) -> None:
        self.now = 0.0
        self.interval = 1.0 / rate
        clock: Callable[[], float] = lambda: self.now  # noqa: E731
        self.stats = {p: LatencyStats(clock=clock) for p in ("a", "b")}
        self.view = SimView(self.stats)
        self.latency = {"a": 0.005, "b": 0.050}
        self.targets = targets("a", "b")
        self.strategy = make_strategy("latency", self.targets, rand=random.Random(seed).random)
        self.jitter = random.Random(seed + 1000)
        self.pending: list[tuple[float, int, str, float]] = []
        self.seq = itertools.count()

    def run(self, seconds: float) -> Counter[str]:
        chosen: Counter[str] = Counter()
        end = self.now + seconds
        while self.now < end:
            self._complete_until(self.now)
            provider = self.strategy.order(self.targets, self.view, NO_SIZE)[0].provider
            chosen[provider] += 1
            took = self.latency[provider] * self.jitter.uniform(0.8, 1.2)
            self.view.loads[provider] += 1
            heapq.heappush(self.pending, (self.now + took, next(self.seq), provider, took))
            self.now += self.interval
        return chosen

    def _complete_until(self, t: float) -> None:
        resume = self.now
        while self.pending and self.pending[0][0] <= t:
            done_at, _, provider, took = heapq.heappop(self.pending)
            self.now = done_at
            self.view.loads[provider] -= 1
            self.stats[provider].observe(took / 2, took)
        self.now = resume


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_latency_simulation_traffic_follows_the_fast_target_and_shifts_on_swap(
    seed: int,
) -> None:
    sim = Simulation(seed)
    sim.run(2.0)  # warm up
    steady = sim.run(3.0)
    assert steady["a"] / steady.total() > 0.85

    sim.latency = {"a": 0.050, "b": 0.005}
    sim.run(2.0)  # within a few seconds of simulated time...
    shifted = sim.run(3.0)
    assert shifted["b"] / shifted.total() > 0.85


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_latency_simulation_a_recovered_target_wins_back_its_share(seed: int) -> None:
    sim = Simulation(seed)
    sim.run(5.0)
    sim.latency = {"a": 0.005, "b": 0.005}  # b recovers; a stays as fast as before
    # b is only re-sampled by exploration; its excess over the new latency shrinks by e
    # every tau (3 s) of simulated time, so the 10x spell is forgotten in ~tau*ln(45).
    sim.run(14.0)
    after = sim.run(6.0)
    assert after["b"] / after.total() > 0.25


# --------------------------------------------------------------------------- cost


def test_cost_cheapest_first_unpriced_after_priced_in_configured_order() -> None:
    ts = targets("a", "b", "c", "d", "e")
    view = FakeView(
        costs={("b", "m-b"): 0.3, ("c", "m-c"): 0.1, ("e", "m-e"): 0.2},
    )
    assert names(Cost().order(ts, view, NO_SIZE)) == ["c", "e", "b", "a", "d"]


def test_cost_ties_keep_configured_order_and_the_size_is_passed_through() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(costs={("a", "m-a"): 0.2, ("b", "m-b"): 0.1, ("c", "m-c"): 0.1})
    size = RequestSize(100, 50)
    assert names(Cost().order(ts, view, size)) == ["b", "c", "a"]
    assert view.sizes and all(s is size for s in view.sizes)


def test_cost_unavailable_cheapest_goes_last() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(down={"c"}, costs={("a", "m-a"): 0.3, ("b", "m-b"): None, ("c", "m-c"): 0.01})
    assert names(Cost().order(ts, view, NO_SIZE)) == ["a", "b", "c"]


# --------------------------------------------------------------------------- all strategies


def all_strategies(ts: Sequence[Target]) -> list[Strategy]:
    rand = random.Random(11).random
    return [
        make_strategy(name, ts, rand=rand)
        for name in ("failover", "round_robin", "weighted", "least_busy", "latency", "cost")
    ]


def test_make_strategy_maps_every_name() -> None:
    ts = targets("a", "b")
    kinds = [type(s) for s in all_strategies(ts)]
    assert kinds == [Failover, RoundRobin, SmoothWeighted, LeastBusy, Latency, Cost]
    assert isinstance(make_strategy("nope", ts), Failover)


def test_every_strategy_puts_unavailable_targets_last() -> None:
    ts = targets("a", "b", "c", "d")
    # the unavailable ones look best on every measure
    view = FakeView(
        down={"a", "c"},
        in_flight={"b": 9, "d": 9},
        scores={"a": 0.0001, "b": 1.0, "c": 0.0001, "d": 2.0},
        costs={("a", "m-a"): 0.0, ("b", "m-b"): 5.0, ("c", "m-c"): 0.0, ("d", "m-d"): 6.0},
    )
    for strategy in all_strategies(ts):
        for _ in range(20):
            ordered = names(strategy.order(ts, view, NO_SIZE))
            assert sorted(ordered) == ["a", "b", "c", "d"], strategy
            assert set(ordered[:2]) == {"b", "d"}, strategy
            assert ordered[2:] == ["a", "c"], strategy  # configured order


def test_every_strategy_skips_down_targets_with_one_up() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(down={"a", "b"})
    for strategy in all_strategies(ts):
        assert names(strategy.order(ts, view, NO_SIZE)) == ["c", "a", "b"], strategy


def test_every_strategy_returns_every_target_when_none_is_available() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(down={"a", "b", "c"})
    for strategy in all_strategies(ts):
        assert sorted(names(strategy.order(ts, view, NO_SIZE))) == ["a", "b", "c"], strategy


def test_round_robin_and_weighted_rotate_only_over_available_targets() -> None:
    ts = targets("a", "b", "c")
    view = FakeView(down={"b"})
    for strategy in (RoundRobin(), SmoothWeighted(ts)):
        firsts = Counter(strategy.order(ts, view, NO_SIZE)[0].provider for _ in range(10))
        assert firsts == {"a": 5, "c": 5}, strategy
