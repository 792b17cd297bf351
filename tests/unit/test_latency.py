"""``llm_edge_agent.resilience.latency``: peak EWMA and per-provider latency stats."""

from __future__ import annotations

import math

import pytest

from llm_edge_agent.resilience.latency import LatencyStats, PeakEwma

from ..fake_clock import FakeClock

# --------------------------------------------------------------------------- PeakEwma


def test_peak_ewma_is_none_before_any_sample() -> None:
    ewma = PeakEwma(clock=FakeClock())
    assert ewma.value() is None
    assert ewma.samples == 0


def test_peak_ewma_first_sample_is_the_estimate() -> None:
    ewma = PeakEwma(clock=FakeClock())
    ewma.observe(0.2)
    assert ewma.value() == 0.2
    assert ewma.samples == 1


def test_peak_ewma_jumps_to_a_larger_sample_at_once() -> None:
    clock = FakeClock()
    ewma = PeakEwma(tau_s=10.0, clock=clock)
    ewma.observe(0.01)
    clock.advance(0.001)
    ewma.observe(2.0)
    assert ewma.value() == 2.0


def test_peak_ewma_decays_toward_smaller_samples_by_elapsed_time() -> None:
    clock = FakeClock()
    ewma = PeakEwma(tau_s=2.0, clock=clock)
    ewma.observe(1.0)
    clock.advance(2.0)
    ewma.observe(0.0)
    w = math.exp(-1.0)
    assert ewma.value() == pytest.approx(w)
    clock.advance(2.0)
    ewma.observe(0.0)
    assert ewma.value() == pytest.approx(w * w)


def test_peak_ewma_samples_in_the_same_instant_do_not_move_it_down() -> None:
    ewma = PeakEwma(tau_s=1.0, clock=FakeClock())
    ewma.observe(1.0)
    for _ in range(100):
        ewma.observe(0.001)
    assert ewma.value() == 1.0


def test_peak_ewma_recovers_after_a_slow_spell() -> None:
    clock = FakeClock()
    ewma = PeakEwma(tau_s=1.0, clock=clock)
    ewma.observe(0.005)
    ewma.observe(0.5)  # got slow
    for _ in range(50):  # then fast again, sampled every 100 ms
        clock.advance(0.1)
        ewma.observe(0.005)
    value = ewma.value()
    assert value is not None and value < 0.01


def test_peak_ewma_a_long_gap_lets_one_sample_move_it_most_of_the_way() -> None:
    clock = FakeClock()
    ewma = PeakEwma(tau_s=1.0, clock=clock)
    ewma.observe(0.5)
    clock.advance(10.0)
    ewma.observe(0.005)
    value = ewma.value()
    assert value is not None and value < 0.006


def test_peak_ewma_reset_and_validation() -> None:
    ewma = PeakEwma(clock=FakeClock())
    ewma.observe(1.0)
    ewma.reset()
    assert ewma.value() is None and ewma.samples == 0
    with pytest.raises(ValueError, match="tau_s"):
        PeakEwma(tau_s=0.0)
    assert "PeakEwma" in repr(ewma)


# --------------------------------------------------------------------------- LatencyStats


def test_stats_score_is_none_before_any_sample() -> None:
    stats = LatencyStats(clock=FakeClock())
    assert stats.score(0) is None
    assert stats.score(5) is None


def test_stats_score_is_ttft_times_load_plus_one() -> None:
    stats = LatencyStats(clock=FakeClock())
    stats.observe(0.1, 0.4)
    assert stats.score(0) == pytest.approx(0.1)
    assert stats.score(3) == pytest.approx(0.4)


def test_stats_score_falls_back_to_total_without_ttft() -> None:
    stats = LatencyStats(clock=FakeClock())
    stats.observe_total(0.3)
    assert stats.ttft.value() is None
    assert stats.score(1) == pytest.approx(0.6)


def test_stats_observe_without_total_feeds_only_ttft() -> None:
    stats = LatencyStats(clock=FakeClock())
    stats.observe(0.05, None)
    assert stats.ttft.samples == 1
    assert stats.total.samples == 0
    stats.observe_total(2.0)  # the stream ends later
    assert stats.ttft.samples == 1
    assert stats.total.value() == 2.0


def test_stats_percentile_is_none_below_min_samples() -> None:
    stats = LatencyStats(clock=FakeClock())
    for i in range(19):
        stats.observe(0.01, float(i))
    assert stats.percentile(50) is None
    stats.observe(0.01, 19.0)
    assert stats.percentile(50) == pytest.approx(9.5)


def test_stats_percentile_interpolates_over_the_ring() -> None:
    stats = LatencyStats(clock=FakeClock())
    for i in range(1, 101):
        stats.observe(0.01, float(i))
    assert stats.percentile(50) == pytest.approx(50.5)
    assert stats.percentile(99) == pytest.approx(99.01)
    assert stats.percentile(0) == 1.0
    assert stats.percentile(100) == 100.0
    with pytest.raises(ValueError, match="percentile"):
        stats.percentile(101)


def test_stats_ring_keeps_only_the_last_window_samples() -> None:
    clock = FakeClock()
    stats = LatencyStats(window=30, clock=clock)
    for _ in range(30):
        stats.observe(0.01, 100.0)
    for _ in range(30):
        stats.observe(0.01, 1.0)  # overwrite every slot
    clock.advance(1.0)
    assert stats.percentile(1) == 1.0
    assert stats.percentile(99) == 1.0


def test_stats_percentile_cache_is_reused_then_refreshed_by_time() -> None:
    clock = FakeClock()
    stats = LatencyStats(clock=clock)
    for _ in range(20):
        stats.observe(0.01, 1.0)
    assert stats.percentile(50) == 1.0
    for _ in range(10):
        stats.observe(0.01, 100.0)
    clock.advance(0.5)
    assert stats.percentile(99) == 1.0  # cached sorted copy: cheap, a little stale
    clock.advance(0.5)
    assert stats.percentile(99) == 100.0  # 1 s later it is rebuilt from the ring
    assert stats.percentile(50) == 1.0  # 20 of 30 samples are 1.0


def test_stats_percentile_cache_is_refreshed_by_new_samples() -> None:
    clock = FakeClock()
    stats = LatencyStats(clock=clock)
    for _ in range(40):
        stats.observe(0.01, 1.0)
    assert stats.percentile(90) == 1.0
    for _ in range(31):
        stats.observe(0.01, 50.0)
    assert stats.percentile(90) == 1.0  # 31 new samples: not yet
    stats.observe(0.01, 50.0)
    # 32 new samples: rebuilt without any clock movement, and correct
    assert stats.percentile(90) == 50.0
    assert stats.percentile(50) == 1.0  # 40 of 72 samples are 1.0
    assert stats.percentile(60) == pytest.approx(50.0)


def test_stats_reset_forgets_everything() -> None:
    clock = FakeClock()
    stats = LatencyStats(clock=clock)
    for _ in range(30):
        stats.observe(0.01, 1.0)
    assert stats.percentile(50) == 1.0
    stats.reset()
    assert stats.score(0) is None
    assert stats.percentile(50) is None
    for _ in range(20):
        stats.observe(0.01, 7.0)
    assert stats.percentile(50) == 7.0  # no stale cache after reset
    assert "LatencyStats" in repr(stats)


def test_stats_validation() -> None:
    with pytest.raises(ValueError, match="window"):
        LatencyStats(window=0)
    with pytest.raises(ValueError, match="min_samples"):
        LatencyStats(min_samples=0)
