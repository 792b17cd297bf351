"""Provider runtimes: default base URLs, auth headers, and unsupported types."""

from __future__ import annotations

import pytest

from llm_edge_agent.config import ProviderConfig
from llm_edge_agent.models import parse_chat_request
from llm_edge_agent.pipeline.runtime import base_url_for, build_runtime
from llm_edge_agent.upstream.base import Timeouts, Transport
from llm_edge_agent.upstream.mock import MockTransport

REQUEST = parse_chat_request(b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}')


class NoTransport:
    def __init__(self, name: str, timeouts: Timeouts) -> None:
        self.name = name
        self.timeouts = timeouts


def no_transport(name: str, timeouts: Timeouts) -> Transport:
    return NoTransport(name, timeouts)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("ptype", "base_url", "expected"),
    [
        ("openai", "", "https://api.openai.com/v1"),
        ("together", "", "https://api.together.xyz/v1"),
        ("ollama", "", "http://127.0.0.1:11434/v1"),
        ("ollama", "http://gpu:11434", "http://gpu:11434/v1"),
        ("vllm", "", "http://127.0.0.1:8000/v1"),
        ("vllm", "http://gpu:8000/v1/", "http://gpu:8000/v1"),
        ("openai_compatible", "http://x/api/v1", "http://x/api/v1"),
    ],
)
def test_presets_have_their_default_base_urls(ptype: str, base_url: str, expected: str) -> None:
    config = ProviderConfig(name="p", type=ptype, base_url=base_url)
    assert base_url_for(config) == expected
    runtime = build_runtime(config, no_transport)
    assert runtime.translator is not None
    assert runtime.translator.encode_chat(REQUEST, "m").url == f"{expected}/chat/completions"


def test_key_becomes_a_bearer_header_and_no_key_sends_none() -> None:
    keyed = build_runtime(ProviderConfig(name="p", type="together", api_key="tk"), no_transport)
    keyless = build_runtime(ProviderConfig(name="q", type="ollama"), no_transport)
    assert keyed.translator is not None and keyless.translator is not None
    assert keyed.translator.encode_chat(REQUEST, "m").headers["authorization"] == "Bearer tk"
    assert "authorization" not in keyless.translator.encode_chat(REQUEST, "m").headers


def test_transport_gets_the_providers_timeouts() -> None:
    config = ProviderConfig(
        name="p", type="openai", timeout_s=7, connect_timeout_s=2, stream_idle_timeout_s=3
    )
    runtime = build_runtime(config, no_transport)
    assert isinstance(runtime.transport, NoTransport)
    t = runtime.transport.timeouts
    assert (t.total_s, t.connect_s, t.idle_s) == (7, 2, 3)


def test_mock_uses_the_local_transport() -> None:
    runtime = build_runtime(ProviderConfig(name="m", type="mock", latency_ms=5), no_transport)
    assert isinstance(runtime.transport, MockTransport)
    assert runtime.usable


def test_bedrock_without_aws_credentials_is_unusable_with_a_reason() -> None:
    runtime = build_runtime(
        ProviderConfig(name="br", type="bedrock", region="eu-west-1"), no_transport
    )
    assert not runtime.usable
    assert runtime.unsupported is not None and "AWS credentials" in runtime.unsupported


def test_bedrock_with_credentials_signs_for_its_region() -> None:
    aws = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    config = ProviderConfig(name="br", type="bedrock", region="eu-west-1", aws_env=aws)
    runtime = build_runtime(config, no_transport)
    assert runtime.translator is not None
    up = runtime.translator.encode_chat(REQUEST, "anthropic.claude-3-5-haiku-20241022-v1:0")
    assert up.url == (
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
        "anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    assert "eu-west-1/bedrock/aws4_request" in up.headers["authorization"]
    assert "secret" not in repr(config) and "secret" not in repr(up)
