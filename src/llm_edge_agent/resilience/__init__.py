"""Resilience: retries and backoff, circuit breakers, latency tracking, health probes."""
