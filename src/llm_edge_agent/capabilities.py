"""What a request needs and what a model can serve: capability-aware target filtering.

Three parts, all pure:

* **Estimating a request.** ``estimate_prompt_tokens`` guesses a request's prompt tokens
  without a tokenizer (none is shipped; downloading one per model is out of the question
  for a per-request hot path). Text counts ~4 characters per token, rounded up, over all
  message text (string content, ``text`` parts, names, refusals), tool call names and
  arguments, tool results, and the compact JSON of ``tools``/``functions`` definitions;
  every message adds :data:`MESSAGE_OVERHEAD_TOKENS` for its role and delimiters. An image
  part counts a flat :data:`IMAGE_TOKENS_LOW` (85, OpenAI's ``detail: "low"`` cost) or
  :data:`IMAGE_TOKENS_HIGH` (765, a 1024x1024 image at ``"high"``; ``"auto"`` and no
  detail count as high) instead of its URL or base64 data. Audio and file parts count
  nothing (their base64 says nothing useful about tokens). Embeddings and legacy
  completions bodies count ``input``/``prompt``: strings as text, token-id arrays one
  token per id. Shapes it cannot read (``None``, numbers, non-dict messages) are
  ignored, never raised on. ~4 characters per token is the usual average for English
  prose; code, JSON and non-Latin scripts typically take more tokens per character, so
  they are *under*-counted, which errs towards keeping targets.

* **The capability table.** :data:`BUILTIN_MODELS` maps globs on *normalized* model names
  (``pricing.normalize_model_name``: lower-case, no ``provider/`` path, no Bedrock
  region/vendor prefix, no ``:tag``) to :class:`~llm_edge_agent.config.ModelInfo`. Only
  figures from the providers' public model pages are listed; ``None`` means unknown, and
  unknown never excludes a target. Since ``True`` and a larger window can never exclude
  a target either, the only claims that matter are ``False`` and context windows, and
  those are made only where they hold for everything the glob matches; a family glob
  may over-state a variant (``gpt-4o-*`` also matches the audio previews), never
  under-state one. Where a model's window depends on an opt-in (Claude Sonnet 4/4.5
  reach 1M tokens with Anthropic's ``context-1m`` beta header), the larger figure is
  listed. ``max_output_tokens`` is left unknown in the built-ins (it varies by snapshot
  and by beta headers); set it in the config to have over-long ``max_tokens`` skip a
  target.

  :class:`CapabilityTable` puts the config's ``[models."glob"]`` entries in front of the
  built-ins. Precedence, per field: the first override glob in config order that matches
  and sets the field; then the single most specific built-in glob that matches (the
  longest literal prefix before the first wildcard, then the most literal characters).
  So ``[models."gpt-4o*"] vision = false`` turns off vision and keeps the built-in
  context window. Matching is case-insensitive: an override glob matches the lower-cased
  model name or its normalized form; built-ins are tried on the lower-cased name first
  and on the normalized name if none matched.

* **Fitting.** :func:`unfit_reason` says why a model cannot serve a request (tools or
  images it does not support, a ``max_tokens`` above its output limit, a prompt that
  does not fit its context window) or ``None``. Because the prompt figure is an
  estimate, the window check only fires when the prompt *clearly* does not fit:
  ``estimate * WINDOW_MARGIN + output_tokens > context_window`` with a margin of 0.9,
  i.e. the estimate may be 11% high before a fitting request is turned away. For an
  embeddings or legacy completions batch the window applies to each input on its own,
  so the check uses the largest single input (``Needs.window_tokens``).
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any, Final

import orjson

from .config import ModelInfo
from .pricing import normalize_model_name
from .strategies import RequestSize

__all__ = [
    "BUILTIN_MODELS",
    "IMAGE_TOKENS_HIGH",
    "IMAGE_TOKENS_LOW",
    "MEMO_MAX_ENTRIES",
    "MESSAGE_OVERHEAD_TOKENS",
    "WINDOW_MARGIN",
    "CapabilityTable",
    "Needs",
    "estimate_prompt_tokens",
    "needs",
    "request_size",
    "requested_output_tokens",
    "unfit_reason",
]

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
IMAGE_TOKENS_LOW: Final = 85
IMAGE_TOKENS_HIGH: Final = 765
#: The prompt estimate is scaled by this before the context-window check (see above).
WINDOW_MARGIN: Final = 0.9
#: Upper bound on the model names a :class:`CapabilityTable` memoizes (names come from
#: clients, so the memo is bounded).
MEMO_MAX_ENTRIES: Final = 4096

_IMAGE_PARTS: Final = frozenset({"image_url", "input_image"})


# --------------------------------------------------------------------------- estimates


def _chars_to_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _image_tokens(part: Mapping[str, Any]) -> int:
    image = part.get("image_url")
    detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
    return IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH


def _scan_messages(messages: list[Any]) -> tuple[int, int, bool]:
    """(text characters, flat tokens, has an image) over chat messages."""
    chars = 0
    tokens = 0
    vision = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        tokens += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    ptype = part.get("type")
                    if ptype in _IMAGE_PARTS:
                        vision = True
                        tokens += _image_tokens(part)
                        continue
                    text = part.get("text")
                    if isinstance(text, str):
                        chars += len(text)
                    else:
                        refusal = part.get("refusal")
                        if isinstance(refusal, str):
                            chars += len(refusal)
                elif isinstance(part, str):
                    chars += len(part)
        name = message.get("name")
        if isinstance(name, str):
            chars += len(name)
        refusal = message.get("refusal")
        if isinstance(refusal, str):
            chars += len(refusal)
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    chars += _function_chars(call.get("function"))
        chars += _function_chars(message.get("function_call"))
    return chars, tokens, vision


def _function_chars(fn: Any) -> int:
    if not isinstance(fn, dict):
        return 0
    chars = 0
    name = fn.get("name")
    if isinstance(name, str):
        chars += len(name)
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        chars += len(arguments)
    return chars


def _scan_inputs(value: Any, items: list[Any]) -> tuple[int, int]:
    """(tokens of every input, tokens of the largest single input) of ``input``/``prompt``.

    A string is text; a list holds strings, token-id arrays, or is itself one token-id
    array. Dict items (Responses-style message items) are appended to ``items`` for the
    message scan.
    """
    if isinstance(value, str):
        n = _chars_to_tokens(len(value))
        return n, n
    if not isinstance(value, list):
        return 0, 0
    total = largest = flat = 0
    for item in value:
        if isinstance(item, str):
            n = _chars_to_tokens(len(item))
        elif type(item) is int:
            flat += 1
            continue
        elif isinstance(item, list):
            n = len(item)
        elif isinstance(item, dict):
            items.append(item)
            continue
        else:
            continue
        total += n
        if n > largest:
            largest = n
    if flat:
        total += flat
        largest = max(largest, flat)
    return total, largest


def _json_chars(value: Any) -> int:
    if not value or not isinstance(value, list | dict):
        return 0
    try:
        return len(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError: not JSON (only from in-process callers)
        return 0


def _is_mapping(body: Any) -> bool:
    return isinstance(body, dict | Mapping)  # dict first: the common case is cheap


def _scan(body: Any) -> tuple[int, int, bool]:
    """(prompt tokens, tokens that must fit one context window, has an image)."""
    if not _is_mapping(body):
        return 0, 0, False
    chars = 0
    tokens = 0
    vision = False
    messages = body.get("messages")
    items: list[Any] = []
    batch_total = batch_largest = 0
    for key in ("input", "prompt"):
        if key in body:
            total, largest = _scan_inputs(body[key], items)
            batch_total += total
            batch_largest = max(batch_largest, largest)
    if isinstance(messages, list):
        items.extend(messages)
    if items:
        chars, tokens, vision = _scan_messages(items)
    chars += _json_chars(body.get("tools")) + _json_chars(body.get("functions"))
    shared = _chars_to_tokens(chars) + tokens
    return shared + batch_total, shared + batch_largest, vision


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A cheap, deterministic estimate of the request's prompt tokens (see module doc)."""
    return _scan(body)[0]


