"""A circuit breaker for one provider deployment: a small state machine on an injected clock.

States (the strings are public: ``/health`` shows them as ``circuit``):

``closed``
    Calls go through. The circuit opens after ``failure_threshold`` consecutive failures,
    or, when ``failure_ratio > 0``, when the last ``window_s`` seconds hold at least
    ``min_requests`` outcomes of which ``failures / total >= failure_ratio``. The window is
    a ring of 10 buckets of ``window_s / 10`` seconds, so memory is bounded and outcomes
    expire with the clock (at bucket granularity: the window spans 90-100% of ``window_s``).
``open``
    Calls are refused for ``open_s`` seconds.
``half_open``
    ``open_s`` is up. This is computed lazily from the clock (no timers): the first look at
    the state after that time reports the change. Exactly one call, the *probe*, is
    admitted; everyone else is refused until the probe ends. Its success closes the
    circuit (counters reset), its failure opens it for another full ``open_s``, and a
    neutral end (``release``) frees the probe slot for the next caller.

**API choice: permits.** ``admit()`` returns a ``Permit`` (or ``None``: skip this
deployment) and the call reports its outcome on the permit: ``success()``, ``failure()`` or
``release()`` (neither: a client error such as a 400, or the client left). The breaker
therefore always knows whether an outcome is the probe's, which a bare ``record_success()``
could not tell apart under concurrency. A permit settles once: the first of the three calls
counts, later ones are no-ops, so ``release()`` in a ``finally`` is a safe catch-all. Stale
outcomes are ignored: a non-probe call's outcome counts only while the circuit is still in
the closed period that admitted it, and a probe's only while it is still the probe (a
``force_open``/``force_close`` in between retires it).

**Cooldown** (a 429): ``cool_down(s)`` makes ``admit()`` refuse every call, probes
included, until ``now + s`` (the later of the current and the new end). It is not a
failure: the state string and the counters do not change. For a 429 on a probe, release
the permit and then cool down; the next caller after the cooldown becomes the probe.

**Health checks**: ``force_open()`` opens the circuit (a failed health probe),
``force_close()`` closes it early (a successful one).

``on_change`` is called with the new state string on every change of state, after the
change is made; ``transitions`` counts them. Meant for one event loop: not thread-safe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ..config import ResilienceConfig

State = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

BUCKETS: Final = 10  # the ratio window's ring

_SUCCESS: Final = 1
_FAILURE: Final = 2
_RELEASE: Final = 3
_OUTCOMES: Final = {_SUCCESS: "success", _FAILURE: "failure", _RELEASE: "release"}

_NEVER: Final = -(1 << 62)  # the epoch of an empty bucket


class Permit:
    """Leave to make one call through a breaker; settle it once with its outcome."""

    __slots__ = ("_breaker", "_generation", "_outcome", "_probe")

    def __init__(self, breaker: CircuitBreaker, probe: bool, generation: int) -> None:
        self._breaker = breaker
        self._probe = probe
        self._generation = generation
        self._outcome = 0

    @property
    def is_probe(self) -> bool:
        """Whether this call is the half-open circuit's single probe."""
        return self._probe

    @property
    def settled(self) -> bool:
        return self._outcome != 0

    def success(self) -> None:
        self._settle(_SUCCESS)

    def failure(self) -> None:
        self._settle(_FAILURE)

    def release(self) -> None:
        """The call ended with neither success nor failure; a probe frees its slot."""
        self._settle(_RELEASE)

    def _settle(self, outcome: int) -> None:
        if self._outcome:
            return
        self._outcome = outcome
        self._breaker._settle(self, outcome)

    def __repr__(self) -> str:
        kind = "probe" if self._probe else "call"
        status = _OUTCOMES.get(self._outcome, "pending")
        return f"Permit({kind}, {status})"


