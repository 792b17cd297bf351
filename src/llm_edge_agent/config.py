"""Configuration: the TOML file, ``${VAR}`` interpolation, environment overrides, validation.

``load_config(path, env)`` is pure apart from reading the file: it returns a frozen
``Config`` or raises ``ConfigError`` naming the key (``providers[1].type``) and the problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .auth import entry_digest
from .errors import ConfigError

T = TypeVar("T")

PROVIDER_TYPES = (
    "openai",
    "anthropic",
    "gemini",
    "azure",
    "bedrock",
    "vllm",
    "ollama",
    "together",
    "openai_compatible",
    "mock",
)
STRATEGIES = ("failover", "round_robin", "weighted", "least_busy", "latency", "cost")

DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "together": "https://api.together.xyz/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
}

# The seeds' model-based rule for setups configured by environment variables alone.
ENV_PROVIDER_MODELS: Mapping[str, tuple[str, ...]] = {
    "openai": ("gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*"),
    "anthropic": ("claude-*",),
    "gemini": ("gemini-*",),
    "together": (
        "meta-llama/*",
        "mistralai/*",
        "Qwen/*",
        "deepseek-ai/*",
        "google/*",
        "togethercomputer/*",
        "NousResearch/*",
        "moonshotai/*",
        "openai/gpt-oss*",
    ),
    "azure": ("gpt-*", "o1*", "o3*", "o4*"),
    "bedrock": ("anthropic.*", "us.anthropic.*", "amazon.*", "meta.*", "mistral.*", "cohere.*"),
    "ollama": (),
    "vllm": (),
}

# (provider type, key variable, base URL variable)
ENV_PROVIDERS: tuple[tuple[str, str | None, str | None], ...] = (
    ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    ("gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL"),
    ("together", "TOGETHER_API_KEY", "TOGETHER_BASE_URL"),
    ("azure", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"),
    ("ollama", None, "OLLAMA_BASE_URL"),
    ("vllm", None, "VLLM_BASE_URL"),
)

DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT_S = 30.0
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")
ENGINES = ("native", "granian", "aiohttp")
AWS_VARIABLES = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"})
DEFAULT_AWS_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    metrics_port: int = DEFAULT_METRICS_PORT
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    engine: str = "native"


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """``[resilience]``, and a provider's ``resilience`` table overriding any of its keys."""

    max_retries: int = 2  # per target, after the first attempt
    backoff_base_ms: float = 100.0  # the first retry's delay; doubles each retry (equal jitter)
    backoff_max_ms: float = 5_000.0  # the longest backoff delay
    retry_after_max_s: float = 30.0  # a longer Retry-After is not waited for: next target
    deadline_s: float = 300.0  # the whole request, every attempt and wait included
    breaker_failure_threshold: int = 5  # consecutive failures that open the circuit
    breaker_failure_ratio: float = 0.0  # > 0: also open when this share of the window failed
    breaker_window_s: float = 60.0  # the window of the ratio rule
    breaker_min_requests: int = 20  # the ratio rule needs at least this many in the window
    breaker_open_s: float = 30.0  # open this long, then half-open: one probe


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    models: tuple[str, ...] = ()
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    stream_idle_timeout_s: float = 60.0
    max_concurrency: int = 256
    cost_weight: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # type-specific
    api_version: str | None = None
    deployment: str | None = None
    ad_token: str | None = field(default=None, repr=False)
    # Bedrock: the standard AWS variables, copied from the environment (never from the file).
    aws_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    region: str | None = None
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    resilience: ResilienceConfig | None = None  # None: the global [resilience]
    health_check_interval_s: float = 0.0  # > 0: probe the provider this often
    health_check_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TargetConfig:
    provider: str
    model: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class RouteConfig:
    model: str
    strategy: str = "failover"
    targets: tuple[TargetConfig, ...] = ()
    fallbacks: tuple[str, ...] = ()
    hedge_after_ms: float = 0.0
    hedge_percentile: float = 0.0  # > 0: hedge after this percentile of the target's latency


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """``[[rules]]``: the first rule whose every condition holds picks ``route``."""

    route: str
    models: tuple[str, ...] = ()  # globs on the requested model
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case name -> glob
    keys: tuple[str, ...] = ()  # client key ids (as logged as "tenant")
    teams: tuple[str, ...] = ()
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # request metadata field -> glob


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """``[models."glob"]``: what a model can serve, for capability-aware routing."""

    context_window: int | None = None  # tokens, prompt and output together
    max_output_tokens: int | None = None
    tools: bool | None = None
    vision: bool | None = None


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = True
    ttl_s: float = 3600.0
    max_entries: int = 10_000
    max_bytes: int = 256 * 1024 * 1024
    shared: bool = False
    redis_url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    enable_metrics: bool = True
    enable_tracing: bool = True
    log_level: str = "info"
    log_format: str = "json"
    log_prompts: bool = False


