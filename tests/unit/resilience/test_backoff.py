"""Backoff delays, Retry-After parsing, RetryPolicy decisions and Deadline budgets."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from llm_edge_agent.config import ResilienceConfig
from llm_edge_agent.resilience.backoff import (
    Deadline,
    RetryPolicy,
    backoff_delay_s,
    retry_after_s,
)

from ...fake_clock import FakeClock

NOW_WALL = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def low() -> float:
    return 0.0


def high() -> float:
    return 0.999


def http_date(wall: float) -> str:
    return format_datetime(datetime.fromtimestamp(wall, UTC), usegmt=True)


# ------------------------------------------------------------------ backoff_delay_s


def test_delay_grows_exponentially_then_is_capped() -> None:
    delays = [backoff_delay_s(retry, 100.0, 1_000.0, low) for retry in range(6)]
    # rand() == 0: exactly half the cap; caps 0.1, 0.2, 0.4, 0.8, 1.0, 1.0 seconds
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_stays_within_the_upper_half_of_the_cap() -> None:
    for retry in range(8):
        cap = min(1_000.0, 100.0 * 2**retry) / 1000.0
        lo = backoff_delay_s(retry, 100.0, 1_000.0, low)
        hi = backoff_delay_s(retry, 100.0, 1_000.0, high)
        assert lo == pytest.approx(cap / 2)
        assert cap / 2 <= hi < cap
        assert hi == pytest.approx(cap / 2 + 0.999 * cap / 2)


def test_first_retry_is_never_immediate() -> None:
    assert backoff_delay_s(0, 100.0, 5_000.0, low) > 0


def test_zero_base_or_max_means_no_wait() -> None:
    assert backoff_delay_s(3, 0.0, 5_000.0, high) == 0.0
    assert backoff_delay_s(3, 100.0, 0.0, high) == 0.0


def test_max_below_base_caps_the_first_retry() -> None:
    assert backoff_delay_s(0, 500.0, 200.0, low) == pytest.approx(0.1)


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert backoff_delay_s(10_000, 100.0, 5_000.0, low) == pytest.approx(2.5)


def test_negative_retry_is_a_bug() -> None:
    with pytest.raises(ValueError, match="retry"):
        backoff_delay_s(-1, 100.0, 5_000.0, low)


# ------------------------------------------------------------------ retry_after_s


def test_no_headers_no_wait_requested() -> None:
    assert retry_after_s({}, NOW_WALL) is None
    assert retry_after_s({"x-ratelimit-reset-requests": "1s"}, NOW_WALL) is None


def test_retry_after_ms_takes_precedence() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "7"}
    assert retry_after_s(headers, NOW_WALL) == pytest.approx(1.5)


def test_retry_after_ms_may_be_fractional() -> None:
    assert retry_after_s({"retry-after-ms": "250.5"}, NOW_WALL) == pytest.approx(0.2505)


def test_retry_after_integer_seconds() -> None:
    assert retry_after_s({"retry-after": "20"}, NOW_WALL) == 20.0


def test_retry_after_float_seconds() -> None:
    assert retry_after_s({"retry-after": " 0.75 "}, NOW_WALL) == pytest.approx(0.75)


def test_retry_after_zero() -> None:
    assert retry_after_s({"retry-after": "0"}, NOW_WALL) == 0.0


def test_retry_after_http_date_in_the_future() -> None:
    headers = {"retry-after": http_date(NOW_WALL + 42)}
    assert retry_after_s(headers, NOW_WALL) == pytest.approx(42.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    headers = {"retry-after": http_date(NOW_WALL - 3600)}
    assert retry_after_s(headers, NOW_WALL) == 0.0


def test_retry_after_imf_fixdate_literal() -> None:
    # 2023-11-14T22:13:20Z + 10s
    headers = {"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}
    assert retry_after_s(headers, NOW_WALL) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-1", "-0.5", "nan", "NaN", "inf", "Infinity", "1e3", "1_000", "0x10", "1" * 400],
)
def test_garbage_retry_after_is_ignored(value: str) -> None:
    assert retry_after_s({"retry-after": value}, NOW_WALL) is None


@pytest.mark.parametrize("value", ["", "abc", "-100", "nan", "inf", "1e3"])
def test_garbage_retry_after_ms_falls_through_to_retry_after(value: str) -> None:
    assert retry_after_s({"retry-after-ms": value, "retry-after": "3"}, NOW_WALL) == 3.0
    assert retry_after_s({"retry-after-ms": value}, NOW_WALL) is None


# ------------------------------------------------------------------ RetryPolicy


def policy(**overrides: float) -> RetryPolicy:
    values: dict[str, float] = {
        "max_retries": 2,
        "backoff_base_ms": 100.0,
        "backoff_max_ms": 1_000.0,
        "retry_after_max_s": 30.0,
    }
    values.update(overrides)
    return RetryPolicy(
        max_retries=int(values["max_retries"]),
        backoff_base_ms=values["backoff_base_ms"],
        backoff_max_ms=values["backoff_max_ms"],
        retry_after_max_s=values["retry_after_max_s"],
        rand=low,
    )


def test_policy_from_config() -> None:
    cfg = ResilienceConfig(
        max_retries=4, backoff_base_ms=50.0, backoff_max_ms=400.0, retry_after_max_s=9.0
    )
    p = RetryPolicy.from_config(cfg, rand=low)
    assert p.max_retries == 4
    assert p.retry_after_max_s == 9.0
    assert [p.delay_s(r, None) for r in range(5)] == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.2])


def test_policy_from_default_config_uses_random_jitter() -> None:
    p = RetryPolicy.from_config(ResilienceConfig())
    delay = p.delay_s(0, None)
    assert delay is not None and 0.05 <= delay < 0.1


def test_policy_without_retry_after_uses_backoff() -> None:
    assert policy().delay_s(1, None) == pytest.approx(0.1)


def test_policy_honours_a_short_enough_retry_after() -> None:
    p = policy(retry_after_max_s=30.0)
    assert p.delay_s(0, 12.5) == 12.5
    assert p.delay_s(0, 30.0) == 30.0  # exactly the cap is still waited for
    assert p.delay_s(5, 0.0) == 0.0  # the upstream's word replaces the backoff


def test_policy_refuses_a_retry_after_beyond_the_cap() -> None:
    p = policy(retry_after_max_s=30.0)
    assert p.delay_s(0, 30.001) is None
    assert p.delay_s(0, math.inf) is None
    assert p.delay_s(0, math.nan) is None


def test_policy_fits_only_with_time_left_after_the_wait() -> None:
    p = policy()
    assert p.fits(1.0, 1.5)
    assert not p.fits(1.5, 1.5)
    assert not p.fits(2.0, 1.5)
    assert not p.fits(0.0, 0.0)


def test_policy_is_frozen_and_repr_hides_rand() -> None:
    p = policy()
    with pytest.raises(AttributeError):
        p.max_retries = 9  # type: ignore[misc]
    assert "rand" not in repr(p)
    assert "max_retries=2" in repr(p)


# ------------------------------------------------------------------ Deadline


def test_deadline_counts_down_and_expires() -> None:
    clock = FakeClock()
    d = Deadline(10.0, clock)
    assert d.remaining_s() == 10.0
    assert not d.expired
    clock.advance(9.5)
    assert d.remaining_s() == pytest.approx(0.5)
    assert not d.expired
    clock.advance(0.5)
    assert d.remaining_s() == 0.0
    assert d.expired
    clock.advance(100.0)
    assert d.remaining_s() == 0.0  # never negative
    assert d.expired


def test_deadline_shortened_keeps_the_start() -> None:
    clock = FakeClock()
    d = Deadline(300.0, clock)
    clock.advance(2.0)
    short = d.shortened(5.0)
    assert short is not d
    assert short.total_s == 5.0
    assert short.remaining_s() == pytest.approx(3.0)
    clock.advance(3.0)
    assert short.expired
    assert not d.expired


def test_deadline_shortened_never_lengthens() -> None:
    clock = FakeClock()
    d = Deadline(10.0, clock)
    assert d.shortened(60.0).total_s == 10.0
    assert d.shortened(None).total_s == 10.0
    assert d.shortened(math.inf).total_s == 10.0
    assert d.shortened(math.nan).total_s == 10.0
    assert d.shortened(-1.0).expired
    assert d.shortened(3.0).shortened(8.0).total_s == 3.0


def test_deadline_repr() -> None:
    assert repr(Deadline(2.0, FakeClock())) == "Deadline(total_s=2.0, remaining_s=2.000)"