class _Window:
    """Outcome counts over the last ``window_s`` seconds, in ``BUCKETS`` fixed buckets."""

    __slots__ = ("_epochs", "_failures", "_totals", "_width")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / BUCKETS
        self._epochs = [_NEVER] * BUCKETS
        self._failures = [0] * BUCKETS
        self._totals = [0] * BUCKETS

    def record(self, now: float, failed: bool) -> None:
        epoch = math.floor(now / self._width)
        i = epoch % BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._failures[i] = 0
            self._totals[i] = 0
        self._totals[i] += 1
        if failed:
            self._failures[i] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(failures, total) in the window ending now."""
        epoch = math.floor(now / self._width)
        failures = total = 0
        for i in range(BUCKETS):
            if epoch - BUCKETS < self._epochs[i] <= epoch:
                failures += self._failures[i]
                total += self._totals[i]
        return failures, total

    def reset(self) -> None:
        for i in range(BUCKETS):
            self._epochs[i] = _NEVER

    def __repr__(self) -> str:
        return f"_Window(width_s={self._width})"


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_consecutive",
        "_cool_until",
        "_failure_ratio",
        "_failure_threshold",
        "_generation",
        "_min_requests",
        "_on_change",
        "_open_s",
        "_open_until",
        "_probe",
        "_state",
        "_transitions",
        "_window",
    )

    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        *,
        failure_ratio: float = 0.0,
        window_s: float = 60.0,
        min_requests: int = 20,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not 0.0 <= open_s < math.inf:
            raise ValueError(f"open_s must be >= 0 and finite, got {open_s}")
        if not 0.0 <= failure_ratio <= 1.0:
            raise ValueError(f"failure_ratio must be between 0 and 1, got {failure_ratio}")
        if not 0.0 < window_s < math.inf:
            raise ValueError(f"window_s must be > 0 and finite, got {window_s}")
        if min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {min_requests}")
        self._failure_threshold = failure_threshold
        self._open_s = open_s
        self._failure_ratio = failure_ratio
        self._min_requests = min_requests
        self._window = _Window(window_s)
        self._clock = clock
        self._on_change = on_change
        self._state: State = CLOSED
        self._open_until = 0.0
        self._cool_until = -math.inf
        self._consecutive = 0
        self._generation = 0  # bumped on every close: outcomes of older calls are stale
        self._probe: Permit | None = None
        self._transitions = 0

    @classmethod
    def from_config(
        cls,
        cfg: ResilienceConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> CircuitBreaker:
        return cls(
            cfg.breaker_failure_threshold,
            cfg.breaker_open_s,
            failure_ratio=cfg.breaker_failure_ratio,
            window_s=cfg.breaker_window_s,
            min_requests=cfg.breaker_min_requests,
            clock=clock,
            on_change=on_change,
        )

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``; reports a due open→half_open change.

        Typed ``str`` rather than ``State`` on purpose: mypy narrows a property's
        ``Literal`` after a comparison and would then reject the next comparison of it.
        """
        return self._observe(self._clock())

    @property
    def available(self) -> bool:
        """Whether ``admit()`` would let a call through now. No side effects."""
        now = self._clock()
        if now < self._cool_until:
            return False
        state = self._peek(now)
        if state == CLOSED:
            return True
        return state == HALF_OPEN and self._probe is None

    @property
    def cooling_down(self) -> bool:
        return self._clock() < self._cool_until

    def cooldown_remaining_s(self) -> float:
        return max(0.0, self._cool_until - self._clock())

    def open_remaining_s(self) -> float:
        """Seconds until an open circuit turns half-open; 0 when it is not open."""
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    @property
    def probing(self) -> bool:
        """Whether a half-open probe is out and has not ended yet."""
        return self._probe is not None

    @property
    def transitions(self) -> int:
        """State changes so far."""
        return self._transitions

    def window_counts(self) -> tuple[int, int]:
        """(failures, total) in the ratio window; (0, 0) when the ratio rule is off."""
        return self._window.counts(self._clock())

    # ------------------------------------------------------------------ calls

    def admit(self) -> Permit | None:
        """A permit for one call, or ``None``: skip this deployment (open, cooling down, or
        half-open with the probe already out)."""
        now = self._clock()
        state = self._observe(now)
        if now < self._cool_until:
            return None
        if state == CLOSED:
            return Permit(self, False, self._generation)
        if state == HALF_OPEN and self._probe is None:
            self._probe = Permit(self, True, self._generation)
            return self._probe
        return None

    def cool_down(self, seconds: float) -> None:
        """Refuse every call for ``seconds`` (a 429); keeps the later of two cooldowns."""
        if not 0.0 < seconds < math.inf:
            return
        self._cool_until = max(self._cool_until, self._clock() + seconds)

    def force_open(self, seconds: float | None = None) -> None:
        """Open now for ``seconds`` (default ``open_s``), e.g. after a failed health probe.

        An already open circuit stays open until the later of its end and the new one; an
        outstanding probe is retired (its outcome will be ignored).
        """
        duration = self._open_s if seconds is None else seconds
        if not 0.0 <= duration < math.inf:
            raise ValueError(f"seconds must be >= 0 and finite, got {seconds}")
        self._open(self._clock(), duration)

    def force_close(self) -> None:
        """Close an open or half-open circuit now (a successful health probe). A cooldown
        is left alone; a closed circuit is left as it is."""
        if self._state != CLOSED:
            self._close()

    # ------------------------------------------------------------------ internals

    def _peek(self, now: float) -> State:
        if self._state == OPEN and now >= self._open_until:
            return HALF_OPEN
        return self._state

    def _observe(self, now: float) -> State:
        state = self._peek(now)
        if state != self._state:
            self._probe = None
            self._change(state)
        return state

    def _change(self, state: State) -> None:
        self._state = state
        self._transitions += 1
        if self._on_change is not None:
            self._on_change(state)

    def _open(self, now: float, seconds: float) -> None:
        until = now + seconds
        if self._state == OPEN:
            self._open_until = max(self._open_until, until)
            return
        self._open_until = until
        self._probe = None
        self._change(OPEN)

    def _close(self) -> None:
        self._consecutive = 0
        self._window.reset()
        self._generation += 1
        self._probe = None
        self._change(CLOSED)

    def _settle(self, permit: Permit, outcome: int) -> None:
        now = self._clock()
        state = self._observe(now)
        if permit.is_probe:
            if permit is not self._probe:
                return  # retired by force_open/force_close
            self._probe = None
            if outcome == _SUCCESS:
                self._close()
            elif outcome == _FAILURE:
                self._open(now, self._open_s)
            return
        if state != CLOSED or permit._generation != self._generation or outcome == _RELEASE:
            return
        ratio_rule = self._failure_ratio > 0.0
        if outcome == _SUCCESS:
            self._consecutive = 0
            if ratio_rule:
                self._window.record(now, failed=False)
            return
        self._consecutive += 1
        if ratio_rule:
            self._window.record(now, failed=True)
        if self._consecutive >= self._failure_threshold or (ratio_rule and self._tripped(now)):
            self._open(now, self._open_s)

    def _tripped(self, now: float) -> bool:
        failures, total = self._window.counts(now)
        return total >= self._min_requests and failures / total >= self._failure_ratio

    def __repr__(self) -> str:
        now = self._clock()
        return (
            f"CircuitBreaker(state={self._peek(now)!r}, "
            f"consecutive={self._consecutive}/{self._failure_threshold}, "
            f"cooldown_s={max(0.0, self._cool_until - now):.3f})"
        )
