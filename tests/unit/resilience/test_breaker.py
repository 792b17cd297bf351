"""The circuit breaker state machine, on a fake clock."""

from __future__ import annotations

import pytest

from llm_edge_agent.config import ResilienceConfig
from llm_edge_agent.resilience.breaker import CircuitBreaker, Permit

from ...fake_clock import FakeClock


def make(
    clock: FakeClock,
    threshold: int = 3,
    open_s: float = 30.0,
    changes: list[str] | None = None,
    **kwargs: float,
) -> CircuitBreaker:
    return CircuitBreaker(
        threshold,
        open_s,
        failure_ratio=kwargs.get("failure_ratio", 0.0),
        window_s=kwargs.get("window_s", 60.0),
        min_requests=int(kwargs.get("min_requests", 20)),
        clock=clock,
        on_change=None if changes is None else changes.append,
    )


def permit(breaker: CircuitBreaker) -> Permit:
    p = breaker.admit()
    assert p is not None
    return p


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit(breaker).failure()


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit(breaker).success()


def open_breaker(clock: FakeClock, open_s: float = 30.0) -> CircuitBreaker:
    b = make(clock, threshold=1, open_s=open_s)
    fail(b)
    assert b.state == "open"
    return b


# ------------------------------------------------------------------ closed → open


def test_starts_closed_and_admits() -> None:
    b = make(FakeClock())
    assert b.state == "closed"
    assert b.available
    p = permit(b)
    assert not p.is_probe
    assert b.transitions == 0


def test_opens_after_threshold_consecutive_failures() -> None:
    b = make(FakeClock(), threshold=3)
    fail(b, 2)
    assert b.state == "closed"
    assert b.consecutive_failures == 2
    fail(b)
    assert b.state == "open"
    assert b.admit() is None
    assert not b.available


def test_success_resets_the_consecutive_count() -> None:
    b = make(FakeClock(), threshold=3)
    fail(b, 2)
    succeed(b)
    assert b.consecutive_failures == 0
    fail(b, 2)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open"


def test_release_is_neutral_when_closed() -> None:
    b = make(FakeClock(), threshold=2)
    fail(b)
    permit(b).release()
    assert b.consecutive_failures == 1
    fail(b)
    assert b.state == "open"


# ------------------------------------------------------------------ ratio rule


def test_ratio_rule_needs_min_requests() -> None:
    clock = FakeClock()
    b = make(clock, threshold=100, failure_ratio=0.5, window_s=60.0, min_requests=10)
    for _ in range(4):
        succeed(b)
        fail(b)
    assert b.window_counts() == (4, 8)
    assert b.state == "closed"  # 50 % but only 8 outcomes
    succeed(b)
    assert b.state == "closed"  # 9 outcomes, 44 %
    fail(b)  # 10 outcomes, 50 %
    assert b.state == "open"


def test_ratio_rule_below_ratio_stays_closed() -> None:
    clock = FakeClock()
    b = make(clock, threshold=100, failure_ratio=0.5, min_requests=10)
    for _ in range(10):
        succeed(b, 2)
        fail(b)  # 33 %
    assert b.state == "closed"
    assert b.window_counts() == (10, 30)


def test_ratio_rule_exact_decimal_ratio() -> None:
    b = make(FakeClock(), threshold=100, failure_ratio=0.1, min_requests=30)
    succeed(b, 27)
    fail(b, 2)
    assert b.state == "closed"
    fail(b)  # 3 / 30 == 0.1
    assert b.state == "open"


def test_ratio_window_expires_old_outcomes() -> None:
    clock = FakeClock(0.0)
    b = make(clock, threshold=100, failure_ratio=0.5, window_s=60.0, min_requests=10)
    fail(b, 9)
    assert b.window_counts() == (9, 9)
    clock.advance(60.0)  # those failures left the window
    assert b.window_counts() == (0, 0)
    fail(b)
    assert b.state == "closed"
    assert b.window_counts() == (1, 1)


