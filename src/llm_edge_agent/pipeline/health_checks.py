"""Active health checks: a cheap periodic probe per provider that asks for one.

A provider with ``health_check_interval_s > 0`` is probed that often, in every worker, with
a request that costs nothing (the provider's model list: ``GET /models`` and the like,
``health_request()`` on its translator). The probe's verdict:

* **healthy** (any answer but a 5xx, 401 or 403: a 404 or a 429 still proves the server
  is up and the key is accepted): an open or half-open circuit is closed at once, so traffic
  comes back before a half-open probe would have let it;
* **unhealthy** (connect error, timeout, 5xx, 401/403): the circuit is opened for
  ``breaker_open_s``, so traffic goes to other targets before any request finds out, and
  the provider reads unhealthy in ``/health`` (and ``/health/ready`` when no provider is
  left).

The ``mock`` provider answers its probe locally. Bedrock has no free endpoint; the config
refuses health checks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from ..errors import UpstreamError
from ..observability.logs import get_logger
from ..providers.base import HealthProbed
from ..upstream.base import Timeouts
from .runtime import ProviderRuntime

UNHEALTHY_STATUSES = frozenset({401, 403})


def healthy_status(status: int) -> bool:
    return status < 500 and status not in UNHEALTHY_STATUSES


class HealthChecks:
    """One probing task per provider that asks for health checks."""

    __slots__ = ("_runtimes", "_tasks")

    def __init__(self, runtimes: Iterable[ProviderRuntime]) -> None:
        self._runtimes = [
            r
            for r in runtimes
            if r.config.health_check_interval_s > 0
            and r.transport is not None
            and isinstance(r.translator, HealthProbed)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"HealthChecks({[r.name for r in self._runtimes]})"

    def start(self) -> None:
        for runtime in self._runtimes:
            self._tasks.append(asyncio.create_task(self._loop(runtime)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, runtime: ProviderRuntime) -> None:
        interval = runtime.config.health_check_interval_s
        while True:
            apply_verdict(runtime, await probe(runtime))
            await asyncio.sleep(interval)


async def probe(runtime: ProviderRuntime) -> bool:
    """One probe: True when the provider answered like a healthy one."""
    translator, transport = runtime.translator, runtime.transport
    if not isinstance(translator, HealthProbed) or transport is None:
        return False
    timeout = runtime.config.health_check_timeout_s
    timeouts = Timeouts(timeout, min(timeout, runtime.config.connect_timeout_s), timeout)
    try:
        response = await transport.send(translator.health_request(), timeouts)
    except UpstreamError:
        return False
    return healthy_status(response.status)


def apply_verdict(runtime: ProviderRuntime, healthy: bool) -> None:
    previous = runtime.checked_healthy
    runtime.checked_healthy = healthy
    breaker = runtime.breaker
    if healthy:
        if breaker.state != "closed":
            breaker.force_close()
    else:
        breaker.force_open()
    if previous is not healthy:
        log = get_logger()
        fields = {"fields": {"provider": runtime.name, "healthy": healthy}}
        if healthy:
            log.info(f"health check of provider {runtime.name!r} passes", extra=fields)
        else:
            log.warning(f"health check of provider {runtime.name!r} fails", extra=fields)