def requested_output_tokens(body: Mapping[str, Any]) -> int:
    """``max_completion_tokens``, else ``max_tokens``, if a positive integer; else 0."""
    if not _is_mapping(body):
        return 0
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if type(value) is int and value > 0:
            return value
    return 0


def request_size(body: Mapping[str, Any]) -> RequestSize:
    return RequestSize(estimate_prompt_tokens(body), requested_output_tokens(body))


class Needs:
    """What a request requires of the model that serves it.

    ``window_tokens`` is what must fit one context window: the whole prompt for chat,
    the largest single input for an embeddings/completions batch (defaults to
    ``prompt_tokens``).
    """

    __slots__ = ("output_tokens", "prompt_tokens", "tools", "vision", "window_tokens")

    def __init__(
        self,
        tools: bool = False,
        vision: bool = False,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
        window_tokens: int | None = None,
    ) -> None:
        self.tools = tools
        self.vision = vision
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.window_tokens = prompt_tokens if window_tokens is None else window_tokens

    def size(self) -> RequestSize:
        return RequestSize(self.prompt_tokens, self.output_tokens)

    def __repr__(self) -> str:
        return (
            f"Needs(tools={self.tools}, vision={self.vision}, prompt={self.prompt_tokens}, "
            f"window={self.window_tokens}, output={self.output_tokens})"
        )


