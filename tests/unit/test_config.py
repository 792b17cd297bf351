"""``llm_edge_agent.config``: TOML, ``${VAR}`` interpolation, env overrides, validation; the CLI."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from llm_edge_agent.cli import describe, main
from llm_edge_agent.config import (
    DEFAULT_BASE_URLS,
    ENV_PROVIDER_MODELS,
    AuthConfig,
    Config,
    ProviderConfig,
    RouteConfig,
    ServerConfig,
    TargetConfig,
    find_config_path,
    load_config,
)
from llm_edge_agent.errors import ConfigError

FILE_KEY = "sk-file-secret-0123456789"
ENV_KEY = "sk-env-secret-9876543210"
CLIENT_KEY = "sk-edge-client-secret-abcdef"

# Every variable the config layer reads: cleared for the CLI tests, which use os.environ.
CONFIG_ENV_VARS = (
    "HOST",
    "PORT",
    "WORKERS",
    "METRICS_PORT",
    "LLM_EDGE_CONFIG",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "TOGETHER_API_KEY",
    "TOGETHER_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OLLAMA_BASE_URL",
    "VLLM_BASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ENABLE_L2_CACHE",
    "REDIS_URL",
    "ENABLE_METRICS",
    "ENABLE_TRACING",
    "LOG_LEVEL",
    "LOG_FORMAT",
)

FULL_CONFIG = """
[server]
host = "127.0.0.1"
port = 8081
workers = 2

[[providers]]
name = "openai"
type = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "${OPENAI_API_KEY}"
models = ["gpt-4o*", "gpt-4.1*", "o3*"]
timeout_s = 120
connect_timeout_s = 5
stream_idle_timeout_s = 60
max_concurrency = 256
cost_weight = 1.0

[[providers]]
name = "anthropic"
type = "anthropic"
api_key = "${ANTHROPIC_API_KEY:-sk-ant-default}"
models = ["claude-*"]

[[routes]]
model = "smart"
strategy = "weighted"
targets = [
  { provider = "openai",    model = "gpt-4o",                     weight = 3 },
  { provider = "anthropic", model = "claude-3-5-sonnet-20241022", weight = 1 },
]
fallbacks = ["cheap"]

[[routes]]
model = "cheap"
targets = [{ provider = "openai", model = "gpt-4o-mini" }]

[resilience]
max_retries = 2
backoff_base_ms = 100

[cache]
enabled = true
ttl_s = 3600
[cache.redis]
url = "redis://:redis-password@127.0.0.1:6379/0"

[auth]
api_keys = ["sk-edge-client-secret-abcdef"]

