"""The resilience executor: one request's attempts across its targets.

``Attempts.run`` takes the ordered targets and an ``attempt`` coroutine (one try on one
target: send and decode, or open a stream and hold it until its first content) and applies
the policies, so that clients notice as little of a provider's failure as possible:

* **Retries** of the same target on connect errors, timeouts, 408, 429, 5xx and garbage,
  after an exponential backoff with jitter or the provider's Retry-After (up to a cap),
  while the request's deadline leaves time; never after a client-caused 4xx.
* **Circuit breakers**: a target whose circuit is open is skipped; half-open lets one
  probe through. A 429 is not a failure: the provider cools down for its Retry-After and
  is skipped meanwhile (the request itself waits for it only when no other target is left).
* **Bulkheads**: a provider at its ``max_concurrency`` is skipped without waiting.
* **Failover** to the next target, then the route's fallbacks (already in the list).
* **Hedging**: when a route asks for it and the first sequence has no answer after the
  hedge delay, a second sequence starts on the other targets; the first answer wins and
  the other is cancelled (a finished loser is discarded and its cost still counted).

What the client sees when nothing answered: the last real upstream failure (502, 504, the
provider's 4xx), a 504 when the deadline passed, or a 503 when every target was skipped
(open, cooling down, full).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..errors import (
    GatewayError,
    ServiceUnavailableError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ..providers.base import Translator
from ..resilience.backoff import Deadline, RetryPolicy
from ..resilience.breaker import CircuitBreaker
from ..routing import Target
from ..upstream.base import Timeouts, Transport
from .context import RequestContext
from .runtime import ProviderRuntime

T = TypeVar("T")

Usable = tuple[ProviderRuntime, Translator, Transport]
Attempt = Callable[[Target, ProviderRuntime, Translator, Transport, Timeouts], Awaitable[T]]
UsableCheck = Callable[[Target], Usable | GatewayError]


class Skipped(ServiceUnavailableError):
    """A target passed over without being tried: open circuit, cooldown or full bulkhead."""


class Journey:
    """What happened across one request's attempts, for its log line."""

    __slots__ = ("attempts", "failovers", "hedged", "retries")

    def __init__(self) -> None:
        self.attempts = 0
        self.retries = 0
        self.failovers: list[str] = []  # "provider: reason", one per target given up on
        self.hedged = False

    def __repr__(self) -> str:
        return f"Journey(attempts={self.attempts}, failovers={self.failovers})"

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempts": self.attempts}
        if self.retries:
            out["retries"] = self.retries
        if self.failovers:
            out["failovers"] = self.failovers
        if self.hedged:
            out["hedged"] = True
        return out


class Events:
    """Where the executor reports retries, failovers and hedges (metrics and logs)."""

    def retry(self, provider: str, error: GatewayError) -> None:
        pass

    def failover(self, ctx: RequestContext, provider: str, error: GatewayError) -> None:
        pass

    def hedge(self, ctx: RequestContext, outcome: str) -> None:
        pass

    def breaker_failure(self, runtime: ProviderRuntime) -> None:
        pass