@dataclass(frozen=True, slots=True)
class PriceConfig:
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    providers: tuple[ProviderConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    models: Mapping[str, ModelInfo] = field(default_factory=dict)
    resilience: ResilienceConfig = ResilienceConfig()
    cache: CacheConfig = CacheConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    pricing: Mapping[str, PriceConfig] = field(default_factory=dict)
    source: str | None = None

    def provider(self, name: str) -> ProviderConfig | None:
        for p in self.providers:
            if p.name == name:
                return p
        return None


# --------------------------------------------------------------------------- lookup


def find_config_path(cli_path: str | None, env: Mapping[str, str], cwd: str = ".") -> str | None:
    """``--config``, else ``LLM_EDGE_CONFIG``, else ``./llm-edge-agent.toml`` if present."""
    if cli_path:
        return cli_path
    if env.get("LLM_EDGE_CONFIG"):
        return env["LLM_EDGE_CONFIG"]
    local = os.path.join(cwd, "llm-edge-agent.toml")
    return local if os.path.isfile(local) else None


def load_config(path: str | None, env: Mapping[str, str]) -> Config:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError("", f"config file {path!r} does not exist") from exc
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path!r}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path}: invalid TOML: {exc}") from exc
        raw = _interpolate(raw, env, "")
    config = parse_config(raw)
    config = apply_env(config, env)
    validate(config)
    return replace(config, source=path)


# --------------------------------------------------------------------------- interpolation

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str], key: str) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value:
                return value
            if default is not None:
                return default
            if value is not None:
                return value
            raise ConfigError(key, f"environment variable ${{{name}}} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- parsing


_SECRET_KEYS = frozenset({"api_key", "api_keys", "ad_token", "url", "headers"})


class _Table:
    """Typed reads from one TOML table, tracking which keys were used."""

    def __init__(self, data: Any, key: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(key, f"expected a table, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.key = key
        self.used: set[str] = set()

    def _path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, kind: type[T], default: T) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            shown = "" if name in _SECRET_KEYS else f" {value!r}"
            raise ConfigError(
                self._path(name), f"expected {kind.__name__}, got {_kind(value)}{shown}"
            )
        return value

    def opt(self, name: str, kind: type[T]) -> T | None:
        self.used.add(name)
        if name not in self.data:
            return None
        return self.get(name, kind, None)

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.get(name, list, [])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self._path(name)}[{i}]", f"expected string, got {_kind(item)}")
        return tuple(value)

    def table(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.data.get(name, {}), self._path(name))

    def tables(self, name: str) -> list[_Table]:
        self.used.add(name)
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise ConfigError(self._path(name), f"expected an array of tables, got {_kind(value)}")
        return [_Table(item, f"{self._path(name)}[{i}]") for i, item in enumerate(value)]

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self._path(unknown[0]), "unknown key")


