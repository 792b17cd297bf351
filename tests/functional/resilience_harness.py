"""The resilience tests' harness: a gateway over two fake upstreams that fail on command,
``primary`` and ``backup``, behind providers of those names and an ``ha`` route over both
(primary first); ``make_gateway`` (a fixture, see ``conftest.py``) starts one per test so
circuit and cooldown state never leak between tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from ..fake_upstream import FakeUpstream, wait_until
from ..gateway_process import GatewayProcess

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
BOOM = {"error": {"message": "boom", "type": "server_error"}}


def resilience_config(
    primary: FakeUpstream,
    backup: FakeUpstream,
    *,
    resilience: str = "",
    route: str = "",
    strategy: str = "failover",
    primary_extra: str = "",
    backup_extra: str = "",
    extra: str = "",
) -> str:
    """Two providers (``primary``, ``backup``), a ``ha`` route over both, and a
    ``[resilience]`` table (fast backoff, no retries unless the test asks)."""
    return f"""
[[providers]]
name = "primary"
type = "openai_compatible"
base_url = "{primary.url}"
models = ["primary-*"]
{primary_extra}

[[providers]]
name = "backup"
type = "openai_compatible"
base_url = "{backup.url}"
models = ["backup-*"]
{backup_extra}

[[routes]]
model = "ha"
strategy = "{strategy}"
targets = [{{ provider = "primary", model = "primary-model" }}, {{ provider = "backup", model = "backup-model" }}]
{route}
{extra}

[resilience]
backoff_base_ms = 5
backoff_max_ms = 20
{resilience}
"""


class Edge:
    """A running gateway, with a kept-alive HTTP client (a new client per call costs tens
    of milliseconds, which the timing-sensitive tests cannot spare)."""

    def __init__(self, process: GatewayProcess) -> None:
        self.process = process
        self.url = process.url
        self.http = httpx.Client(base_url=process.url, timeout=15)

    def close(self) -> None:
        self.http.close()
        self.process.cleanup()

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="sk-client", max_retries=0, timeout=15
        )

    def post(self, model: str = "ha", headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": USER},
            headers=headers or {},
        )

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/health").json()
        return body

    def circuit(self, provider: str) -> str:
        state: str = self.health()["providers"][provider]["circuit"]
        return state

    def in_flight(self, provider: str) -> int:
        count: int = self.health()["providers"][provider]["in_flight"]
        return count

    def idle(self) -> bool:
        """Whether no provider has a request in flight (no leaked bulkhead slot)."""
        return all(p["in_flight"] == 0 for p in self.health()["providers"].values())

    def available_gauge(self, provider: str) -> float:
        text = self.http.get("/metrics").text
        match = re.search(
            rf'^llm_edge_provider_available\{{provider="{provider}"\}} (\S+)$', text, re.M
        )
        assert match, text
        return float(match.group(1))

    def access_line(self, request_id: str) -> dict[str, Any]:
        """The request's access log line (the log is written in batches: wait for it)."""
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [
                r
                for r in self.process.log_lines()
                if r.get("msg") == "request" and r.get("request_id") == request_id
            ]
            return bool(found)

        assert wait_until(look), f"no log line for {request_id}:\n{self.process.log()[-3000:]}"
        return found[-1]


GatewayFactory = Callable[..., Edge]


@pytest.fixture
def make_gateway(upstream: FakeUpstream, backup: FakeUpstream) -> Iterator[GatewayFactory]:
    """Starts a gateway over ``upstream`` (as ``primary``) and ``backup``; stops it after.
    Keyword arguments go to ``resilience_config``."""
    started: list[Edge] = []

    def make(**kwargs: Any) -> Edge:
        process = GatewayProcess(resilience_config(upstream, backup, **kwargs), resilience=True)
        started.append(Edge(process))
        return started[-1]

    yield make
    for edge in started:
        edge.close()


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The contract's error shape (INTERFACE §7)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["code"], str) and error["code"]
    assert "Traceback" not in error["message"]
    assert "x-request-id" in response.headers
    return dict(error)
