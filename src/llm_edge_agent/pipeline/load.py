"""The live ``LoadView`` strategies read: each provider runtime's circuit, bulkhead,
in-flight count and latency, and the pricing table for the cost of a request."""

from __future__ import annotations

from collections.abc import Mapping

from ..pricing import PricingTable, TokenUsage
from ..strategies import RequestSize
from .runtime import ProviderRuntime


class RuntimeView:
    __slots__ = ("_pricing", "_runtimes")

    def __init__(self, runtimes: Mapping[str, ProviderRuntime], pricing: PricingTable) -> None:
        self._runtimes = runtimes  # filled in when the gateway starts
        self._pricing = pricing

    def __repr__(self) -> str:
        return f"RuntimeView({list(self._runtimes)})"

    def available(self, provider: str) -> bool:
        runtime = self._runtimes.get(provider)
        return runtime is not None and runtime.available

    def in_flight(self, provider: str) -> int:
        runtime = self._runtimes.get(provider)
        return runtime.in_flight if runtime is not None else 0

    def latency_score(self, provider: str) -> float | None:
        runtime = self._runtimes.get(provider)
        return runtime.latency.score(runtime.in_flight) if runtime is not None else None

    def cost(self, provider: str, model: str, size: RequestSize) -> float | None:
        runtime = self._runtimes.get(provider)
        usage = TokenUsage(size.prompt_tokens, size.output_tokens)
        cost = self._pricing.cost(model, usage)
        if cost is None or runtime is None:
            return cost
        return cost * runtime.config.cost_weight
