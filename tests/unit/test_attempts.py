"""The resilience executor (``Attempts.run``) on a fake clock and a fake sleep.

Retries, Retry-After, 429 cooldowns, circuit breakers, bulkheads, the deadline and
failover are driven by a fake clock shared by the breakers and the deadline; the fake
sleep advances it and records every delay. Only hedging needs the real event loop: it
uses tiny real hedge delays and attempts that wait on events the test controls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llm_edge_agent.config import ProviderConfig, ResilienceConfig
from llm_edge_agent.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeoutError,
)
from llm_edge_agent.pipeline.attempts import (
    Attempts,
    Events,
    Journey,
    Skipped,
    Usable,
    pick_failure,
)
from llm_edge_agent.pipeline.context import RequestContext, request_ids
from llm_edge_agent.pipeline.runtime import ProviderRuntime, build_runtime
from llm_edge_agent.providers.base import Translator
from llm_edge_agent.resilience.backoff import Deadline, RetryPolicy
from llm_edge_agent.resilience.breaker import CircuitBreaker
from llm_edge_agent.routing import Target
from llm_edge_agent.upstream.base import Timeouts, Transport

from ..fake_clock import FakeClock

HEDGE_S = 0.01  # a real delay: hedging waits on the event loop

# ------------------------------------------------------------------ the harness


class FakeSleep:
    """Advances the fake clock instead of waiting, and records the delays."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


class Recorder(Events):
    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def retry(self, provider: str, error: GatewayError) -> None:
        self.log.append(("retry", provider, error.message))

    def failover(self, ctx: RequestContext, provider: str, error: GatewayError) -> None:
        self.log.append(("failover", provider, error.message))

    def hedge(self, ctx: RequestContext, outcome: str) -> None:
        self.log.append(("hedge", outcome))

    def breaker_failure(self, runtime: ProviderRuntime) -> None:
        self.log.append(("breaker_failure", runtime.name))


def unused_transport(name: str, timeouts: Timeouts) -> Transport:
    raise AssertionError("the mock provider needs no HTTP transport")


def make_runtime(
    name: str,
    clock: FakeClock,
    *,
    max_retries: int = 2,
    retry_after_max_s: float = 30.0,
    threshold: int = 5,
    open_s: float = 30.0,
    max_concurrency: int = 256,
    rand: float = 0.25,
) -> ProviderRuntime:
    """A real runtime for a mock provider, its breaker and retry policy on fakes."""
    resilience = ResilienceConfig(
        max_retries=max_retries,
        backoff_base_ms=100.0,
        backoff_max_ms=5_000.0,
        retry_after_max_s=retry_after_max_s,
        breaker_failure_threshold=threshold,
        breaker_open_s=open_s,
    )
    config = ProviderConfig(
        name=name,
        type="mock",
        timeout_s=120.0,
        connect_timeout_s=5.0,
        stream_idle_timeout_s=60.0,
        max_concurrency=max_concurrency,
        resilience=resilience,
    )
    runtime = build_runtime(config, unused_transport)
    runtime.breaker = CircuitBreaker.from_config(resilience, clock=clock)
    runtime.retry = RetryPolicy.from_config(resilience, rand=lambda: rand)
    return runtime


# What one attempt does: answer, raise, or run a coroutine (to block, or move the clock).
Outcome = str | BaseException | Callable[[], Awaitable[str]]


