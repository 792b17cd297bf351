"""Per-provider latency tracking: peak EWMA estimates and a bounded sample ring.

``PeakEwma`` is the estimator Finagle and linkerd balance on. A sample *above* the
current estimate replaces it at once, so one slow answer is noticed immediately; a
sample at or below it pulls the estimate down with weight ``w = exp(-dt / tau_s)``,
where ``dt`` is the time since the previous observation (``est = est*w + x*(1-w)``).
The decay is therefore per unit of time, not per sample: a provider sampled rarely
(because it was slow and the balancer avoided it) moves most of the way to its new,
faster samples in one step once it is sampled again after a long gap, while a burst of
samples in the same instant barely moves it. Pessimistic up, time-smoothed down.

``LatencyStats`` keeps, for one provider, a peak EWMA of the time to first byte/token
(what a client feels first, and the only figure a long stream yields early), one of
the whole-request latency, and the last ``window`` whole-request latencies for
percentiles. ``score(in_flight)`` is the cost the latency strategy compares: the TTFT
estimate (the total one when no TTFT was ever seen) times ``in_flight + 1``, so a fast
provider that is already busy looks proportionally slower, as in Finagle's
``PeakEwma`` balancer. Before any sample the score is ``None`` ("unknown"): the
strategy decides how to explore such providers, this module does not invent a value.

Percentiles are for reporting, not the hot path: the sorted copy of the ring is
cached and rebuilt at most once per second of clock or per 32 new samples, whichever
comes first, so a stale-by-a-little percentile is the accepted price of cheap reads.

The default ``tau_s`` differs by class on purpose. ``PeakEwma`` keeps Finagle's 10 s as
a general-purpose default; ``LatencyStats`` (what the gateway balances on) uses 3 s.
Because the decay is per unit of time, a provider that recovered and is being sampled
(the latency strategy explores it even when it looks slow) sees its excess over the new
latency shrink by a factor e every ``tau_s`` whatever its sample rate: a 10x slow spell
is forgotten in about ``tau_s * ln(ratio)``, ~10 s at 3 s (~35 s at Finagle's 10 s). A
provider that *becomes* slow is noticed at once by the peak rule, whatever ``tau_s``.
Going lower than 3 s would make the estimate little more than the last sample at the
low request rates typical of LLM providers.

Everything is pure logic: the clock is injected (monotonic seconds), nothing is done
at import time, nothing does I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]

DEFAULT_TAU_S = 3.0
DEFAULT_WINDOW = 256
DEFAULT_MIN_SAMPLES = 20
PERCENTILE_REFRESH_S = 1.0
PERCENTILE_REFRESH_SAMPLES = 32


class PeakEwma:
    """A peak-sensitive, time-decayed moving average of latencies (seconds)."""

    __slots__ = ("_clock", "_estimate", "_last", "_samples", "tau_s")

    def __init__(self, tau_s: float = 10.0, clock: Clock = time.monotonic) -> None:
        if not tau_s > 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s!r}")
        self.tau_s = tau_s
        self._clock = clock
        self._estimate: float | None = None
        self._last = 0.0
        self._samples = 0

    @property
    def samples(self) -> int:
        """How many samples were observed since creation or the last ``reset``."""
        return self._samples

    def observe(self, seconds: float) -> None:
        now = self._clock()
        estimate = self._estimate
        if estimate is None or seconds > estimate:
            self._estimate = seconds
        else:
            dt = now - self._last
            w = math.exp(-dt / self.tau_s) if dt > 0 else 1.0
            self._estimate = estimate * w + seconds * (1.0 - w)
        self._last = now
        self._samples += 1

    def value(self) -> float | None:
        """The current estimate (seconds); None before any sample.

        Read, it decays towards zero with the time since the last sample (as linkerd's
        does): a provider nobody sent anything to for a while looks better and better
        until it gets a request again, whose sample then sets it right. That is how a
        provider that was slow and recovered gets traffic back even when one sequential
        client is the only source of samples."""
        estimate = self._estimate
        if estimate is None:
            return None
        dt = self._clock() - self._last
        return estimate * math.exp(-dt / self.tau_s) if dt > 0 else estimate

    def reset(self) -> None:
        self._estimate = None
        self._last = 0.0
        self._samples = 0

    def __repr__(self) -> str:
        return f"PeakEwma(tau_s={self.tau_s}, value={self._estimate}, samples={self._samples})"


class LatencyStats:
    """One provider's latency: TTFT and total peak EWMAs plus a ring for percentiles."""

    __slots__ = (
        "_clock",
        "_ring",
        "_ring_next",
        "_sorted",
        "_sorted_at",
        "_sorted_seq",
        "_total_seq",
        "min_samples",
        "total",
        "ttft",
        "window",
    )

    def __init__(
        self,
        tau_s: float = DEFAULT_TAU_S,
        window: int = DEFAULT_WINDOW,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        clock: Clock = time.monotonic,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples!r}")
        self.ttft = PeakEwma(tau_s, clock)
        self.total = PeakEwma(tau_s, clock)
        self.window = window
        self.min_samples = min_samples
        self._clock = clock
        self._ring: list[float] = []
        self._ring_next = 0
        self._total_seq = 0
        self._sorted: list[float] | None = None
        self._sorted_at = 0.0
        self._sorted_seq = 0

    def observe(self, ttft_s: float, total_s: float | None = None) -> None:
        """Record one request: its time to first byte/token and, once it is over, its
        whole latency (None while a stream is still running; see ``observe_total``)."""
        self.ttft.observe(ttft_s)
        if total_s is not None:
            self.observe_total(total_s)

    def observe_total(self, total_s: float) -> None:
        """Record only a whole-request latency (a stream whose TTFT was already seen)."""
        self.total.observe(total_s)
        ring = self._ring
        if len(ring) < self.window:
            ring.append(total_s)
        else:
            ring[self._ring_next] = total_s
        self._ring_next = (self._ring_next + 1) % self.window
        self._total_seq += 1

    def score(self, in_flight: int) -> float | None:
        """Load-weighted latency (lower is better): estimate * (in_flight + 1)."""
        estimate = self.ttft.value()
        if estimate is None:
            estimate = self.total.value()
            if estimate is None:
                return None
        return estimate * (max(in_flight, 0) + 1)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100, linear interpolation) of the last ``window``
        total latencies; None with fewer than ``min_samples`` of them. May lag the
        newest samples by up to 1 s of clock or 31 samples (see the module docstring)."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {q!r}")
        if len(self._ring) < self.min_samples:
            return None
        ordered = self._sorted
        now = self._clock()
        if (
            ordered is None
            or self._total_seq - self._sorted_seq >= PERCENTILE_REFRESH_SAMPLES
            or now - self._sorted_at >= PERCENTILE_REFRESH_S
        ):
            ordered = sorted(self._ring)
            self._sorted = ordered
            self._sorted_at = now
            self._sorted_seq = self._total_seq
        rank = (len(ordered) - 1) * q / 100.0
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        fraction = rank - low
        return ordered[low] + (ordered[high] - ordered[low]) * fraction

    def reset(self) -> None:
        self.ttft.reset()
        self.total.reset()
        self._ring = []
        self._ring_next = 0
        self._total_seq = 0
        self._sorted = None
        self._sorted_at = 0.0
        self._sorted_seq = 0

    def __repr__(self) -> str:
        return (
            f"LatencyStats(ttft={self.ttft.value()}, total={self.total.value()}, "
            f"ring={len(self._ring)}/{self.window})"
        )
