"""Process-level behaviour: shutdown, disconnects, workers, metrics, logs, auth, CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from ..fake_upstream import FakeUpstream, Reply, free_port
from ..gateway_process import GatewayProcess
from .conftest import UPSTREAM_KEY, standard_config

USER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "a secret prompt about llamas"}
]
CHUNK = (
    b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":%s}]}\n\n'
)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sigterm_drains_an_in_flight_stream_then_exits_0(
    upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    gateway = GatewayProcess(standard_config(upstream, backup))
    try:
        words = [CHUNK % f'{{"content":"w{i}"}},"finish_reason":null'.encode() for i in range(8)]
        finish = CHUNK % b'{},"finish_reason":"stop"'
        upstream.push(Reply(event_delay_s=0.15, events=[*words, finish, b"data: [DONE]\n\n"]))
        received: list[str] = []
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
            stream = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
            for i, c in enumerate(stream):
                if i == 1:
                    gateway.signal(signal.SIGTERM)
                if c.choices:
                    received.append(c.choices[0].delta.content or "")
        assert "".join(received) == "".join(f"w{i}" for i in range(8))
        assert gateway.process.wait(15) == 0
        # The request's log line was flushed before exit.
        lines = [r for r in gateway.log_lines() if r.get("msg") == "request"]
        assert lines and lines[-1]["status"] == 200 and lines[-1]["stream"] is True
        # And the port no longer accepts connections.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gateway.url}/health/live", timeout=1)
    finally:
        gateway.cleanup()


def test_client_disconnect_mid_stream_cancels_the_upstream_request(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    slow = [CHUNK % b'{"content":"tick"},"finish_reason":null'] * 100
    upstream.push(Reply(events=slow, event_delay_s=0.05))
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": USER, "stream": True},
        timeout=10,
    ) as response:
        for _ in response.iter_bytes():
            break  # read one chunk, then hang up
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout_s=5)
    assert upstream.completed_streams == 0
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["providers"]["fake"]["in_flight"] == 0
    text = httpx.get(f"{gateway.url}/metrics").text
    assert metric(text, "llm_edge_active_requests") == 0
    assert metric(text, "llm_edge_requests_total", provider="fake", status="499") >= 1


def test_metrics_count_every_worker_once(upstream: FakeUpstream, backup: FakeUpstream) -> None:
    metrics_port = free_port()
    gateway = GatewayProcess(
        standard_config(upstream, backup), workers=2, metrics_port=metrics_port
    )
    try:
        n = 40

        def send(count: int) -> None:
            # New connections each time, so the kernel spreads them over both workers.
            for _ in range(count):
                response = httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": USER},
                    headers={"connection": "close"},
                )
                assert response.status_code == 200

        threads = [threading.Thread(target=send, args=(n // 4,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        served_by = {
            r.get("pid") for r in gateway.log_lines() if str(r.get("msg", "")).startswith("worker")
        }
        assert len(served_by) >= 2
        for url in (f"{gateway.url}/metrics", f"http://127.0.0.1:{metrics_port}/metrics"):
            text = httpx.get(url).text
            assert (
                metric(
                    text, "llm_edge_requests_total", provider="fake", model="gpt-4o", status="200"
                )
                == n
            )
            assert metric(text, "llm_edge_tokens_total", provider="fake", type="prompt") == 12 * n
            assert metric(text, "llm_edge_request_duration_seconds_count", provider="fake") == n
            assert metric(text, "llm_edge_cost_usd_total", provider="fake") > 0
            assert metric(text, "llm_edge_provider_available", provider="fake") == 1
            assert "llm_edge_cache_misses_total" in text
        assert gateway.stop() == 0
    finally:
        gateway.cleanup()


def test_error_metrics_and_log_lines_never_hold_keys_or_prompts(
    upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    client_key = "sk-client-key-should-never-be-logged"
    gateway = GatewayProcess(
        standard_config(upstream, backup, f'[auth]\napi_keys = ["{client_key}"]\n')
    )
    try:
        headers = {"authorization": f"Bearer {client_key}"}
        ok = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": USER},
            headers={**headers, "x-request-id": "req-log-1"},
        )
        assert ok.status_code == 200
        upstream.push(Reply(status=500, json={"error": {"message": "down"}}))
        bad = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": USER},
            headers=headers,
        )
        assert bad.status_code == 502
        text = httpx.get(f"{gateway.url}/metrics").text
        assert metric(text, "llm_edge_request_errors_total") >= 1
        assert gateway.stop() == 0
        log = gateway.log()
        assert client_key not in log and UPSTREAM_KEY not in log
        assert "llamas" not in log
        record = next(r for r in gateway.log_lines() if r.get("request_id") == "req-log-1")
        assert (
            record["model"] == "gpt-4o" and record["provider"] == "fake" and record["status"] == 200
        )
        assert record["prompt_tokens"] == 12 and record["completion_tokens"] == 5
        assert isinstance(record["latency_ms"], float) and record["cost_usd"] is not None
    finally:
        gateway.cleanup()


def test_log_prompts_option_includes_messages(upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = GatewayProcess(
        standard_config(upstream, backup, "[observability]\nlog_prompts = true\n")
    )
    try:
        httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-4o", "messages": USER})
        gateway.stop()
        assert "llamas" in gateway.log()
    finally:
        gateway.cleanup()


def test_client_keys_are_required_when_configured_and_never_forwarded(
    upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    gateway = GatewayProcess(
        standard_config(upstream, backup, '[auth]\napi_keys = ["sk-edge-one"]\n')
    )
    try:
        url = f"{gateway.url}/v1/chat/completions"
        body = {"model": "gpt-4o", "messages": USER}
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "nope"}):
            response = httpx.post(url, json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
        assert upstream.requests == []
        assert httpx.post(url, json=body, headers={"x-api-key": "sk-edge-one"}).status_code == 200
        with openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key="sk-edge-one", max_retries=0
        ) as client:
            client.chat.completions.create(model="gpt-4o", messages=USER)
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="bad", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="gpt-4o", messages=USER)
        assert all("sk-edge-one" not in str(r.headers) for r in upstream.requests)
        # Health stays open for probes.
        assert httpx.get(f"{gateway.url}/health").status_code == 200
    finally:
        gateway.cleanup()


def test_environment_only_setup_routes_by_model_prefix(upstream: FakeUpstream) -> None:
    gateway = GatewayProcess(
        None, env={"OPENAI_API_KEY": "sk-env-key", "OPENAI_BASE_URL": upstream.url}
    )
    try:
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=USER
            )
            assert raw.headers["x-llm-edge-provider"] == "openai"
            assert upstream.requests[-1].headers["authorization"] == "Bearer sk-env-key"
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="claude-3-5-haiku-latest", messages=USER)
        health = httpx.get(f"{gateway.url}/health").json()
        assert health["providers"]["openai"]["healthy"] is True
    finally:
        gateway.cleanup()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_edge_agent", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_check_config_prints_providers_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[providers]]\nname = "main"\ntype = "openai"\napi_key = "${MY_KEY}"\nmodels = ["gpt-4o*"]\n'
        '[[routes]]\nmodel = "smart"\ntargets = [{ provider = "main", model = "gpt-4o" }]\n'
    )
    result = run_cli("check-config", str(path), env={"MY_KEY": "sk-very-secret"})
    assert result.returncode == 0, result.stderr
    assert "main" in result.stdout and "smart" in result.stdout and "api_key=set" in result.stdout
    assert "sk-very-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ('[[providers]]\nname = "x"\ntype = "openia"\n', {}, "providers[0].type"),
        ('[[providers]]\nname = "x"\ntype = "openai"\napi_key = "${NOPE}"\n', {}, "NOPE"),
        ('[server]\nport = "eighty"\n', {}, "server.port"),
        ("[server]\nprot = 80\n", {}, "server.prot"),
        ("not toml at all [", {}, "invalid TOML"),
        (
            '[[routes]]\nmodel = "a"\ntargets = [{ provider = "ghost" }]\n',
            {},
            "routes[0].targets[0].provider",
        ),
    ],
)
def test_bad_config_exits_non_zero_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_cli("check-config", str(path), env=env)
    assert result.returncode != 0
    assert named in result.stderr
    served = run_cli("serve", "--config", str(path), env={**env, "PORT": str(free_port())})
    assert served.returncode != 0 and named in served.stderr


def test_cli_flags_and_python_m_entry_point(upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = GatewayProcess(standard_config(upstream, backup), args=("--workers", "1"))
    try:
        assert httpx.get(f"{gateway.url}/health/ready").json() == {"status": "ready"}
    finally:
        gateway.cleanup()
    result = run_cli("--version")
    assert result.returncode == 0 and "llm-edge-agent" in result.stdout


def test_port_in_use_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    config = tmp_path / "c.toml"
    config.write_text('[[providers]]\nname = "m"\ntype = "mock"\nmodels = ["*"]\n')
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        engine = os.environ.get("LLM_EDGE_TEST_ENGINE", "native")
        result = run_cli(
            "serve",
            "--config",
            str(config),
            "--engine",
            engine,
            env={"HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": "0"},
        )
    assert result.returncode != 0
    assert "cannot listen on" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