def needs(body: Mapping[str, Any]) -> Needs:
    """Scan the request once: tools, images, estimated prompt and requested output."""
    prompt, window, vision = _scan(body)
    tools = False
    if _is_mapping(body):
        for key in ("tools", "functions"):
            value = body.get(key)
            if isinstance(value, list) and value:
                tools = True
    return Needs(tools, vision, prompt, requested_output_tokens(body), window)


# --------------------------------------------------------------------------- the table


def _m(
    context_window: int | None = None, tools: bool | None = None, vision: bool | None = None
) -> ModelInfo:
    return ModelInfo(context_window=context_window, tools=tools, vision=vision)


_CHAT = (True, True)  # tools, vision
_GPT_4O = _m(128_000, *_CHAT)
_GPT_41 = _m(1_047_576, *_CHAT)
_GPT_5 = _m(400_000, *_CHAT)
_GPT_5_CHAT = _m(128_000, None, True)
_O_SERIES = _m(200_000, *_CHAT)
_O_TEXT_ONLY = _m(128_000, False, False)  # o1-mini, o1-preview: no tools, no images
_GPT_35 = _m(16_385, True, False)
_INSTRUCT = _m(4_096, False, False)  # legacy completions only
_OPENAI_EMBEDDING = _m(8_191, False, False)
_CLAUDE = _m(200_000, *_CHAT)
_CLAUDE_1M = _m(1_000_000, *_CHAT)
_GEMINI_1M = _m(1_048_576, *_CHAT)
_GEMINI_2M = _m(2_097_152, *_CHAT)
_LLAMA_TEXT = _m(131_072, True, False)  # Llama 3.1-3.3 text models: 128K (131072)
_LLAMA_VISION = _m(131_072, True, True)  # Llama 3.2 11B/90B Vision
_NOVA_MM = _m(300_000, *_CHAT)


def _family(*bases: str) -> tuple[str, ...]:
    """A model and its ``-suffixed`` variants (snapshots, sizes) but no longer names:
    ``gpt-4o`` and ``gpt-4o-*``, not ``gpt-4o1``."""
    return tuple(g for base in bases for g in (base, f"{base}-*"))


