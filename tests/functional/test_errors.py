"""Every row of the error table (INTERFACE §7), and hostile input that must not hurt."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from ..fake_upstream import FakeUpstream, Reply, chunk, free_port
from ..gateway_process import GatewayProcess
from .conftest import UPSTREAM_KEY

USER = [{"role": "user", "content": "hi"}]


def post(gateway: GatewayProcess, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", **kwargs.pop("headers", {})},
        timeout=10,
        **kwargs,
    )


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    assert "x-request-id" in response.headers
    return dict(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2, 3]", None),
        (b'"just a string"', None),
        (b"\xff\xfe\x00garbage", None),
        ({"messages": USER}, "model"),
        ({"model": 42, "messages": USER}, "model"),
        ({"model": "", "messages": USER}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o", "messages": ["hi"]}, "messages[0]"),
        ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "gpt-4o", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        ({"model": "gpt-4o", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "gpt-4o", "messages": USER, "temperature": 9}, "temperature"),
        ({"model": "gpt-4o", "messages": USER, "stream": "yes"}, "stream"),
        ({"model": "gpt-4o", "messages": USER, "max_tokens": -1}, "max_tokens"),
        ({"model": "gpt-4o", "messages": USER, "n": 0}, "n"),
        ({"model": "gpt-4o", "messages": USER, "stop": [1, 2]}, "stop"),
        (
            {"model": "gpt-4o", "messages": USER, "tools": [{"type": "function"}]},
            "tools[0].function.name",
        ),
        ({"model": "gpt-4o", "messages": USER, "tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_malformed_requests_get_400_naming_the_field(
    gateway: GatewayProcess, upstream: FakeUpstream, body: Any, param: str | None
) -> None:
    error = assert_error(post(gateway, body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_sdk_sees_bad_request_as_bad_request_error(gateway: GatewayProcess) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="gpt-4o", messages=[])
    assert info.value.status_code == 400


def test_body_over_the_limit_is_413(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_error(post(gateway, big), 413)

    def chunked() -> Iterator[bytes]:
        data = orjson.dumps(big)
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=chunked(), timeout=10)
    assert_error(response, 413)
    assert upstream.requests == []


def test_unknown_model_is_404(gateway: GatewayProcess) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="llama-nonexistent", messages=USER)
    assert "llama-nonexistent" in info.value.message


def test_unknown_path_is_404_and_wrong_method_is_405(gateway: GatewayProcess) -> None:
    assert_error(httpx.get(f"{gateway.url}/v2/nothing"), 404)
    assert_error(httpx.get(f"{gateway.url}/v1/chat/completions"), 405)


def test_upstream_timeout_is_504(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    upstream.push(Reply(delay_s=3))
    error = assert_error(post(gateway, {"model": "gpt-4o", "messages": USER}), 504)
    assert "timed out" in error["message"]


def test_stream_timeout_before_first_byte_is_504(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(delay_s=3, events=[chunk("gpt-4o", {"content": "late"})]))
    assert_error(post(gateway, {"model": "gpt-4o", "messages": USER, "stream": True}), 504)


def test_client_deadline_header_shortens_the_timeout(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(delay_s=1.0))
    response = post(
        gateway, {"model": "gpt-4o", "messages": USER}, headers={"x-llm-edge-timeout-ms": "200"}
    )
    assert_error(response, 504)
    assert_error(
        post(
            gateway,
            {"model": "gpt-4o", "messages": USER},
            headers={"x-llm-edge-timeout-ms": "soon"},
        ),
        400,
        "x-llm-edge-timeout-ms",
    )


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, json={"error": {"message": "internal"}}),
        Reply(status=503, body=b"<html>Service Unavailable</html>"),
        Reply(status=200, body=b"this is not json"),
        Reply(status=200, json={"unexpected": "shape"}),
    ],
    ids=["500", "503-html", "garbage-200", "wrong-shape-200"],
)
def test_upstream_failure_or_garbage_is_502(
    gateway: GatewayProcess, upstream: FakeUpstream, reply: Reply
) -> None:
    upstream.push(reply)
    error = assert_error(post(gateway, {"model": "gpt-4o", "messages": USER}), 502)
    assert "fake" in error["message"]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_caused_upstream_4xx_keeps_status_and_message(
    gateway: GatewayProcess, upstream: FakeUpstream, status: int
) -> None:
    upstream.push(
        Reply(
            status=status,
            json={
                "error": {
                    "message": f"provider says no ({status})",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": None,
                }
            },
        )
    )
    error = assert_error(post(gateway, {"model": "gpt-4o", "messages": USER}), status)
    assert error["message"] == f"provider says no ({status})"
    assert error["param"] == "max_tokens"


def test_upstream_auth_failure_is_502_about_the_gateways_key(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=401,
            json={"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY[:12]}***"}},
        )
    )
    response = post(gateway, {"model": "gpt-4o", "messages": USER})
    error = assert_error(response, 502)
    assert "key" in error["message"] and "rejected" in error["message"]
    assert UPSTREAM_KEY[:12] not in response.text


def test_unreachable_provider_is_502(tmp_path: Any) -> None:
    dead = free_port()
    gateway = GatewayProcess(
        f"""
