"""What the resilience executor reports, turned into metrics and log lines."""

from __future__ import annotations

from ..errors import GatewayError
from ..observability.logs import get_logger
from ..observability.metrics import Metrics
from .attempts import Events
from .context import RequestContext


class GatewayEvents(Events):
    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __repr__(self) -> str:
        return "GatewayEvents()"

    def retry(self, provider: str, error: GatewayError) -> None:
        self._metrics.retry(provider)

    def failover(self, ctx: RequestContext, provider: str, error: GatewayError) -> None:
        self._metrics.failover(provider)
        get_logger().warning(
            "failover",
            extra={
                "fields": {
                    "request_id": ctx.request_id,
                    "provider": provider,
                    "error": error.message,
                    "error_type": error.code or error.type,
                }
            },
        )

    def hedge(self, ctx: RequestContext, outcome: str) -> None:
        self._metrics.hedge(outcome)


def circuit_changed(metrics: Metrics, provider: str, state: str) -> None:
    """A provider's circuit changed state (closed, open, half_open)."""
    metrics.set_available(provider, state != "open")
    log = get_logger()
    fields = {"fields": {"provider": provider, "circuit": state}}
    if state == "open":
        log.warning(f"circuit of provider {provider!r} opened", extra=fields)
    else:
        log.info(f"circuit of provider {provider!r} is {state.replace('_', '-')}", extra=fields)
