"""Small pieces every translator's decoder needs, written once."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import UpstreamError


def garbage(provider: str, what: str) -> UpstreamError:
    """A provider answered with something that is not what its API promises (a 502)."""
    return UpstreamError(f"provider {provider!r} returned {what}", provider=provider)


def token_count(value: Any) -> int:
    """A token count from a provider's usage object; anything but a positive int is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def with_tool_calls(reason: str, had_tool_calls: bool) -> str:
    """A turn that emitted tool calls and ended normally is a tool-call turn for OpenAI
    clients, which loop on ``finish_reason == "tool_calls"`` (Anthropic and Gemini may
    report a plain end of turn)."""
    return "tool_calls" if had_tool_calls and reason == "stop" else reason


def json_event(provider: str, data: bytes) -> dict[str, Any]:
    """One streamed event's JSON object, or the 502 for a provider sending something else."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise garbage(provider, "a stream event that is not JSON") from exc
    if not isinstance(event, dict):
        raise garbage(provider, "a stream event that is not a JSON object")
    return event