[[providers]]
name = "dead"
type = "openai_compatible"
base_url = "http://127.0.0.1:{dead}/v1"
models = ["*"]
connect_timeout_s = 1
"""
    )
    try:
        error = assert_error(post(gateway, {"model": "gpt-4o", "messages": USER}), 502)
        assert "unreachable" in error["message"]
    finally:
        gateway.cleanup()


def test_stream_cut_after_start_ends_with_an_sse_error_event(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(events=[chunk("gpt-4o", {"role": "assistant", "content": "Hel"})] * 3, cut_after=2)
    )
    response = post(gateway, {"model": "gpt-4o", "messages": USER, "stream": True})
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e.strip()]
    assert events[0].startswith("data: {")
    last = orjson.loads(events[-1].removeprefix("data: "))
    message = last["error"]["message"]
    assert "closed" in message or "broken" in message
    assert "[DONE]" not in response.text

    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client:
        upstream.push(Reply(events=[chunk("gpt-4o", {"content": "Hel"})] * 3, cut_after=1))
        stream = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass


def test_stream_without_finish_or_done_is_reported_not_truncated(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.push(Reply(events=[chunk("gpt-4o", {"content": "partial"})]))
    response = post(gateway, {"model": "gpt-4o", "messages": USER, "stream": True})
    last = orjson.loads(response.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert "error" in last


def test_no_provider_configured_is_503_and_health_says_so() -> None:
    gateway = GatewayProcess(None)
    try:
        error = assert_error(post(gateway, {"model": "gpt-4o", "messages": USER}), 503)
        assert "no provider" in error["message"]
        health = httpx.get(f"{gateway.url}/health").json()
        assert health["status"] == "unhealthy" and health["providers"] == {}
        assert "no provider" in health["message"]
        assert httpx.get(f"{gateway.url}/health/ready").status_code == 503
        assert httpx.get(f"{gateway.url}/health/live").status_code == 200
    finally:
        gateway.cleanup()


def test_hostile_input_never_takes_the_worker_down(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    hostile = [
        nested,
        b'{"model": "gpt-4o", "messages": ' + nested + b"}",
        b'{"model": "gpt-4o\\u0000\\r\\nX-Evil: 1", "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 1e999}',
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": ["gpt-4o"], "messages": null}',
        b"\x00" * 1000,
    ]
    for body in hostile:
        response = post(gateway, body)
        assert response.status_code in (400, 404, 413), (body[:60], response.text)
    # A raw socket speaking nonsense, and one that hangs up mid-body.
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{",
    ):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            sock.sendall(raw)
    response = post(
        gateway, {"model": "gpt-4o", "messages": USER}, headers={"x-request-id": "x" * 5000}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "x" * 5000
    assert httpx.get(f"{gateway.url}/health/live").status_code == 200
    assert gateway.process.poll() is None


def test_full_bulkhead_fails_fast_with_503_and_recovers(upstream: FakeUpstream) -> None:
    gateway = GatewayProcess(
        f"""
[[providers]]
name = "narrow"
type = "openai_compatible"
base_url = "{upstream.url}"
models = ["*"]
max_concurrency = 1
"""
    )
    try:
        upstream.push(Reply(delay_s=1.0))
        with httpx.Client(timeout=10) as slow_client:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                slow = pool.submit(post, gateway, {"model": "gpt-4o", "messages": USER})
                assert upstream.wait_for(lambda: len(upstream.requests) == 1)
                started = httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": USER},
                    timeout=10,
                )
                error = assert_error(started, 503)
                assert "max_concurrency" in error["message"]
                assert slow.result().status_code == 200
            assert (
                slow_client.post(
                    f"{gateway.url}/v1/chat/completions", json={"model": "gpt-4o", "messages": USER}
                ).status_code
                == 200
            )
        assert len(upstream.requests) == 2
    finally:
        gateway.cleanup()
