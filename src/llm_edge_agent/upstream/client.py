"""The real transport: one pooled aiohttp session per worker, keep-alive, DNS cache.

Every aiohttp exception is translated here, at the boundary, into the error tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
from yarl import URL

from ..errors import UpstreamError, UpstreamTimeoutError
from ..providers.base import UpstreamRequest
from .base import Timeouts, UpstreamResponse

DNS_CACHE_TTL_S = 300
KEEPALIVE_TIMEOUT_S = 30.0


def _translate(exc: BaseException, request: UpstreamRequest, provider: str) -> UpstreamError:
    where = f"provider {provider!r}"
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeoutError(f"{where} timed out", provider=provider)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(
            f"{where} is unreachable: {exc.strerror or 'connection failed'}", provider=provider
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamError(f"{where} closed the connection", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError(f"{where} sent a broken response body", provider=provider)
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError(f"{where} sent an invalid HTTP response", provider=provider)
    return UpstreamError(f"{where} request failed: {type(exc).__name__}", provider=provider)


class AiohttpStream:
    __slots__ = ("_idle_s", "_provider", "_request", "_response", "headers", "status")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: UpstreamRequest,
        provider: str,
        idle_s: float,
    ) -> None:
        self._response = response
        self._request = request
        self._provider = provider
        self._idle_s = idle_s
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._response.connection
        if connection is not None and connection.protocol is not None:
            # Until the headers arrived, the read timeout was the time-to-first-byte bound.
            connection.protocol.read_timeout = self._idle_s
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._request, self._provider) from exc

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._request, self._provider) from exc

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport:
    """Sends requests for one provider over the worker's shared session."""

    def __init__(self, session: aiohttp.ClientSession, provider: str, timeouts: Timeouts) -> None:
        self._session = session
        self._provider = provider
        self._timeouts = timeouts
        self._plain = self._client_timeout(timeouts)
        self._streaming = self._stream_timeout(timeouts)

    def __repr__(self) -> str:
        return f"AiohttpTransport({self._provider!r}, {self._timeouts!r})"

    @staticmethod
    def _client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=t.total_s, sock_connect=t.connect_s)

    @staticmethod
    def _stream_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, sock_connect=t.connect_s, sock_read=t.total_s)

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        client_timeout = (
            self._plain if timeouts is self._timeouts else self._client_timeout(timeouts)
        )
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True),
                data=request.body,
                headers=request.headers,
                timeout=client_timeout,
            ) as response:
                body = await response.read()
                return UpstreamResponse(response.status, response.headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, request, self._provider) from exc

    async def open_stream(self, request: UpstreamRequest, timeouts: Timeouts) -> AiohttpStream:
        client_timeout = (
            self._streaming if timeouts is self._timeouts else self._stream_timeout(timeouts)
        )
        try:
            response = await self._session.request(
                request.method,
                URL(request.url, encoded=True),
                data=request.body,
                headers=request.headers,
                timeout=client_timeout,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, request, self._provider) from exc
        return AiohttpStream(response, request, self._provider, timeouts.idle_s)

    async def close(self) -> None:
        """The session belongs to the app, which closes it."""


def create_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0,
        limit_per_host=0,
        ttl_dns_cache=DNS_CACHE_TTL_S,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        raise_for_status=False,
        trust_env=False,
    )