def test_ratio_window_expires_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    b = make(clock, threshold=100, failure_ratio=0.9, window_s=10.0, min_requests=5)
    for _ in range(10):  # one failure per one-second bucket, 0..9
        fail(b)
        succeed(b)
        clock.advance(1.0)
    assert b.window_counts() == (9, 18)  # t=10: bucket 0 expired
    clock.advance(5.0)
    assert b.window_counts() == (4, 8)  # t=15: buckets 6..9 remain
    clock.advance(100.0)
    assert b.window_counts() == (0, 0)


def test_ratio_rule_off_records_nothing() -> None:
    b = make(FakeClock(), threshold=100)
    fail(b, 30)
    assert b.window_counts() == (0, 0)
    assert b.state == "closed"


def test_consecutive_rule_still_applies_with_ratio_rule() -> None:
    b = make(FakeClock(), threshold=3, failure_ratio=0.9, min_requests=100)
    fail(b, 3)
    assert b.state == "open"


# ------------------------------------------------------------------ open → half_open


def test_half_open_exactly_at_open_s() -> None:
    clock = FakeClock()
    b = open_breaker(clock, open_s=30.0)
    clock.advance(29.999)
    assert b.state == "open"
    assert b.admit() is None
    assert b.open_remaining_s() == pytest.approx(0.001)
    clock.advance(0.001)
    assert b.available
    assert b.state == "half_open"
    assert b.open_remaining_s() == 0.0


def test_zero_open_s_is_half_open_at_once() -> None:
    changes: list[str] = []
    b = make(FakeClock(), threshold=1, open_s=0.0, changes=changes)
    fail(b)
    assert b.state == "half_open"
    assert changes == ["open", "half_open"]
    p = b.admit()
    assert p is not None and p.is_probe


def test_single_probe_under_a_hundred_concurrent_admits() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    clock.advance(30.0)
    permits = [b.admit() for _ in range(100)]
    admitted = [p for p in permits if p is not None]
    assert len(admitted) == 1
    assert admitted[0].is_probe
    assert permits[0] is admitted[0]  # the first caller is the probe
    assert b.probing
    assert not b.available
    assert b.state == "half_open"


def test_probe_success_closes_and_resets() -> None:
    clock = FakeClock()
    b = make(clock, threshold=2)
    fail(b, 2)
    clock.advance(30.0)
    permit(b).success()
    assert b.state == "closed"
    assert b.consecutive_failures == 0
    assert not b.probing
    assert all(b.admit() is not None for _ in range(10))
    fail(b)
    assert b.state == "closed"  # the count started again
    fail(b)
    assert b.state == "open"


def test_probe_success_clears_the_ratio_window() -> None:
    clock = FakeClock()
    b = make(clock, threshold=100, failure_ratio=0.5, min_requests=4)
    fail(b, 4)
    assert b.state == "open"
    clock.advance(30.0)
    permit(b).success()
    assert b.window_counts() == (0, 0)
    fail(b)
    assert b.state == "closed"


def test_probe_failure_reopens_for_a_full_open_s() -> None:
    clock = FakeClock()
    b = open_breaker(clock, open_s=30.0)
    clock.advance(45.0)  # well past open_s
    probe = permit(b)
    clock.advance(5.0)
    probe.failure()
    assert b.state == "open"
    assert b.open_remaining_s() == pytest.approx(30.0)
    clock.advance(29.9)
    assert b.admit() is None
    clock.advance(0.1)
    assert b.state == "half_open"
    assert permit(b).is_probe


def test_probe_release_frees_the_slot() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    clock.advance(30.0)
    probe = permit(b)
    assert b.admit() is None
    probe.release()
    assert b.state == "half_open"
    assert b.available
    second = permit(b)
    assert second.is_probe
    assert b.admit() is None
    second.success()
    assert b.state == "closed"


def test_non_probe_outcomes_while_open_are_ignored() -> None:
    clock = FakeClock()
    b = make(clock, threshold=2)
    early = permit(b)
    late_success = permit(b)
    fail(b, 2)
    assert b.state == "open"
    early.failure()
    late_success.success()
    assert b.state == "open"
    assert b.open_remaining_s() == pytest.approx(30.0)  # not extended
    clock.advance(30.0)
    assert b.state == "half_open"  # a stale success does not close it


