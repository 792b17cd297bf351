"""One functional suite, every provider: the openai SDK against the gateway, the gateway
against a fake that speaks that provider's real wire format (``tests/fake_providers.py``).

Each provider gets its own gateway (started once per provider), configured with that one
provider pointed at the fake, no cache and no retries, so every client request is exactly
one provider request and the fake's record of it can be compared with what the client got.
Where a provider cannot do something, the test asserts the documented behaviour instead.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from ..fake_providers import CACHE_READ_TOKENS, Answer, FakeProviders
from ..gateway_process import GatewayProcess

# A 1x1 transparent PNG.
PNG_B64 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()
PNG_URL = f"data:image/png;base64,{PNG_B64}"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
ECHO_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "echo",
        "schema": {
            "type": "object",
            "properties": {"echo": {"type": "string"}},
            "required": ["echo"],
            "additionalProperties": False,
        },
    },
}
RESULTS = ("Oslo: 3C and snow", "Rome: 18C and sun")
# Compact JSON, so the fake's re-encoding of what Gemini/Bedrock got back is the same text.
JSON_RESULTS = ('{"city":"Oslo","temp_c":3}', '{"city":"Rome","temp_c":18}')


@dataclass(frozen=True)
class Provider:
    name: str  # the provider's type, and its name in the gateway's config
    dialect: str  # which wire format the fake speaks to it
    model: str  # what the client sends; the provider's glob routes it
    config: str  # the rest of its [[providers]] table
    env: dict[str, str] = field(default_factory=dict)


PROVIDERS = [
    Provider(
        "openai",
        "openai",
        "gpt-4o",
        'base_url = "{root}/v1"\napi_key = "sk-up"\nmodels = ["gpt-*"]',
    ),
    Provider(
        "openai_compatible",
        "openai",
        "gpt-4o",
        'base_url = "{root}/v1"\napi_key = "sk-up"\nmodels = ["gpt-*"]',
    ),
    Provider(
        "azure",
        "azure",
        "gpt-4o",
        'base_url = "{root}"\napi_key = "az-up"\napi_version = "2024-10-21"\nmodels = ["gpt-*"]',
    ),
    Provider(
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        'base_url = "{root}"\napi_key = "sk-ant-up"\nmodels = ["claude-*"]',
    ),
    Provider(
        "gemini",
        "gemini",
        "gemini-2.5-flash",
        'base_url = "{root}"\napi_key = "gem-up"\nmodels = ["gemini-*"]',
    ),
    Provider(
        "bedrock",
        "bedrock",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        'base_url = "{root}"\nregion = "us-west-2"\nmodels = ["anthropic.*"]',
        {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret"},
    ),
]
EXPECTED_PATHS = {
    "openai": "/v1/chat/completions",
    "azure": "/openai/deployments/gpt-4o/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.5-flash:{method}",
    "bedrock": "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/{method}",
}


@dataclass
class Setup:
    provider: Provider
    gateway: GatewayProcess

    @property
    def dialect(self) -> str:
        return self.provider.dialect

    @property
    def model(self) -> str:
        return self.provider.model


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProviders]:
    server = FakeProviders()
    yield server
    server.close()


@pytest.fixture(scope="module", params=PROVIDERS, ids=[p.name for p in PROVIDERS])
def setup(request: pytest.FixtureRequest, fake_server: FakeProviders) -> Iterator[Setup]:
    provider: Provider = request.param
    config = f"""
[[providers]]
name = "{provider.name}"
type = "{provider.name}"
{provider.config.format(root=fake_server.root)}

[resilience]  # error mapping, one failure at a time: no retries, breaker or cooldown
max_retries = 0
breaker_failure_threshold = 1000000
retry_after_max_s = 0

