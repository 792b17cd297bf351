"""Prometheus metrics (INTERFACE §8), correct across worker processes.

prometheus_client's multiprocess mode: each worker writes its samples to memory-mapped
files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor before any worker starts)
and a scrape, on any worker or on the metrics listener, merges every worker's files, so
each worker's counts appear exactly once. Label children are bound once and reused; the
``model`` label is capped so clients inventing model names cannot explode cardinality.
"""

from __future__ import annotations

import os
from typing import Any

from ..pricing import TokenUsage

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_MODEL_LABELS = 500
OTHER_MODEL = "other"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        if not os.environ.get(MULTIPROC_ENV):
            raise RuntimeError(f"{MULTIPROC_ENV} must be set before metrics are created")
        from prometheus_client import Counter, Gauge, Histogram

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
        self._children: dict[tuple[Any, ...], Any] = {}
        self._models: set[str] = set()
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

    def request_done(
        self,
        provider: str,
        model: str,
        status: int,
        duration_s: float,
        usage: TokenUsage | None,
        cost_usd: float | None,
    ) -> None:
        model = self._model(model)
        self._child(self.requests, provider, model, str(status)).inc()
        self._child(self.duration, provider, model).observe(duration_s)
        if usage is not None:
            if usage.prompt_tokens:
                self._child(self.tokens, provider, model, "prompt").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                self._child(self.tokens, provider, model, "completion").inc(usage.completion_tokens)
            if usage.cached_tokens:
                self._child(self.tokens, provider, model, "cached").inc(usage.cached_tokens)
        if cost_usd:
            self._child(self.cost, provider, model).inc(cost_usd)

    def upstream_latency(self, provider: str, seconds: float) -> None:
        self._child(self.provider_latency, provider).observe(seconds)

    def error(self, kind: str) -> None:
        self._child(self.errors, kind).inc()

    def cache_lookup(self, tier: str, hit: bool) -> None:
        self._child(self.cache_hits if hit else self.cache_misses, tier).inc()

    def set_available(self, provider: str, available: bool) -> None:
        self._child(self.available, provider).set(1 if available else 0)

    def active_inc(self) -> None:
        self.active.inc()

    def active_dec(self) -> None:
        self.active.dec()


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

    def active_inc(self) -> None:
        pass

    def active_dec(self) -> None:
        pass


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