def test_outcomes_of_calls_admitted_before_a_reclose_are_stale() -> None:
    clock = FakeClock()
    b = make(clock, threshold=1)
    long_call = permit(b)
    fail(b)
    clock.advance(30.0)
    permit(b).success()  # probe closes
    long_call.failure()  # admitted in the previous closed period
    assert b.state == "closed"
    assert b.consecutive_failures == 0


# ------------------------------------------------------------------ permits


def test_permits_settle_once() -> None:
    b = make(FakeClock(), threshold=2)
    p = permit(b)
    assert not p.settled
    p.failure()
    p.failure()
    p.success()
    p.release()
    assert p.settled
    assert b.consecutive_failures == 1
    assert repr(p) == "Permit(call, failure)"


def test_release_after_success_is_a_no_op_for_a_probe() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    clock.advance(30.0)
    probe = permit(b)
    probe.failure()
    probe.release()  # a finally-block catch-all must not free anything
    probe.success()
    assert b.state == "open"
    assert not b.probing


def test_permit_repr() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    clock.advance(30.0)
    assert repr(permit(b)) == "Permit(probe, pending)"


# ------------------------------------------------------------------ cooldown


def test_cooldown_skips_until_it_expires() -> None:
    clock = FakeClock()
    b = make(clock)
    b.cool_down(5.0)
    assert b.admit() is None
    assert not b.available
    assert b.cooling_down
    assert b.cooldown_remaining_s() == pytest.approx(5.0)
    assert b.state == "closed"
    assert b.consecutive_failures == 0
    assert b.transitions == 0
    clock.advance(4.9)
    assert b.admit() is None
    clock.advance(0.1)
    assert not b.cooling_down
    assert b.cooldown_remaining_s() == 0.0
    assert b.available
    assert b.admit() is not None


def test_cooldown_keeps_the_later_end() -> None:
    clock = FakeClock()
    b = make(clock)
    b.cool_down(10.0)
    clock.advance(2.0)
    b.cool_down(3.0)  # would end at 5, earlier than 10
    assert b.cooldown_remaining_s() == pytest.approx(8.0)
    b.cool_down(20.0)
    assert b.cooldown_remaining_s() == pytest.approx(20.0)


def test_cooldown_ignores_nonsense() -> None:
    b = make(FakeClock())
    for seconds in (0.0, -1.0, float("nan"), float("inf")):
        b.cool_down(seconds)
    assert not b.cooling_down


def test_cooldown_does_not_break_the_consecutive_count() -> None:
    clock = FakeClock()
    b = make(clock, threshold=2)
    fail(b)
    b.cool_down(1.0)
    clock.advance(1.0)
    assert b.consecutive_failures == 1
    fail(b)
    assert b.state == "open"


def test_429_on_a_probe_releases_then_cools_down() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = make(clock, threshold=1, changes=changes)
    fail(b)
    clock.advance(30.0)
    probe = permit(b)
    assert probe.is_probe
    probe.release()  # what the executor does on a 429 ...
    b.cool_down(10.0)  # ... then this
    assert b.state == "half_open"
    assert not b.probing
    assert b.admit() is None
    assert not b.available
    clock.advance(10.0)
    assert b.available
    again = permit(b)
    assert again.is_probe
    again.success()
    assert b.state == "closed"
    assert changes == ["open", "half_open", "closed"]


# ------------------------------------------------------------------ health checks


def test_force_open_uses_open_s_by_default() -> None:
    clock = FakeClock()
    b = make(clock, open_s=30.0)
    b.force_open()
    assert b.state == "open"
    assert b.open_remaining_s() == pytest.approx(30.0)
    assert b.admit() is None