class World:
    """Providers with scripted attempts, one fake clock, one executor."""

    def __init__(self, *names: str, **runtime_options: float) -> None:
        self.clock = FakeClock()
        self.sleep = FakeSleep(self.clock)
        self.events = Recorder()
        self.discarded: list[str] = []
        self.executor: Attempts[str] = Attempts(
            self.discarded.append, self.events, sleep=self.sleep
        )
        options = runtime_options
        self.runtimes = {
            name: make_runtime(
                name,
                self.clock,
                max_retries=int(options.get("max_retries", 2)),
                retry_after_max_s=options.get("retry_after_max_s", 30.0),
                threshold=int(options.get("threshold", 5)),
                open_s=options.get("open_s", 30.0),
                max_concurrency=int(options.get("max_concurrency", 256)),
                rand=options.get("rand", 0.25),
            )
            for name in names
        }
        self.scripts: dict[str, list[Outcome]] = {name: [] for name in names}
        self.calls: list[str] = []
        self.timeouts: list[Timeouts] = []
        self.cancelled: list[str] = []
        self.unusable: dict[str, GatewayError] = {}

    def script(self, name: str, *outcomes: Outcome) -> None:
        self.scripts[name].extend(outcomes)

    def breaker(self, name: str) -> CircuitBreaker:
        return self.runtimes[name].breaker

    def usable(self, target: Target) -> Usable | GatewayError:
        if target.provider in self.unusable:
            return self.unusable[target.provider]
        runtime = self.runtimes[target.provider]
        assert runtime.translator is not None and runtime.transport is not None
        return runtime, runtime.translator, runtime.transport

    async def attempt(
        self,
        target: Target,
        runtime: ProviderRuntime,
        translator: Translator,
        transport: Transport,
        timeouts: Timeouts,
    ) -> str:
        assert runtime is self.runtimes[target.provider]
        self.calls.append(target.provider)
        self.timeouts.append(timeouts)
        script = self.scripts[target.provider]
        outcome: Outcome = script.pop(0) if script else target.provider
        if isinstance(outcome, str):
            return outcome
        if isinstance(outcome, BaseException):
            raise outcome
        try:
            return await outcome()
        except asyncio.CancelledError:
            self.cancelled.append(target.provider)
            raise

    async def run(
        self,
        *names: str,
        deadline_s: float = 300.0,
        hedge_s: float | None = None,
        journey: Journey | None = None,
        ctx: RequestContext | None = None,
    ) -> str:
        return await self.executor.run(
            ctx or context(),
            [Target(name, f"model-{name}") for name in names],
            Deadline(deadline_s, self.clock),
            journey if journey is not None else Journey(),
            self.attempt,
            self.usable,
            hedge_s,
        )


def context() -> RequestContext:
    return RequestContext({}, request_ids())


def fail(status: int = 500, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(
        f"upstream said {status}", upstream_status=status, retry_after_s=retry_after
    )


def client_error() -> UpstreamClientError:
    return UpstreamClientError("bad request", upstream_status=400, status=400)


def blocked(gate: asyncio.Event, started: asyncio.Event, answer: str) -> Outcome:
    """An attempt that signals it started, then waits for the gate."""

    async def run() -> str:
        started.set()
        await gate.wait()
        return answer

    return run


def blocked_then_raises(
    gate: asyncio.Event, started: asyncio.Event, error: BaseException
) -> Outcome:
    async def run() -> str:
        started.set()
        await gate.wait()
        raise error

    return run


def signals_then(started: asyncio.Event, outcome: str | BaseException) -> Outcome:
    async def run() -> str:
        started.set()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


def takes(world: World, seconds: float, outcome: str | BaseException) -> Outcome:
    """An attempt that uses ``seconds`` of the (fake) clock."""

    async def run() -> str:
        world.clock.advance(seconds)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


def half_open(world: World, name: str) -> None:
    breaker = world.breaker(name)
    breaker.force_open()
    world.clock.advance(30.0)
    assert breaker.state == "half_open"


async def settle() -> None:
    """Let every runnable task get as far as it can."""
    for _ in range(20):
        await asyncio.sleep(0)


# ------------------------------------------------------------------ success, retries, failover


@pytest.mark.asyncio
async def test_a_first_try_success_is_returned_with_nothing_else_done() -> None:
    world = World("a", "b")
    journey = Journey()
    ctx = context()
    assert await world.run("a", "b", journey=journey, ctx=ctx) == "a"
    assert world.calls == ["a"]
    assert journey.attempts == 1 and journey.retries == 0 and journey.failovers == []
    assert journey.fields() == {"attempts": 1}
    assert world.sleep.delays == []
    assert world.events.log == []
    assert ctx.provider == "a"
    # a deadline longer than the provider's timeout leaves its timeouts as they are
    assert world.timeouts == [world.runtimes["a"].timeouts]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("rand", "delays"),
    [(0.0, [0.05, 0.1]), (0.25, [0.0625, 0.125]), (0.5, [0.075, 0.15])],
)
async def test_retries_follow_the_backoff_then_fail_over(rand: float, delays: list[float]) -> None:
    world = World("a", "b", max_retries=2, rand=rand)
    world.script("a", fail(), fail(), fail())
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["a", "a", "a", "b"]
    # equal jitter: half the cap (100 ms, then 200 ms) plus rand() times the other half
    assert world.sleep.delays == pytest.approx(delays)
    assert journey.attempts == 4
    assert journey.retries == 2
    assert journey.failovers == ["a: upstream said 500"]
    assert journey.fields() == {
        "attempts": 4,
        "retries": 2,
        "failovers": ["a: upstream said 500"],
    }
    message = "upstream said 500"
    assert world.events.log == [
        ("breaker_failure", "a"),
        ("retry", "a", message),
        ("breaker_failure", "a"),
        ("retry", "a", message),
        ("breaker_failure", "a"),
        ("failover", "a", message),
    ]
    assert world.breaker("a").consecutive_failures == 3
    assert world.breaker("b").consecutive_failures == 0


