"""Retry timing: backoff delays, the upstream's ``Retry-After``, and the request deadline.

``backoff_delay_s`` is exponential backoff with *equal jitter*: the cap doubles each retry
(``base_ms * 2**retry``, at most ``max_ms``) and the delay is drawn uniformly from the upper
half of it, ``[cap/2, cap)``, so a retry is never immediate yet concurrent retries still
spread out. ``retry`` is 0 for the first retry.

``retry_after_s`` reads how long the upstream asked us to wait, in this order of priority:
``retry-after-ms`` (milliseconds, sent by OpenAI and Azure), then ``retry-after`` as
seconds or as an HTTP-date (a date in the past means "now": 0). A header that is malformed,
negative or not finite is ignored and the next one is tried; none usable gives ``None``.

``RetryPolicy`` turns a ``ResilienceConfig`` into decisions: how many retries a target
gets, how long to wait before each (the upstream's wait if it is short enough, ``None`` if
it is longer than ``retry_after_max_s``: do not wait, fail over), and whether a wait fits in
the time left. ``Deadline`` is the whole request's time budget on an injected monotonic clock.

Everything here is pure: clocks and randomness are parameters, nothing is done at import.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ResilienceConfig

# A plain non-negative decimal: no sign, exponent, underscores, "nan" or "inf" (which
# float() would all accept).
_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")
# 2.0 ** 1023 is the largest power of two a float holds; beyond it the cap is max_ms anyway.
_MAX_EXPONENT = 1023


def backoff_delay_s(retry: int, base_ms: float, max_ms: float, rand: Callable[[], float]) -> float:
    """The delay in seconds before retry number ``retry`` (0-based), with equal jitter.

    ``rand`` returns a float in [0, 1); the result lies in ``[cap/2, cap)`` where
    ``cap = min(max_ms, base_ms * 2**retry) / 1000``. A zero base (or max) gives 0.
    """
    if retry < 0:
        raise ValueError(f"retry must be >= 0, got {retry}")
    if not base_ms > 0 or not max_ms > 0:
        return 0.0
    cap = min(max_ms, base_ms * 2.0 ** min(retry, _MAX_EXPONENT)) / 1000.0
    half = cap / 2.0
    return half + rand() * half


def _decimal(value: str) -> float | None:
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _http_date_s(value: str, now_wall: float) -> float | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about the local zone
        when = when.replace(tzinfo=UTC)
    try:
        wait = when.timestamp() - now_wall
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, wait) if math.isfinite(wait) else None


def retry_after_s(headers: Mapping[str, str], now_wall: float) -> float | None:
    """The wait in seconds the upstream asked for, or ``None`` when it asked for none.

    ``headers`` has lower-case names; ``now_wall`` is the wall clock (``time.time()``),
    needed only for an HTTP-date.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        ms = _decimal(value)
        if ms is not None:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        seconds = _decimal(value)
        if seconds is not None:
            return seconds
        return _http_date_s(value, now_wall)
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry decisions for one target, from a ``ResilienceConfig``."""

    max_retries: int  # retries per target, after the first attempt
    backoff_base_ms: float
    backoff_max_ms: float
    retry_after_max_s: float  # a longer upstream wait is not waited for
    rand: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    @classmethod
    def from_config(
        cls, cfg: ResilienceConfig, rand: Callable[[], float] = random.random
    ) -> RetryPolicy:
        return cls(
            max_retries=cfg.max_retries,
            backoff_base_ms=cfg.backoff_base_ms,
            backoff_max_ms=cfg.backoff_max_ms,
            retry_after_max_s=cfg.retry_after_max_s,
            rand=rand,
        )

    def delay_s(self, retry: int, retry_after: float | None) -> float | None:
        """The wait before retry number ``retry`` (0-based).

        With an upstream ``retry_after``: that wait, or ``None`` when it is longer than
        ``retry_after_max_s`` (do not wait for this target: fail over). Without: the backoff.
        """
        if retry_after is not None:
            if not retry_after <= self.retry_after_max_s:  # NaN is too long too
                return None
            return max(0.0, retry_after)
        return backoff_delay_s(retry, self.backoff_base_ms, self.backoff_max_ms, self.rand)

    def fits(self, delay_s: float, remaining_s: float) -> bool:
        """Whether a wait of ``delay_s`` leaves time for the retry itself."""
        return delay_s < remaining_s


class Deadline:
    """A time budget of ``total_s`` seconds, started at construction on ``clock``.

    ``clock`` returns monotonic seconds. ``start`` (default: ``clock()`` now) exists for
    ``shortened``, which keeps the original start.
    """

    __slots__ = ("_clock", "_end", "_start", "_total_s")

    def __init__(
        self,
        total_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        start: float | None = None,
    ) -> None:
        self._clock = clock
        self._start = clock() if start is None else start
        self._total_s = total_s
        self._end = self._start + total_s

    @property
    def total_s(self) -> float:
        return self._total_s

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self._end - self._clock() <= 0.0

    def shortened(self, client_s: float | None) -> Deadline:
        """A deadline from the same start, shortened to ``client_s`` if that is sooner.

        The client may shorten the budget, never lengthen it; ``None`` or NaN changes
        nothing, a negative value is an already expired budget.
        """
        if client_s is None or math.isnan(client_s) or client_s >= self._total_s:
            return self  # unchanged (a deadline is never modified, so it can be shared)
        return Deadline(max(0.0, client_s), self._clock, start=self._start)

    def __repr__(self) -> str:
        return f"Deadline(total_s={self._total_s}, remaining_s={self.remaining_s():.3f})"