class Attempts(Generic[T]):
    """Runs requests' attempts; one instance per kind of result (an answer, a stream).

    ``discard`` releases a result nobody will use (a hedge's second answer)."""

    def __init__(
        self,
        discard: Callable[[T], None],
        events: Events,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._discard = discard
        self._events = events
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Attempts({self._events!r})"

    async def run(
        self,
        ctx: RequestContext,
        targets: list[Target],
        deadline: Deadline,
        journey: Journey,
        attempt: Attempt[T],
        usable: UsableCheck,
        hedge_s: float | None = None,
    ) -> T:
        if hedge_s is None or len(targets) < 2:
            failures: list[GatewayError] = []
            try:
                return await self._sequence(
                    ctx, targets, deadline, journey, attempt, usable, failures
                )
            except _Exhausted:
                raise pick_failure(failures, deadline) from None
        return await self._hedged(ctx, targets, deadline, journey, attempt, usable, hedge_s)

    async def _sequence(
        self,
        ctx: RequestContext,
        targets: list[Target],
        deadline: Deadline,
        journey: Journey,
        attempt: Attempt[T],
        usable: UsableCheck,
        failures: list[GatewayError],
    ) -> T:
        """Each target in turn, with retries; raises ``_Exhausted`` when none answered
        (the reasons are in ``failures``), or the client-caused error that ends it all."""
        events = self._events
        last = len(targets) - 1
        for index, target in enumerate(targets):
            found = usable(target)
            if isinstance(found, GatewayError):
                failures.append(found)
                continue
            runtime, translator, transport = found
            breaker = runtime.breaker
            policy = runtime.retry
            retry = 0
            while True:
                remaining = deadline.remaining_s()
                if remaining <= 0:
                    failures.append(deadline_error(deadline))
                    raise _Exhausted
                permit = breaker.admit()
                if permit is None and index == last and _only_cooling(breaker):
                    # The last candidate is cooling down after a 429: wait it out, as a
                    # retry of a 429 would, when the wait is allowed and fits.
                    wait = breaker.cooldown_remaining_s()
                    if wait <= policy.retry_after_max_s and policy.fits(wait, remaining):
                        await self._sleep(wait)
                        continue
                if permit is None:
                    failures.append(skipped(runtime))
                    break
                if runtime.full:
                    permit.release()
                    failures.append(busy(runtime))
                    break
                ctx.provider = runtime.name
                journey.attempts += 1
                if retry:  # counted when the retry is sent, not when it is decided
                    events.retry(runtime.name, failures[-1])
                    journey.retries += 1
                try:
                    result = await attempt(
                        target,
                        runtime,
                        translator,
                        transport,
                        runtime.timeouts.shortened(remaining),
                    )
                except UpstreamError as error:
                    if not error.retryable:
                        permit.release()  # the request's fault, not the provider's
                        raise
                    throttled = error.upstream_status == 429
                    if throttled:
                        permit.release()
                        breaker.cool_down(cooldown_s(policy, retry, error.retry_after_s))
                    else:
                        permit.failure()
                        events.breaker_failure(runtime)
                    failures.append(error)
                    if retry >= policy.max_retries or isinstance(error, UpstreamAuthError):
                        break  # a rejected key stays rejected: fail over at once
                    if throttled and index < last:
                        break  # another target can answer now: no reason to wait
                    delay = policy.delay_s(retry, error.retry_after_s)
                    if delay is None or (not breaker.available and not throttled):
                        break  # Retry-After beyond the cap, or the circuit just opened
                    if not policy.fits(delay, deadline.remaining_s()):
                        break
                    await self._sleep(delay)  # a cooldown left after it: see the top
                    retry += 1
                    continue
                except BaseException:
                    permit.release()
                    raise
                permit.success()
                return result
            if index < last:
                journey.failovers.append(f"{runtime.name}: {failures[-1].message}")
                events.failover(ctx, runtime.name, failures[-1])
        raise _Exhausted

    async def _hedged(
        self,
        ctx: RequestContext,
        targets: list[Target],
        deadline: Deadline,
        journey: Journey,
        attempt: Attempt[T],
        usable: UsableCheck,
        hedge_s: float,
    ) -> T:
        """The whole list, and after ``hedge_s`` without an answer, the others too."""
        failures: list[GatewayError] = []
        backup_failures: list[GatewayError] = []
        first = asyncio.ensure_future(
            self._sequence(ctx, targets, deadline, journey, attempt, usable, failures)
        )
        tasks = {first}
        try:
            done, _ = await asyncio.wait(tasks, timeout=hedge_s)
            if not done:
                journey.hedged = True
                self._events.hedge(ctx, "started")
                backup = self._sequence(
                    ctx, targets[1:], deadline, journey, attempt, usable, backup_failures
                )
                tasks.add(asyncio.ensure_future(backup))
            error: BaseException | None = None
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                winner: asyncio.Future[T] | None = None
                for task in done:
                    failure = task.exception()
                    if failure is None:
                        if winner is None:
                            winner = task
                        else:  # both answered at once: the second is not needed
                            self._discard(task.result())
                    elif not isinstance(failure, _Exhausted) or error is None:
                        error = failure
                if winner is not None:
                    if journey.hedged:
                        self._events.hedge(ctx, "won" if winner is not first else "lost")
                    return winner.result()
                if error is not None and not isinstance(error, _Exhausted):
                    raise error  # a client-caused error: no other target can do better
            raise pick_failure(failures + backup_failures, deadline)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    result = await task
                except BaseException:  # cancelled or failed: nothing to release
                    continue
                self._discard(result)  # answered while being cancelled


def _only_cooling(breaker: CircuitBreaker) -> bool:
    """For a breaker that just refused a call: only its 429 cooldown did (not open, no
    half-open probe already out). The cooldown is not asked again: it may have ended since
    the refusal (a timer wakes a hair early), and then the wait is 0 and the call goes."""
    state = breaker.state
    return state == "closed" or (state == "half_open" and not breaker.probing)


def cooldown_s(policy: RetryPolicy, retry: int, retry_after: float | None) -> float:
    """How long a provider that answered 429 is skipped: its Retry-After, else the
    backoff, capped by ``retry_after_max_s`` either way."""
    wait = retry_after if retry_after is not None else policy.delay_s(retry, None) or 0.0
    return min(wait, policy.retry_after_max_s)


class _Exhausted(Exception):
    """Every target was tried or skipped; the reasons are in the failures list."""


def skipped(runtime: ProviderRuntime) -> Skipped:
    breaker = runtime.breaker
    if breaker.cooling_down:
        reason = f"is cooling down after a 429 ({breaker.cooldown_remaining_s():.1f} s left)"
    else:
        reason = f"has an open circuit ({breaker.state})"
    return Skipped(f"provider {runtime.name!r} {reason}", code="provider_unavailable")


def busy(runtime: ProviderRuntime) -> Skipped:
    return Skipped(f"provider {runtime.name!r} is at its max_concurrency", code="provider_busy")


def deadline_error(deadline: Deadline) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        f"no provider answered within the request's deadline ({deadline.total_s:g} s)",
        code="deadline_exceeded",
    )


def pick_failure(failures: list[GatewayError], deadline: Deadline) -> GatewayError:
    """What the client sees when no target answered: the last real failure (an upstream
    error or a request no target can serve), else the last skip (503)."""
    for failure in reversed(failures):
        if not isinstance(failure, Skipped):
            return failure
    if failures:
        return failures[-1]
    if deadline.expired:
        return deadline_error(deadline)
    return ServiceUnavailableError("no provider could take the request")
