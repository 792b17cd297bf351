"""The gateway: everything built once from a ``Config``, with a start/close lifecycle.

``Gateway`` owns the pooled HTTP session, the provider runtimes, the router, metrics and
the access log, and exposes one method per endpoint. It knows nothing of the HTTP server
framework: ``server/`` calls these methods and writes their ``Response`` objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from ..auth import Authenticator
from ..cache.memory import MemoryCache
from ..cache.store import ResponseCache
from ..capabilities import CapabilityTable
from ..config import Config
from ..errors import GatewayError, NotFoundError, PayloadTooLargeError
from ..observability.logs import AccessLog, get_logger
from ..observability.metrics import CONTENT_TYPE, Metrics, NullMetrics
from ..pricing import DEFAULT_PRICES, ModelPrice, PricingTable
from ..routing import Router
from ..rules import RuleSet
from ..upstream.base import Timeouts, Transport
from .context import RequestContext
from .events import GatewayEvents, circuit_changed
from .executor import Pipeline
from .health_checks import HealthChecks
from .load import RuntimeView
from .operations import default_operations
from .responses import Response, error_response
from .runtime import ProviderRuntime, build_runtime

if TYPE_CHECKING:
    import aiohttp

    from ..cache.redis import RedisCache


class Gateway:
    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.authenticator = Authenticator(config.auth.api_keys)
        self.pricing = PricingTable(
            overrides={
                name: ModelPrice(p.input, p.output, p.cached_input, p.cache_write, p.reasoning)
                for name, p in config.pricing.items()
            }
        )
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.router = Router(config, RuntimeView(self.runtimes, self.pricing))
        self.rules = RuleSet(config.rules, config.auth.teams) if config.rules else None
        self.capabilities = CapabilityTable(config.models)
        obs = config.observability
        self.metrics = (
            metrics if metrics is not None else (Metrics() if obs.enable_metrics else NullMetrics())
        )
        self.access_log = AccessLog(
            enabled=obs.log_level in ("debug", "info"), json=obs.log_format == "json"
        )
        self.max_body_bytes = config.limits.max_body_bytes
        self.pipelines: dict[str, Pipeline] = {}
        self._session: aiohttp.ClientSession | None = None
        self._models_body: bytes | None = None
        self._models_by_id: dict[str, dict[str, Any]] = {}
        self.cache: ResponseCache | None = None
        self.health_checks: HealthChecks | None = None
        self._l2: RedisCache | None = None

    def __repr__(self) -> str:
        return f"Gateway(providers={list(self.runtimes)}, {self.router!r})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from ..upstream.client import AiohttpTransport, create_session

        session = self._session = create_session()

        def http_transport(name: str, timeouts: Timeouts) -> Transport:
            return AiohttpTransport(session, name, timeouts)

        metrics = self.metrics

        def on_circuit(provider: str, state: str) -> None:
            circuit_changed(metrics, provider, state)

        for p in self.config.providers:  # the router's view holds this very dict
            self.runtimes[p.name] = build_runtime(
                p, http_transport, self.config.resilience, on_circuit
            )
        log = get_logger()
        for runtime in self.runtimes.values():
            self.metrics.set_available(runtime.name, runtime.usable)
            if runtime.unsupported:
                log.warning(runtime.unsupported, extra={"fields": {"provider": runtime.name}})
        self.health_checks = HealthChecks(self.runtimes.values())
        self.health_checks.start()
        self.cache = await self._start_cache()
        events = GatewayEvents(self.metrics)
        self.pipelines = {
            name: Pipeline(
                operation,
                self.router,
                self.runtimes,
                self.pricing,
                self.metrics,
                self.access_log,
                cache=self.cache,
                shared_cache=self.config.cache.shared,
                log_prompts=self.config.observability.log_prompts,
                deadline_s=self.config.resilience.deadline_s,
                events=events,
                rules=self.rules,
                capabilities=self.capabilities,
            )
            for name, operation in default_operations().items()
        }

    async def _start_cache(self) -> ResponseCache | None:
        c = self.config.cache
        if not c.enabled:
            return None
        l2: RedisCache | None = None
        if c.redis_url:
            from ..cache.redis import RedisCache

            l2 = self._l2 = RedisCache(c.redis_url, on_outage=self._l2_outage)
            await l2.start()
        return ResponseCache(
            MemoryCache(c.max_entries, c.max_bytes),
            l2,
            c.ttl_s,
            on_lookup=self.metrics.cache_lookup,
        )

    def _l2_outage(self, down: bool) -> None:
        """Once per outage, not per request: Redis down is logged and counted, then quiet."""
        log = get_logger()
        if down:
            self.metrics.l2_outage()
            log.warning(
                "L2 cache (Redis) is unreachable; serving from L1 and providers until it is back"
            )
        else:
            log.info("L2 cache (Redis) is reachable again")

    async def close(self) -> None:
        if self.health_checks is not None:
            await self.health_checks.close()
        if self._l2 is not None:
            await self._l2.drain()
            await self._l2.close()
        self.access_log.flush()
        self.metrics.flush()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ helpers

    def check_size(self, content_length: int | None) -> None:
        if content_length is not None and content_length > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body of {content_length} bytes exceeds the limit of "
                f"{self.max_body_bytes} bytes (limits.max_body_bytes)"
            )

    def reject(self, ctx: RequestContext, error: GatewayError) -> Response:
        """An error before any pipeline ran (auth, size, routing of the path)."""
        self.metrics.error(error.code or error.type)
        self.metrics.request_done("none", "unknown", error.status, ctx.elapsed_s(), None, None)
        if self.access_log.enabled:
            self.access_log.write(
                {
                    "level": "info",
                    "msg": "request",
                    "request_id": ctx.request_id,
                    "status": error.status,
                    "error": error.message,
                    "error_type": error.code or error.type,
                    "latency_ms": round(ctx.elapsed_s() * 1000.0, 3),
                }
            )
        return error_response(error, ctx.response_headers())

    # ------------------------------------------------------------------ endpoints

    def authenticate(self, ctx: RequestContext) -> None:
        ctx.tenant = self.authenticator.authenticate(ctx.headers)

    def pipeline(self, endpoint: str) -> Pipeline:
        """The pipeline of chat completions, embeddings or legacy completions: the caller
        awaits its ``handle`` directly (one coroutine less per request)."""
        pipeline = self.pipelines.get(endpoint)
        assert pipeline is not None, "Gateway.start() was not awaited"
        return pipeline

    def models(self, ctx: RequestContext, model_id: str | None = None) -> Response:
        if self._models_body is None:  # the configuration is fixed: list once
            listed = self._listed_models()
            self._models_by_id = {entry["id"]: entry for entry in listed}
            self._models_body = orjson.dumps({"object": "list", "data": listed})
        if model_id is None:
            return Response(200, self._models_body, ctx.response_headers())
        entry = self._models_by_id.get(model_id)
        if entry is not None:
            return Response(200, orjson.dumps(entry), ctx.response_headers())
        try:
            targets = self.router.resolve(model_id)
        except GatewayError as error:
            if isinstance(error, NotFoundError):
                error = NotFoundError(
                    f"model {model_id!r} is not served by this gateway", param="model"
                )
            return error_response(error, ctx.response_headers())
        entry = {"id": model_id, "object": "model", "created": 0, "owned_by": targets[0].provider}
        return Response(200, orjson.dumps(entry), ctx.response_headers())

    def _listed_models(self) -> list[dict[str, Any]]:
        return [
            {"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model, owner in self.router.listed_models(DEFAULT_PRICES)
        ]

    def health(self) -> Response:
        providers: dict[str, Any] = {}
        for name, runtime in self.runtimes.items():
            providers[name] = {
                "configured": True,
                "healthy": runtime.usable
                and runtime.breaker.state != "open"
                and runtime.checked_healthy is not False,
                "circuit": runtime.breaker.state,
                "type": runtime.type,
                "in_flight": runtime.in_flight,
            }
            if runtime.unsupported:
                providers[name]["message"] = runtime.unsupported
        usable = sum(1 for p in providers.values() if p["healthy"])
        if usable == 0:
            status = "unhealthy"
        elif usable < len(self.runtimes):
            status = "degraded"
        else:
            status = "healthy"
        body: dict[str, Any] = {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "version": __version__,
            "cache": {
                "enabled": self.cache is not None,
                "l1_healthy": True,
                "l2_healthy": self._l2.healthy if self._l2 is not None else True,
                "l2_configured": self.config.cache.redis_url is not None,
            },
            "providers": providers,
        }
        if not self.runtimes:
            body["message"] = "no provider is configured"
        return Response(200, orjson.dumps(body))

    def ready(self) -> Response:
        if any(r.usable and r.checked_healthy is not False for r in self.runtimes.values()):
            return Response(200, b'{"status":"ready"}')
        reason = "no provider is configured" if not self.runtimes else "no provider is usable"
        return Response(503, orjson.dumps({"status": "not_ready", "reason": reason}))

    @staticmethod
    def live() -> Response:
        return Response(200, b'{"status":"alive"}')

    async def metrics_page(self) -> Response:
        if isinstance(self.metrics, NullMetrics):
            return Response(
                404, NotFoundError("metrics are disabled (ENABLE_METRICS=false)").to_json()
            )
        return Response(200, await self.metrics.render(), content_type=CONTENT_TYPE)
