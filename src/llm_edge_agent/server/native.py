"""The native engine: the gateway's own HTTP/1.1 server on uvloop, parsing with httptools.

One thread does everything: a request is parsed (llhttp, in C), dispatched and written back
from the event loop's own callback, with no hand-off between threads. granian's Rust I/O
thread hands every request to the Python loop and back, which costs ~0.2 ms a request at
low rates (``docs/decisions.md`` §1 has the measurements that made this the default).

One ``Connection`` per client socket:

- requests are answered in order, one at a time; pipelined ones queue, and reading pauses
  while ``PIPELINE_DEPTH`` of them wait;
- a body is collected whole before dispatch, up to ``limits.max_body_bytes``; past that the
  request is dispatched at once without it (the gateway answers 413) and the connection
  closes after the answer, so the rest is never read;
- a client that disconnects (or half-closes) cancels its handler, and so its upstream
  request, as aiohttp's ``handler_cancellation`` does;
- an idle keep-alive connection closes after ``KEEP_ALIVE_TIMEOUT_S``; a request whose head
  and body take longer than ``REQUEST_TIMEOUT_S`` to arrive gets 408;
- a malformed request gets 400 (431 for a head over ``MAX_HEAD_BYTES``) in the gateway's
  error shape, and the connection closes after it;
- ``Upgrade`` (h2c) is ignored: the request is answered over HTTP/1.1. llhttp hands over
  the bytes after an upgrade request's head, so its body (``Content-Length``) is read here;
- ``Expect: 100-continue`` gets its interim answer unless the declared body is too large.

``NativeServer`` owns the listening socket and the connections; ``close`` drains them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from itertools import groupby
from typing import Any, cast

import httptools

from ..errors import GatewayError, InvalidRequestError
from ..observability.logs import get_logger
from ..pipeline.responses import SSE, Response, StreamingResponse, error_response
from .dispatch import Body, Result, body_too_large
from .http1 import (
    LAST_CHUNK,
    SSE_HEADERS,
    DateHeader,
    encode_chunk,
    encode_head,
    request_path,
)

KEEP_ALIVE_TIMEOUT_S = 75.0  # above the 60 s idle timeout of common load balancers
REQUEST_TIMEOUT_S = 60.0
MAX_HEAD_BYTES = 64 * 1024
PIPELINE_DEPTH = 16
SWEEP_INTERVAL_S = 1.0
ABORT_GRACE_S = 5.0  # for aborted handlers to clean up when the drain timeout has passed
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")}

# ``Dispatcher.handle``: (method, path, headers, body) to a response.
Handle = Callable[[str, str, Mapping[str, str], Body], Awaitable[Result]]


class Request:
    """One parsed request; it is also the ``Body`` the dispatcher reads (already whole)."""

    __slots__ = (
        "body",
        "content_length",
        "error",
        "headers",
        "http10",
        "keep_alive",
        "method",
        "path",
        "too_large",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        keep_alive: bool,
        content_length: int | None = None,
        http10: bool = False,
        too_large: bool = False,
        error: GatewayError | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.http10 = http10
        self.too_large = too_large
        self.error = error

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path}, {len(self.body)} bytes)"

    def read(self, limit: int) -> Awaitable[bytes]:
        if self.too_large:
            raise body_too_large(limit)
        return self

    def __await__(self) -> Generator[Any, None, bytes]:
        return self.body
        yield  # unreachable: makes this a generator, so awaiting it never suspends


def _joined(raw: list[bytes]) -> dict[str, str]:
    """Headers by lowercased name; a repeated header's values joined with commas."""
    headers: dict[str, str] = {}
    for i in range(0, len(raw), 2):
        name = raw[i].decode("latin-1").lower()
        value = raw[i + 1].decode("latin-1")
        old = headers.get(name)
        headers[name] = value if old is None else f"{old}, {value}"
    return headers


class _HeadTooLarge(Exception):
    pass


class _StopParsing(Exception):
    """Raised from a parser callback once the request is settled without the rest."""


