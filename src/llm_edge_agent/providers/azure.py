"""Azure OpenAI: the OpenAI dialect at deployment URLs, with Azure's auth and errors.

``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``; the
deployment defaults to the model name. Auth is the ``api-key`` header, or an Entra ID
bearer token when ``ad_token`` is configured. Azure's content filter refuses a prompt with
a 400 whose ``code`` is ``content_filter``
(https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter): that is
relayed as a 400 saying the content filter blocked it, with the categories that fired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from ..errors import UpstreamClientError, UpstreamError
from .openai import CHAT, OpenAITranslator

DEFAULT_API_VERSION = "2024-10-21"
MAX_CACHED_URLS = 1024


def _filtered_categories(error: Mapping[str, Any]) -> list[str]:
    inner = error.get("innererror")
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(result, dict):
        return []
    return sorted(
        name
        for name, verdict in result.items()
        if isinstance(verdict, dict) and verdict.get("filtered")
    )


class AzureTranslator(OpenAITranslator):
    def __init__(
        self,
        name: str,
        endpoint: str,
        api_key: str | None,
        api_version: str | None = None,
        deployment: str | None = None,
        ad_token: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, endpoint.rstrip("/"), None, extra_headers)
        if ad_token:
            self._headers["authorization"] = f"Bearer {ad_token}"
        elif api_key:
            self._headers["api-key"] = api_key
        self._prefix = f"{endpoint.rstrip('/')}/openai/deployments/"
        self._query = f"?api-version={api_version or DEFAULT_API_VERSION}"
        self._suffix = f"/chat/completions{self._query}"
        self._deployment = deployment
        self._urls: dict[str, str] = {}
        self.chat_url = f"{self._prefix}{deployment or '{model}'}{self._suffix}"  # for repr

    def models_url(self) -> str:
        return f"{self._prefix.removesuffix('deployments/')}models{self._query}"

    def url_for(self, model: str, endpoint: str = CHAT) -> str:
        key = f"{endpoint} {model}"
        url = self._urls.get(key)
        if url is None:
            deployment = quote(self._deployment or model, safe="")
            url = f"{self._prefix}{deployment}/{endpoint}{self._query}"
            if len(self._urls) < MAX_CACHED_URLS:
                self._urls[key] = url
        return url

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        if status == 400:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict) and error.get("code") == "content_filter":
                categories = _filtered_categories(error)
                why = f" ({', '.join(categories)})" if categories else ""
                return UpstreamClientError(
                    f"Azure OpenAI's content filter blocked this request{why}: "
                    f"{error.get('message') or 'no detail given'}",
                    provider=self.name,
                    upstream_status=400,
                    status=400,
                    code="content_filter",
                )
        return super().decode_error(status, body, headers)