@pytest.mark.asyncio
async def test_a_success_after_a_retry_resets_the_consecutive_failures() -> None:
    world = World("a", max_retries=2)
    world.script("a", fail(502), "second")
    assert await world.run("a") == "second"
    assert world.sleep.delays == pytest.approx([0.0625])
    assert world.breaker("a").consecutive_failures == 0


@pytest.mark.asyncio
async def test_when_every_target_fails_the_last_failure_is_raised() -> None:
    world = World("a", "b", max_retries=0)
    last = fail(503)
    world.script("a", fail(502))
    world.script("b", last)
    journey = Journey()
    with pytest.raises(UpstreamError) as raised:
        await world.run("a", "b", journey=journey)
    assert raised.value is last
    assert journey.failovers == ["a: upstream said 502"]  # the last target is no failover
    assert world.sleep.delays == []


# ------------------------------------------------------------------ Retry-After


@pytest.mark.asyncio
async def test_a_retry_after_within_the_cap_is_the_delay() -> None:
    world = World("a", retry_after_max_s=30.0)
    world.script("a", fail(503, retry_after=2.0), "a")
    journey = Journey()
    assert await world.run("a", journey=journey) == "a"
    assert world.sleep.delays == [2.0]
    assert journey.retries == 1


@pytest.mark.asyncio
async def test_a_retry_after_equal_to_the_cap_is_waited_for() -> None:
    world = World("a", retry_after_max_s=30.0)
    world.script("a", fail(503, retry_after=30.0), "a")
    assert await world.run("a") == "a"
    assert world.sleep.delays == [30.0]


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_cap_fails_over_without_waiting() -> None:
    world = World("a", "b", retry_after_max_s=30.0)
    world.script("a", fail(503, retry_after=31.0))
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["a", "b"]
    assert world.sleep.delays == []
    assert journey.retries == 0
    assert journey.failovers == ["a: upstream said 503"]


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_cap_on_the_last_target_is_raised() -> None:
    world = World("a", retry_after_max_s=30.0)
    error = fail(503, retry_after=31.0)
    world.script("a", error)
    with pytest.raises(UpstreamError) as raised:
        await world.run("a")
    assert raised.value is error
    assert world.sleep.delays == []


# ------------------------------------------------------------------ 429 and cooldowns


@pytest.mark.asyncio
async def test_a_429_on_a_non_last_target_cools_it_down_and_fails_over_at_once() -> None:
    world = World("a", "b")
    world.script("a", fail(429, retry_after=5.0))
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["a", "b"]
    assert world.sleep.delays == []
    breaker = world.breaker("a")
    assert breaker.cooling_down
    assert breaker.cooldown_remaining_s() == pytest.approx(5.0)
    # not a failure: the permit was released, the circuit did not count it
    assert breaker.consecutive_failures == 0
    assert breaker.state == "closed"
    assert ("breaker_failure", "a") not in world.events.log
    assert world.events.log == [("failover", "a", "upstream said 429")]
    assert journey.failovers == ["a: upstream said 429"]


@pytest.mark.asyncio
async def test_a_429_on_the_last_target_waits_its_retry_after_then_retries() -> None:
    world = World("a")
    world.script("a", fail(429, retry_after=5.0), "a")
    journey = Journey()
    assert await world.run("a", journey=journey) == "a"
    assert world.calls == ["a", "a"]
    assert world.sleep.delays == [5.0]
    assert journey.retries == 1
    assert not world.breaker("a").cooling_down
    assert world.breaker("a").consecutive_failures == 0


