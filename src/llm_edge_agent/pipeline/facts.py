"""What routing may ask about one request, each fact computed at most once and only when
something asks: the rules (prompt size), the ``cost`` strategy (size) and the capability
check (tools, images, size against a model's context window).

The capability check has a cheap pre-test, so the usual request never walks its messages:
the token estimate (``capabilities.estimate_prompt_tokens``) is at most ~0.7 tokens per
body byte for bodies without images, so a body whose bytes plus requested output tokens
stay under a model's window surely fits it, and the tools and image tests look at a key
and at the raw bytes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..capabilities import Needs, needs, requested_output_tokens, unfit_reason
from ..config import ModelInfo
from ..strategies import RequestSize

# The output a request without max_tokens is assumed to produce, for cost estimates.
NOMINAL_OUTPUT_TOKENS = 256
_IMAGE_URL = b'"image_url"'
_INPUT_IMAGE = b'"input_image"'


class RequestFacts:
    __slots__ = ("_body", "_needs", "_raw", "size")

    def __init__(self, body: Mapping[str, Any], raw: bytes) -> None:
        self._body = body
        self._raw = raw
        self._needs: Needs | None = None
        self.size = RequestSize(measure=self._measure)

    def __repr__(self) -> str:
        return f"RequestFacts({len(self._raw)} bytes, measured={self._needs is not None})"

    def needs(self) -> Needs:
        if self._needs is None:
            self._needs = needs(self._body)
        return self._needs

    def prompt_tokens(self) -> int:
        return self.needs().prompt_tokens

    def _measure(self) -> tuple[int, int]:
        found = self.needs()
        return found.prompt_tokens, found.output_tokens or NOMINAL_OUTPUT_TOKENS

    def unfit(self, info: ModelInfo | None, model: str) -> str | None:
        """Why ``model`` cannot serve this request, or None (also when unknown)."""
        if info is None or not self._might_be_unfit(info):
            return None
        return unfit_reason(info, self.needs(), model)

    def _might_be_unfit(self, info: ModelInfo) -> bool:
        body = self._body
        if info.tools is False and (body.get("tools") or body.get("functions")):
            return True
        if info.max_output_tokens is not None:
            return True
        window = info.context_window
        if window is None and info.vision is not False:
            return False
        raw = self._raw
        if _IMAGE_URL in raw or _INPUT_IMAGE in raw:
            return True  # images: only the estimate can say (and vision may be refused)
        return window is not None and len(raw) + requested_output_tokens(body) >= window
