"""Per-model token prices and a request cost calculator.

Prices are USD per 1,000,000 tokens at the standard (non-batch, non-priority) tier.

Price sheets (read 2026-11-24; figures are the list prices those pages give for the
models below, cross-checked against stored copies of the pages):

* OpenAI:    https://platform.openai.com/docs/pricing
             (https://developers.openai.com/api/docs/pricing)
* Anthropic: https://docs.claude.com/en/docs/about-claude/pricing
             (https://platform.claude.com/docs/en/about-claude/pricing)
* Google:    https://ai.google.dev/gemini-api/docs/pricing  (paid tier)
* Together:  https://www.together.ai/pricing

Simplifications, by design:

* Gemini 1.5 / 2.5 Pro charge more for long prompts (>128k / >200k tokens);
  only the short-prompt tier is listed here.
* Gemini context-cache *storage* (per token-hour) is not a per-request cost and is
  not modelled; ``cached_input`` is the cache-read price.
* Anthropic ``cache_write`` is the 5-minute TTL write price (1.25x input); 1-hour
  writes (2x input) are not distinguished by :class:`TokenUsage`.
* Audio / image tokens are priced as text tokens.

Anything not listed prices as unknown (``None``), never as free.  Deployments can add
or replace entries with ``PricingTable(overrides=...)``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "DEFAULT_PRICES",
    "MEMO_MAX_ENTRIES",
    "ModelPrice",
    "PricingTable",
    "TokenUsage",
    "normalize_model_name",
]

#: Upper bound on the number of distinct model names a :class:`PricingTable`
#: remembers lookup results for.  Names come from clients, so the memo is bounded.
MEMO_MAX_ENTRIES: Final = 4096

_PER_TOKENS: Final = 1_000_000.0


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in USD per 1M tokens."""

    input: float  # USD per 1M fresh input tokens
    output: float  # USD per 1M output tokens
    cached_input: float | None = None  # cache read; None = same as input
    cache_write: float | None = None  # cache creation; None = same as input
    reasoning: float | None = None  # None = same as output


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts for one request, in the OpenAI convention."""

    prompt_tokens: int = 0  # ALL input tokens as OpenAI reports them, cached ones included
    completion_tokens: int = 0  # all output tokens, reasoning included (OpenAI convention)
    cached_tokens: int = 0  # part of prompt_tokens read from cache
    cache_write_tokens: int = 0  # part of prompt_tokens written to cache (Anthropic)
    reasoning_tokens: int = 0  # part of completion_tokens


def _p(
    input: float,
    output: float,
    cached_input: float | None = None,
    cache_write: float | None = None,
) -> ModelPrice:
    return ModelPrice(
        input=input, output=output, cached_input=cached_input, cache_write=cache_write
    )


def _claude(input: float, output: float) -> ModelPrice:
    # Anthropic prompt caching: read = 0.1x input, 5-minute write = 1.25x input.
    return ModelPrice(
        input=input,
        output=output,
        cached_input=round(input * 0.1, 6),
        cache_write=round(input * 1.25, 6),
    )


_EMBEDDING = 0.0  # embeddings have no output tokens

# Keys are base model names; dated snapshots, ``-latest`` aliases, provider prefixes and
# Bedrock/Vertex IDs are resolved to them by :func:`normalize_model_name` + longest-prefix
# matching.  Specific snapshots that are priced differently from their family get their
# own, longer key (e.g. ``gpt-4o-2024-05-13``), which wins over the family key.
DEFAULT_PRICES: Final[Mapping[str, ModelPrice]] = MappingProxyType(
    {
        # ---------------------------------------------------------------- OpenAI
        "gpt-5": _p(1.25, 10.00, 0.125),
        "gpt-5-mini": _p(0.25, 2.00, 0.025),
        "gpt-5-nano": _p(0.05, 0.40, 0.005),
        "gpt-5-pro": _p(15.00, 120.00),
        "gpt-5.1": _p(1.25, 10.00, 0.125),
        "gpt-4.1": _p(2.00, 8.00, 0.50),
        "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
        "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
        "gpt-4o": _p(2.50, 10.00, 1.25),
        "gpt-4o-2024-05-13": _p(5.00, 15.00),
        "gpt-4o-mini": _p(0.15, 0.60, 0.075),
        "gpt-4o-realtime-preview": _p(5.00, 20.00, 2.50),
        "gpt-4o-mini-realtime-preview": _p(0.60, 2.40, 0.30),
        "chatgpt-4o-latest": _p(5.00, 15.00),
        "o1": _p(15.00, 60.00, 7.50),
        "o1-mini": _p(1.10, 4.40, 0.55),
        "o1-pro": _p(150.00, 600.00),
        "o3": _p(2.00, 8.00, 0.50),
        "o3-mini": _p(1.10, 4.40, 0.55),
        "o3-pro": _p(20.00, 80.00),
        "o3-deep-research": _p(10.00, 40.00, 2.50),
        "o4-mini": _p(1.10, 4.40, 0.275),
        "o4-mini-deep-research": _p(2.00, 8.00, 0.50),
        "gpt-4-turbo": _p(10.00, 30.00),
        "gpt-4-1106-preview": _p(10.00, 30.00),
        "gpt-4-0125-preview": _p(10.00, 30.00),
        "gpt-4-vision-preview": _p(10.00, 30.00),
        "gpt-4": _p(30.00, 60.00),
        "gpt-4-32k": _p(60.00, 120.00),
        "gpt-3.5-turbo": _p(0.50, 1.50),
        "gpt-3.5-turbo-1106": _p(1.00, 2.00),
        "gpt-3.5-turbo-0613": _p(1.50, 2.00),
        "gpt-3.5-turbo-16k": _p(3.00, 4.00),
        "gpt-3.5-turbo-instruct": _p(1.50, 2.00),
        "gpt-35-turbo": _p(0.50, 1.50),  # Azure OpenAI spelling
        "text-embedding-3-small": _p(0.02, _EMBEDDING),
        "text-embedding-3-large": _p(0.13, _EMBEDDING),
        "text-embedding-ada-002": _p(0.10, _EMBEDDING),
        # ------------------------------------------------------------- Anthropic
        "claude-opus-4-5": _claude(5.00, 25.00),
        "claude-opus-4-1": _claude(15.00, 75.00),
        "claude-opus-4": _claude(15.00, 75.00),
        "claude-sonnet-4-5": _claude(3.00, 15.00),
        "claude-sonnet-4": _claude(3.00, 15.00),
        "claude-haiku-4-5": _claude(1.00, 5.00),
        "claude-3-7-sonnet": _claude(3.00, 15.00),
        "claude-3-5-sonnet": _claude(3.00, 15.00),
        "claude-3-5-haiku": _claude(0.80, 4.00),
        "claude-3-opus": _claude(15.00, 75.00),
        "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
        # ---------------------------------------------------------------- Google
        "gemini-3-pro": _p(2.00, 12.00, 0.20),  # preview, prompts <= 200k tokens
        "gemini-embedding-001": _p(0.15, _EMBEDDING),
        "gemini-2.5-pro": _p(1.25, 10.00, 0.125),
        "gemini-2.5-flash": _p(0.30, 2.50, 0.03),
        "gemini-2.5-flash-lite": _p(0.10, 0.40, 0.01),
        "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
        "gemini-2.0-flash-lite": _p(0.075, 0.30),
        "gemini-1.5-pro": _p(1.25, 5.00, 0.3125),
        "gemini-1.5-flash": _p(0.075, 0.30, 0.01875),
        "gemini-1.5-flash-8b": _p(0.0375, 0.15, 0.01),
        # ------------------------------------- Bedrock embeddings (on-demand)
        # https://aws.amazon.com/bedrock/pricing/ (vendor prefix dropped by normalizing)
        "titan-embed-text-v2": _p(0.02, _EMBEDDING),
        "titan-embed-text-v1": _p(0.10, _EMBEDDING),
        "embed-english-v3": _p(0.10, _EMBEDDING),
        "embed-multilingual-v3": _p(0.10, _EMBEDDING),
        # ------------------------------------------------- Together (serverless)
        "llama-3.3-70b-instruct-turbo": _p(0.88, 0.88),
        "meta-llama-3.1-8b-instruct-turbo": _p(0.18, 0.18),
        "meta-llama-3.1-70b-instruct-turbo": _p(0.88, 0.88),
        "meta-llama-3.1-405b-instruct-turbo": _p(3.50, 3.50),
    }
)

# Bedrock cross-region inference prefixes (``us.anthropic.claude-...``) and vendor
# prefixes (``anthropic.claude-...``).  Explicit lists: a generic ``word.`` rule would eat
# the ``gpt-3.`` of ``gpt-3.5-turbo``.
_BEDROCK_REGION = re.compile(r"^(?:us|eu|apac|ap|jp|au|ca|global|us-gov)\.")
_BEDROCK_VENDOR = re.compile(
    r"^(?:anthropic|meta|amazon|cohere|mistral|ai21|deepseek|openai|qwen|writer)\."
)
# OpenRouter spells Claude versions with dots: ``claude-3.5-sonnet``, ``claude-sonnet-4.5``.
_DOTTED_VERSION = re.compile(r"(?<=\d)\.(?=\d)")
# A suffix segment of one or two digits is a version number (``claude-opus-4-9``), not a
# snapshot date (``-20250514``, ``-2024-08-06``, ``-0613``) or build (``-001``).
_MINOR_VERSION = re.compile(r"^\d{1,2}$")


def normalize_model_name(model: str) -> str:
    """Reduce a client-supplied model name to the form used as a table key.

    Lower-cases; drops a Vertex ``@version`` suffix, any ``provider/`` or ``models/``
    path prefix, Bedrock region/vendor prefixes and ``:tag`` suffixes (``-v1:0``,
    OpenRouter ``:beta``); turns ``claude-3.5-sonnet`` into ``claude-3-5-sonnet``.
    """
    name = model.strip().lower()
    name = name.split("@", 1)[0]
    name = name.rsplit("/", 1)[-1]
    name = _BEDROCK_REGION.sub("", name, count=1)
    name = _BEDROCK_VENDOR.sub("", name, count=1)
    name = name.split(":", 1)[0]
    if name.startswith("claude"):
        name = _DOTTED_VERSION.sub("-", name)
    return name


class PricingTable:
    """Resolves model names to prices and computes request costs.

    Matching: the name is normalized (:func:`normalize_model_name`), then resolved to
    the LONGEST table key that it equals or that it starts with followed by ``-``
    (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``).  A key followed by a one- or
    two-digit segment is not a match, since that is a different model version
    (``claude-opus-4-9`` does not inherit ``claude-opus-4``'s price); such names, and
    all names with no matching key, resolve to ``None``.

    Results are memoized per raw name in a dict holding at most
    :data:`MEMO_MAX_ENTRIES` entries (oldest evicted first); :meth:`memo_size` reports
    its current size.  Lookups that hit the memo take no lock.
    """

    __slots__ = ("_index", "_lock", "_memo")

    def __init__(
        self,
        prices: Mapping[str, ModelPrice] | None = None,
        overrides: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        index: dict[str, ModelPrice] = {}
        for table in (DEFAULT_PRICES if prices is None else prices, overrides or {}):
            for key, price in table.items():
                norm = normalize_model_name(key)
                if norm:
                    index[norm] = price
        self._index: dict[str, ModelPrice] = index
        self._memo: dict[str, ModelPrice | None] = {}
        self._lock = threading.Lock()

    def lookup(self, model: str) -> ModelPrice | None:
        """Price for ``model``, or ``None`` if the model is not known."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        price = self._resolve(normalize_model_name(model))
        with self._lock:
            memo = self._memo
            if model not in memo:
                while len(memo) >= MEMO_MAX_ENTRIES:
                    del memo[next(iter(memo))]
                memo[model] = price
        return price

    def cost(self, model: str, usage: TokenUsage) -> float | None:
        """USD cost of one request, or ``None`` when the model is unknown."""
        price = self.lookup(model)
        if price is None:
            return None
        cached = max(usage.cached_tokens, 0)
        written = max(usage.cache_write_tokens, 0)
        fresh = max(usage.prompt_tokens - cached - written, 0)
        reasoning = max(usage.reasoning_tokens, 0)
        visible = max(usage.completion_tokens - reasoning, 0)

        cached_rate = price.input if price.cached_input is None else price.cached_input
        write_rate = price.input if price.cache_write is None else price.cache_write
        reasoning_rate = price.output if price.reasoning is None else price.reasoning
        total = (
            fresh * price.input
            + cached * cached_rate
            + written * write_rate
            + visible * price.output
            + reasoning * reasoning_rate
        )
        return total / _PER_TOKENS

    def memo_size(self) -> int:
        """Number of model names currently memoized (never above MEMO_MAX_ENTRIES)."""
        return len(self._memo)

    def _resolve(self, name: str) -> ModelPrice | None:
        index = self._index
        if not name:
            return None
        price = index.get(name)
        if price is not None:
            return price
        # Candidate bases are the prefixes ending just before a '-', longest first, so
        # the first hit is the longest matching key.
        end = name.rfind("-")
        while end > 0:
            price = index.get(name[:end])
            if price is not None:
                first_segment = name[end + 1 :].split("-", 1)[0]
                if _MINOR_VERSION.match(first_segment):
                    return None
                return price
            end = name.rfind("-", 0, end)
        return None