class Connection(asyncio.Protocol):
    def __init__(self, server: NativeServer) -> None:
        self._server = server
        self._dispatch = server.handle
        self._limit = server.max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._raw_headers: list[bytes] = []  # names and values, alternating
        self._headers: dict[str, str] = {}
        self._content_length: int | None = None
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_request = False  # a request's head or body is arriving
        self._in_head = False  # its head is
        self._began = 0.0
        self._idle_since = server.now
        self._upgrade: Request | None = None  # an upgrade request whose body is read by hand
        self._raw_left = 0
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._reading = True  # False: parse nothing more (error, oversized body, closing)
        self._read_paused = False
        self._closing = False  # close once the queued requests are answered
        self._drain: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = "busy" if self._task is not None else "idle"
        return f"Connection({state}, queued={len(self._queue)}, closing={self._closing})"

    # ------------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._reading = False
        self._server.in_flight -= len(self._queue)
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()  # the client left: stop its handler and upstream request
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        if not self._reading:
            return
        if self._upgrade is not None:
            self._read_raw_body(data)
            return
        if self._in_head:  # a head that began in an earlier read: all this may be head
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data[upgrade.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _StopParsing):
                return
            if isinstance(cause, _HeadTooLarge):
                self._head_too_large()
                return
            get_logger().error("HTTP parser callback failed", exc_info=cause)
            self._reject(InvalidRequestError("malformed HTTP request", code="bad_request"))
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            self._reject(
                InvalidRequestError(f"malformed HTTP request: {reason}", code="bad_request")
            )
        else:
            # A head still incomplete: bounded here (a complete one, in on_headers_complete).
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ------------------------------------------------------------------ parser callbacks

    # They do as little as they can: each is a Python call from C, several per request.

    def on_message_begin(self) -> None:
        self._in_request = self._in_head = True
        self._began = self._server.now
        self._url = b""
        self._raw_headers = []
        self._head_bytes = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        raw = self._raw_headers
        raw.append(name)
        raw.append(value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        raw = self._raw_headers
        if len(self._url) + sum(map(len, raw)) > MAX_HEAD_BYTES:
            raise _HeadTooLarge
        names, values = raw[::2], raw[1::2]
        # latin-1 never fails, and a value echoed back (x-request-id) keeps its bytes
        headers = {
            n.decode("latin-1").lower(): v.decode("latin-1")
            for n, v in zip(names, values, strict=True)
        }
        if 2 * len(headers) < len(raw):
            headers = _joined(raw)
        self._headers = headers
        length = headers.get("content-length")  # llhttp has checked it is a number
        self._content_length = int(length) if length is not None else None
        if self._content_length is not None and self._content_length > self._limit:
            self._dispatch_without_body()
        expect = headers.get("expect")
        if (
            expect is not None
            and expect.lower() == "100-continue"
            and self._task is None
            and self._transport is not None
        ):
            self._server.outbox.flush()  # an earlier answer on this connection goes first
            self._transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limit:
            self._dispatch_without_body()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_request = False
        body = self._body
        request = self._request(body[0] if len(body) == 1 else b"".join(body))
        if self._parser.should_upgrade():
            self._upgrade = request  # its body, if any, follows the HttpParserUpgrade
            return
        self._enqueue(request)
        if self._closing:
            self._stop_reading()

    # ------------------------------------------------------------------ request intake

    def _request(self, body: bytes, *, too_large: bool = False) -> Request:
        parser = self._parser
        method = parser.get_method()
        return Request(
            METHODS.get(method) or method.decode("latin-1"),
            request_path(self._url),
            self._headers,
            body,
            keep_alive=parser.should_keep_alive(),
            content_length=self._content_length,
            http10=parser.get_http_version() == "1.0",
            too_large=too_large,
        )

    def _dispatch_without_body(self) -> None:
        """The body is over the limit: dispatch now (413) and read nothing more."""
        self._in_request = False
        self._body = []
        request = self._request(b"", too_large=True)
        request.keep_alive = False
        self._enqueue(request)
        self._stop_reading()
        raise _StopParsing

    def _upgraded(self, rest: bytes) -> None:
        request = self._upgrade
        assert request is not None, "llhttp signals an upgrade after its message"
        if request.method == "CONNECT":
            self._upgrade = None
            request.keep_alive = False
            self._enqueue(request)
            self._stop_reading()
            return
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            self._upgrade = None
            self._reject(
                InvalidRequestError(
                    "a chunked body with an Upgrade header is not supported; "
                    "send Content-Length or drop the Upgrade header",
                    code="bad_request",
                )
            )
            return
        self._raw_left = request.content_length or 0
        self._body = []
        self._read_raw_body(rest)

    def _read_raw_body(self, data: bytes) -> None:
        request = self._upgrade
        assert request is not None
        take = data[: self._raw_left]
        if take:
            self._body.append(take)
            self._raw_left -= len(take)
        if self._raw_left:
            return
        request.body = b"".join(self._body)
        self._body = []
        self._upgrade = None
        self._parser = httptools.HttpRequestParser(self)  # the upgrade is ignored: HTTP/1.1 goes on
        self._enqueue(request)
        if len(take) < len(data):
            self.data_received(data[len(take) :])

    def _head_too_large(self) -> None:
        self._reject(
            InvalidRequestError(
                f"request head exceeds {MAX_HEAD_BYTES} bytes",
                code="request_header_fields_too_large",
                status=431,
            )
        )

    def _reject(self, error: GatewayError) -> None:
        """A request that cannot be read: answer ``error`` after those queued, then close."""
        self._in_request = False
        self._enqueue(Request("", "", {}, b"", keep_alive=False, error=error))
        self._stop_reading()

    def _stop_reading(self) -> None:
        self._reading = False
        self._closing = True
        self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _enqueue(self, request: Request) -> None:
        self._server.in_flight += 1
        self._queue.append(request)
        if self._task is None:
            self._task = self._loop.create_task(self._answer_queue())
        elif len(self._queue) >= PIPELINE_DEPTH:
            self._pause_reading()

    # ------------------------------------------------------------------ answering

    async def _answer_queue(self) -> None:
        queue = self._queue
        try:
            while queue:
                request = queue.popleft()
                if self._read_paused and self._reading and len(queue) < PIPELINE_DEPTH // 2:
                    self._read_paused = False
                    if self._transport is not None:
                        self._transport.resume_reading()
                try:
                    keep_alive = await self._answer(request)
                except Exception:  # a bug here must not leave the client waiting forever
                    get_logger().exception("native engine: answering a request failed")
                    self.abort()
                    return
                if not keep_alive:
                    self._close()
                    return
        finally:
            self._task = None
            self._idle_since = self._server.now
        if self._closing and not self._in_request:
            self._close()

    async def _answer(self, request: Request) -> bool:
        """Answer one request; whether the connection stays open for the next."""
        server = self._server
        try:
            if request.error is not None:
                result: Response | StreamingResponse = error_response(request.error)
            else:
                result = await self._dispatch(
                    request.method, request.path, request.headers, request
                )
        finally:
            server.in_flight -= 1
        # decided once the answer is ready: a shutdown may have begun while it was made
        keep_alive = request.keep_alive and not (self._closing and not self._queue)
        if isinstance(result, StreamingResponse):
            return await self._stream(result, request, keep_alive)
        transport = self._transport
        assert transport is not None
        body = result.body
        try:
            head = encode_head(
                result.status,
                result.headers,
                server.date.line(),
                content_type=result.content_type,
                content_length=len(body),
                keep_alive=keep_alive,
            )
            data = head if request.method == "HEAD" else head + body
        except BaseException:
            if result.settle is not None:
                result.settle()  # the answer is lost, not its usage record
            raise
        # Alone in the worker, the answer goes out now; while others are being answered it
        # is written with theirs at the end of the loop's turn (see ``Outbox``).
        server.outbox.send(transport, data, result.settle, batch=server.in_flight > 0)
        return keep_alive

    async def _stream(self, result: StreamingResponse, request: Request, keep_alive: bool) -> bool:
        transport = self._transport
        assert transport is not None
        chunked = not request.http10  # an HTTP/1.0 client reads the stream to the close
        head = encode_head(
            result.status,
            result.headers,
            self._server.date.line() + SSE_HEADERS,
            content_type=SSE,
            content_length=None,
            chunked=chunked,
            keep_alive=keep_alive and chunked,
        )
        # Through the outbox: the events a turn produces (a replayed hit produces them all
        # at once) go out in one write at its end, not a system call each.
        outbox = self._server.outbox
        try:
            outbox.send(transport, head, None, batch=True)
            async for chunk in result.chunks:
                if transport.is_closing():
                    return False
                if chunk:
                    outbox.send(
                        transport, encode_chunk(chunk) if chunked else chunk, None, batch=True
                    )
                    if self._drain is not None:
                        await self._drain
        finally:
            await result.aclose()
        # The end goes out only once the stream is accounted and stored: a client that
        # asks again as soon as its stream ends finds the answer in the cache.
        if chunked and not transport.is_closing():
            outbox.send(transport, LAST_CHUNK, None, batch=True)
        return keep_alive and chunked

    # ------------------------------------------------------------------ lifecycle

    def expire(self, now: float) -> None:
        """Called every ``SWEEP_INTERVAL_S`` by the server: the timeouts."""
        if self._in_request and self._reading:
            if now - self._began >= REQUEST_TIMEOUT_S:
                self._reject(
                    InvalidRequestError(
                        f"the request did not arrive within {REQUEST_TIMEOUT_S:g} s",
                        code="request_timeout",
                        status=408,
                    )
                )
        elif self._idle(now):
            self._close()

    def _idle(self, now: float) -> bool:
        """Nothing in flight, nothing queued, for ``KEEP_ALIVE_TIMEOUT_S``."""
        return (
            self._task is None
            and not self._queue
            and now - self._idle_since >= KEEP_ALIVE_TIMEOUT_S
        )

    def shutdown(self) -> None:
        """The server is stopping: answer what has arrived (a request arriving included), then
        close."""
        self._closing = True
        if not self._in_request:
            self._stop_reading()
            if self._task is None and not self._queue:
                self._close()

    def abort(self) -> asyncio.Task[None] | None:
        """Drop the connection now and cancel its handler; returns the handler's task."""
        task = self._task
        if task is not None:
            task.cancel()
        if self._transport is not None:
            self._transport.abort()
        return task

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._server.outbox.close(self._transport)


_Item = tuple[asyncio.Transport, bytes | None, Callable[[], None] | None]  # data None: close


def _target(item: _Item) -> tuple[asyncio.Transport, bool]:
    return item[0], item[1] is None


class Outbox:
    """Whole answers, written one by one, or together at the end of the loop's turn.

    Under load a worker has many answers ready in one turn of the event loop. Writing each
    as soon as it is ready interleaves the kernel's send path (TCP over loopback, waking
    the client) with the interpreter, request after request; writing them together, then
    running their bookkeeping (``settle``), took a third less CPU a request (measured:
    76 against 117 µs an L1 hit, ``docs/benchmarks.md``). A worker with nothing else in
    flight writes at once instead: at low rates the extra callback would only add latency.

    Once anything waits here, every write and close goes through the queue too, so the
    answers on one connection keep their order.
    """

    __slots__ = ("_items", "_loop")

    def __init__(self) -> None:
        self._items: list[_Item] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"Outbox({len(self._items)} waiting)"

    def send(
        self,
        transport: asyncio.Transport,
        data: bytes,
        settle: Callable[[], None] | None,
        *,
        batch: bool,
    ) -> None:
        """Write ``data``, then call ``settle`` (also when the client has gone)."""
        if batch or self._items:
            self._queue(transport, data, settle)
            return
        try:
            if not transport.is_closing():
                transport.write(data)
        finally:
            if settle is not None:
                settle()

    def close(self, transport: asyncio.Transport) -> None:
        """Close after what is queued for it has been written."""
        if self._items:
            self._queue(transport, None, None)
        else:
            transport.close()

    def _queue(
        self,
        transport: asyncio.Transport,
        data: bytes | None,
        settle: Callable[[], None] | None,
    ) -> None:
        if not self._items:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)
        self._items.append((transport, data, settle))

    def flush(self) -> None:
        """Write everything queued (what follows in a row for one connection, in one
        write), then run its bookkeeping."""
        items, self._items = self._items, []
        for (transport, close), run in groupby(items, key=_target):
            if transport.is_closing():
                continue
            try:
                if close:
                    transport.close()
                else:
                    transport.write(b"".join([data or b"" for _, data, _ in run]))
            except Exception:  # a broken socket must not cost the others their answers
                get_logger().exception("native engine: writing an answer failed")
                transport.abort()
        for _, _, settle in items:
            if settle is not None:
                try:
                    settle()
                except Exception:  # one failing record must not cost the others theirs
                    get_logger().exception("native engine: accounting an answer failed")


