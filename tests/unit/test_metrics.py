"""Metrics: batched per-worker sums written to prometheus_client's multiprocess files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_edge_agent.observability.metrics import MAX_MODEL_LABELS, Metrics, render_metrics
from llm_edge_agent.pricing import TokenUsage


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not re.match(rf"{name}[{{ ]", line):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return Metrics()


@pytest.mark.asyncio
async def test_samples_are_batched_until_flush_and_written_exactly_once(metrics: Metrics) -> None:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=4, cached_tokens=3)
    for _ in range(3):
        metrics.request_done("p", "m", 200, 0.02, usage, 0.5)
    assert sample(render_metrics().decode(), "llm_edge_requests_total") == 0
    metrics.flush()
    text = render_metrics().decode()
    assert sample(text, "llm_edge_requests_total", provider="p", model="m", status="200") == 3
    assert sample(text, "llm_edge_tokens_total", type="prompt") == 30
    assert sample(text, "llm_edge_tokens_total", type="completion") == 12
    assert sample(text, "llm_edge_tokens_total", type="cached") == 9
    assert sample(text, "llm_edge_cost_usd_total", provider="p") == pytest.approx(1.5)
    metrics.flush()  # nothing pending: flushing again adds nothing
    assert sample(render_metrics().decode(), "llm_edge_requests_total") == 3


@pytest.mark.asyncio
async def test_render_includes_what_was_recorded_just_before(metrics: Metrics) -> None:
    metrics.request_done("p", "m", 502, 0.1, None, None)
    metrics.error("upstream_error")
    text = (await metrics.render()).decode()
    assert sample(text, "llm_edge_requests_total", status="502") == 1
    assert sample(text, "llm_edge_request_errors_total", type="upstream_error") == 1


def test_histogram_buckets_are_cumulative_and_sum_is_exact(metrics: Metrics) -> None:
    for seconds in (0.001, 0.02, 0.02, 3.0, 500.0):
        metrics.upstream_latency("p", seconds)
    metrics.flush()
    text = render_metrics().decode()
    name = "llm_edge_provider_latency_seconds_bucket"
    assert sample(text, name, le="0.005") == 1
    assert sample(text, name, le="0.025") == 3
    assert sample(text, name, le="5.0") == 4
    assert sample(text, name, le="+Inf") == 5
    assert sample(text, "llm_edge_provider_latency_seconds_count") == 5
    assert sample(text, "llm_edge_provider_latency_seconds_sum") == pytest.approx(503.041)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket(metrics: Metrics) -> None:
    metrics.upstream_latency("p", 0.025)
    metrics.flush()
    text = render_metrics().decode()
    assert sample(text, "llm_edge_provider_latency_seconds_bucket", le="0.01") == 0
    assert sample(text, "llm_edge_provider_latency_seconds_bucket", le="0.025") == 1


def test_active_requests_gauge_follows_in_flight_count(metrics: Metrics) -> None:
    metrics.active_inc()
    metrics.active_inc()
    metrics.active_dec()
    metrics.flush()
    assert sample(render_metrics().decode(), "llm_edge_active_requests") == 1
    metrics.active_dec()
    metrics.flush()
    assert sample(render_metrics().decode(), "llm_edge_active_requests") == 0


def test_model_label_is_capped(metrics: Metrics) -> None:
    for i in range(MAX_MODEL_LABELS + 50):
        metrics.request_done("p", f"model-{i}", 200, 0.01, None, None)
    metrics.flush()
    text = render_metrics().decode()
    assert sample(text, "llm_edge_requests_total", model="other") == 50
    models = set(re.findall(r'llm_edge_requests_total\{[^}]*model="([^"]*)"', text))
    assert len(models) == MAX_MODEL_LABELS + 1


def test_metrics_refuse_to_start_without_a_multiprocess_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics()


def test_request_durations_fill_the_duration_histogram_per_provider_and_model(
    metrics: Metrics,
) -> None:
    metrics.request_done("p", "m", 200, 0.004, None, None)
    metrics.request_done("p", "m", 500, 0.02, None, None)  # another status, same series
    metrics.request_done("p", "m", 200, 700.0, None, None)
    metrics.request_done("q", "m", 200, 0.004, None, None)
    metrics.flush()
    text = render_metrics().decode()
    name = "llm_edge_request_duration_seconds"
    assert sample(text, f"{name}_bucket", provider="p", le="0.005") == 1
    assert sample(text, f"{name}_bucket", provider="p", le="0.025") == 2
    assert sample(text, f"{name}_bucket", provider="p", le="120.0") == 2
    assert sample(text, f"{name}_bucket", provider="p", le="+Inf") == 3
    assert sample(text, f"{name}_count", provider="p", model="m") == 3
    assert sample(text, f"{name}_sum", provider="p") == pytest.approx(700.024)
    assert sample(text, f"{name}_count", provider="q") == 1
    assert sample(text, "llm_edge_requests_total", provider="p", status="500") == 1


def test_cache_lookups_are_counted_per_tier_and_outcome(metrics: Metrics) -> None:
    for tier, hit in (("l1", True), ("l1", True), ("l1", False), ("l2", True), ("l2", False)):
        metrics.cache_lookup(tier, hit)
    metrics.flush()
    metrics.cache_lookup("l1", True)
    metrics.flush()
    text = render_metrics().decode()
    assert sample(text, "llm_edge_cache_hits_total", tier="l1") == 3
    assert sample(text, "llm_edge_cache_misses_total", tier="l1") == 1
    assert sample(text, "llm_edge_cache_hits_total", tier="l2") == 1
    assert sample(text, "llm_edge_cache_misses_total", tier="l2") == 1


@pytest.mark.asyncio  # in a loop, so that records stay pending until flush()
async def test_invented_model_names_past_the_cap_add_no_pending_records(metrics: Metrics) -> None:
    for i in range(MAX_MODEL_LABELS):
        metrics.request_done("p", f"model-{i}", 200, 0.01, None, None)
    before = len(metrics._done)
    for i in range(1000):
        metrics.request_done("p", f"invented-{i}", 200, 0.01, TokenUsage(2, 1), 0.25)
    assert len(metrics._done) == before + 1  # the one "other" record
    metrics.flush()
    text = render_metrics().decode()
    assert sample(text, "llm_edge_requests_total", model="other") == 1000
    assert sample(text, "llm_edge_tokens_total", model="other", type="prompt") == 2000
    assert sample(text, "llm_edge_cost_usd_total", model="other") == pytest.approx(250.0)
