"""Map an upstream HTTP failure onto the error tree (shared by every translator)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..errors import UpstreamAuthError, UpstreamClientError, UpstreamError
from ..resilience.backoff import retry_after_s

MAX_MESSAGE_CHARS = 1000


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` seconds or an HTTP date
    (``resilience.backoff.retry_after_s``; ``now`` is wall-clock time)."""
    return retry_after_s(headers, time.time() if now is None else now)


def error_for_status(
    provider: str,
    status: int,
    message: str | None,
    headers: Mapping[str, str],
    *,
    param: str | None = None,
    code: str | None = None,
) -> UpstreamError:
    """One status table for every provider. ``message`` is the provider's own text."""
    if status in (401, 403):
        # The provider's message may echo part of our key: never relay it.
        return UpstreamAuthError(
            f"provider {provider!r} rejected the gateway's API key (HTTP {status}); "
            "check the provider key in the gateway configuration",
            provider=provider,
            upstream_status=status,
        )
    text = (message or "").strip()[:MAX_MESSAGE_CHARS] or f"HTTP {status}"
    if status == 408 or status == 429 or status >= 500:
        return UpstreamError(
            f"provider {provider!r} failed: {text}",
            provider=provider,
            upstream_status=status,
            retry_after_s=parse_retry_after(headers),
        )
    if 400 <= status < 500:
        return UpstreamClientError(
            text, provider=provider, upstream_status=status, status=status, param=param, code=code
        )
    return UpstreamError(
        f"provider {provider!r} returned unexpected HTTP {status}",
        provider=provider,
        upstream_status=status,
    )
