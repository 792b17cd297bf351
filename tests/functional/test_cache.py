"""The response cache (L1) through the real gateway, driven with the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply, chunk, completion, stream_events
from ..gateway_process import GatewayProcess
from .test_lifecycle import metric

KEYS = ("sk-tenant-a", "sk-tenant-b")


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        f"""
[[providers]]
name = "fake"
type = "openai_compatible"
base_url = "{upstream_server.url}"
models = ["gpt-*"]

[auth]
api_keys = ["{KEYS[0]}", "{KEYS[1]}"]

[cache]
enabled = true
ttl_s = 600
""",
        cache=True,
    )
    yield process
    process.cleanup()


def client_for(gateway: GatewayProcess, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_a_repeated_request_is_answered_from_l1_for_free(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    with client_for(gateway) as client:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("cache me 1")
        )
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("cache me 1")
        )
    assert first.headers["x-llm-edge-cache"] == "miss"
    assert second.headers["x-llm-edge-cache"] == "hit-l1"
    assert second.headers["x-llm-edge-provider"] == "fake"
    assert len(upstream.requests) == 1
    meta = second.http_response.json()["metadata"]
    assert meta == {**meta, "cached": True, "cache_tier": "l1", "cost_usd": 0.0}
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert first.http_response.json()["metadata"]["cached"] is False


def test_key_order_does_not_matter_but_any_output_changing_field_does(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    url = f"{gateway.url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {KEYS[0]}", "content-type": "application/json"}
    a = b'{"model": "gpt-4o", "temperature": 0.5, "messages": [{"role": "user", "content": "order"}]}'
    b = b'{"messages": [{"content": "order", "role": "user"}], "temperature": 0.5, "model": "gpt-4o"}'
    c = b'{"model": "gpt-4o", "temperature": 0.6, "messages": [{"role": "user", "content": "order"}]}'
    statuses = [
        httpx.post(url, content=body, headers=headers).headers["x-llm-edge-cache"]
        for body in (a, b, c)
    ]
    assert statuses == ["miss", "hit-l1", "miss"]
    assert len(upstream.requests) == 2


def test_streamed_and_plain_requests_share_entries_both_ways(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    with client_for(gateway) as client:
        plain = client.chat.completions.create(model="gpt-4o", messages=ask("both ways 1"))
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=ask("both ways 1"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain.choices[0].message.content
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 17
        assert len(upstream.requests) == 1
        # A streamed miss is assembled and stored, then answers a plain request.
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="gpt-4o", messages=ask("both ways 2"), stream=True
            )
            if c.choices
        )
        again = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("both ways 2")
        )
    assert again.headers["x-llm-edge-cache"] == "hit-l1"
    assert again.parse().choices[0].message.content == streamed == "Hello world"
    assert len(upstream.requests) == 2


def test_a_stream_is_cached_even_when_its_client_hangs_up_at_done(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    """Regression: the openai SDK closes the response as soon as it reads [DONE]. When the
    upstream's body ended a little after its [DONE], that close cancelled the stream before
    the gateway stored it, and the next identical request missed."""
    messages = ask("hang up at done")
    as_sent = {"model": "gpt-4o", "stream_options": {"include_usage": True}}  # the gateway asks
    upstream.push(Reply(events=stream_events(as_sent), end_delay_s=0.3))
    with client_for(gateway) as client:
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
            if c.choices
        )
        again = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    assert streamed == "Hello world"
    assert again.headers["x-llm-edge-cache"] == "hit-l1"
    assert len(upstream.requests) == 1


def test_tenants_never_share_entries(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    with client_for(gateway, KEYS[0]) as a, client_for(gateway, KEYS[1]) as b:
        a.chat.completions.create(model="gpt-4o", messages=ask("tenant prompt"))
        raw = b.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("tenant prompt")
        )
        assert raw.headers["x-llm-edge-cache"] == "miss"
        raw = b.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("tenant prompt")
        )
        assert raw.headers["x-llm-edge-cache"] == "hit-l1"
    assert len(upstream.requests) == 2


def test_cache_control_headers(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    with client_for(gateway) as client:

        def status(text: str, headers: dict[str, str] | None = None) -> str:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=ask(text), extra_headers=headers or {}
            )
            return str(raw.headers["x-llm-edge-cache"])

        assert status("no-store", {"cache-control": "no-store"}) == "bypass"
        assert status("no-store") == "miss"  # nothing was stored
        assert status("no-cache") == "miss"
        assert status("no-cache", {"cache-control": "no-cache"}) == "miss"  # looked past, stored
        assert status("no-cache") == "hit-l1"
        assert status("max-age") == "miss"
        assert status("max-age", {"cache-control": "max-age=3600"}) == "hit-l1"
        assert status("ttl", {"x-llm-edge-cache-ttl": "0"}) == "miss"  # kept for 0 s
        assert status("ttl") == "miss"
    assert len(upstream.requests) == 7


def test_errors_and_truncated_answers_are_never_cached(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    truncated = completion({"messages": ask("cut")}, "partial")
    truncated["choices"][0]["finish_reason"] = "length"
    upstream.push(Reply(status=500, json={"error": {"message": "down"}}))
    with client_for(gateway) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=ask("fails first"))
        ok = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("fails first")
        )
        assert ok.headers["x-llm-edge-cache"] == "miss"
        upstream.push(Reply(json=truncated))
        cut = client.chat.completions.create(model="gpt-4o", messages=ask("cut"))
        assert cut.choices[0].finish_reason == "length"
        again = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("cut")
        )
        assert again.headers["x-llm-edge-cache"] == "miss"
    assert len(upstream.requests) == 4


def test_hits_and_misses_are_counted_and_health_reports_the_cache(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    before = httpx.get(f"{gateway.url}/metrics").text
    with client_for(gateway) as client:
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=ask("counted"))
    after = httpx.get(f"{gateway.url}/metrics").text
    hits = metric(after, "llm_edge_cache_hits_total", tier="l1") - metric(
        before, "llm_edge_cache_hits_total", tier="l1"
    )
    misses = metric(after, "llm_edge_cache_misses_total", tier="l1") - metric(
        before, "llm_edge_cache_misses_total", tier="l1"
    )
    assert (hits, misses) == (2, 1)
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["cache"]["enabled"] is True and health["cache"]["l2_configured"] is False
    log_lines = [r for r in gateway.log_lines() if r.get("cache") == "hit-l1"]
    assert log_lines and all(r["cost_usd"] == 0.0 for r in log_lines)
    assert json.dumps(log_lines[-1]).count("saved_cost_usd") == 1


def test_a_burst_of_identical_requests_reaches_the_upstream_once(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    import concurrent.futures

    upstream.push(Reply(delay_s=0.5))
    body = {"model": "gpt-4o", "messages": ask("burst")}
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        responses = list(
            pool.map(
                lambda _: httpx.post(
                    f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=10
                ),
                range(50),
            )
        )
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["choices"][0]["message"]["content"] for r in responses}) == 1
    assert len(upstream.requests) == 1


def test_the_first_client_leaving_does_not_cost_the_others_their_answer(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    import concurrent.futures

    upstream.push(Reply(delay_s=0.6))
    body = {"model": "gpt-4o", "messages": ask("leader leaves")}
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    url = f"{gateway.url}/v1/chat/completions"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        impatient = pool.submit(httpx.post, url, json=body, headers=headers, timeout=0.2)
        assert upstream.wait_for(lambda: len(upstream.requests) == 1)
        patient = pool.submit(httpx.post, url, json=body, headers=headers, timeout=10)
        with pytest.raises(httpx.TimeoutException):
            impatient.result()
        assert patient.result().status_code == 200
    assert len(upstream.requests) == 1


def stream_text(gateway: GatewayProcess, body: dict[str, object]) -> tuple[str, str | None]:
    """(content, finish reason) of one streamed request, read with the openai SDK."""
    with client_for(gateway) as client:
        stream = client.chat.completions.create(**body, stream=True)
        text, finish = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish


def slow_stream(words: list[str], delay_s: float) -> Reply:
    events = [chunk("gpt-4o", {"content": w}) for w in words]
    events.append(chunk("gpt-4o", {}, "stop"))
    return Reply(events=[*events, b"data: [DONE]\n\n"], event_delay_s=delay_s)


def test_a_burst_of_identical_streams_reaches_the_upstream_once(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    import concurrent.futures

    words = [f"w{i} " for i in range(6)]
    upstream.push(slow_stream(words, 0.05))
    body = {"model": "gpt-4o", "messages": ask("stream burst")}
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: stream_text(gateway, body), range(50)))
    assert all(r == ("".join(words), "stop") for r in results)
    assert len(upstream.requests) == 1


def test_a_stream_joined_mid_way_is_whole_and_the_first_leaving_cuts_nobody(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    import concurrent.futures
    import threading

    words = [f"v{i} " for i in range(12)]
    upstream.push(slow_stream(words, 0.1))  # ~1.2 s upstream
    body = {"model": "gpt-4o", "messages": ask("join mid-way"), "stream": True}
    url = f"{gateway.url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    first_reading, second_reading = threading.Event(), threading.Event()

    def first_client() -> int:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as r:
            for _ in r.iter_lines():
                first_reading.set()
                assert second_reading.wait(5)
                return r.status_code  # and this client is gone, mid-stream
        return 0

    def second_client() -> tuple[str, list[str]]:
        text, finishes = "", []
        with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as r:
            for line in r.iter_lines():
                second_reading.set()
                if line.startswith("data: {"):
                    choice = json.loads(line[6:])["choices"][0]
                    text += choice["delta"].get("content") or ""
                    finishes.append(choice["finish_reason"])
        return text, finishes

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(first_client)
        assert first_reading.wait(5)
        second = pool.submit(second_client)
        assert first.result() == 200
        text, finishes = second.result()
    # The joiner got the whole stream from its first byte, though it joined mid-way and the
    # client that started it left; and the upstream was asked once.
    assert text == "".join(words)
    assert finishes[-1] == "stop"
    assert len(upstream.requests) == 1


def test_with_the_cache_on_an_unroutable_request_is_still_refused_every_time(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    # Routing runs after the cache lookup (a hit needs none): a request no route serves
    # must still get its error, the second time too, and never reach the upstream.
    with client_for(gateway) as client:
        for _ in range(2):
            with pytest.raises(openai.NotFoundError) as info:
                client.chat.completions.create(model="llama-unserved", messages=ask("x"))
            assert "llama-unserved" in info.value.message
        for _ in range(2):
            with pytest.raises(openai.BadRequestError) as pinned:
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=ask("pinned elsewhere"),
                    extra_headers={"x-llm-edge-provider": "nowhere"},
                )
            assert pinned.value.code == "unknown_provider"
    assert upstream.requests == []


def test_byte_identical_repeats_stay_per_tenant_and_obey_the_cache_controls(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    # After its first hit a body is known by its bytes and skips parsing: the tenant, the
    # controls and the pinned provider must still count exactly as for a parsed body.
    url = f"{gateway.url}/v1/chat/completions"
    raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"same bytes"}],"seed":7}'

    def post(key: str, **headers: str) -> httpx.Response:
        sent = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        return httpx.post(url, content=raw, headers={**sent, **headers})

    statuses = [post(KEYS[0]).headers["x-llm-edge-cache"] for _ in range(3)]
    assert statuses == ["miss", "hit-l1", "hit-l1"]
    assert [post(KEYS[1]).headers["x-llm-edge-cache"] for _ in range(2)] == ["miss", "hit-l1"]
    assert len(upstream.requests) == 2
    refreshed = post(KEYS[0], **{"cache-control": "no-cache"})
    assert refreshed.status_code == 200
    assert refreshed.headers["x-llm-edge-cache"] == "miss"
    assert len(upstream.requests) == 3
    # The refreshed request went out whole, as parsed from its bytes.
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "same bytes"}]
    assert upstream.requests[-1].body["seed"] == 7
    pinned = post(KEYS[0], **{"x-llm-edge-provider": "nowhere"})
    assert pinned.status_code == 400
    assert pinned.json()["error"]["code"] == "unknown_provider"
    late = post(KEYS[0], **{"x-llm-edge-timeout-ms": "soon"})
    assert late.status_code == 400
    assert late.json()["error"]["param"] == "x-llm-edge-timeout-ms"
    assert len(upstream.requests) == 3
