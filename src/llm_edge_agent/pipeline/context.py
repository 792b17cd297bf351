"""Per-request state, created once per request and passed down the stages."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

MAX_REQUEST_ID_CHARS = 128


def request_ids() -> Iterator[str]:
    """Request ids: 32 hex characters, a random per-process prefix and a counter.

    Unique across workers and restarts without a system call per request."""
    prefix = os.urandom(8).hex()
    start = int.from_bytes(os.urandom(4))
    return (f"{prefix}{n:016x}" for n in itertools.count(start))


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isascii() and value.isprintable()


class RequestContext:
    __slots__ = (
        "cache_status",
        "headers",
        "journey",
        "model",
        "provider",
        "request_id",
        "started",
        "tenant",
        "upstream_s",
    )

    def __init__(self, headers: Mapping[str, str], ids: Iterator[str]) -> None:
        self.started = time.perf_counter()
        self.headers = headers
        client_id = headers.get("x-request-id")
        self.request_id = client_id if client_id and _valid_request_id(client_id) else next(ids)
        self.tenant: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.cache_status = "bypass"
        self.upstream_s = 0.0  # time spent waiting on providers
        self.journey: Any = None  # the attempts' story (``attempts.Journey``), once routed

    def __repr__(self) -> str:
        return (
            f"RequestContext({self.request_id}, model={self.model!r}, provider={self.provider!r})"
        )

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def overhead_ms(self, elapsed_s: float | None = None) -> float:
        """Time not spent waiting on providers, up to now or to ``elapsed_s``."""
        if elapsed_s is None:
            elapsed_s = self.elapsed_s()
        return max(0.0, (elapsed_s - self.upstream_s) * 1000.0)

    def response_headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id, "x-llm-edge-cache": self.cache_status}
        if self.provider is not None:
            headers["x-llm-edge-provider"] = self.provider
        return headers