class NativeServer:
    """The listening socket, its connections, their timeouts and a graceful close."""

    def __init__(self, handle: Handle, *, max_body_bytes: int, drain_timeout_s: float) -> None:
        self.handle = handle
        self.max_body_bytes = max_body_bytes
        self._drain_timeout_s = drain_timeout_s
        self.connections: set[Connection] = set()
        self.date = DateHeader()
        self.outbox = Outbox()
        # Requests read and not yet answered. Those read in one turn of the loop are
        # answered in the next, in turn: all but the last see others still waiting.
        self.in_flight = 0
        self.now = 0.0  # the loop's clock, updated by the sweep (timeouts need no better)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"NativeServer(connections={len(self.connections)})"

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose for port 0)."""
        assert self._port is not None, "not started"
        return self._port

    async def start(self, host: str, port: int, *, reuse_port: bool, backlog: int) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self._server = await loop.create_server(
            self._connection, host, port, reuse_port=reuse_port, backlog=backlog
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._tick)

    def _connection(self) -> Connection:
        return Connection(self)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self.sweep(loop.time())
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._tick)

    def sweep(self, now: float) -> None:
        """Advance the server's clock to ``now`` (the loop's) and apply the timeouts."""
        self.now = now
        for connection in list(self.connections):
            connection.expire(now)

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._drained is not None:
            self._drained.set()

    async def close(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout), close
        all."""
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), self._drain_timeout_s)
            except TimeoutError:
                aborted = [c.abort() for c in list(self.connections)]
                handlers = [task for task in aborted if task is not None]
                if handlers:  # their cleanup (``aclose``, accounting) runs before the exit
                    await asyncio.wait(handlers, timeout=ABORT_GRACE_S)
        if self._sweeper is not None:
            self._sweeper.cancel()