[limits]
max_body_bytes = 10485760
requests_per_minute = 600
"""

PROVIDER = """
[[providers]]
name = "{name}"
type = "{type}"
models = ["gpt-*"]
"""


def write(tmp_path: Path, text: str, name: str = "llm-edge-agent.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env or {})
    return info.value


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CONFIG_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------- loading


def test_no_file_and_empty_env_gives_defaults_without_providers() -> None:
    config = load_config(None, {})
    assert config == Config()
    assert config.providers == ()
    assert config.server.port == 8080
    assert config.server.host == "0.0.0.0"
    assert config.server.metrics_port == 9090
    assert config.source is None


def test_empty_file_gives_defaults_and_records_the_source(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path, {})
    assert config.source == path
    assert config.providers == ()
    assert config.cache.enabled is True


def test_full_interface_example_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_CONFIG), {"OPENAI_API_KEY": FILE_KEY})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8081
    assert config.server.workers == 2
    assert [p.name for p in config.providers] == ["openai", "anthropic"]
    openai = config.providers[0]
    assert openai.api_key == FILE_KEY
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.models == ("gpt-4o*", "gpt-4.1*", "o3*")
    assert openai.timeout_s == 120.0
    assert isinstance(openai.timeout_s, float)
    assert config.providers[1].api_key == "sk-ant-default"
    smart = config.routes[0]
    assert smart == RouteConfig(
        model="smart",
        strategy="weighted",
        targets=(
            TargetConfig("openai", "gpt-4o", 3.0),
            TargetConfig("anthropic", "claude-3-5-sonnet-20241022", 1.0),
        ),
        fallbacks=("cheap",),
    )
    assert config.routes[1].strategy == "failover"
    assert config.cache.redis_url == "redis://:redis-password@127.0.0.1:6379/0"
    assert config.auth.api_keys == (CLIENT_KEY,)
    assert config.limits.requests_per_minute == 600
    assert config.limits.tokens_per_minute is None


def test_route_target_model_defaults_to_the_route_model(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="mock") + (
        '[[routes]]\nmodel = "gpt-x"\ntargets = [{ provider = "a" }]\n'
    )
    config = load_config(write(tmp_path, text), {})
    assert config.routes[0].targets == (TargetConfig("a", "gpt-x", 1.0),)


def test_provider_headers_are_read(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + '[providers.headers]\nx-org = "acme"\n'
    config = load_config(write(tmp_path, text), {})
    assert dict(config.providers[0].headers) == {"x-org": "acme"}


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(missing, {})
    assert "nope.toml" in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[server\nport = 1\n")
    assert "invalid TOML" in str(error)


# --------------------------------------------------------------------------- interpolation


def test_var_is_replaced_by_its_environment_value(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + 'api_key = "${MY_KEY}"\n'
    config = load_config(write(tmp_path, text), {"MY_KEY": FILE_KEY})
    assert config.providers[0].api_key == FILE_KEY


def test_var_inside_a_longer_string_and_several_vars_are_replaced(tmp_path: Path) -> None:
    text = (
        PROVIDER.format(name="a", type="openai_compatible")
        + 'base_url = "http://${HOST_A}:${PORT_A}/v1"\n'
    )
    config = load_config(write(tmp_path, text), {"HOST_A": "10.0.0.1", "PORT_A": "8000"})
    assert config.providers[0].base_url == "http://10.0.0.1:8000/v1"


def test_var_default_is_used_when_the_variable_is_unset(tmp_path: Path) -> None:
    text = (
        PROVIDER.format(name="a", type="openai_compatible")
        + 'base_url = "${UPSTREAM_URL:-http://localhost:9000/v1}"\n'
    )
    config = load_config(write(tmp_path, text), {})
    assert config.providers[0].base_url == "http://localhost:9000/v1"


def test_var_default_is_ignored_when_the_variable_is_set(tmp_path: Path) -> None:
    text = (
        PROVIDER.format(name="a", type="openai_compatible")
        + 'base_url = "${UPSTREAM_URL:-http://localhost:9000/v1}"\n'
    )
    config = load_config(write(tmp_path, text), {"UPSTREAM_URL": "https://example.com/v1"})
    assert config.providers[0].base_url == "https://example.com/v1"


def test_var_default_may_be_empty(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + 'api_key = "${MY_KEY:-}"\n'
    config = load_config(write(tmp_path, text), {})
    assert config.providers[0].api_key is None


def test_var_default_is_used_when_the_variable_is_set_but_empty(tmp_path: Path) -> None:
    # Shell and docker-compose semantics of ``${VAR:-default}``: unset OR empty.
    text = (
        PROVIDER.format(name="a", type="openai_compatible")
        + 'base_url = "${UPSTREAM_URL:-http://localhost:9000/v1}"\n'
    )
    config = load_config(write(tmp_path, text), {"UPSTREAM_URL": ""})
    assert config.providers[0].base_url == "http://localhost:9000/v1"


def test_missing_var_is_a_config_error_naming_the_key_and_the_variable(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + 'api_key = "${MISSING_KEY_VAR}"\n'
    error = config_error(tmp_path, text)
    assert error.key == "providers[0].api_key"
    assert "MISSING_KEY_VAR" in error.problem
    assert str(error).startswith("providers[0].api_key: ")


def test_missing_var_in_an_array_names_the_index(tmp_path: Path) -> None:
    text = '[[providers]]\nname = "a"\ntype = "openai"\nmodels = ["gpt-*", "${EXTRA_MODEL}"]\n'
    error = config_error(tmp_path, text)
    assert error.key == "providers[0].models[1]"
    assert "EXTRA_MODEL" in str(error)


def test_missing_var_in_a_top_level_table_names_the_dotted_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[server]\nhost = "${BIND_ADDR}"\n')
    assert error.key == "server.host"
    assert "BIND_ADDR" in str(error)


def test_interpolated_values_are_not_interpolated_again(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + 'api_key = "${MY_KEY}"\n'
    config = load_config(write(tmp_path, text), {"MY_KEY": "${NOT_A_VAR}"})
    assert config.providers[0].api_key == "${NOT_A_VAR}"


# --------------------------------------------------------------------------- validation

VALIDATION_CASES: list[tuple[str, str, str]] = [
    (
        PROVIDER.format(name="a", type="openai") + PROVIDER.format(name="b", type="gpt"),
        "providers[1].type",
        "unknown provider type 'gpt'",
    ),
    ('[[providers]]\nname = "a"\n', "providers[0].type", "is required"),
    ('[[providers]]\ntype = "openai"\n', "providers[0].name", "is required"),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "nope", model = "m" }]\n',
        "routes[0].targets[0].provider",
        "unknown provider 'nope'",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ model = "m" }]\n',
        "routes[0].targets[0].provider",
        "is required",
    ),
    (
        PROVIDER.format(name="a", type="openai") + '[[routes]]\nmodel = "smart"\ntargets = []\n',
        "routes[0].targets",
        "at least one target",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\ntargets = [{ provider = "a", model = "m" }]\n',
        "routes[0].model",
        "is required",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\nstrategy = "fastest"\ntargets = [{ provider = "a" }]\n',
        "routes[0].strategy",
        "unknown strategy 'fastest'",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a" }]\nfallbacks = ["cheap"]\n',
        "routes[0].fallbacks[0]",
        "unknown route 'cheap'",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a" }]\nfallbacks = ["smart"]\n',
        "routes[0].fallbacks[0]",
        "itself",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a" }]\n'
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a" }]\n',
        "routes[1].model",
        "duplicate route 'smart'",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a", weight = -1 }]\n',
        "routes[0].targets[0].weight",
        "must be >= 0",
    ),
    (
        PROVIDER.format(name="a", type="openai")
        + '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a", wieght = 2 }]\n',
        "routes[0].targets[0].wieght",
        "unknown key",
    ),
    ("[server]\nport = 0\n", "server.port", "between 1 and 65535"),
    ("[server]\nport = 70000\n", "server.port", "between 1 and 65535"),
    ('[server]\nport = "8080"\n', "server.port", "expected int, got string"),
    ("[server]\nport = true\n", "server.port", "expected int, got boolean"),
    ("[server]\nport = 80.5\n", "server.port", "expected int, got float"),
    ("[server]\nworkers = 0\n", "server.workers", "must be >= 1"),
    ("[server]\nmetrics_port = -1\n", "server.metrics_port", "between 0 and 65535"),
    ('[server]\nhots = "0.0.0.0"\n', "server.hots", "unknown key"),
    ("server = 5\n", "server", "expected a table"),
    ("[serverr]\nport = 1\n", "serverr", "unknown key"),
    ('providers = "openai"\n', "providers", "expected an array of tables"),
    (
        PROVIDER.format(name="a", type="openai") + 'modle = "gpt-4o"\n',
        "providers[0].modle",
        "unknown key",
    ),
    (
        PROVIDER.format(name="a", type="openai") + 'timeout_s = "slow"\n',
        "providers[0].timeout_s",
        "expected float, got string",
    ),
    (
        PROVIDER.format(name="a", type="openai") + "timeout_s = 0\n",
        "providers[0].timeout_s",
        "must be > 0",
    ),
    (
        PROVIDER.format(name="a", type="openai") + "max_concurrency = 1.5\n",
        "providers[0].max_concurrency",
        "expected int, got float",
    ),
    (
        '[[providers]]\nname = "a"\ntype = "openai"\nmodels = "gpt-*"\n',
        "providers[0].models",
        "expected list, got string",
    ),
    (
        '[[providers]]\nname = "a"\ntype = "openai"\nmodels = ["gpt-*", 4]\n',
        "providers[0].models[1]",
        "expected string, got integer",
    ),
    (
        PROVIDER.format(name="a", type="openai") + "[providers.headers]\nx-org = 1\n",
        "providers[0].headers.x-org",
        "expected string",
    ),
    (
        PROVIDER.format(name="a", type="openai") + PROVIDER.format(name="a", type="anthropic"),
        "providers[1].name",
        "duplicate provider name 'a'",
    ),
    (
        PROVIDER.format(name="my/openai", type="openai"),
        "providers[0].name",
        "must not contain '/'",
    ),
    (
        PROVIDER.format(name="a", type="openai_compatible"),
        "providers[0].base_url",
        "is required for type 'openai_compatible'",
    ),
    (PROVIDER.format(name="a", type="azure"), "providers[0].base_url", "is required"),
    (
        PROVIDER.format(name="a", type="openai") + 'base_url = "ftp://example.com"\n',
        "providers[0].base_url",
        "must start with http:// or https://",
    ),
    (
        PROVIDER.format(name="a", type="mock") + "fail_rate = 1.5\n",
        "providers[0].fail_rate",
        "between 0 and 1",
    ),
    (
        PROVIDER.format(name="a", type="mock") + "latency_ms = -1\n",
        "providers[0].latency_ms",
        "must be >= 0",
    ),
    (
        "[resilience]\nbreaker_failure_threshold = 0\n",
        "resilience.breaker_failure_threshold",
        "> 0",
    ),
    ("[resilience]\nmax_retries = -1\n", "resilience.max_retries", ">= 0"),
    ("[cache]\nttl_s = 0\n", "cache.ttl_s", "must be > 0"),
    ('[cache]\nenabled = "yes"\n', "cache.enabled", "expected bool, got string"),
    ("[cache.redis]\n", "cache.redis.url", "is required"),
    ('[cache.redis]\nuri = "redis://x"\n', "cache.redis.url", "is required"),
    ('[cache.redis]\nurl = "redis://x"\ndb = 1\n', "cache.redis.db", "unknown key"),
    ("[auth]\napi_keys = [1]\n", "auth.api_keys[0]", "expected string"),
    ("[limits]\nmax_body_bytes = 0\n", "limits.max_body_bytes", "must be > 0"),
    ("[limits]\nrequests_per_minute = -5\n", "limits.requests_per_minute", "must be > 0"),
    ('[pricing."my-model"]\ninput = 1.0\n', "pricing.my-model.output", "is required"),
]


@pytest.mark.parametrize(("text", "key", "problem"), VALIDATION_CASES)
def test_validation_error_names_its_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key
    assert problem in error.problem
    assert str(error) == f"{key}: {error.problem}"


@pytest.mark.parametrize(("name", "value"), [("log_level", "verbose"), ("log_format", "xml")])
def test_bad_observability_value_in_the_file_names_the_file_key(
    tmp_path: Path, name: str, value: str
) -> None:
    # The user wrote ``[observability] log_level``: the error must point there, not at an
    # environment variable that is not even set.
    error = config_error(tmp_path, f'[observability]\n{name} = "{value}"\n')
    assert error.key == f"observability.{name}"
    assert value in error.problem


def test_wrong_type_error_does_not_echo_a_client_key(tmp_path: Path) -> None:
    # ``api_keys`` written as a string instead of an array: the error names the key and
    # the problem, and must not print the secret itself to the console or the logs.
    error = config_error(tmp_path, f'[auth]\napi_keys = "{CLIENT_KEY}"\n')
    assert error.key == "auth.api_keys"
    assert CLIENT_KEY not in str(error)


def test_wrong_type_error_does_not_echo_a_provider_key(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + f'api_key = ["{FILE_KEY}"]\n'
    error = config_error(tmp_path, text)
    assert error.key == "providers[0].api_key"
    assert FILE_KEY not in str(error)


def test_integer_values_are_accepted_for_float_keys(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="openai") + "timeout_s = 30\ncost_weight = 2\n"
    provider = load_config(write(tmp_path, text), {}).providers[0]
    assert provider.timeout_s == 30.0
    assert provider.cost_weight == 2.0


def test_boolean_is_not_accepted_for_a_float_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, PROVIDER.format(name="a", type="openai") + "timeout_s = true\n")
    assert error.key == "providers[0].timeout_s"


def test_metrics_port_zero_turns_the_listener_off(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[server]\nmetrics_port = 0\n"), {})
    assert config.server.metrics_port == 0


# --------------------------------------------------------------------------- environment


def test_server_env_vars_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "127.0.0.1"\nport = 8081\nworkers = 2\n')
    env = {"HOST": "::1", "PORT": "9000", "WORKERS": "4", "METRICS_PORT": "0"}
    server = load_config(path, env).server
    assert (server.host, server.port, server.workers, server.metrics_port) == ("::1", 9000, 4, 0)


def test_empty_server_env_vars_keep_the_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "127.0.0.1"\nport = 8081\n')
    server = load_config(path, {"HOST": "", "PORT": ""}).server
    assert (server.host, server.port) == ("127.0.0.1", 8081)


@pytest.mark.parametrize("name", ["PORT", "WORKERS", "METRICS_PORT"])
def test_non_integer_server_env_var_is_a_config_error_naming_it(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {name: "eighty"})
    assert info.value.key == name
    assert "eighty" in info.value.problem


def test_out_of_range_port_from_env_names_server_port() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"PORT": "70000"})
    assert info.value.key == "server.port"


def test_openai_key_alone_adds_an_openai_provider_with_the_seed_globs() -> None:
    config = load_config(None, {"OPENAI_API_KEY": ENV_KEY})
    assert len(config.providers) == 1
    provider = config.providers[0]
    assert provider.name == "openai"
    assert provider.type == "openai"
    assert provider.api_key == ENV_KEY
    assert provider.base_url == DEFAULT_BASE_URLS["openai"]
    assert provider.models == ENV_PROVIDER_MODELS["openai"]
    for glob in ("gpt-*", "o1*", "o3*", "o4*"):
        assert glob in provider.models


def test_openai_base_url_env_sets_the_added_provider_url() -> None:
    env = {"OPENAI_API_KEY": ENV_KEY, "OPENAI_BASE_URL": "http://localhost:4000/v1/"}
    assert load_config(None, env).providers[0].base_url == "http://localhost:4000/v1"


def test_openai_base_url_alone_adds_no_provider() -> None:
    assert load_config(None, {"OPENAI_BASE_URL": "http://localhost:4000/v1"}).providers == ()


def test_each_env_key_adds_its_provider_with_its_globs() -> None:
    env = {"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g", "TOGETHER_API_KEY": "t"}
    providers = {p.name: p for p in load_config(None, env).providers}
    assert set(providers) == {"anthropic", "gemini", "together"}
    assert providers["anthropic"].models == ("claude-*",)
    assert providers["gemini"].models == ("gemini-*",)
    assert providers["anthropic"].base_url == DEFAULT_BASE_URLS["anthropic"]


def test_env_key_overrides_file_provider_key(tmp_path: Path) -> None:
    text = (
        '[[providers]]\nname = "openai"\ntype = "openai"\n'
        f'api_key = "{FILE_KEY}"\nmodels = ["gpt-4o"]\n'
    )
    config = load_config(write(tmp_path, text), {"OPENAI_API_KEY": ENV_KEY})
    assert len(config.providers) == 1
    provider = config.providers[0]
    assert provider.api_key == ENV_KEY
    assert provider.models == ("gpt-4o",)  # the file's models are kept


def test_env_key_fills_a_file_provider_without_a_key(tmp_path: Path) -> None:
    text = '[[providers]]\nname = "openai"\ntype = "openai"\nmodels = ["gpt-4o"]\n'
    config = load_config(write(tmp_path, text), {"OPENAI_API_KEY": ENV_KEY})
    assert [p.api_key for p in config.providers] == [ENV_KEY]


def test_env_base_url_overrides_a_file_provider_and_keeps_its_key(tmp_path: Path) -> None:
    text = (
        '[[providers]]\nname = "openai"\ntype = "openai"\n'
        f'api_key = "{FILE_KEY}"\nbase_url = "https://api.openai.com/v1"\n'
    )
    env = {"OPENAI_BASE_URL": "https://proxy.example.com/v1/"}
    provider = load_config(write(tmp_path, text), env).providers[0]
    assert provider.base_url == "https://proxy.example.com/v1"
    assert provider.api_key == FILE_KEY


def test_env_provider_is_added_after_the_file_providers(tmp_path: Path) -> None:
    path = write(tmp_path, PROVIDER.format(name="local", type="mock"))
    config = load_config(path, {"OPENAI_API_KEY": ENV_KEY})
    assert [p.name for p in config.providers] == ["local", "openai"]


def test_routes_may_target_a_provider_added_by_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "openai" }]\n')
    config = load_config(path, {"OPENAI_API_KEY": ENV_KEY})
    assert config.routes[0].targets[0].provider == "openai"


def test_azure_key_without_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"AZURE_OPENAI_API_KEY": "k"})
    assert info.value.key == "AZURE_OPENAI_ENDPOINT"


def test_ollama_base_url_adds_a_keyless_provider() -> None:
    config = load_config(None, {"OLLAMA_BASE_URL": "http://gpu-box:11434/v1"})
    assert [(p.name, p.base_url, p.api_key) for p in config.providers] == [
        ("ollama", "http://gpu-box:11434/v1", None)
    ]


def test_aws_credentials_add_a_bedrock_provider_in_the_region() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-1"}
    (provider,) = load_config(None, env).providers
    assert (provider.name, provider.type, provider.region) == ("bedrock", "bedrock", "eu-west-1")


def test_enable_l2_cache_with_redis_url_sets_the_redis_tier() -> None:
    env = {"ENABLE_L2_CACHE": "true", "REDIS_URL": "redis://cache:6379/1"}
    assert load_config(None, env).cache.redis_url == "redis://cache:6379/1"


def test_enable_l2_cache_without_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"ENABLE_L2_CACHE": "true"})
    assert info.value.key == "REDIS_URL"


def test_enable_l2_cache_uses_the_file_redis_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[cache.redis]\nurl = "redis://file:6379/0"\n')
    assert load_config(path, {"ENABLE_L2_CACHE": "1"}).cache.redis_url == "redis://file:6379/0"


def test_enable_l2_cache_false_turns_off_the_file_redis_tier(tmp_path: Path) -> None:
    path = write(tmp_path, '[cache.redis]\nurl = "redis://file:6379/0"\n')
    assert load_config(path, {"ENABLE_L2_CACHE": "false"}).cache.redis_url is None


def test_redis_url_alone_does_not_enable_the_l2_cache() -> None:
    assert load_config(None, {"REDIS_URL": "redis://cache:6379/1"}).cache.redis_url is None


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "no", "off", " False "])
def test_enable_metrics_false_values_turn_metrics_off(value: str) -> None:
    assert load_config(None, {"ENABLE_METRICS": value}).observability.enable_metrics is False


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", ""])
def test_enable_metrics_true_values_and_empty_keep_metrics_on(value: str) -> None:
    assert load_config(None, {"ENABLE_METRICS": value}).observability.enable_metrics is True


def test_env_boolean_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[observability]\nenable_tracing = false\n")
    assert load_config(path, {"ENABLE_TRACING": "true"}).observability.enable_tracing is True


@pytest.mark.parametrize("name", ["ENABLE_METRICS", "ENABLE_TRACING", "ENABLE_L2_CACHE"])
def test_bad_boolean_env_var_is_a_config_error_naming_it(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {name: "maybe"})
    assert info.value.key == name
    assert "maybe" in info.value.problem


def test_log_level_env_is_lowercased_and_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[observability]\nlog_level = "warning"\n')
    assert load_config(path, {"LOG_LEVEL": "DEBUG"}).observability.log_level == "debug"


def test_log_format_env_sets_text_logs() -> None:
    assert load_config(None, {"LOG_FORMAT": "text"}).observability.log_format == "text"


def test_unknown_log_level_env_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"LOG_LEVEL": "verbose"})
    assert info.value.key == "LOG_LEVEL"


def test_unknown_log_format_env_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"LOG_FORMAT": "xml"})
    assert info.value.key == "LOG_FORMAT"


# --------------------------------------------------------------------------- lookup


def test_find_config_path_prefers_the_cli_flag(tmp_path: Path) -> None:
    write(tmp_path, "")
    env = {"LLM_EDGE_CONFIG": "/etc/from-env.toml"}
    assert find_config_path("/x/cli.toml", env, cwd=str(tmp_path)) == "/x/cli.toml"


def test_find_config_path_uses_the_env_var_without_a_flag(tmp_path: Path) -> None:
    write(tmp_path, "")
    env = {"LLM_EDGE_CONFIG": "/etc/from-env.toml"}
    assert find_config_path(None, env, cwd=str(tmp_path)) == "/etc/from-env.toml"


def test_find_config_path_uses_the_file_in_cwd_without_flag_or_env(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    found = find_config_path(None, {"LLM_EDGE_CONFIG": ""}, cwd=str(tmp_path))
    assert found is not None
    assert os.path.samefile(found, path)


def test_find_config_path_default_cwd_is_the_process_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    found = find_config_path(None, {})
    assert found is not None
    assert os.path.samefile(found, path)


def test_find_config_path_returns_none_when_nothing_is_there(tmp_path: Path) -> None:
    assert find_config_path(None, {}, cwd=str(tmp_path)) is None


def test_find_config_path_ignores_a_directory_named_like_the_file(tmp_path: Path) -> None:
    (tmp_path / "llm-edge-agent.toml").mkdir()
    assert find_config_path(None, {}, cwd=str(tmp_path)) is None


# --------------------------------------------------------------------------- secrets


def test_config_repr_never_contains_a_key(tmp_path: Path) -> None:
    text = (
        FULL_CONFIG
        + '\n[[providers]]\nname = "hdr"\ntype = "openai"\n'
        + '[providers.headers]\nauthorization = "Bearer sk-header-secret"\n'
    )
    env = {"OPENAI_API_KEY": ENV_KEY, "ANTHROPIC_API_KEY": FILE_KEY}
    config = load_config(write(tmp_path, text), env)
    assert config.providers[0].api_key == ENV_KEY
    for text_form in (repr(config), str(config), repr(config.providers), repr(config.auth)):
        for secret in (ENV_KEY, FILE_KEY, CLIENT_KEY, "sk-header-secret", "redis-password"):
            assert secret not in text_form


def test_provider_config_repr_never_contains_its_key() -> None:
    provider = ProviderConfig(name="a", type="openai", api_key=FILE_KEY)
    assert FILE_KEY not in repr(provider)
    assert "name='a'" in repr(provider)


# --------------------------------------------------------------------------- CLI


def test_check_config_prints_providers_and_routes_and_returns_zero(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("OPENAI_API_KEY", FILE_KEY)
    path = write(tmp_path, FULL_CONFIG)
    assert main(["check-config", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "OK" in out
    assert "openai: type=openai" in out
    assert "anthropic: type=anthropic" in out
    assert "smart: strategy=weighted" in out
    assert "openai/gpt-4o (weight 3)" in out
    assert "fallbacks=cheap" in out
    assert "cheap: strategy=failover" in out
    assert "api_key=set" in out
    for secret in (FILE_KEY, CLIENT_KEY, "sk-ant-default", "redis-password"):
        assert secret not in out


def test_check_config_never_prints_an_env_key(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("OPENAI_API_KEY", ENV_KEY)
    clean_env.setenv("ANTHROPIC_API_KEY", FILE_KEY)
    assert main(["check-config", write(tmp_path, "")]) == 0
    out, err = capsys.readouterr()
    assert "openai: type=openai" in out
    assert "anthropic: type=anthropic" in out
    assert ENV_KEY not in out + err
    assert FILE_KEY not in out + err


def test_check_config_bad_file_returns_non_zero_and_names_the_key_on_stderr(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PROVIDER.format(name="a", type="openai") + PROVIDER.format(name="b", type="gpt")
    assert main(["check-config", write(tmp_path, text)]) != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "providers[1].type" in err
    assert "unknown provider type" in err


def test_check_config_missing_variable_names_key_and_variable_on_stderr(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", write(tmp_path, FULL_CONFIG)]) != 0
    _, err = capsys.readouterr()
    assert "providers[0].api_key" in err
    assert "OPENAI_API_KEY" in err


def test_check_config_missing_file_returns_non_zero(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "absent.toml")]) != 0
    _, err = capsys.readouterr()
    assert "absent.toml" in err


def test_check_config_error_does_not_print_a_secret(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", write(tmp_path, f'[auth]\napi_keys = "{CLIENT_KEY}"\n')]) != 0
    out, err = capsys.readouterr()
    assert "auth.api_keys" in err
    assert CLIENT_KEY not in out + err


@pytest.mark.parametrize(("flag", "value"), [("--port", "0"), ("--workers", "0")])
def test_serve_with_an_invalid_flag_exits_before_serving(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
) -> None:
    assert main(["serve", "--config", write(tmp_path, ""), flag, value]) == 2
    _, err = capsys.readouterr()
    assert flag in err


def test_serve_with_a_bad_config_exits_before_serving(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", write(tmp_path, "[server]\nport = 0\n")]) == 2
    _, err = capsys.readouterr()
    assert "server.port" in err


def test_describe_without_providers_says_requests_get_503() -> None:
    text = describe(Config())
    assert "(environment only)" in text
    assert "providers (0):" in text
    assert "503" in text
    assert "routes (0):" in text
    assert "open" in text  # no client keys


def test_describe_shows_whether_a_key_is_set_but_never_the_key() -> None:
    config = Config(
        providers=(
            ProviderConfig(name="a", type="openai", api_key=FILE_KEY, models=("gpt-*",)),
            ProviderConfig(name="b", type="ollama"),
        ),
        routes=(RouteConfig(model="smart", targets=(TargetConfig("a", "gpt-4o", 2.5),)),),
        source="/etc/llm.toml",
    )
    text = describe(config)
    assert FILE_KEY not in text
    assert "/etc/llm.toml" in text
    assert "a: type=openai base_url=(default) api_key=set models=gpt-*" in text
    assert "b: type=ollama" in text
    assert "api_key=not set" in text
    assert "smart: strategy=failover targets=a/gpt-4o (weight 2.5)" in text
    assert "metrics_port=9090" in text


def test_describe_reports_metrics_off_and_client_key_count() -> None:
    config = replace(
        Config(),
        server=ServerConfig(metrics_port=0),
        auth=AuthConfig(api_keys=(CLIENT_KEY, "other")),
    )
    text = describe(config)
    assert "metrics_port=off" in text
    assert "auth: 2 client key(s)" in text
    assert CLIENT_KEY not in text


# --------------------------------------------------------------------------- resilience, rules

ROUTE = '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "a" }]\n'


def test_resilience_is_global_with_per_provider_overrides(tmp_path: Path) -> None:
    text = (
        "[resilience]\nmax_retries = 1\nbreaker_open_s = 5\n"
        + PROVIDER.format(name="a", type="mock")
        + "resilience = { max_retries = 4 }\n"
        + PROVIDER.format(name="b", type="mock")
    )
    config = load_config(write(tmp_path, text), {})
    assert config.resilience.max_retries == 1
    own = config.providers[0].resilience
    assert own is not None and own.max_retries == 4 and own.breaker_open_s == 5.0
    assert config.providers[1].resilience is None  # the global one applies


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("resilience = { deadline_s = 5 }\n", "providers[0].resilience.deadline_s"),
        ("resilience = { nope = 1 }\n", "providers[0].resilience.nope"),
        ("resilience = { breaker_failure_ratio = 1.5 }\n", "breaker_failure_ratio"),
        ("health_check_interval_s = -1\n", "providers[0].health_check_interval_s"),
    ],
)
def test_bad_provider_resilience_is_a_config_error(tmp_path: Path, extra: str, key: str) -> None:
    text = PROVIDER.format(name="a", type="mock") + extra
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    assert key in str(info.value)


def test_health_checks_are_refused_for_bedrock(tmp_path: Path) -> None:
    text = PROVIDER.format(name="a", type="bedrock") + "health_check_interval_s = 10\n"
    with pytest.raises(ConfigError, match="bedrock"):
        load_config(write(tmp_path, text), {})


def test_rules_models_and_teams_are_read(tmp_path: Path) -> None:
    text = (
        PROVIDER.format(name="a", type="mock")
        + ROUTE
        + '[[rules]]\nroute = "smart"\nmodel = "gpt-*"\nteams = ["research"]\n'
        + 'keys = ["0123456789abcdef"]\nmax_prompt_tokens = 100\n'
        + '[rules.headers]\n"X-Tier" = "gold"\n[rules.metadata]\nplan = "pro*"\n'
        + '[models."my-*"]\ncontext_window = 8000\ntools = false\n'
        + f'[auth.teams]\nresearch = ["{CLIENT_KEY}"]\n'
    )
    config = load_config(write(tmp_path, text), {})
    rule = config.rules[0]
    assert rule.models == ("gpt-*",) and rule.teams == ("research",)
    assert dict(rule.headers) == {"x-tier": "gold"} and dict(rule.metadata) == {"plan": "pro*"}
    assert rule.max_prompt_tokens == 100 and rule.keys == ("0123456789abcdef",)
    info = config.models["my-*"]
    assert info.context_window == 8000 and info.tools is False and info.vision is None
    assert config.auth.teams == {"research": (CLIENT_KEY,)}


@pytest.mark.parametrize(
    ("rule", "teams", "message"),
    [
        ('route = "nope"\n', "", "unknown route"),
        ('route = "smart"\nmodel = "a"\nmodels = ["b"]\n', "", "not both"),
        ('route = "smart"\nkeys = ["sk-a-raw-key"]\n', "", "key id"),
        ('route = "smart"\nteams = ["ghosts"]\n', "", "unknown team"),
        ('route = "smart"\n', 'ops = ["sha256:abc"]\n', "64 hex"),
        ('route = "smart"\n', 'ops = [""]\n', "is empty"),
    ],
)
def test_bad_rules_and_teams_are_config_errors(
    tmp_path: Path, rule: str, teams: str, message: str
) -> None:
    text = PROVIDER.format(name="a", type="mock") + ROUTE + "[[rules]]\n" + rule
    if teams:
        text += "[auth.teams]\n" + teams
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), {})
