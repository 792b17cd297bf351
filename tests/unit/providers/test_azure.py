"""Azure OpenAI: deployment URLs, api-key or Entra auth, content-filter errors."""

from __future__ import annotations

import orjson
import pytest

from llm_edge_agent.errors import UpstreamAuthError, UpstreamClientError, UpstreamError
from llm_edge_agent.models import parse_chat_request
from llm_edge_agent.providers.azure import DEFAULT_API_VERSION, AzureTranslator

ENDPOINT = "https://res.openai.azure.com"
REQUEST = parse_chat_request(
    b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "seed": 1}'
)


def test_deployment_defaults_to_the_model_name_and_carries_the_api_version() -> None:
    t = AzureTranslator("az", ENDPOINT + "/", "key-1")
    up = t.encode_chat(REQUEST, "gpt-4o")
    assert up.url == (
        f"{ENDPOINT}/openai/deployments/gpt-4o/chat/completions?api-version={DEFAULT_API_VERSION}"
    )
    assert up.headers["api-key"] == "key-1"
    assert "authorization" not in up.headers
    assert orjson.loads(up.body)["seed"] == 1


def test_configured_deployment_and_version_win_and_names_are_url_quoted() -> None:
    t = AzureTranslator("az", ENDPOINT, "k", api_version="2025-01-01-preview", deployment="prod 4o")
    up = t.encode_chat(REQUEST, "gpt-4o")
    assert up.url == (
        f"{ENDPOINT}/openai/deployments/prod%204o/chat/completions?api-version=2025-01-01-preview"
    )


def test_entra_token_is_sent_as_bearer_instead_of_api_key() -> None:
    t = AzureTranslator("az", ENDPOINT, "k", ad_token="eyJ-token")
    headers = t.encode_chat(REQUEST, "gpt-4o").headers
    assert headers["authorization"] == "Bearer eyJ-token"
    assert "api-key" not in headers


def test_content_filter_refusal_is_a_clear_400() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering a policy.",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": False, "severity": "safe"},
                        "violence": {"filtered": True, "severity": "high"},
                    },
                },
            }
        }
    )
    error = AzureTranslator("az", ENDPOINT, "k").decode_error(400, body, {})
    assert isinstance(error, UpstreamClientError)
    assert error.status == 400 and error.code == "content_filter"
    assert "content filter" in error.message and "violence" in error.message
    assert "hate" not in error.message


def test_other_errors_use_the_common_status_table() -> None:
    t = AzureTranslator("az", ENDPOINT, "k")
    assert isinstance(
        t.decode_error(401, b'{"error":{"message":"bad key"}}', {}), UpstreamAuthError
    )
    plain_400 = t.decode_error(400, b'{"error":{"message":"bad param","code":"invalid"}}', {})
    assert isinstance(plain_400, UpstreamClientError) and plain_400.message == "bad param"
    busy = t.decode_error(429, b"{}", {"retry-after": "3"})
    assert type(busy) is UpstreamError and busy.retry_after_s == 3.0


def test_cached_prompt_tokens_are_priced_at_the_cached_rate() -> None:
    from llm_edge_agent.pricing import PricingTable

    body = orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-11-20",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 100,
                "total_tokens": 2100,
                "prompt_tokens_details": {"cached_tokens": 1536},
            },
        }
    )
    completion = AzureTranslator("az", ENDPOINT, "k").decode_chat(body)
    assert completion.usage is not None
    cost = PricingTable().cost(completion.body["model"], completion.usage)
    # gpt-4o (Azure global standard = OpenAI list prices): $2.50 input, $1.25 cached input,
    # $10 output per million: 464 fresh + 1536 cached + 100 output tokens.
    assert cost == pytest.approx((464 * 2.50 + 1536 * 1.25 + 100 * 10.0) / 1e6)
