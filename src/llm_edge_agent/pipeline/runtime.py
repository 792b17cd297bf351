"""Per-provider runtime state: its translator, transport, timeouts and in-flight count."""

from __future__ import annotations

from collections.abc import Callable

from ..config import DEFAULT_AWS_REGION, DEFAULT_BASE_URLS, ProviderConfig, ResilienceConfig
from ..providers.anthropic import AnthropicTranslator
from ..providers.azure import AzureTranslator
from ..providers.base import Translator
from ..providers.bedrock import BedrockTranslator
from ..providers.gemini import GeminiTranslator
from ..providers.openai import OpenAITranslator
from ..providers.sigv4 import AwsCredentials
from ..resilience.backoff import RetryPolicy
from ..resilience.breaker import CircuitBreaker
from ..resilience.latency import LatencyStats
from ..upstream.base import Timeouts, Transport
from ..upstream.mock import MockTransport

MOCK_BASE_URL = "http://mock.invalid/v1"


def base_url_for(config: ProviderConfig) -> str:
    url = (config.base_url or DEFAULT_BASE_URLS.get(config.type, "")).rstrip("/")
    if config.type in ("ollama", "vllm") and not url.endswith("/v1"):
        url += "/v1"
    return url


class ProviderRuntime:
    """One provider (deployment) in one worker: how to talk to it, and what is known
    about it now (in flight, circuit, latency)."""

    __slots__ = (
        "breaker",
        "checked_healthy",
        "config",
        "in_flight",
        "latency",
        "name",
        "resilience",
        "retry",
        "timeouts",
        "translator",
        "transport",
        "type",
        "unsupported",
    )

    def __init__(
        self,
        config: ProviderConfig,
        translator: Translator | None,
        transport: Transport | None,
        unsupported: str | None = None,
        resilience: ResilienceConfig | None = None,
        on_circuit: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.resilience = config.resilience or resilience or ResilienceConfig()
        name = config.name

        def changed(state: str) -> None:
            if on_circuit is not None:
                on_circuit(name, state)

        self.breaker = CircuitBreaker.from_config(self.resilience, on_change=changed)
        self.retry = RetryPolicy.from_config(self.resilience)
        self.latency = LatencyStats()
        self.checked_healthy: bool | None = None  # the last active health check's verdict
        self.name = config.name
        self.type = config.type
        self.translator = translator
        self.transport = transport
        self.timeouts = Timeouts(
            config.timeout_s, config.connect_timeout_s, config.stream_idle_timeout_s
        )
        self.in_flight = 0
        self.unsupported = unsupported

    def __repr__(self) -> str:
        return f"ProviderRuntime({self.name!r}, type={self.type!r}, in_flight={self.in_flight})"

    @property
    def usable(self) -> bool:
        return self.translator is not None and self.transport is not None

    @property
    def available(self) -> bool:
        """Usable, circuit letting calls through, not cooling down, bulkhead not full."""
        return self.usable and self.breaker.available and not self.full

    @property
    def full(self) -> bool:
        return self.in_flight >= self.config.max_concurrency


def build_runtime(
    config: ProviderConfig,
    http_transport: Callable[[str, Timeouts], Transport],
    resilience: ResilienceConfig | None = None,
    on_circuit: Callable[[str, str], None] | None = None,
) -> ProviderRuntime:
    """``resilience`` is the global ``[resilience]`` (a provider's own table wins);
    ``on_circuit(provider, state)`` is told of every circuit change."""

    def runtime(
        translator: Translator | None,
        transport: Transport | None = None,
        unsupported: str | None = None,
    ) -> ProviderRuntime:
        return ProviderRuntime(config, translator, transport, unsupported, resilience, on_circuit)

    if config.type == "mock":
        mock = MockTransport(config.name, config.latency_ms, config.fail_rate)
        return runtime(OpenAITranslator(config.name, MOCK_BASE_URL, None), mock)
    translator: Translator
    if config.type == "azure":
        translator = AzureTranslator(
            config.name,
            config.base_url,
            config.api_key,
            api_version=config.api_version,
            deployment=config.deployment,
            ad_token=config.ad_token,
            extra_headers=config.headers,
        )
    elif config.type == "bedrock":
        credentials = AwsCredentials.from_env(config.aws_env)
        if credentials is None:
            return runtime(
                None,
                unsupported=f"provider {config.name!r}: AWS credentials are not set "
                "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            )
        translator = BedrockTranslator(
            config.name,
            config.region or DEFAULT_AWS_REGION,
            credentials,
            endpoint=config.base_url or None,
        )
    elif config.type == "gemini":
        translator = GeminiTranslator(
            config.name, base_url_for(config), config.api_key, config.headers
        )
    elif config.type == "anthropic":
        translator = AnthropicTranslator(
            config.name, base_url_for(config), config.api_key, config.headers
        )
    else:
        translator = OpenAITranslator(
            config.name, base_url_for(config), config.api_key, config.headers
        )
    timeouts = Timeouts(config.timeout_s, config.connect_timeout_s, config.stream_idle_timeout_s)
    return runtime(translator, http_transport(config.name, timeouts))
