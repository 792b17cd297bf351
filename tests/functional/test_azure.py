"""Azure OpenAI through the gateway with the openai SDK, against a fake Azure endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ..fake_upstream import FakeUpstream, Reply
from ..gateway_process import GatewayProcess

USER = [{"role": "user", "content": "hello azure"}]


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    root = upstream_server.url.removesuffix("/v1")
    process = GatewayProcess(
        f"""
[[providers]]
name = "az"
type = "azure"
base_url = "{root}"
api_key = "azure-secret"
api_version = "2024-10-21"
models = ["gpt-*"]

[[providers]]
name = "az-pinned"
type = "azure"
base_url = "{root}"
api_key = "azure-secret"
deployment = "my-deployment"
models = ["pinned-*"]
"""
    )
    yield process
    process.cleanup()


def test_chat_goes_to_the_deployment_url_with_the_api_key(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "echo: hello azure"
    seen = upstream.requests[-1]
    assert seen.path == "/openai/deployments/gpt-4o/chat/completions"
    assert seen.query == "api-version=2024-10-21"
    assert seen.headers["api-key"] == "azure-secret"
    assert "authorization" not in seen.headers


def test_configured_deployment_is_used_and_streams_work(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    stream = client.chat.completions.create(model="pinned-x", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello world"
    assert upstream.requests[-1].path == "/openai/deployments/my-deployment/chat/completions"


def test_content_filter_block_reaches_the_client_as_400(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.push(
        Reply(
            status=400,
            json={
                "error": {
                    "code": "content_filter",
                    "message": "The prompt triggered a policy.",
                    "innererror": {"content_filter_result": {"self_harm": {"filtered": True}}},
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert "content filter" in info.value.message and "self_harm" in info.value.message
    assert info.value.code == "content_filter"
