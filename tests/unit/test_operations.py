"""Operations: which translators serve which endpoint, and what each one parses."""

from __future__ import annotations

import pytest

from llm_edge_agent.errors import InvalidRequestError
from llm_edge_agent.pipeline.operations import default_operations
from llm_edge_agent.providers.azure import AzureTranslator
from llm_edge_agent.providers.openai import OpenAITranslator


class ChatOnly:
    """A translator that offers chat and nothing else (as Anthropic's will)."""


def test_chat_is_supported_by_every_translator_and_the_rest_only_by_the_openai_dialect() -> None:
    ops = default_operations()
    openai_like = OpenAITranslator("o", "http://x/v1", None)
    azure = AzureTranslator("a", "https://r.openai.azure.com", "k")
    for translator in (openai_like, azure):
        assert all(op.supported(translator) for op in ops.values())
    assert ops["chat"].supported(ChatOnly())  # type: ignore[arg-type]
    assert not ops["embeddings"].supported(ChatOnly())  # type: ignore[arg-type]
    assert not ops["completions"].supported(ChatOnly())  # type: ignore[arg-type]


def test_embeddings_and_completions_go_to_their_own_urls() -> None:
    ops = default_operations()
    openai_like = OpenAITranslator("o", "http://x/v1", None)
    azure = AzureTranslator("a", "https://r.openai.azure.com", "k", deployment="emb")
    embed = ops["embeddings"].parse(b'{"model": "m", "input": "hi"}', {})
    assert ops["embeddings"].encode(openai_like, embed, "m").url == "http://x/v1/embeddings"
    assert ops["embeddings"].encode(azure, embed, "m").url == (
        "https://r.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
    )
    legacy = ops["completions"].parse(b'{"model": "m", "prompt": "hi"}', {})
    assert ops["completions"].encode(openai_like, legacy, "m2").url == "http://x/v1/completions"


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("embeddings", b'{"model": "m", "input": [[1, 2], []]}', "input"),
        ("embeddings", b'{"model": "m", "input": "x", "stream": true}', "stream"),
        ("completions", b'{"model": "m"}', "prompt"),
        ("completions", b'{"model": "m", "prompt": "x", "stream": 1}', "stream"),
    ],
)
def test_bad_bodies_name_the_field(endpoint: str, body: bytes, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        default_operations()[endpoint].parse(body, {})
    assert info.value.param == param


def test_a_malformed_embeddings_answer_is_a_502() -> None:
    from llm_edge_agent.errors import UpstreamError

    translator = OpenAITranslator("o", "http://x/v1", None)
    op = default_operations()["embeddings"]
    request = op.parse(b'{"model": "m", "input": "x"}', {})
    with pytest.raises(UpstreamError):
        op.decode(translator, b'{"choices": []}', request)
    good = op.decode(
        translator, b'{"data": [], "usage": {"prompt_tokens": 3, "total_tokens": 3}}', request
    )
    assert good.usage is not None and good.usage.prompt_tokens == 3
