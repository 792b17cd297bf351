"""Routing rules (first match wins, on model, headers, client key, team, size, metadata)
and capability-aware selection, through the gateway with the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from llm_edge_agent.auth import key_digest, key_id

from ..fake_upstream import FakeUpstream
from ..gateway_process import GatewayProcess

RESEARCH_KEY = "sk-research-team-key"
OTHER_KEY = "sk-someone-else"


@pytest.fixture(scope="module")
def gateway(upstream_server: FakeUpstream, backup_server: FakeUpstream) -> Iterator[GatewayProcess]:
    other_id = key_id(key_digest(OTHER_KEY))
    process = GatewayProcess(
        f"""
[[providers]]
name = "main"
type = "openai_compatible"
base_url = "{upstream_server.url}"
models = ["gpt-*", "small-*"]

[[providers]]
name = "side"
type = "openai_compatible"
base_url = "{backup_server.url}"
models = ["side-*"]

[[routes]]
model = "default"
targets = [{{ provider = "main", model = "gpt-4o" }}]

[[routes]]
model = "research"
targets = [{{ provider = "side", model = "side-big" }}]

[[routes]]
model = "long"
# The small model cannot hold a long prompt: it is skipped, not called.
targets = [{{ provider = "main", model = "small-ctx" }}, {{ provider = "side", model = "side-long" }}]

[[rules]]
route = "research"
teams = ["research"]

[[rules]]
route = "research"
keys = ["{other_id}"]
metadata = {{ project = "apollo*" }}

[[rules]]
route = "research"
headers = {{ "x-tier" = "gold" }}

[[rules]]
route = "long"
model = "auto"
min_prompt_tokens = 1000

[models."small-ctx"]
context_window = 2000
tools = false

[auth]
api_keys = ["{RESEARCH_KEY}", "{OTHER_KEY}"]
[auth.teams]
research = ["{RESEARCH_KEY}"]
"""
    )
    yield process
    process.cleanup()


def ask(gateway: GatewayProcess, key: str, model: str, text: str = "hi", **extra: object) -> str:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], **extra
        )
        return str(raw.headers["x-llm-edge-provider"])


def test_a_team_rule_picks_its_route(gateway: GatewayProcess) -> None:
    assert ask(gateway, RESEARCH_KEY, "default") == "side"
    assert ask(gateway, OTHER_KEY, "default") == "main"


def test_a_rule_needs_every_condition(gateway: GatewayProcess, backup: FakeUpstream) -> None:
    meta = {"project": "apollo-11"}
    assert ask(gateway, OTHER_KEY, "default", extra_body={"metadata": meta}) == "side"
    assert backup.requests[-1].body["model"] == "side-big"
    other = {"project": "gemini"}
    assert ask(gateway, OTHER_KEY, "default", extra_body={"metadata": other}) == "main"


def test_a_header_rule(gateway: GatewayProcess) -> None:
    assert ask(gateway, OTHER_KEY, "default", extra_headers={"x-tier": "Gold"}) == "side"
    assert ask(gateway, OTHER_KEY, "default", extra_headers={"x-tier": "silver"}) == "main"


def test_a_size_rule_and_capability_skipping(
    gateway: GatewayProcess, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    long_prompt = "word " * 2000  # ~2,500 tokens: over small-ctx's 2,000-token window
    assert ask(gateway, OTHER_KEY, "auto", long_prompt) == "side"  # rule: long prompts
    assert backup.requests[-1].body["model"] == "side-long"
    assert not upstream.requests  # small-ctx was skipped, never called
    # A short prompt on the same route fits the first target.
    assert ask(gateway, OTHER_KEY, "long", "short") == "main"


def test_no_target_able_to_serve_is_a_400_naming_the_reason(gateway: GatewayProcess) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=OTHER_KEY, max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.chat.completions.create(
            model="small-ctx", messages=[{"role": "user", "content": "x"}], tools=tools
        )
    assert info.value.code == "unsupported_capability"
    assert "tools" in str(info.value.message)