[cache]
enabled = false
"""
    process = GatewayProcess(config, env=provider.env)
    yield Setup(provider, process)
    process.cleanup()


@pytest.fixture
def fake(fake_server: FakeProviders) -> FakeProviders:
    fake_server.reset()
    return fake_server


@pytest.fixture
def client(setup: Setup) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{setup.gateway.url}/v1", api_key="x", max_retries=0) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def answered(fake: FakeProviders) -> Answer:
    answer = fake.last.answer
    assert answer is not None, "the fake answered with an error"
    return answer


def collect(stream: Any) -> tuple[list[Any], dict[int, dict[str, str]]]:
    """All chunks, and the tool calls assembled by index (asserting id/name come first)."""
    chunks = list(stream)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.index not in calls:
                    # The first chunk of each call names it.
                    assert call.id and call.function and call.function.name, call
                    calls[call.index] = {"id": call.id, "name": call.function.name, "args": ""}
                else:
                    assert not call.id or call.id == calls[call.index]["id"]
                calls[call.index]["args"] += (call.function and call.function.arguments) or ""
    return chunks, calls


# ---------------------------------------------------------------------- plain text


def test_plain_text(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=setup.model, messages=user("Hello there")
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: Hello there"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model.startswith(setup.model.split(":")[0])
    assert raw.headers["x-llm-edge-provider"] == setup.provider.name
    seen = fake.last.request
    assert seen.path == EXPECTED_PATHS[setup.dialect].format(
        method="generateContent" if setup.dialect == "gemini" else "converse"
    )
    # The provider's own credential, never the client's ("x").
    match setup.dialect:
        case "openai":
            assert seen.headers["authorization"] == "Bearer sk-up"
        case "azure":
            assert seen.headers["api-key"] == "az-up"
        case "anthropic":
            assert seen.headers["x-api-key"] == "sk-ant-up"
        case "gemini":
            assert seen.headers["x-goog-api-key"] == "gem-up"
        case "bedrock":
            auth = seen.headers["authorization"]
            assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            assert "/us-west-2/bedrock/aws4_request" in auth
    assert fake.last.seen.last_user_text == "Hello there"


def test_multi_turn(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    messages = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    completion = client.chat.completions.create(model=setup.model, messages=messages)
    assert completion.choices[0].message.content == "echo: What is my name?"
    body = fake.last.request.body
    match setup.dialect:
        case "openai" | "azure":
            assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        case "anthropic":
            assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
            assert body["messages"][1]["content"] == "Hello Ada."
        case "gemini":
            assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
            assert body["contents"][1]["parts"] == [{"text": "Hello Ada."}]
        case "bedrock":
            assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
            assert body["messages"][1]["content"] == [{"text": "Hello Ada."}]


def test_system_prompt_reaches_the_providers_own_place(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *user("Hi")]
    completion = client.chat.completions.create(model=setup.model, messages=messages)
    assert completion.choices[0].message.content == "echo: Hi"
    body = fake.last.request.body
    match setup.dialect:
        case "openai" | "azure":
            assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        case "anthropic":
            assert body["system"] == "Be brief."
            assert [m["role"] for m in body["messages"]] == ["user"]
        case "gemini":
            assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
            assert [c["role"] for c in body["contents"]] == ["user"]
        case "bedrock":
            assert body["system"] == [{"text": "Be brief."}]
            assert [m["role"] for m in body["messages"]] == ["user"]


def test_image_data_url_reaches_the_provider_in_its_format(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    completion = client.chat.completions.create(model=setup.model, messages=messages)
    assert completion.choices[0].message.content == "echo: What is this? [images: 1]"
    body = fake.last.request.body
    match setup.dialect:
        case "openai" | "azure":
            assert body["messages"][0]["content"][1] == content[1]
        case "anthropic":
            assert body["messages"][0]["content"][1] == {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
            }
        case "gemini":
            assert body["contents"][0]["parts"][1] == {
                "inlineData": {"mimeType": "image/png", "data": PNG_B64}
            }
        case "bedrock":
            assert body["messages"][0]["content"][1] == {
                "image": {"format": "png", "source": {"bytes": PNG_B64}}
            }


# ---------------------------------------------------------------------- tools


def ask_for_tools(setup: Setup, client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model=setup.model,
        messages=user("Weather in Oslo and Rome?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )


def test_parallel_tool_calls(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    completion = ask_for_tools(setup, client)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Oslo"},
        {"city": "Rome"},
    ]
    ids = [c.id for c in calls]
    assert all(ids) and len(set(ids)) == 2
    if setup.dialect != "gemini":  # Gemini's calls carry no id: the gateway makes them up
        assert ids == [c.id for c in answered(fake).calls]
    body = fake.last.request.body
    match setup.dialect:
        case "openai" | "azure":
            assert body["tools"] == [WEATHER_TOOL, TIME_TOOL]
        case "anthropic":
            assert body["tools"][0] == {
                "name": "get_weather",
                "description": "Current weather in a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        case "gemini":
            declarations = body["tools"][0]["functionDeclarations"]
            assert [d["name"] for d in declarations] == ["get_weather", "get_time"]
        case "bedrock":
            specs = body["toolConfig"]["tools"]
            assert specs[0]["toolSpec"]["inputSchema"] == {
                "json": WEATHER_TOOL["function"]["parameters"]
            }


@pytest.mark.parametrize("results", [RESULTS, JSON_RESULTS], ids=["text", "json"])
def test_tool_results_round_trip(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders, results: tuple[str, str]
) -> None:
    as_json = results == JSON_RESULTS
    first = ask_for_tools(setup, client)
    calls = first.choices[0].message.tool_calls or []
    assert len(calls) == 2
    messages: list[dict[str, Any]] = [
        *user("Weather in Oslo and Rome?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [c.model_dump(exclude_none=True) for c in calls],
        },
        *(
            {"role": "tool", "tool_call_id": c.id, "content": result}
            for c, result in zip(calls, results, strict=True)
        ),
    ]
    completion = client.chat.completions.create(
        model=setup.model, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    assert completion.choices[0].finish_reason == "stop"
    content = completion.choices[0].message.content or ""
    assert all(result in content for result in results), content
    body = fake.last.request.body
    ids = [c.id for c in calls]
    match setup.dialect:
        case "openai" | "azure":
            assert [(m["role"], m.get("tool_call_id")) for m in body["messages"][-2:]] == [
                ("tool", ids[0]),
                ("tool", ids[1]),
            ]
        case "anthropic":
            # Both results share one user turn, after the assistant's tool_use turn.
            assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"] * 2
            last = body["messages"][-1]
            assert last["role"] == "user"
            assert last["content"] == [
                {"type": "tool_result", "tool_use_id": i, "content": r}
                for i, r in zip(ids, results, strict=True)
            ]
        case "gemini":
            assert body["contents"][1]["role"] == "model"
            assert [p["functionCall"]["args"] for p in body["contents"][1]["parts"]] == [
                {"city": "Oslo"},
                {"city": "Rome"},
            ]
            last = body["contents"][-1]
            assert last["role"] == "user"
            assert last["parts"] == [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        # gemini.py: a JSON object result is the response, else {"content": ...}
                        "response": json.loads(r) if as_json else {"content": r},
                    }
                }
                for r in results
            ]
        case "bedrock":
            assert [list(b) for b in body["messages"][1]["content"]] == [["toolUse"]] * 2
            last = body["messages"][-1]
            assert last["role"] == "user"
            assert last["content"] == [
                # bedrock_request._tool_result: a JSON object result goes as a json block.
                {
                    "toolResult": {
                        "toolUseId": i,
                        "content": [{"json": json.loads(r)} if as_json else {"text": r}],
                    }
                }
                for i, r in zip(ids, results, strict=True)
            ]


# ---------------------------------------------------------------------- JSON mode


def test_json_object_mode(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    messages = user("Reply in JSON")
    if setup.dialect == "bedrock":
        # bedrock_request._output_config: "Bedrock Converse has no schema-less JSON mode";
        # json_object is refused by the gateway with a 400 naming response_format.
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=setup.model, messages=messages, response_format={"type": "json_object"}
            )
        assert "json_schema" in info.value.message
        assert info.value.param == "response_format"
        assert fake.requests == []
        return
    completion = client.chat.completions.create(
        model=setup.model, messages=messages, response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "Reply in JSON"}
    body = fake.last.request.body
    match setup.dialect:
        case "openai" | "azure":
            assert body["response_format"] == {"type": "json_object"}
        case "anthropic":
            # anthropic.py docstring: "Anthropic has no JSON mode. json_object ... add a
            # final system text asking for one JSON value and nothing else".
            assert body["system"].startswith("Respond with a single valid JSON object")
        case "gemini":
            assert body["generationConfig"]["responseMimeType"] == "application/json"


def test_json_schema_mode(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    completion = client.chat.completions.create(
        model=setup.model, messages=user("Schema please"), response_format=ECHO_SCHEMA
    )
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "Schema please"}
    body = fake.last.request.body
    schema = ECHO_SCHEMA["json_schema"]["schema"]
    match setup.dialect:
        case "openai" | "azure":
            assert body["response_format"] == ECHO_SCHEMA
        case "anthropic":
            # anthropic.py docstring: json_schema adds a system text with the schema.
            assert "conforms to the JSON Schema" in body["system"]
            assert '"additionalProperties"' in body["system"]
        case "gemini":
            config = body["generationConfig"]
            assert config["responseMimeType"] == "application/json"
            assert config["responseJsonSchema"] == schema
        case "bedrock":
            structure = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
            assert json.loads(structure["schema"]) == schema
            assert structure["name"] == "echo"


# ---------------------------------------------------------------------- streaming


def test_streamed_text_equals_the_whole_answer(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    messages = user("Tell me a short story about streams")
    whole = client.chat.completions.create(model=setup.model, messages=messages)
    chunks, calls = collect(
        client.chat.completions.create(model=setup.model, messages=messages, stream=True)
    )
    assert fake.last.seen.stream
    method = "streamGenerateContent" if setup.dialect == "gemini" else "converse-stream"
    assert fake.last.request.path == EXPECTED_PATHS[setup.dialect].format(method=method)
    if setup.dialect == "azure":
        # Azure's real stream opens with a chunk that has no choices, only
        # prompt_filter_results; the openai dialect is relayed as it comes (openai.py).
        assert chunks[0].choices == []
        chunks = chunks[1:]
    assert not calls
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content == "echo: Tell me a short story about streams"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert all(c.usage is None for c in chunks)  # no include_usage, no usage chunk
    assert len({c.id for c in chunks}) == 1


def test_streamed_parallel_tool_calls(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    chunks, calls = collect(
        client.chat.completions.create(
            model=setup.model,
            messages=user("Weather in Oslo and Rome?"),
            tools=[WEATHER_TOOL, TIME_TOOL],
            stream=True,
        )
    )
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_weather"]
    assert [json.loads(calls[i]["args"]) for i in (0, 1)] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert calls[0]["id"] != calls[1]["id"]
    if setup.dialect != "gemini":
        assert [calls[i]["id"] for i in (0, 1)] == [c.id for c in answered(fake).calls]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]


def test_stream_usage_only_when_asked(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    chunks = list(
        client.chat.completions.create(
            model=setup.model,
            messages=user("Count my tokens"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    answer = answered(fake)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == answer.prompt_tokens
    assert last.usage.completion_tokens == answer.output_tokens
    assert last.usage.total_tokens == answer.prompt_tokens + answer.output_tokens
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == CACHE_READ_TOKENS
    assert [c for c in chunks[:-1] if c.usage is not None] == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Count my tokens"


def test_stream_usage_with_tool_calls(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    chunks, calls = collect(
        client.chat.completions.create(
            model=setup.model,
            messages=user("Weather in Oslo and Rome?"),
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert sorted(calls) == [0, 1]
    answer = answered(fake)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == answer.output_tokens
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------------- usage and cost


def test_usage_and_cost(setup: Setup, client: openai.OpenAI, fake: FakeProviders) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=setup.model, messages=user("How much does this cost?")
    )
    completion = raw.parse()
    answer = answered(fake)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == answer.prompt_tokens
    assert usage.completion_tokens == answer.output_tokens
    assert usage.total_tokens == answer.prompt_tokens + answer.output_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == CACHE_READ_TOKENS
    metadata = raw.http_response.json()["metadata"]
    assert metadata["provider"] == setup.provider.name
    assert metadata["cached"] is False
    assert isinstance(metadata["cost_usd"], float) and metadata["cost_usd"] > 0


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_provider_failure_is_a_502(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders, status: int, stream: bool
) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model=setup.model, messages=user(f"please FAIL-{status}"), stream=stream
        )
    assert info.value.status_code == 502
    assert [e.status for e in fake.exchanges] == [status]  # one target, no retries


def read_text_into(pieces: list[str], stream: Any) -> None:
    for chunk in stream:
        pieces.extend(c.delta.content or "" for c in chunk.choices)


def test_error_after_the_stream_started_ends_the_stream_with_an_error(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    stream = client.chat.completions.create(
        model=setup.model, messages=user("please FAIL-MIDSTREAM"), stream=True
    )
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as info:
        read_text_into(pieces, stream)
    assert "".join(pieces) == "echo: please "
    assert info.value.message


def test_provider_rejection_is_a_400_with_its_message(
    setup: Setup, client: openai.OpenAI, fake: FakeProviders
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=setup.model, messages=user("please FAIL-400"))
    assert info.value.status_code == 400
    assert f"fake {'openai' if setup.dialect == 'azure' else setup.dialect} says FAIL-400" in (
        info.value.message
    )
    assert [e.status for e in fake.exchanges] == [400]