# Figures as the providers publish them: OpenAI https://platform.openai.com/docs/models,
# Anthropic https://docs.claude.com/en/docs/about-claude/models, Google
# https://ai.google.dev/gemini-api/docs/models, the AWS Bedrock model cards, and Meta's
# Llama 3.1+ model cards (128K context: max_position_embeddings 131072).
_BUILTIN: list[tuple[tuple[str, ...], ModelInfo]] = [
    # ---------------------------------------------------------------- OpenAI
    (_family("gpt-5", "gpt-5.1"), _GPT_5),
    (("gpt-5-chat*", "gpt-5.1-chat*"), _GPT_5_CHAT),
    (_family("gpt-4.1"), _GPT_41),
    (_family("gpt-4o", "gpt-4o-mini"), _GPT_4O),
    (("chatgpt-4o*",), _m(128_000, None, True)),
    (_family("gpt-4-turbo"), _m(128_000, True, None)),  # -preview snapshots: no images
    (("gpt-4", "gpt-4-0613"), _m(8_192, True, False)),
    (_family("gpt-3.5-turbo", "gpt-35-turbo"), _GPT_35),
    (("gpt-3.5-turbo-instruct*", "gpt-35-turbo-instruct*"), _INSTRUCT),
    (_family("o1", "o1-pro", "o3", "o3-pro", "o4-mini"), _O_SERIES),
    (("o1-mini*", "o1-preview*"), _O_TEXT_ONLY),
    (("o3-mini*",), _m(200_000, True, False)),
    (("o3-deep-research*", "o4-mini-deep-research*"), _m(200_000)),
    (_family("text-embedding-3-small", "text-embedding-3-large"), _OPENAI_EMBEDDING),
    (("text-embedding-ada-002*",), _OPENAI_EMBEDDING),
    # ------------------------------------------------------------- Anthropic
    (("claude-3-*",), _CLAUDE),  # 3, 3.5, 3.7: Haiku, Sonnet, Opus
    (("claude-3-5-haiku*",), _m(200_000, True, None)),  # image input: sources disagree
    (
        (
            *_family("claude-opus-4-0", "claude-opus-4-1", "claude-opus-4-5"),
            *_family("claude-haiku-4-5"),
            "claude-opus-4",
            "claude-opus-4-20*",
        ),
        _CLAUDE,
    ),
    (
        (
            # Sonnet 4 / 4.5: 200K, 1M with the context-1m beta; 4.6: 1M.
            *_family("claude-sonnet-4-0", "claude-sonnet-4-5", "claude-sonnet-4-6"),
            *_family("claude-opus-4-6"),
            "claude-sonnet-4",
            "claude-sonnet-4-20*",
        ),
        _CLAUDE_1M,
    ),
    # ---------------------------------------------------------------- Google
    (("gemini-1.5-pro*",), _GEMINI_2M),
    (("gemini-1.5-flash*", "gemini-2.0-flash*", "gemini-2.5-pro*"), _GEMINI_1M),
    (("gemini-2.5-flash*", "gemini-3-pro*", "gemini-3.1-pro*"), _GEMINI_1M),
    # ------------------------------------------------------------ Meta Llama
    # Meta's own instruct models as the common hosts name them (Together, Groq, vLLM/HF,
    # Ollama, Bedrock), not ``llama-3.1-*``: fine-tunes keep the prefix and may differ
    # (longer contexts, vision adapters).
    (
        (
            *(
                f"{p}-{s}-instruct*"
                for p in ("llama-3.1", "meta-llama-3.1", "llama3-1")
                for s in ("8b", "70b", "405b")
            ),
            *(
                f"{p}-{s}-instruct*"
                for p in ("llama-3.2", "meta-llama-3.2", "llama3-2")
                for s in ("1b", "3b")
            ),
            "llama-3.3-70b-instruct*",
            "llama3-3-70b-instruct*",
            "llama-3.1-8b-instant",  # Groq
            "llama-3.3-70b-versatile",  # Groq
            "llama3.1",  # Ollama (the ``:tag`` is dropped by normalizing)
            "llama3.2",
            "llama3.3",
        ),
        _LLAMA_TEXT,
    ),
    (
        (
            "llama-3.2-11b-vision-instruct*",
            "llama-3.2-90b-vision-instruct*",
            "llama3-2-11b-instruct*",  # Bedrock's 3.2 11B/90B are the vision models
            "llama3-2-90b-instruct*",
            "llama3.2-vision",
        ),
        _LLAMA_VISION,
    ),
    # ---------------------------------------------------------------- Amazon
    (("nova-pro-*", "nova-lite-*"), _NOVA_MM),
    (("nova-micro-*",), _m(128_000, True, False)),
    (("titan-text-*",), _m(None, None, False)),  # text only; windows differ by tier
    (("titan-embed-text-*",), _m(None, False, False)),
]

