from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ..fake_upstream import FakeUpstream
from ..gateway_process import GatewayProcess
from .resilience_harness import make_gateway  # noqa: F401  (a fixture for the resilience tests)

UPSTREAM_KEY = "sk-upstream-secret-do-not-leak"


def standard_config(primary: FakeUpstream, backup: FakeUpstream, extra: str = "") -> str:
    return f"""
[[providers]]
name = "fake"
type = "openai_compatible"
base_url = "{primary.url}"
api_key = "{UPSTREAM_KEY}"
models = ["gpt-*", "fake-*", "text-embedding-*"]
timeout_s = 1.5
stream_idle_timeout_s = 1.5

[[providers]]
name = "backup"
type = "openai_compatible"
base_url = "{backup.url}"
models = ["backup-*"]

[[providers]]
name = "mock"
type = "mock"
models = ["mock-*"]

[[routes]]
model = "ha"
strategy = "failover"
targets = [{{ provider = "fake", model = "fake-primary" }}, {{ provider = "backup", model = "backup-model" }}]

[limits]
max_body_bytes = 65536
{extra}
"""


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream, backup_server: FakeUpstream) -> Iterator[GatewayProcess]:
    process = GatewayProcess(standard_config(upstream_server, backup_server))
    yield process
    process.cleanup()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client", max_retries=0) as c:
        yield c
