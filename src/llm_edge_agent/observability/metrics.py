"""Prometheus metrics (INTERFACE §8), correct across worker processes.

prometheus_client's multiprocess mode: each worker writes its samples to memory-mapped
files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor before any worker starts)
and a scrape, on any worker or on the metrics listener, merges every worker's files, so
each worker's counts appear exactly once.

Writing a sample to the shared files costs a lock and a struct pack, about ten of them a
request; so a request only adds to plain per-worker sums, and those are written out at
most every ``FLUSH_INTERVAL_S`` (and at shutdown). A finished request touches one pending
record, found by a single dict lookup on (provider, model, status), that holds its count,
duration histogram, tokens and cost: the per-request price is a few additions, whatever
the number of series it feeds. A scrape flushes its own worker, then
waits one interval so every other worker has flushed what happened before the scrape.
Label children are bound once and reused; the ``model`` label is capped so clients
inventing model names cannot explode cardinality.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections import defaultdict
from typing import Any

from ..pricing import TokenUsage
from .batching import FlushTimer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_MODEL_LABELS = 500
OTHER_MODEL = "other"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_INTERVAL_S = 0.05

# A pending request record: [count, seconds, prompt, completion, cached, cost, *buckets],
# bucket i counting durations up to DURATION_BUCKETS[i] (the last one: above them all).
_COUNT, _SECONDS, _PROMPT, _COMPLETION, _CACHED, _COST, _BUCKETS = range(7)
_TOKEN_FIELDS = ((_PROMPT, "prompt"), (_COMPLETION, "completion"), (_CACHED, "cached"))


class Metrics:
    def __init__(self) -> None:
        if not os.environ.get(MULTIPROC_ENV):
            raise RuntimeError(f"{MULTIPROC_ENV} must be set before metrics are created")
        from prometheus_client import Counter, Gauge, Histogram, values

        # prometheus_client checks os.getpid() on every sample write, in case the process
        # forked; that system call was ~10% of a request's CPU. Workers never fork after
        # creating their metrics, so the pid is read once. (Must precede metric creation.)
        pid = os.getpid()
        values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
            process_identifier=lambda: pid
        )

        self.requests = Counter(
            "llm_edge_requests",
            "Requests by provider, model and HTTP status",
            ["provider", "model", "status"],
            registry=None,
        )
        self.duration = Histogram(
            "llm_edge_request_duration_seconds",
            "Whole request duration",
            ["provider", "model"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.cache_hits = Counter(
            "llm_edge_cache_hits", "Cache hits by tier", ["tier"], registry=None
        )
        self.cache_misses = Counter(
            "llm_edge_cache_misses", "Cache misses by tier", ["tier"], registry=None
        )
        self.tokens = Counter(
            "llm_edge_tokens",
            "Tokens by provider, model and type (prompt, completion, cached)",
            ["provider", "model", "type"],
            registry=None,
        )
        self.cost = Counter(
            "llm_edge_cost_usd",
            "Cost in USD by provider and model",
            ["provider", "model"],
            registry=None,
        )
        self.available = Gauge(
            "llm_edge_provider_available",
            "1 when the provider can take requests",
            ["provider"],
            multiprocess_mode="livemin",
            registry=None,
        )
        self.active = Gauge(
            "llm_edge_active_requests",
            "Requests in flight",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.provider_latency = Histogram(
            "llm_edge_provider_latency_seconds",
            "Upstream time (to the first byte for streams)",
            ["provider"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.errors = Counter("llm_edge_request_errors", "Errors by type", ["type"], registry=None)
        self.l2_outages = Counter(
            "llm_edge_cache_l2_outages",
            "Times the Redis cache tier became unreachable",
            registry=None,
        )
        self.retries = Counter(
            "llm_edge_retries",
            "Retries of the same provider after a failure",
            ["provider"],
            registry=None,
        )
        self.failovers = Counter(
            "llm_edge_failovers",
            "Times a request gave up on a provider and went to the next target",
            ["provider"],
            registry=None,
        )
        self.hedges = Counter(
            "llm_edge_hedges",
            "Hedged requests: started, and whether the hedge (won) or the first (lost) answered",
            ["outcome"],
            registry=None,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._models: set[str] = set()
        # Pending sums, written out by flush(): counter child -> amount; histogram child ->
        # [sum, count per bucket]; the in-flight count is a plain integer.
        self._counts: defaultdict[Any, float] = defaultdict(float)
        self._histograms: dict[Any, list[float]] = {}
        self._done: dict[tuple[str, str, int], list[float]] = {}
        self._lookups: defaultdict[tuple[str, bool], int] = defaultdict(int)
        self._active = 0
        self._active_written = 0
        self._timer = FlushTimer(FLUSH_INTERVAL_S, self.flush)
        for tier in ("l1", "l2"):
            self.cache_hits.labels(tier)
            self.cache_misses.labels(tier)
        self.active.set(0)

    def __repr__(self) -> str:
        return f"Metrics(children={len(self._children)}, models={len(self._models)})"

    def _model(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODEL_LABELS:
            return OTHER_MODEL
        self._models.add(model)
        return model

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _add(self, metric: Any, amount: float, *labels: str) -> None:
        self._counts[self._child(metric, *labels)] += amount
        self._timer.schedule()

    def _pending_histogram(self, child: Any) -> list[float]:
        """The child's pending ``[sum, count per bucket...]``, until the next flush."""
        pending = self._histograms.get(child)
        if pending is None:
            pending = self._histograms[child] = [0.0] * (len(child._upper_bounds) + 1)
        return pending

    def _observe(self, metric: Any, value: float, *labels: str) -> None:
        child = self._child(metric, *labels)
        pending = self._pending_histogram(child)
        pending[0] += value
        # Multiprocess histograms store per-bucket counts; the collector accumulates them.
        pending[1 + bisect.bisect_left(child._upper_bounds, value)] += 1
        self._timer.schedule()

    def flush(self) -> None:
        """Write the pending sums to the shared files."""
        self._timer.cancel()
        self._flush_done()
        lookups, self._lookups = self._lookups, defaultdict(int)
        for (tier, hit), n in lookups.items():
            self._counts[self._child(self.cache_hits if hit else self.cache_misses, tier)] += n
        counts, self._counts = self._counts, defaultdict(float)
        for child, amount in counts.items():
            child.inc(amount)
        histograms, self._histograms = self._histograms, {}
        for child, pending in histograms.items():
            child._sum.inc(pending[0])
            for bucket, count in zip(child._buckets, pending[1:], strict=True):
                if count:
                    bucket.inc(count)
        if self._active != self._active_written:
            self._active_written = self._active
            self.active.set(self._active)

    async def render(self) -> bytes:
        """Every worker's samples up to now, this one's included."""
        self.flush()
        await asyncio.sleep(FLUSH_INTERVAL_S * 1.5)
        return render_metrics()

    def _flush_done(self) -> None:
        """Spread the pending request records over their series (for ``flush``)."""
        done, self._done = self._done, {}
        counts = self._counts
        for (provider, model, status), record in done.items():
            counts[self._child(self.requests, provider, model, str(status))] += record[_COUNT]
            pending = self._pending_histogram(self._child(self.duration, provider, model))
            pending[0] += record[_SECONDS]
            for i, n in enumerate(record[_BUCKETS:], 1):
                pending[i] += n
            for index, kind in _TOKEN_FIELDS:
                if record[index]:
                    counts[self._child(self.tokens, provider, model, kind)] += record[index]
            if record[_COST]:
                counts[self._child(self.cost, provider, model)] += record[_COST]

    def request_done(
        self,
        provider: str,
        model: str,
        status: int,
        duration_s: float,
        usage: TokenUsage | None,
        cost_usd: float | None,
    ) -> None:
        record = self._done.get((provider, model, status))
        if record is None:
            record = self._record(provider, model, status)
        record[_COUNT] += 1
        record[_SECONDS] += duration_s
        record[_BUCKETS + bisect.bisect_left(DURATION_BUCKETS, duration_s)] += 1
        if usage is not None:
            record[_PROMPT] += usage.prompt_tokens
            record[_COMPLETION] += usage.completion_tokens
            record[_CACHED] += usage.cached_tokens
        if cost_usd:
            record[_COST] += cost_usd
        self._timer.schedule()

    def _record(self, provider: str, model: str, status: int) -> list[float]:
        # Filed under the label it is counted as: a model past the cap shares "other"'s
        # record and adds no key of its own, so invented names cannot grow the dict.
        key = (provider, self._model(model), status)
        record = self._done.get(key)
        if record is None:
            record = self._done[key] = [0.0] * (_BUCKETS + len(DURATION_BUCKETS) + 1)
        return record

    def extra_spend(
        self, provider: str, model: str, usage: TokenUsage | None, cost_usd: float | None
    ) -> None:
        """Tokens and cost of an upstream answer no client got (a hedge that lost)."""
        self._spent(provider, self._model(model), usage, cost_usd)

    def _spent(
        self, provider: str, model: str, usage: TokenUsage | None, cost_usd: float | None
    ) -> None:
        if usage is not None:
            if usage.prompt_tokens:
                self._add(self.tokens, usage.prompt_tokens, provider, model, "prompt")
            if usage.completion_tokens:
                self._add(self.tokens, usage.completion_tokens, provider, model, "completion")
            if usage.cached_tokens:
                self._add(self.tokens, usage.cached_tokens, provider, model, "cached")
        if cost_usd:
            self._add(self.cost, cost_usd, provider, model)

    def upstream_latency(self, provider: str, seconds: float) -> None:
        self._observe(self.provider_latency, seconds, provider)

    def error(self, kind: str) -> None:
        self._add(self.errors, 1, kind)

    def cache_lookup(self, tier: str, hit: bool) -> None:
        self._lookups[tier, hit] += 1
        self._timer.schedule()

    def set_available(self, provider: str, available: bool) -> None:
        self._child(self.available, provider).set(1 if available else 0)

    def l2_outage(self) -> None:
        self.l2_outages.inc()  # rare: written at once, not batched

    def retry(self, provider: str) -> None:
        self._add(self.retries, 1, provider)

    def failover(self, provider: str) -> None:
        self._add(self.failovers, 1, provider)

    def hedge(self, outcome: str) -> None:
        self._add(self.hedges, 1, outcome)

    def active_inc(self) -> None:
        self._active += 1
        self._timer.schedule()

    def active_dec(self) -> None:
        self._active -= 1
        self._timer.schedule()


class NullMetrics(Metrics):
    """``ENABLE_METRICS=false``: every call is free."""

    def __init__(self) -> None:
        pass

    def __repr__(self) -> str:
        return "NullMetrics()"

    def request_done(self, *args: Any, **kwargs: Any) -> None:
        pass

    def upstream_latency(self, provider: str, seconds: float) -> None:
        pass

    def error(self, kind: str) -> None:
        pass

    def cache_lookup(self, tier: str, hit: bool) -> None:
        pass

    def set_available(self, provider: str, available: bool) -> None:
        pass

    def l2_outage(self) -> None:
        pass

    def retry(self, provider: str) -> None:
        pass

    def extra_spend(self, *args: Any, **kwargs: Any) -> None:
        pass

    def failover(self, provider: str) -> None:
        pass

    def hedge(self, outcome: str) -> None:
        pass

    def active_inc(self) -> None:
        pass

    def active_dec(self) -> None:
        pass

    def flush(self) -> None:
        pass

    async def render(self) -> bytes:
        return b""


def render_metrics() -> bytes:
    """Every worker's samples, merged (runs on any process that shares the directory)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