class EarlySleep(FakeSleep):
    """Wakes 1 ms early, as an event loop's cached clock can make a timer do; the first
    look at the clock after waking sees that early time, the next ones 1 ms past the end."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.woke = False

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if seconds > 0:
            self.clock.advance(seconds - 0.001)
            self.woke = True
        await asyncio.sleep(0)

    def read_clock(self) -> float:
        now = self.clock()
        if self.woke:
            self.woke = False
            self.clock.advance(0.002)
        return now


@pytest.mark.asyncio
async def test_a_cooldown_ending_between_the_refusal_and_the_next_look_still_retries() -> None:
    """Regression (a flaky functional test): woken a hair before the cooldown's end, the
    executor was refused a permit, then found the cooldown over by its next look at the
    clock, took the refusal for something else and gave up with the 429."""
    world = World("a")
    sleep = EarlySleep(world.clock)
    world.sleep = sleep
    world.executor = Attempts(world.discarded.append, world.events, sleep=sleep)
    world.breaker("a")._clock = sleep.read_clock
    world.script("a", fail(429, retry_after=5.0), "a")
    assert await world.run("a") == "a"
    assert world.calls == ["a", "a"]


@pytest.mark.asyncio
async def test_a_429_without_retry_after_cools_down_for_the_backoff() -> None:
    world = World("a", rand=0.25)
    world.script("a", fail(429), "a")
    assert await world.run("a") == "a"
    assert world.sleep.delays == pytest.approx([0.0625])
    assert not world.breaker("a").cooling_down


@pytest.mark.asyncio
async def test_a_429_asking_for_more_than_the_cap_cools_down_for_the_cap() -> None:
    world = World("a", retry_after_max_s=30.0)
    error = fail(429, retry_after=60.0)
    world.script("a", error)
    with pytest.raises(UpstreamError) as raised:
        await world.run("a")
    assert raised.value is error
    assert world.sleep.delays == []
    assert world.breaker("a").cooldown_remaining_s() == pytest.approx(30.0)


@pytest.mark.asyncio
async def test_a_target_cooling_down_is_skipped_while_another_is_left() -> None:
    world = World("a", "b")
    world.script("a", fail(429, retry_after=5.0))
    assert await world.run("a", "b") == "b"
    world.calls.clear()
    world.events.log.clear()
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["b"]  # a was not tried
    assert world.sleep.delays == []
    assert journey.attempts == 1
    skip = "provider 'a' is cooling down after a 429 (5.0 s left)"
    assert journey.failovers == [f"a: {skip}"]
    assert world.events.log == [("failover", "a", skip)]


@pytest.mark.asyncio
async def test_the_last_target_cooling_down_is_waited_for_when_the_wait_fits() -> None:
    world = World("a", "b")
    world.script("a", fail(429, retry_after=5.0))
    assert await world.run("a", "b") == "b"
    world.clock.advance(1.0)
    world.calls.clear()
    assert await world.run("a") == "a"
    assert world.calls == ["a"]
    assert world.sleep.delays == pytest.approx([4.0])


@pytest.mark.asyncio
async def test_the_last_target_cooling_down_beyond_the_deadline_is_a_503() -> None:
    world = World("a", "b")
    world.script("a", fail(429, retry_after=5.0))
    assert await world.run("a", "b") == "b"
    world.calls.clear()
    with pytest.raises(Skipped) as raised:
        await world.run("a", deadline_s=3.0)
    assert raised.value.status == 503
    assert raised.value.code == "provider_unavailable"
    assert world.calls == []
    assert world.sleep.delays == []


@pytest.mark.asyncio
async def test_an_open_circuit_that_is_also_cooling_down_is_skipped_without_waiting() -> None:
    """A cooldown wait on the last target is pointless when its circuit stays open after
    it: the target is skipped either way, so the 503 should come at once."""
    world = World("a", threshold=1, open_s=30.0)
    breaker = world.breaker("a")
    breaker.cool_down(5.0)  # a 429 answered to one request...
    breaker.force_open()  # ...and failures (or a health check) opened the circuit
    assert breaker.cooling_down and breaker.state == "open"
    with pytest.raises(Skipped):
        await world.run("a", deadline_s=60.0)
    assert world.calls == []
    assert world.sleep.delays == []  # observed: [5.0], a 5 s wait for a certain 503


# ------------------------------------------------------------------ client errors


@pytest.mark.asyncio
async def test_a_client_error_is_raised_at_once_without_retry_or_failover() -> None:
    world = World("a", "b", max_retries=2)
    error = client_error()
    world.script("a", fail(500), error)
    journey = Journey()
    with pytest.raises(UpstreamClientError) as raised:
        await world.run("a", "b", journey=journey)
    assert raised.value is error
    assert world.calls == ["a", "a"]  # one retry for the 500, none for the 400; b untried
    assert world.sleep.delays == pytest.approx([0.0625])
    assert journey.failovers == []
    # the 400 released its permit: the 500's failure is still the only one counted
    assert world.breaker("a").consecutive_failures == 1


@pytest.mark.asyncio
async def test_a_client_error_on_a_probe_frees_the_probe_slot() -> None:
    world = World("a")
    half_open(world, "a")
    world.script("a", client_error())
    with pytest.raises(UpstreamClientError):
        await world.run("a")
    breaker = world.breaker("a")
    assert not breaker.probing
    assert breaker.state == "half_open"
    permit = breaker.admit()
    assert permit is not None and permit.is_probe


# ------------------------------------------------------------------ circuit breakers


@pytest.mark.asyncio
async def test_the_circuit_opens_after_the_threshold_counted_across_runs() -> None:
    world = World("a", "b", threshold=2, max_retries=0)
    world.script("a", fail(), fail())
    assert await world.run("a", "b") == "b"
    assert world.breaker("a").state == "closed"
    assert world.breaker("a").consecutive_failures == 1
    assert await world.run("a", "b") == "b"
    assert world.breaker("a").state == "open"
    world.calls.clear()
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["b"]  # the open target is never called
    assert journey.attempts == 1
    assert journey.failovers == ["a: provider 'a' has an open circuit (open)"]


@pytest.mark.asyncio
async def test_every_target_skipped_is_a_503_provider_unavailable() -> None:
    world = World("a", "b", threshold=1)
    world.breaker("a").force_open()
    world.breaker("b").force_open()
    journey = Journey()
    with pytest.raises(Skipped) as raised:
        await world.run("a", "b", journey=journey)
    assert isinstance(raised.value, ServiceUnavailableError)
    assert raised.value.status == 503
    assert raised.value.code == "provider_unavailable"
    assert "'b'" in raised.value.message  # the last skip
    assert world.calls == []
    assert journey.attempts == 0


@pytest.mark.asyncio
async def test_retries_stop_when_the_circuit_opens() -> None:
    world = World("a", threshold=2, max_retries=3)
    second = fail(502)
    world.script("a", fail(500), second, "never")
    with pytest.raises(UpstreamError) as raised:
        await world.run("a")
    assert raised.value is second
    assert world.calls == ["a", "a"]
    assert world.sleep.delays == pytest.approx([0.0625])
    assert world.breaker("a").state == "open"


@pytest.mark.asyncio
async def test_a_successful_probe_closes_the_circuit() -> None:
    world = World("a", threshold=1)
    half_open(world, "a")
    assert await world.run("a") == "a"
    assert world.breaker("a").state == "closed"


@pytest.mark.asyncio
async def test_a_failed_probe_reopens_the_circuit_without_a_retry() -> None:
    world = World("a", "b", threshold=1, max_retries=2)
    half_open(world, "a")
    world.script("a", fail())
    assert await world.run("a", "b") == "b"
    assert world.calls == ["a", "b"]
    assert world.sleep.delays == []
    assert world.breaker("a").state == "open"


@pytest.mark.asyncio
async def test_half_open_lets_one_probe_through_across_concurrent_runs() -> None:
    world = World("a", "b", threshold=1)
    half_open(world, "a")
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started, "a"))
    runs = [asyncio.create_task(world.run("a", "b")) for _ in range(3)]
    await started.wait()
    await settle()
    assert sum(run.done() for run in runs) == 2  # the others failed over to b
    assert world.breaker("a").probing
    gate.set()
    results = await asyncio.gather(*runs)
    assert sorted(results) == ["a", "b", "b"]
    assert world.calls.count("a") == 1
    assert world.calls.count("b") == 2
    assert world.breaker("a").state == "closed"


@pytest.mark.asyncio
async def test_half_open_with_no_other_target_answers_503_to_all_but_the_probe() -> None:
    world = World("a", threshold=1)
    half_open(world, "a")
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started, "a"))
    runs = [asyncio.create_task(world.run("a")) for _ in range(3)]
    await started.wait()
    await settle()
    gate.set()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert results.count("a") == 1
    skips = [r for r in results if isinstance(r, Skipped)]
    assert len(skips) == 2
    assert all(s.code == "provider_unavailable" and s.status == 503 for s in skips)
    assert world.calls == ["a"]
    assert world.sleep.delays == []


# ------------------------------------------------------------------ bulkheads


@pytest.mark.asyncio
async def test_a_full_provider_is_skipped_without_a_call() -> None:
    world = World("a", "b", max_concurrency=1)
    world.runtimes["a"].in_flight = 1
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["b"]
    assert journey.failovers == ["a: provider 'a' is at its max_concurrency"]


@pytest.mark.asyncio
async def test_a_full_last_provider_is_a_503_provider_busy_and_frees_its_probe() -> None:
    world = World("a", max_concurrency=1)
    half_open(world, "a")
    world.runtimes["a"].in_flight = 1
    with pytest.raises(Skipped) as raised:
        await world.run("a")
    assert raised.value.code == "provider_busy"
    assert raised.value.status == 503
    assert world.calls == []
    assert not world.breaker("a").probing  # the permit taken before the check was released


# ------------------------------------------------------------------ the deadline


@pytest.mark.asyncio
async def test_retries_stop_when_the_next_delay_does_not_fit_the_deadline() -> None:
    world = World("a", max_retries=5)
    second = fail(503, retry_after=0.6)
    world.script("a", fail(503, retry_after=0.6), second, "never")
    with pytest.raises(UpstreamError) as raised:
        await world.run("a", deadline_s=1.0)
    assert raised.value is second
    assert world.calls == ["a", "a"]
    assert world.sleep.delays == [0.6]  # 0.6 more would leave 0.4 - 0.6 < 0


@pytest.mark.asyncio
async def test_a_delay_equal_to_the_time_left_does_not_fit() -> None:
    world = World("a", "b", max_retries=5)
    world.script("a", fail(503, retry_after=1.0))
    assert await world.run("a", "b", deadline_s=1.0) == "b"
    assert world.sleep.delays == []


@pytest.mark.asyncio
async def test_an_expired_deadline_is_a_504_deadline_exceeded() -> None:
    world = World("a", "b")
    deadline = Deadline(1.0, world.clock)
    world.clock.advance(2.0)
    with pytest.raises(UpstreamTimeoutError) as raised:
        await world.executor.run(
            context(),
            [Target("a", "m"), Target("b", "m")],
            deadline,
            Journey(),
            world.attempt,
            world.usable,
        )
    assert raised.value.status == 504
    assert raised.value.code == "deadline_exceeded"
    assert world.calls == []


@pytest.mark.asyncio
async def test_a_failure_that_used_up_the_deadline_ends_in_504() -> None:
    world = World("a", "b")
    world.script("a", takes(world, 5.0, fail(502)))
    with pytest.raises(UpstreamTimeoutError) as raised:
        await world.run("a", "b", deadline_s=5.0)
    assert raised.value.code == "deadline_exceeded"
    assert world.calls == ["a"]
    assert world.sleep.delays == []


@pytest.mark.asyncio
async def test_the_attempts_timeouts_are_shortened_to_what_is_left_of_the_deadline() -> None:
    world = World("a", rand=0.25)
    world.script("a", takes(world, 3.0, fail(500)), "a")
    assert await world.run("a", deadline_s=10.0) == "a"
    first, second = world.timeouts
    assert (first.total_s, first.connect_s, first.idle_s) == (10.0, 5.0, 10.0)
    left = 10.0 - 3.0 - 0.0625
    assert second.total_s == pytest.approx(left)
    assert second.connect_s == 5.0
    assert second.idle_s == pytest.approx(left)


# ------------------------------------------------------------------ what the client sees


def test_pick_failure_prefers_the_last_real_failure_over_skips() -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    real = fail(502)
    earlier = fail(500)
    skips: list[GatewayError] = [Skipped("skip 1"), Skipped("skip 2")]
    assert pick_failure([earlier, skips[0], real, skips[1]], deadline) is real
    assert pick_failure(skips, deadline) is skips[1]
    unusable = InvalidRequestError("does not fit")
    assert pick_failure([unusable, skips[0]], deadline) is unusable


def test_pick_failure_with_nothing_tried() -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    none = pick_failure([], deadline)
    assert type(none) is ServiceUnavailableError
    assert none.status == 503
    clock.advance(10.0)
    late = pick_failure([], deadline)
    assert isinstance(late, UpstreamTimeoutError)
    assert late.code == "deadline_exceeded" and late.status == 504


@pytest.mark.asyncio
async def test_no_usable_target_raises_the_reason() -> None:
    world = World("a", "b")
    world.unusable["a"] = InvalidRequestError("a cannot", code="unsupported_capability")
    reason = InvalidRequestError("b cannot", code="context_length_exceeded")
    world.unusable["b"] = reason
    journey = Journey()
    with pytest.raises(InvalidRequestError) as raised:
        await world.run("a", "b", journey=journey)
    assert raised.value is reason
    assert raised.value.status == 400
    assert world.calls == []
    assert journey.attempts == 0


@pytest.mark.asyncio
async def test_an_unusable_target_beats_a_skipped_one() -> None:
    world = World("a", "b", threshold=1)
    reason = InvalidRequestError("a cannot")
    world.unusable["a"] = reason
    world.breaker("b").force_open()
    with pytest.raises(InvalidRequestError) as raised:
        await world.run("a", "b")
    assert raised.value is reason


# ------------------------------------------------------------------ hedging


@pytest.mark.asyncio
async def test_a_hedge_answers_when_the_first_is_slow_and_the_slow_one_is_cancelled() -> None:
    world = World("a", "b")
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started, "a"))
    journey = Journey()
    assert await world.run("a", "b", hedge_s=HEDGE_S, journey=journey) == "b"
    assert world.calls == ["a", "b"]
    assert world.cancelled == ["a"]
    assert journey.hedged and journey.attempts == 2
    assert journey.fields()["hedged"] is True
    assert world.events.log == [("hedge", "started"), ("hedge", "won")]
    assert world.discarded == []
    assert world.breaker("a").consecutive_failures == 0  # a cancel is no failure


@pytest.mark.asyncio
async def test_a_cancelled_hedge_loser_frees_its_probe() -> None:
    world = World("a", "b", threshold=1)
    half_open(world, "a")
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started, "a"))
    assert await world.run("a", "b", hedge_s=HEDGE_S) == "b"
    assert world.cancelled == ["a"]
    assert not world.breaker("a").probing
    assert world.breaker("a").state == "half_open"


@pytest.mark.asyncio
async def test_when_both_answer_at_once_the_extra_answer_is_discarded() -> None:
    world = World("a", "b")
    gate = asyncio.Event()
    started_a, started_b = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started_a, "a"))
    world.script("b", blocked(gate, started_b, "b"))
    run = asyncio.create_task(world.run("a", "b", hedge_s=HEDGE_S))
    await started_b.wait()
    assert started_a.is_set()
    gate.set()
    answer = await run
    assert len(world.discarded) == 1
    assert sorted([answer, *world.discarded]) == ["a", "b"]
    assert world.cancelled == []
    assert world.events.log[0] == ("hedge", "started")
    assert world.events.log[1] == ("hedge", "won" if answer == "b" else "lost")


@pytest.mark.asyncio
async def test_no_hedge_when_the_first_answers_in_time() -> None:
    world = World("a", "b")
    journey = Journey()
    assert await world.run("a", "b", hedge_s=5.0, journey=journey) == "a"
    assert world.calls == ["a"]
    assert not journey.hedged
    assert "hedged" not in journey.fields()
    assert world.events.log == []


@pytest.mark.asyncio
async def test_the_first_sequence_still_wins_when_the_hedge_fails() -> None:
    world = World("a", "b", max_retries=0)
    gate, started_a, started_b = asyncio.Event(), asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started_a, "a"))
    world.script("b", signals_then(started_b, fail(502)))
    run = asyncio.create_task(world.run("a", "b", hedge_s=HEDGE_S))
    await started_b.wait()
    await settle()
    assert not run.done()  # an exhausted hedge does not end the request
    gate.set()
    assert await run == "a"
    assert world.events.log == [
        ("hedge", "started"),
        ("breaker_failure", "b"),
        ("hedge", "lost"),  # the hedge lost: the first sequence answered
    ]


@pytest.mark.asyncio
async def test_a_client_error_in_the_hedge_ends_the_request() -> None:
    world = World("a", "b")
    gate, started = asyncio.Event(), asyncio.Event()
    error = client_error()
    world.script("a", blocked(gate, started, "a"))
    world.script("b", error)
    with pytest.raises(UpstreamClientError) as raised:
        await world.run("a", "b", hedge_s=HEDGE_S)
    assert raised.value is error
    assert world.cancelled == ["a"]


@pytest.mark.asyncio
async def test_a_client_error_in_the_first_sequence_ends_the_request() -> None:
    world = World("a", "b")
    gate, started = asyncio.Event(), asyncio.Event()
    error = client_error()
    world.script("a", blocked_then_raises(gate, started, error))
    started_b = asyncio.Event()
    world.script("b", blocked(asyncio.Event(), started_b, "b"))
    run = asyncio.create_task(world.run("a", "b", hedge_s=HEDGE_S))
    await started_b.wait()
    gate.set()
    with pytest.raises(UpstreamClientError) as raised:
        await run
    assert raised.value is error
    assert world.cancelled == ["b"]


@pytest.mark.asyncio
async def test_a_hedged_request_with_every_target_failing_raises_a_real_failure() -> None:
    world = World("a", "b", max_retries=0)
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked_then_raises(gate, started, fail(500)))
    started_b = asyncio.Event()
    world.script("b", signals_then(started_b, fail(502)), fail(503))
    run = asyncio.create_task(world.run("a", "b", hedge_s=HEDGE_S))
    await started_b.wait()
    gate.set()
    with pytest.raises(UpstreamError) as raised:
        await run
    assert raised.value.upstream_status in (502, 503)  # b's, the last target's
    assert world.calls == ["a", "b", "b"]
    assert world.cancelled == []


# ------------------------------------------------------------------ cancellation


@pytest.mark.asyncio
async def test_cancelling_the_run_releases_the_probe() -> None:
    world = World("a")
    half_open(world, "a")
    gate, started = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started, "a"))
    run = asyncio.create_task(world.run("a"))
    await started.wait()
    breaker = world.breaker("a")
    assert breaker.probing
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert world.cancelled == ["a"]
    assert not breaker.probing
    assert breaker.state == "half_open"
    assert breaker.consecutive_failures == 0
    permit = breaker.admit()
    assert permit is not None and permit.is_probe


@pytest.mark.asyncio
async def test_cancelling_a_hedged_run_releases_both_probes() -> None:
    world = World("a", "b")
    half_open(world, "a")
    half_open(world, "b")
    gate = asyncio.Event()
    started_a, started_b = asyncio.Event(), asyncio.Event()
    world.script("a", blocked(gate, started_a, "a"))
    world.script("b", blocked(gate, started_b, "b"))
    run = asyncio.create_task(world.run("a", "b", hedge_s=HEDGE_S))
    await started_b.wait()
    assert world.breaker("a").probing and world.breaker("b").probing
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(world.cancelled) == ["a", "b"]
    assert not world.breaker("a").probing
    assert not world.breaker("b").probing
    assert world.discarded == []


@pytest.mark.asyncio
async def test_a_retry_is_counted_when_it_is_sent_not_when_it_is_decided() -> None:
    world = World("a", "b", max_retries=2)
    world.script("a", fail())
    fake_sleep = world.sleep

    async def sleep_while_others_open_the_circuit(delay: float) -> None:
        await fake_sleep(delay)
        world.breaker("a").force_open()  # concurrent requests' failures opened it meanwhile

    world.executor._sleep = sleep_while_others_open_the_circuit
    journey = Journey()
    assert await world.run("a", "b", journey=journey) == "b"
    assert world.calls == ["a", "b"]  # the retry of a was decided, never sent
    assert journey.retries == 0
    assert not any(entry[0] == "retry" for entry in world.events.log)