def _kind(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _positive(t: _Table, name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(t._path(name), f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def parse_config(raw: Mapping[str, Any]) -> Config:
    root = _Table(dict(raw), "")
    server = _parse_server(root.table("server"))
    resilience = _parse_resilience(root.table("resilience"), ResilienceConfig())
    providers = tuple(_parse_provider(t, resilience) for t in root.tables("providers"))
    routes = tuple(_parse_route(t) for t in root.tables("routes"))
    rules = tuple(_parse_rule(t) for t in root.tables("rules"))
    models = _parse_models(root.table("models"))
    cache = _parse_cache(root.table("cache"))
    auth = _parse_auth(root.table("auth"))
    limits = _parse_limits(root.table("limits"))
    observability = _parse_observability(root.table("observability"))
    pricing = _parse_pricing(root.table("pricing"))
    root.finish()
    return Config(
        server=server,
        providers=providers,
        routes=routes,
        rules=rules,
        models=models,
        resilience=resilience,
        cache=cache,
        auth=auth,
        limits=limits,
        observability=observability,
        pricing=pricing,
    )


def _parse_server(t: _Table) -> ServerConfig:
    d = ServerConfig()
    c = ServerConfig(
        host=t.get("host", str, d.host),
        port=t.get("port", int, d.port),
        workers=t.get("workers", int, d.workers),
        metrics_port=t.get("metrics_port", int, d.metrics_port),
        drain_timeout_s=t.get("drain_timeout_s", float, d.drain_timeout_s),
        engine=t.get("engine", str, d.engine),
    )
    if c.engine not in ENGINES:
        raise ConfigError(
            t._path("engine"), f"unknown engine {c.engine!r} (native, granian or aiohttp)"
        )
    t.finish()
    return c


def _parse_provider(t: _Table, resilience: ResilienceConfig) -> ProviderConfig:
    name = t.get("name", str, "")
    if not name:
        raise ConfigError(t._path("name"), "is required (a unique provider name)")
    ptype = t.get("type", str, "")
    if not ptype:
        raise ConfigError(t._path("type"), f"is required (one of {', '.join(PROVIDER_TYPES)})")
    if ptype not in PROVIDER_TYPES:
        raise ConfigError(
            t._path("type"), f"unknown provider type {ptype!r} (one of {', '.join(PROVIDER_TYPES)})"
        )
    d = ProviderConfig(name=name, type=ptype)
    headers = _str_table(t.table("headers"))
    c = ProviderConfig(
        name=name,
        type=ptype,
        base_url=t.get("base_url", str, "").rstrip("/"),
        api_key=t.opt("api_key", str) or None,
        models=t.str_list("models"),
        timeout_s=t.get("timeout_s", float, d.timeout_s),
        connect_timeout_s=t.get("connect_timeout_s", float, d.connect_timeout_s),
        stream_idle_timeout_s=t.get("stream_idle_timeout_s", float, d.stream_idle_timeout_s),
        max_concurrency=t.get("max_concurrency", int, d.max_concurrency),
        cost_weight=t.get("cost_weight", float, d.cost_weight),
        headers=headers,
        api_version=t.opt("api_version", str),
        deployment=t.opt("deployment", str),
        ad_token=t.opt("ad_token", str) or None,
        region=t.opt("region", str),
        latency_ms=t.get("latency_ms", float, d.latency_ms),
        fail_rate=t.get("fail_rate", float, d.fail_rate),
        resilience=_parse_provider_resilience(t, resilience),
        health_check_interval_s=t.get("health_check_interval_s", float, d.health_check_interval_s),
        health_check_timeout_s=t.get("health_check_timeout_s", float, d.health_check_timeout_s),
    )
    t.used.add("resilience")
    _positive(t, "health_check_interval_s", c.health_check_interval_s, allow_zero=True)
    _positive(t, "health_check_timeout_s", c.health_check_timeout_s)
    for key in ("timeout_s", "connect_timeout_s", "stream_idle_timeout_s", "max_concurrency"):
        _positive(t, key, getattr(c, key))
    _positive(t, "latency_ms", c.latency_ms, allow_zero=True)
    _positive(t, "cost_weight", c.cost_weight, allow_zero=True)
    if not 0.0 <= c.fail_rate <= 1.0:
        raise ConfigError(t._path("fail_rate"), f"must be between 0 and 1, got {c.fail_rate}")
    if c.base_url and not c.base_url.startswith(("http://", "https://")):
        raise ConfigError(
            t._path("base_url"), f"must start with http:// or https://, got {c.base_url!r}"
        )
    t.finish()
    return c


def _parse_route(t: _Table) -> RouteConfig:
    model = t.get("model", str, "")
    if not model:
        raise ConfigError(t._path("model"), "is required (the model name clients send)")
    strategy = t.get("strategy", str, "failover")
    if strategy not in STRATEGIES:
        raise ConfigError(
            t._path("strategy"), f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})"
        )
    targets = []
    for tt in t.tables("targets"):
        provider = tt.get("provider", str, "")
        if not provider:
            raise ConfigError(tt._path("provider"), "is required")
        target = TargetConfig(
            provider=provider,
            model=tt.get("model", str, model),
            weight=tt.get("weight", float, 1.0),
        )
        _positive(tt, "weight", target.weight, allow_zero=True)
        tt.finish()
        targets.append(target)
    if not targets:
        raise ConfigError(t._path("targets"), "a route needs at least one target")
    c = RouteConfig(
        model=model,
        strategy=strategy,
        targets=tuple(targets),
        fallbacks=t.str_list("fallbacks"),
        hedge_after_ms=t.get("hedge_after_ms", float, 0.0),
        hedge_percentile=t.get("hedge_percentile", float, 0.0),
    )
    _positive(t, "hedge_after_ms", c.hedge_after_ms, allow_zero=True)
    if not 0.0 <= c.hedge_percentile < 100.0:
        raise ConfigError(
            t._path("hedge_percentile"), f"must be >= 0 and < 100, got {c.hedge_percentile}"
        )
    t.finish()
    return c


def _parse_resilience(t: _Table, d: ResilienceConfig) -> ResilienceConfig:
    c = ResilienceConfig(
        max_retries=t.get("max_retries", int, d.max_retries),
        backoff_base_ms=t.get("backoff_base_ms", float, d.backoff_base_ms),
        backoff_max_ms=t.get("backoff_max_ms", float, d.backoff_max_ms),
        retry_after_max_s=t.get("retry_after_max_s", float, d.retry_after_max_s),
        deadline_s=t.get("deadline_s", float, d.deadline_s),
        breaker_failure_threshold=t.get(
            "breaker_failure_threshold", int, d.breaker_failure_threshold
        ),
        breaker_failure_ratio=t.get("breaker_failure_ratio", float, d.breaker_failure_ratio),
        breaker_window_s=t.get("breaker_window_s", float, d.breaker_window_s),
        breaker_min_requests=t.get("breaker_min_requests", int, d.breaker_min_requests),
        breaker_open_s=t.get("breaker_open_s", float, d.breaker_open_s),
    )
    for key in ("max_retries", "backoff_base_ms", "backoff_max_ms", "retry_after_max_s"):
        _positive(t, key, getattr(c, key), allow_zero=True)
    for key in ("deadline_s", "breaker_failure_threshold", "breaker_window_s"):
        _positive(t, key, getattr(c, key))
    _positive(t, "breaker_min_requests", c.breaker_min_requests)
    _positive(t, "breaker_open_s", c.breaker_open_s, allow_zero=True)
    if not 0.0 <= c.breaker_failure_ratio <= 1.0:
        raise ConfigError(
            t._path("breaker_failure_ratio"),
            f"must be between 0 and 1, got {c.breaker_failure_ratio}",
        )
    t.finish()
    return c


def _parse_provider_resilience(t: _Table, defaults: ResilienceConfig) -> ResilienceConfig | None:
    if "resilience" not in t.data:
        return None
    table = t.table("resilience")
    if "deadline_s" in table.data:
        raise ConfigError(
            table._path("deadline_s"),
            "is per request, not per provider: set it in [resilience]",
        )
    return _parse_resilience(table, defaults)


def _parse_rule(t: _Table) -> RuleConfig:
    route = t.get("route", str, "")
    if not route:
        raise ConfigError(t._path("route"), "is required (the route this rule picks)")
    headers = _str_table(t.table("headers"))
    metadata = _str_table(t.table("metadata"))
    model = t.get("model", str, "")
    if model and "models" in t.data:
        raise ConfigError(t._path("models"), "set either model or models, not both")
    c = RuleConfig(
        route=route,
        models=(model,) if model else t.str_list("models"),
        headers={k.lower(): v for k, v in headers.items()},
        keys=t.str_list("keys"),
        teams=t.str_list("teams"),
        min_prompt_tokens=t.opt("min_prompt_tokens", int),
        max_prompt_tokens=t.opt("max_prompt_tokens", int),
        metadata=metadata,
    )
    t.used.add("models")
    for i, key_id in enumerate(c.keys):
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise ConfigError(
                f"{t._path('keys')}[{i}]",
                "expected a key id (16 hex digits, the access log's tenant), not a key",
            )
    for key in ("min_prompt_tokens", "max_prompt_tokens"):
        value = getattr(c, key)
        if value is not None:
            _positive(t, key, value, allow_zero=True)
    t.finish()
    return c


def _str_table(t: _Table) -> dict[str, str]:
    for k, v in t.data.items():
        if not isinstance(v, str):
            raise ConfigError(t._path(k), f"expected string, got {_kind(v)}")
    return dict(t.data)


def _parse_models(t: _Table) -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    for name in list(t.data):
        m = t.table(name)
        info = ModelInfo(
            context_window=m.opt("context_window", int),
            max_output_tokens=m.opt("max_output_tokens", int),
            tools=m.opt("tools", bool),
            vision=m.opt("vision", bool),
        )
        for key in ("context_window", "max_output_tokens"):
            value = getattr(info, key)
            if value is not None:
                _positive(m, key, value)
        m.finish()
        models[name] = info
    t.finish()
    return models


def _parse_auth(t: _Table) -> AuthConfig:
    teams_t = t.table("teams")
    teams = {name: teams_t.str_list(name) for name in list(teams_t.data)}
    teams_t.finish()
    c = AuthConfig(api_keys=t.str_list("api_keys"), teams=teams)
    t.finish()
    return c


def _parse_cache(t: _Table) -> CacheConfig:
    d = CacheConfig()
    redis_url: str | None = None
    if "redis" in t.data:
        r = t.table("redis")
        redis_url = r.opt("url", str)
        if not redis_url:
            raise ConfigError(r._path("url"), "is required when [cache.redis] is present")
        r.finish()
    else:
        t.used.add("redis")
    c = CacheConfig(
        enabled=t.get("enabled", bool, d.enabled),
        ttl_s=t.get("ttl_s", float, d.ttl_s),
        max_entries=t.get("max_entries", int, d.max_entries),
        max_bytes=t.get("max_bytes", int, d.max_bytes),
        shared=t.get("shared", bool, d.shared),
        redis_url=redis_url,
    )
    _positive(t, "ttl_s", c.ttl_s)
    _positive(t, "max_entries", c.max_entries)
    _positive(t, "max_bytes", c.max_bytes)
    t.finish()
    return c


def _parse_limits(t: _Table) -> LimitsConfig:
    c = LimitsConfig(
        max_body_bytes=t.get("max_body_bytes", int, DEFAULT_MAX_BODY_BYTES),
        requests_per_minute=t.opt("requests_per_minute", int),
        tokens_per_minute=t.opt("tokens_per_minute", int),
    )
    _positive(t, "max_body_bytes", c.max_body_bytes)
    for key in ("requests_per_minute", "tokens_per_minute"):
        value = getattr(c, key)
        if value is not None:
            _positive(t, key, value)
    t.finish()
    return c


def _parse_observability(t: _Table) -> ObservabilityConfig:
    d = ObservabilityConfig()
    c = ObservabilityConfig(
        enable_metrics=t.get("enable_metrics", bool, d.enable_metrics),
        enable_tracing=t.get("enable_tracing", bool, d.enable_tracing),
        log_level=t.get("log_level", str, d.log_level).lower(),
        log_format=t.get("log_format", str, d.log_format).lower(),
        log_prompts=t.get("log_prompts", bool, d.log_prompts),
    )
    if c.log_level not in LOG_LEVELS:
        raise ConfigError(
            t._path("log_level"), f"unknown level {c.log_level!r} (one of {', '.join(LOG_LEVELS)})"
        )
    if c.log_format not in LOG_FORMATS:
        raise ConfigError(t._path("log_format"), f"unknown format {c.log_format!r} (json or text)")
    t.finish()
    return c


def _parse_pricing(t: _Table) -> dict[str, PriceConfig]:
    prices: dict[str, PriceConfig] = {}
    for model in list(t.data):
        p = t.table(model)
        inp = p.opt("input", float)
        out = p.opt("output", float)
        if inp is None or out is None:
            raise ConfigError(p._path("input" if inp is None else "output"), "is required")
        prices[model] = PriceConfig(
            input=inp,
            output=out,
            cached_input=p.opt("cached_input", float),
            cache_write=p.opt("cache_write", float),
            reasoning=p.opt("reasoning", float),
        )
        p.finish()
    t.finish()
    return prices


# --------------------------------------------------------------------------- environment


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {value!r}")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(name, f"expected an integer, got {value!r}") from exc


def apply_env(config: Config, env: Mapping[str, str]) -> Config:
    """Environment variables override the file (INTERFACE §2)."""
    s = config.server
    server = replace(
        s,
        host=env.get("HOST") or s.host,
        port=_env_int(env, "PORT", s.port),
        workers=_env_int(env, "WORKERS", s.workers),
        metrics_port=_env_int(env, "METRICS_PORT", s.metrics_port),
    )
    providers = list(config.providers)
    for ptype, key_var, url_var in ENV_PROVIDERS:
        key = env.get(key_var) if key_var else None
        url = env.get(url_var) if url_var else None
        if not key and not url:
            continue
        index = next((i for i, p in enumerate(providers) if p.name == ptype), None)
        if index is not None:
            p = providers[index]
            providers[index] = replace(
                p, api_key=key or p.api_key, base_url=(url or p.base_url).rstrip("/")
            )
        elif key or ptype in ("ollama", "vllm"):
            if ptype == "azure" and not url:
                raise ConfigError("AZURE_OPENAI_ENDPOINT", "is required with AZURE_OPENAI_API_KEY")
            providers.append(
                ProviderConfig(
                    name=ptype,
                    type=ptype,
                    base_url=(url or DEFAULT_BASE_URLS.get(ptype, "")).rstrip("/"),
                    api_key=key or None,
                    models=ENV_PROVIDER_MODELS.get(ptype, ()),
                )
            )
    ad_token = env.get("AZURE_OPENAI_AD_TOKEN")
    if ad_token:
        index = next((i for i, p in enumerate(providers) if p.type == "azure"), None)
        if index is None:
            raise ConfigError(
                "AZURE_OPENAI_AD_TOKEN", "needs an azure provider (AZURE_OPENAI_ENDPOINT)"
            )
        providers[index] = replace(providers[index], ad_token=ad_token)
    aws_env = {k: v for k, v in env.items() if k in AWS_VARIABLES}
    default_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_AWS_REGION
    providers = [
        replace(p, aws_env=aws_env, region=p.region or default_region) if p.type == "bedrock" else p
        for p in providers
    ]
    aws = env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")
    if aws and not any(p.type == "bedrock" for p in providers):
        providers.append(
            ProviderConfig(
                name="bedrock",
                type="bedrock",
                region=default_region,
                aws_env=aws_env,
                models=ENV_PROVIDER_MODELS["bedrock"],
            )
        )
    cache = config.cache
    if _env_bool(env, "ENABLE_L2_CACHE", False):
        url = env.get("REDIS_URL") or cache.redis_url
        if not url:
            raise ConfigError("REDIS_URL", "is required when ENABLE_L2_CACHE is true")
        cache = replace(cache, redis_url=url)
    elif env.get("ENABLE_L2_CACHE", "").strip().lower() in ("0", "false", "no", "off"):
        cache = replace(cache, redis_url=None)
    o = config.observability
    observability = replace(
        o,
        enable_metrics=_env_bool(env, "ENABLE_METRICS", o.enable_metrics),
        enable_tracing=_env_bool(env, "ENABLE_TRACING", o.enable_tracing),
        log_level=(env.get("LOG_LEVEL") or o.log_level).lower(),
        log_format=(env.get("LOG_FORMAT") or o.log_format).lower(),
    )
    return replace(
        config,
        server=server,
        providers=tuple(providers),
        cache=cache,
        observability=observability,
    )


# --------------------------------------------------------------------------- validation


def validate(config: Config) -> None:
    s = config.server
    if not 0 < s.port < 65536:
        raise ConfigError("server.port", f"must be between 1 and 65535, got {s.port}")
    if not 0 <= s.metrics_port < 65536:
        raise ConfigError(
            "server.metrics_port", f"must be between 0 and 65535, got {s.metrics_port}"
        )
    if s.workers < 1:
        raise ConfigError("server.workers", f"must be >= 1, got {s.workers}")
    if s.drain_timeout_s < 0:
        raise ConfigError("server.drain_timeout_s", "must be >= 0")
    o = config.observability
    if o.log_level not in LOG_LEVELS:
        raise ConfigError(
            "LOG_LEVEL", f"unknown level {o.log_level!r} (one of {', '.join(LOG_LEVELS)})"
        )
    if o.log_format not in LOG_FORMATS:
        raise ConfigError("LOG_FORMAT", f"unknown format {o.log_format!r} (json or text)")
    names: set[str] = set()
    for i, p in enumerate(config.providers):
        key = f"providers[{i}]"
        if p.name in names:
            raise ConfigError(f"{key}.name", f"duplicate provider name {p.name!r}")
        if "/" in p.name:
            raise ConfigError(f"{key}.name", f"must not contain '/', got {p.name!r}")
        names.add(p.name)
        if p.type in ("openai_compatible",) and not p.base_url:
            raise ConfigError(f"{key}.base_url", f"is required for type {p.type!r}")
        if p.type == "azure" and not p.base_url:
            raise ConfigError(
                f"{key}.base_url", "is required for type 'azure' (the resource endpoint)"
            )
    route_names: set[str] = set()
    for i, r in enumerate(config.routes):
        key = f"routes[{i}]"
        if r.model in route_names:
            raise ConfigError(f"{key}.model", f"duplicate route {r.model!r}")
        route_names.add(r.model)
        for j, t in enumerate(r.targets):
            if t.provider not in names:
                raise ConfigError(
                    f"{key}.targets[{j}].provider", f"unknown provider {t.provider!r}"
                )
    for team, keys in config.auth.teams.items():
        for i, key in enumerate(keys):
            entry_digest(f"auth.teams.{team}[{i}]", key)  # raises for a bad entry
    for i, rule in enumerate(config.rules):
        if rule.route not in route_names:
            raise ConfigError(f"rules[{i}].route", f"unknown route {rule.route!r}")
        for team in rule.teams:
            if team not in config.auth.teams:
                raise ConfigError(f"rules[{i}].teams", f"unknown team {team!r} (see [auth.teams])")
    for i, p in enumerate(config.providers):
        if p.health_check_interval_s > 0 and p.type == "bedrock":
            raise ConfigError(
                f"providers[{i}].health_check_interval_s",
                "active health checks are not available for bedrock (no free probe endpoint)",
            )
    for i, r in enumerate(config.routes):
        for j, fb in enumerate(r.fallbacks):
            if fb not in route_names:
                raise ConfigError(f"routes[{i}].fallbacks[{j}]", f"unknown route {fb!r}")
            if fb == r.model:
                raise ConfigError(
                    f"routes[{i}].fallbacks[{j}]", "a route cannot fall back to itself"
                )


def env_snapshot() -> dict[str, str]:
    return dict(os.environ)