def test_force_open_for_given_seconds_and_extends_only() -> None:
    clock = FakeClock()
    b = make(clock, open_s=30.0)
    b.force_open(10.0)
    assert b.open_remaining_s() == pytest.approx(10.0)
    b.force_open(50.0)
    assert b.open_remaining_s() == pytest.approx(50.0)
    b.force_open(5.0)
    assert b.open_remaining_s() == pytest.approx(50.0)
    with pytest.raises(ValueError, match="seconds"):
        b.force_open(-1.0)


def test_force_open_retires_an_outstanding_probe() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    clock.advance(30.0)
    probe = permit(b)
    b.force_open()
    assert b.state == "open"
    probe.success()  # stale: the health check said down after it started
    assert b.state == "open"


def test_force_close_closes_open_and_half_open_early() -> None:
    clock = FakeClock()
    b = open_breaker(clock)
    b.force_close()
    assert b.state == "closed"
    assert b.admit() is not None
    fail(b)
    clock.advance(30.0)
    probe = permit(b)
    b.force_close()
    assert b.state == "closed"
    assert not b.probing
    probe.failure()  # stale: retired by the health check
    assert b.state == "closed"


def test_force_close_leaves_cooldown_and_closed_counts_alone() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = make(clock, threshold=3, changes=changes)
    fail(b, 2)
    b.cool_down(5.0)
    b.force_close()
    assert changes == []
    assert b.consecutive_failures == 2
    assert b.cooling_down


# ------------------------------------------------------------------ on_change


def test_on_change_sequence() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = make(clock, threshold=1, open_s=10.0, changes=changes)
    fail(b)  # closed -> open
    clock.advance(10.0)
    probe = permit(b)  # open -> half_open, noticed by admit()
    probe.failure()  # half_open -> open
    clock.advance(10.0)
    assert b.state == "half_open"  # noticed by state
    assert b.state == "half_open"  # reported once
    permit(b).success()  # half_open -> closed
    assert changes == ["open", "half_open", "open", "half_open", "closed"]
    assert b.transitions == 5


def test_available_and_repr_have_no_side_effects() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = make(clock, threshold=1, changes=changes)
    fail(b)
    clock.advance(30.0)
    assert b.available
    assert "half_open" in repr(b)
    assert changes == ["open"]
    assert b.state == "half_open"
    assert changes == ["open", "half_open"]


def test_on_change_sees_the_new_state() -> None:
    clock = FakeClock()
    seen: list[str] = []
    b: CircuitBreaker

    def on_change(state: str) -> None:
        seen.append(f"{state}={b.state}")

    b = CircuitBreaker(1, 5.0, clock=clock, on_change=on_change)
    fail(b)
    assert seen == ["open=open"]


# ------------------------------------------------------------------ construction


def test_from_config() -> None:
    clock = FakeClock()
    changes: list[str] = []
    cfg = ResilienceConfig(
        breaker_failure_threshold=2,
        breaker_open_s=7.0,
        breaker_failure_ratio=0.5,
        breaker_window_s=20.0,
        breaker_min_requests=4,
    )
    b = CircuitBreaker.from_config(cfg, clock=clock, on_change=changes.append)
    succeed(b)
    fail(b)
    succeed(b)
    fail(b)  # 2 / 4 failed: the ratio rule
    assert b.state == "open"
    assert b.open_remaining_s() == pytest.approx(7.0)
    assert changes == ["open"]


def test_from_default_config() -> None:
    b = CircuitBreaker.from_config(ResilienceConfig())
    assert b.state == "closed"
    assert b.admit() is not None


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 1.0), {}, "failure_threshold"),
        ((1, -1.0), {}, "open_s"),
        ((1, 1.0), {"failure_ratio": 1.5}, "failure_ratio"),
        ((1, 1.0), {"window_s": 0.0}, "window_s"),
        ((1, 1.0), {"min_requests": 0}, "min_requests"),
    ],
)
def test_invalid_parameters(args: tuple[int, float], kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CircuitBreaker(*args, **kwargs)  # type: ignore[arg-type]


def test_repr() -> None:
    b = make(FakeClock(), threshold=3)
    fail(b)
    assert repr(b) == "CircuitBreaker(state='closed', consecutive=1/3, cooldown_s=0.000)"
