"""Active health checks: a failing probe opens the circuit before traffic finds out, and a
passing one closes it long before ``breaker_open_s`` would have let a probe through."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from aiohttp import web

from ..fake_upstream import FakeUpstream
from ..gateway_process import GatewayProcess


class ProbedUpstream(FakeUpstream):
    """A fake whose model list (the health probe) answers with ``models_status``."""

    def __init__(self) -> None:
        self.models_status = 200
        self.probes = 0
        super().__init__()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path.endswith("/models"):
            self.probes += 1
            return web.json_response({"object": "list", "data": []}, status=self.models_status)
        return await super()._handle(request)

    def chats(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/chat/completions"))


@pytest.fixture
def primary() -> Iterator[ProbedUpstream]:
    server = ProbedUpstream()
    yield server
    server.close()


def config(primary: FakeUpstream, backup: FakeUpstream) -> str:
    return f"""
[[providers]]
name = "primary"
type = "openai_compatible"
base_url = "{primary.url}"
models = ["p-*"]
health_check_interval_s = 0.1
health_check_timeout_s = 1

[[providers]]
name = "backup"
type = "openai_compatible"
base_url = "{backup.url}"
models = ["b-*"]

[[routes]]
model = "ha"
targets = [{{ provider = "primary", model = "p-model" }}, {{ provider = "backup", model = "b-model" }}]

[resilience]
breaker_open_s = 60
"""


def provider_health(gateway: GatewayProcess, name: str) -> dict[str, object]:
    body = httpx.get(f"{gateway.url}/health", timeout=5).json()
    entry: dict[str, object] = body["providers"][name]
    return entry


def test_a_failing_probe_diverts_traffic_and_a_passing_one_brings_it_back(
    primary: ProbedUpstream, backup: FakeUpstream
) -> None:
    gateway = GatewayProcess(config(primary, backup))
    try:
        assert primary.wait_for(lambda: primary.probes >= 2)
        assert provider_health(gateway, "primary")["circuit"] == "closed"
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
            first = client.chat.completions.with_raw_response.create(
                model="ha", messages=[{"role": "user", "content": "one"}]
            )
            assert first.headers["x-llm-edge-provider"] == "primary"
            assert primary.chats() == 1

            primary.models_status = 503  # the provider goes bad; no request has seen it yet
            assert primary.wait_for(
                lambda: provider_health(gateway, "primary")["circuit"] == "open"
            )
            health = provider_health(gateway, "primary")
            assert health["healthy"] is False
            metrics = httpx.get(f"{gateway.url}/metrics", timeout=5).text
            assert 'llm_edge_provider_available{provider="primary"} 0.0' in metrics
            second = client.chat.completions.with_raw_response.create(
                model="ha", messages=[{"role": "user", "content": "two"}]
            )
            assert second.headers["x-llm-edge-provider"] == "backup"
            assert primary.chats() == 1  # the bad provider never saw the request

            primary.models_status = 200  # back: closed long before breaker_open_s (60 s)
            assert primary.wait_for(
                lambda: provider_health(gateway, "primary")["circuit"] == "closed"
            )
            third = client.chat.completions.with_raw_response.create(
                model="ha", messages=[{"role": "user", "content": "three"}]
            )
            assert third.headers["x-llm-edge-provider"] == "primary"
            assert primary.chats() == 2
        lines = [r for r in gateway.log_lines() if "health check" in str(r.get("msg"))]
        assert any(r.get("healthy") is False for r in lines)
        assert any(r.get("healthy") is True for r in lines)
    finally:
        gateway.cleanup()


def test_the_only_provider_failing_its_probe_makes_the_gateway_unready(
    primary: ProbedUpstream,
) -> None:
    primary.models_status = 401  # a rejected key is unhealthy too: traffic would fail
    gateway = GatewayProcess(
        f"""
[[providers]]
name = "primary"
type = "openai_compatible"
base_url = "{primary.url}"
models = ["p-*"]
health_check_interval_s = 0.1
"""
    )
    try:
        assert primary.wait_for(
            lambda: httpx.get(f"{gateway.url}/health/ready", timeout=5).status_code == 503
        )
        assert httpx.get(f"{gateway.url}/health", timeout=5).json()["status"] == "unhealthy"
        primary.models_status = 404  # no model list, but the server answers: healthy
        assert primary.wait_for(
            lambda: httpx.get(f"{gateway.url}/health/ready", timeout=5).status_code == 200
        )
    finally:
        gateway.cleanup()
