"""Holding a stream until its first content, so a failure before it stays invisible.

A provider can accept a streaming request (200, headers sent) and then fail before it has
said anything: an error event, a cut connection, a timeout. Until the first piece of
content is in hand nothing has reached the client, so ``prime`` reads the upstream stream
through its decoder and keeps the client bytes it produced (the role chunk, comments), and
either returns a ``PrimedStream`` (first content seen, or the whole answer already ended)
or raises the ``UpstreamError`` that lets the executor retry or fail over. After priming,
the relay sends the held bytes first and then the rest of the stream; a failure from then
on can only end the stream with an SSE error event.

"Content" is recognised on the OpenAI chunks the decoders write: a non-empty ``content``,
``reasoning_content``, ``refusal`` or legacy ``text``, any ``tool_calls``, or a finish
reason (an answer that ends without content is whole, so it counts too).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..errors import UpstreamTimeoutError
from ..providers.base import StreamDecoder
from ..upstream.base import UpstreamStream

# Compact and spaced JSON (some OpenAI-compatible servers write ``"content": "x"``). A
# marker followed by a closing quote is an empty string, which is not content.
_STRING_MARKERS = (
    b'"content":"',
    b'"content": "',
    b'"reasoning_content":"',
    b'"reasoning_content": "',
    b'"refusal":"',
    b'"refusal": "',
    b'"text":"',
    b'"text": "',
)
_MARKERS = (
    b'"finish_reason":"',
    b'"finish_reason": "',
)
_TOOL_CALLS = b'"tool_calls":'  # content only when followed by a non-empty list


def has_content(out: bytes) -> bool:
    """Whether client bytes (OpenAI SSE chunks) carry any content."""
    for marker in _MARKERS:
        if marker in out:
            return True
    at = out.find(_TOOL_CALLS)
    while at >= 0:
        rest = out[at + len(_TOOL_CALLS) : at + len(_TOOL_CALLS) + 16].lstrip()
        if rest.startswith(b"[") and rest[1:].lstrip()[:1] == b"{":
            return True
        at = out.find(_TOOL_CALLS, at + 1)
    for marker in _STRING_MARKERS:
        at = out.find(marker)
        while at >= 0:
            end = at + len(marker)
            if end < len(out) and out[end : end + 1] != b'"':
                return True
            at = out.find(marker, end)
    return False


class PrimedStream:
    """An upstream stream whose first content has arrived, with what was held so far."""

    __slots__ = ("chunks", "decoder", "ended", "finished", "held", "stream")

    def __init__(
        self,
        stream: UpstreamStream,
        chunks: AsyncIterator[bytes],
        decoder: StreamDecoder,
        held: list[bytes],
        ended: bool,
    ) -> None:
        self.stream = stream
        self.chunks = chunks  # the rest of the upstream body
        self.decoder = decoder
        self.held = held  # client bytes produced so far, in order
        self.ended = ended  # the upstream body is finished (``decoder.finish()`` was called)
        # Set by ``client_bytes`` just before it yields the last piece, which holds the
        # stream's end ([DONE]): a consumer that stores the answer does so before passing
        # that piece on, so no client sees the end of a stream that is not stored yet.
        self.finished = False

    def __repr__(self) -> str:
        return f"PrimedStream(held={len(self.held)}, ended={self.ended})"

    def close(self) -> None:
        """Abandon it (a hedge that lost): release the upstream connection. (The chunk
        generator, suspended at a yield, is finalized by the event loop.)"""
        self.stream.close()


async def prime(
    stream: UpstreamStream, decoder: StreamDecoder, provider: str, limit_s: float
) -> PrimedStream:
    """Read ``stream`` until its first content; raise ``UpstreamError`` if it fails first.

    ``limit_s`` bounds the wait (what is left of the request's deadline). The caller
    closes ``stream`` when this raises."""
    chunks = stream.chunks()
    held: list[bytes] = []
    try:
        async with asyncio.timeout(limit_s):
            async for data in chunks:
                out = decoder.feed(data)
                if decoder.error is not None:
                    raise decoder.error
                if out:
                    held.append(out)
                    if has_content(out):
                        return PrimedStream(stream, chunks, decoder, held, ended=False)
            tail = decoder.finish()  # raises for a stream cut before its end
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"provider {provider!r} sent no content within the request's deadline",
            provider=provider,
        ) from None
    if decoder.error is not None:
        raise decoder.error
    if tail:
        held.append(tail)
    return PrimedStream(stream, chunks, decoder, held, ended=True)