#: Built-in capabilities by glob on normalized model names (see the module docstring).
BUILTIN_MODELS: Final[Mapping[str, ModelInfo]] = MappingProxyType(
    {glob: info for globs, info in _BUILTIN for glob in globs}
)

_FIELDS: Final = tuple(f.name for f in fields(ModelInfo))
_Match = Callable[[str], re.Match[str] | None]


def _compile(glob: str) -> _Match:
    return re.compile(fnmatch.translate(glob.lower())).match


def _specificity(glob: str) -> tuple[int, int]:
    literal = re.split(r"[*?\[]", glob, maxsplit=1)[0]
    return len(literal), len(glob) - glob.count("*") - glob.count("?")


class CapabilityTable:
    """Model name -> :class:`ModelInfo`: config overrides merged over the built-ins.

    ``lookup`` results are memoized per raw name in a dict of at most
    :data:`MEMO_MAX_ENTRIES` entries (oldest evicted first); memo hits take no lock.
    """

    __slots__ = ("_builtin", "_lock", "_memo", "_overrides")

    def __init__(
        self,
        overrides: Mapping[str, ModelInfo] | None = None,
        builtin: Mapping[str, ModelInfo] | None = None,
    ) -> None:
        self._overrides: tuple[tuple[_Match, ModelInfo], ...] = tuple(
            (_compile(glob), info) for glob, info in (overrides or {}).items()
        )
        table = BUILTIN_MODELS if builtin is None else builtin
        ordered = sorted(table.items(), key=lambda kv: _specificity(kv[0]), reverse=True)
        self._builtin: tuple[tuple[_Match, ModelInfo], ...] = tuple(
            (_compile(glob), info) for glob, info in ordered
        )
        self._memo: dict[str, ModelInfo | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CapabilityTable(overrides={len(self._overrides)}, builtin={len(self._builtin)})"

    def lookup(self, model: str) -> ModelInfo | None:
        """What ``model`` can serve; None when nothing matches (everything unknown)."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        info = self._resolve(model)
        with self._lock:
            memo = self._memo
            if model not in memo:
                while len(memo) >= MEMO_MAX_ENTRIES:
                    del memo[next(iter(memo))]
                memo[model] = info
        return info

    def memo_size(self) -> int:
        return len(self._memo)

    def _resolve(self, model: str) -> ModelInfo | None:
        lowered = model.strip().lower()
        normalized = normalize_model_name(model)
        names = (lowered,) if normalized == lowered or not normalized else (lowered, normalized)
        found = [info for match, info in self._overrides if any(match(n) for n in names)]
        builtin = next(
            (info for name in names for match, info in self._builtin if match(name)), None
        )
        if builtin is not None:
            found.append(builtin)
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        merged: dict[str, Any] = {}
        for name in _FIELDS:
            merged[name] = next(
                (v for v in (getattr(i, name) for i in found) if v is not None), None
            )
        return ModelInfo(**merged)


# --------------------------------------------------------------------------- fitting


def unfit_reason(info: ModelInfo | None, needs: Needs, model: str = "the model") -> str | None:
    """Why ``model`` (described by ``info``) cannot serve a request, or None if it can.

    Unknown (``None``) capabilities never exclude. The window check is margin-scaled,
    see :data:`WINDOW_MARGIN`.
    """
    if info is None:
        return None
    if needs.tools and info.tools is False:
        return f"{model} does not support tools (function calling)"
    if needs.vision and info.vision is False:
        return f"{model} does not support image input"
    output = needs.output_tokens
    limit = info.max_output_tokens
    if limit is not None and output > limit:
        return f"the requested {output} output tokens exceed {model}'s output limit of {limit}"
    window = info.context_window
    if window is not None and needs.window_tokens * WINDOW_MARGIN + output > window:
        prompt = f"the prompt (~{needs.window_tokens} tokens)"
        if output:
            prompt += f" plus {output} output tokens"
        return f"{prompt} exceeds {model}'s context window of {window} tokens"
    return None
