"""The native engine's HTTP/1.1 server over real loopback sockets, on asyncio's loop and on
uvloop (``conftest.py``), with a fake handler in place of the dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
import pytest
import pytest_asyncio

from llm_edge_agent.errors import GatewayError
from llm_edge_agent.pipeline.responses import Response, StreamingResponse, error_response
from llm_edge_agent.server.dispatch import Body, Result
from llm_edge_agent.server.native import (
    KEEP_ALIVE_TIMEOUT_S,
    MAX_HEAD_BYTES,
    PIPELINE_DEPTH,
    REQUEST_TIMEOUT_S,
    NativeServer,
    Outbox,
)

LIMIT = 1024


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Respond = Callable[[Seen], Awaitable[Result]]


async def echo(seen: Seen) -> Result:
    return Response(200, orjson.dumps({"path": seen.path, "size": len(seen.body)}))


def held_until(gate: asyncio.Event) -> Respond:
    """Answers like ``echo`` once ``gate`` is set."""

    async def held(seen: Seen) -> Result:
        await gate.wait()
        return await echo(seen)

    return held


async def hang(seen: Seen) -> Result:
    """Never answers: only a cancellation ends it."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (up to 1 s) for something another task or the server does."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not become true within 1 s")


@dataclass
class App:
    """Stands in for ``Dispatcher.handle``: records each request, answers with ``respond``."""

    respond: Respond = echo
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: Body
    ) -> Result:
        try:
            raw = await body.read(LIMIT)
        except GatewayError as error:  # as the dispatcher renders it
            return error_response(error)
        seen = Seen(method, path, dict(headers), raw)
        self.seen.append(seen)
        try:
            return await self.respond(seen)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data = orjson.loads(self.body)
        assert isinstance(data, dict)
        return data


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: NativeServer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, head_only: bool = False) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if status == 100 or head_only:
            return Reply(status, headers, b"")
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._chunks()
        else:
            body = await asyncio.wait_for(self.reader.read(), 5)
        return Reply(status, headers, body)

    async def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                assert await self.reader.readexactly(2) == b"\r\n"
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            assert await self.reader.readexactly(2) == b"\r\n"

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    def close(self) -> None:
        self.writer.close()


def post(path: str = "/v1/chat/completions", body: bytes = b'{"a":1}', extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@pytest.fixture
def app() -> App:
    return App()


@pytest_asyncio.fixture
async def server(app: App) -> AsyncIterator[NativeServer]:
    native = NativeServer(app, max_body_bytes=LIMIT, drain_timeout_s=1.0)
    await native.start("127.0.0.1", 0, reuse_port=False, backlog=16)
    yield native
    await native.close()


# ---------------------------------------------------------------------- requests and answers


@pytest.mark.asyncio
async def test_a_request_reaches_the_handler_whole_and_the_answer_is_framed(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(post(body=b'{"hello":"world"}', extra="X-Request-ID: r-1\r\n"))
    reply = await client.reply()
    assert reply.status == 200
    assert reply.json() == {"path": "/v1/chat/completions", "size": 17}
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["date"].endswith(" GMT")
    assert "connection" not in reply.headers  # HTTP/1.1 keeps the connection
    (seen,) = app.seen
    assert (seen.method, seen.body) == ("POST", b'{"hello":"world"}')
    assert seen.headers["x-request-id"] == "r-1"  # names lowercased
    assert seen.headers["content-type"] == "application/json"
    client.close()


@pytest.mark.asyncio
async def test_a_keep_alive_connection_serves_request_after_request(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    for i in range(3):
        await client.send(post(path=f"/r{i}"))
        assert (await client.reply()).json()["path"] == f"/r{i}"
    assert len(server.connections) == 1
    client.close()


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_the_order_they_came(
    server: NativeServer, app: App
) -> None:
    async def slow_first(seen: Seen) -> Result:
        if seen.path == "/r0":
            await asyncio.sleep(0.05)
        return await echo(seen)

    app.respond = slow_first
    client = await Client.connect(server)
    await client.send(b"".join(post(path=f"/r{i}") for i in range(5)))
    paths = [(await client.reply()).json()["path"] for _ in range(5)]
    assert paths == [f"/r{i}" for i in range(5)]
    client.close()


@pytest.mark.asyncio
async def test_a_pipelining_flood_is_read_no_faster_than_it_is_answered(
    server: NativeServer, app: App
) -> None:
    gate = asyncio.Event()
    app.respond = held_until(gate)
    client = await Client.connect(server)
    count = 30_000  # ~2.7 MB of requests: many reads' worth
    flood = asyncio.create_task(client.send(b"".join(post(path=f"/r{i}") for i in range(count))))
    await asyncio.sleep(0.2)
    (connection,) = server.connections
    # Reading paused once PIPELINE_DEPTH requests waited: what is queued came in one read
    # (at most 256 KiB, ~2,900 of these requests); the rest waits in the socket buffers.
    assert PIPELINE_DEPTH <= len(connection._queue) < 3_000
    gate.set()
    for i in range(count):
        assert (await client.reply()).json()["path"] == f"/r{i}"
    await flood
    client.close()


@pytest.mark.asyncio
async def test_a_chunked_body_is_joined_before_dispatch(server: NativeServer, app: App) -> None:
    client = await Client.connect(server)
    await client.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n'
    )
    await asyncio.sleep(0.01)
    assert app.seen == []  # not dispatched before the body is complete
    await client.send(b"3\r\n:1}\r\n0\r\n\r\n")
    assert (await client.reply()).status == 200
    assert app.seen[0].body == b'{"a":1}'
    client.close()


@pytest.mark.asyncio
async def test_the_handler_gets_the_decoded_path_without_the_query(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(b"GET /v1/models/ft%3Ax?limit=2 HTTP/1.1\r\nHost: t\r\n\r\n")
    await client.reply()
    assert (app.seen[0].method, app.seen[0].path) == ("GET", "/v1/models/ft:x")
    client.close()


@pytest.mark.asyncio
async def test_repeated_headers_are_joined_with_commas(server: NativeServer, app: App) -> None:
    client = await Client.connect(server)
    await client.send(post(extra="Cache-Control: no-cache\r\nCache-Control: max-age=5\r\n"))
    await client.reply()
    assert app.seen[0].headers["cache-control"] == "no-cache, max-age=5"
    client.close()


@pytest.mark.asyncio
async def test_head_gets_the_headers_of_the_answer_without_its_body(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n")
    reply = await client.reply(head_only=True)
    assert reply.status == 200 and int(reply.headers["content-length"]) > 0
    await client.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing left in between
    assert (await client.reply()).json()["path"] == "/health"
    client.close()


@pytest.mark.asyncio
async def test_connection_close_and_http_1_0_get_their_answer_then_the_close(
    server: NativeServer,
) -> None:
    for request in (
        post(extra="Connection: close\r\n"),
        b"POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
    ):
        client = await Client.connect(server)
        await client.send(request)
        reply = await client.reply()
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert await client.closed_by_server()
        client.close()


@pytest.mark.asyncio
async def test_expect_100_continue_gets_the_interim_answer_before_the_body(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    body = b'{"a":1}'
    await client.send(
        b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    assert (await client.reply()).status == 100
    await client.send(body)
    assert (await client.reply()).status == 200
    assert app.seen[0].body == body
    client.close()


@pytest.mark.asyncio
async def test_settle_runs_once_after_the_answer_is_written(server: NativeServer, app: App) -> None:
    settled: list[bool] = []

    async def with_settle(seen: Seen) -> Result:
        return Response(200, b"{}", settle=lambda: settled.append(True))

    app.respond = with_settle
    client = await Client.connect(server)
    await client.send(post())
    assert (await client.reply()).status == 200
    await asyncio.sleep(0)
    assert settled == [True]
    client.close()


@pytest.mark.asyncio
async def test_a_failing_answer_closes_that_connection_and_the_server_goes_on(
    server: NativeServer, app: App
) -> None:
    async def broken(seen: Seen) -> Result:
        return Response(200, "not bytes")  # type: ignore[arg-type]

    app.respond = broken
    client = await Client.connect(server)
    await client.send(post())
    assert await client.closed_by_server()
    client.close()
    app.respond = echo
    other = await Client.connect(server)
    await other.send(post())
    assert (await other.reply()).status == 200
    other.close()


# ---------------------------------------------------------------------- streams


def streaming(parts: list[bytes], closed: list[bool]) -> Respond:
    async def respond(seen: Seen) -> Result:
        async def chunks() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        async def aclose() -> None:
            closed.append(True)

        return StreamingResponse(chunks(), {"x-request-id": "s-1"}, aclose)

    return respond


@pytest.mark.asyncio
async def test_a_stream_is_sent_in_chunks_with_the_sse_headers(
    server: NativeServer, app: App
) -> None:
    closed: list[bool] = []
    events = [b'data: {"n":1}\n\n', b"", b"data: [DONE]\n\n"]
    app.respond = streaming(events, closed)
    client = await Client.connect(server)
    await client.send(post())
    reply = await client.reply()
    assert reply.body == b"".join(events)
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-request-id"] == "s-1"
    assert closed == [True]
    await client.send(post())  # the connection stays usable
    assert (await client.reply()).status == 200
    client.close()


@pytest.mark.asyncio
async def test_a_stream_ends_for_the_client_only_once_it_is_accounted(
    server: NativeServer, app: App
) -> None:
    """Regression: a streamed miss is stored in aclose(); a client that asked again as soon
    as its stream ended could miss the cache it had just filled."""
    release, closed = asyncio.Event(), []

    async def respond(seen: Seen) -> Result:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: [DONE]\n\n"

        async def aclose() -> None:
            await release.wait()  # storing the answer takes a turn of the loop or more
            closed.append(True)

        return StreamingResponse(chunks(), {}, aclose)

    app.respond = respond
    client = await Client.connect(server)
    await client.send(post())
    reply = asyncio.create_task(client.reply())
    await asyncio.sleep(0.05)
    assert not reply.done()  # the events are out, the end is not
    release.set()
    assert (await reply).body == b"data: [DONE]\n\n"
    assert closed == [True]
    client.close()


@pytest.mark.asyncio
async def test_an_http_1_0_client_reads_a_stream_to_the_close(
    server: NativeServer, app: App
) -> None:
    closed: list[bool] = []
    app.respond = streaming([b"data: 1\n\n", b"data: 2\n\n"], closed)
    client = await Client.connect(server)
    await client.send(b"POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    reply = await client.reply()
    assert "transfer-encoding" not in reply.headers
    assert reply.body == b"data: 1\n\ndata: 2\n\n"
    assert closed == [True]
    client.close()


@pytest.mark.asyncio
async def test_a_stream_larger_than_the_socket_buffers_waits_for_a_slow_reader(
    server: NativeServer, app: App
) -> None:
    closed: list[bool] = []
    parts = [bytes([65 + i % 26]) * 65536 for i in range(128)]  # 8 MiB
    app.respond = streaming(parts, closed)
    client = await Client.connect(server)
    await client.send(post())
    await asyncio.sleep(0.1)  # the server fills the buffers and must wait, not queue it all
    (connection,) = server.connections
    assert connection._drain is not None
    reply = await client.reply()
    assert reply.body == b"".join(parts)
    assert closed == [True]
    client.close()


@pytest.mark.asyncio
async def test_a_client_leaving_mid_stream_stops_it_and_releases_the_upstream(
    server: NativeServer, app: App
) -> None:
    closed: list[bool] = []
    sent = asyncio.Event()

    async def endless(seen: Seen) -> Result:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            sent.set()
            await asyncio.Event().wait()  # a silent upstream
            yield b"never"

        async def aclose() -> None:
            closed.append(True)

        return StreamingResponse(chunks(), {}, aclose)

    app.respond = endless
    client = await Client.connect(server)
    await client.send(post())
    await asyncio.wait_for(sent.wait(), 5)
    client.writer.transport.abort()
    await eventually(lambda: bool(closed))
    assert closed == [True]
    assert not server.connections


@pytest.mark.asyncio
async def test_a_client_leaving_cancels_its_pending_handler(server: NativeServer, app: App) -> None:
    started = asyncio.Event()

    async def hang_once_started(seen: Seen) -> Result:
        started.set()
        return await hang(seen)

    app.respond = hang_once_started
    client = await Client.connect(server)
    await client.send(post())
    await asyncio.wait_for(started.wait(), 5)
    client.close()
    await eventually(lambda: app.cancelled > 0)
    assert app.cancelled == 1


# ---------------------------------------------------------------------- bad input


@pytest.mark.asyncio
async def test_a_malformed_request_gets_a_400_in_the_error_shape_and_the_close(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(b"NOT HTTP AT ALL\r\n\r\n")
    reply = await client.reply()
    assert reply.status == 400
    error = reply.json()["error"]
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error" and error["code"] == "bad_request"
    assert reply.headers["connection"] == "close"
    assert await client.closed_by_server()
    assert app.seen == []
    client.close()


@pytest.mark.asyncio
async def test_a_bad_request_after_a_good_one_waits_for_the_good_answer(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(post(path="/ok") + b"POST /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    assert (await client.reply()).json()["path"] == "/ok"
    assert (await client.reply()).status == 400
    assert await client.closed_by_server()
    client.close()


@pytest.mark.asyncio
async def test_an_oversized_head_gets_431(server: NativeServer, app: App) -> None:
    client = await Client.connect(server)
    await client.send(post(extra=f"X-Big: {'a' * MAX_HEAD_BYTES}\r\n"))
    reply = await client.reply()
    assert reply.status == 431
    assert reply.json()["error"]["code"] == "request_header_fields_too_large"  # type: ignore[index]
    assert app.seen == []
    client.close()


@pytest.mark.asyncio
async def test_a_declared_body_over_the_limit_gets_413_without_being_read(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(
        f"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {LIMIT + 1}"
        "\r\n\r\n".encode()
    )
    reply = await client.reply()  # no 100 Continue first: the answer is final
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert reply.headers["connection"] == "close"
    assert await client.closed_by_server()
    client.close()


@pytest.mark.asyncio
async def test_a_chunked_body_growing_past_the_limit_gets_413_and_the_close(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    chunk = b"a" * 600
    await client.send(
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + encode(chunk)
        + encode(chunk)
    )
    reply = await client.reply()
    assert reply.status == 413
    assert await client.closed_by_server()
    assert app.seen == []
    client.close()


def encode(chunk: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(chunk), chunk)


@pytest.mark.asyncio
async def test_an_h2c_upgrade_is_ignored_and_its_body_still_read(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(
        post(
            path="/up",
            body=b'{"up":true}',
            extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n",
        )
        + post(path="/after")
    )
    first = await client.reply()
    assert first.status == 200 and first.json()["path"] == "/up"
    assert app.seen[0].body == b'{"up":true}'
    assert (await client.reply()).json()["path"] == "/after"  # HTTP/1.1 goes on
    client.close()


@pytest.mark.asyncio
async def test_connect_is_answered_and_the_connection_closed(
    server: NativeServer, app: App
) -> None:
    client = await Client.connect(server)
    await client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    reply = await client.reply()
    assert app.seen[0].method == "CONNECT"
    assert reply.headers["connection"] == "close"
    assert await client.closed_by_server()
    client.close()


# ---------------------------------------------------------------------- timeouts and shutdown


@pytest.mark.asyncio
async def test_an_idle_connection_closes_after_the_keep_alive_timeout(
    server: NativeServer,
) -> None:
    client = await Client.connect(server)
    await client.send(post())
    await client.reply()
    start = server.now
    server.sweep(start + KEEP_ALIVE_TIMEOUT_S - 1)
    await client.send(post())  # still open
    await client.reply()
    server.sweep(server.now + KEEP_ALIVE_TIMEOUT_S)
    assert await client.closed_by_server()
    client.close()


@pytest.mark.asyncio
async def test_a_request_that_stalls_gets_408(server: NativeServer, app: App) -> None:
    client = await Client.connect(server)
    await client.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{")
    await asyncio.sleep(0.01)
    server.sweep(server.now + REQUEST_TIMEOUT_S - 1)
    await client.send(b'"a":')  # still being read
    await asyncio.sleep(0.01)
    server.sweep(server.now + REQUEST_TIMEOUT_S)
    reply = await client.reply()
    assert reply.status == 408 and reply.json()["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert await client.closed_by_server()
    assert app.seen == []
    client.close()


@pytest.mark.asyncio
async def test_closing_finishes_the_request_in_flight_and_refuses_new_ones(app: App) -> None:
    server = NativeServer(app, max_body_bytes=LIMIT, drain_timeout_s=5.0)
    await server.start("127.0.0.1", 0, reuse_port=False, backlog=16)
    gate = asyncio.Event()
    app.respond = held_until(gate)
    busy = await Client.connect(server)
    idle = await Client.connect(server)
    closing = None
    try:
        await busy.send(post(path="/busy"))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(server.close())
        assert await idle.closed_by_server()
        with pytest.raises(OSError):
            await Client.connect(server)
        gate.set()
        reply = await busy.reply()
        assert reply.json()["path"] == "/busy" and reply.headers["connection"] == "close"
        assert await busy.closed_by_server()
        await asyncio.wait_for(closing, 5)
        assert app.cancelled == 0
    finally:
        gate.set()
        busy.close()
        idle.close()
        if closing is not None:
            await closing


@pytest.mark.asyncio
async def test_closing_cancels_what_outlives_the_drain_timeout(app: App) -> None:
    server = NativeServer(app, max_body_bytes=LIMIT, drain_timeout_s=0.05)
    await server.start("127.0.0.1", 0, reuse_port=False, backlog=16)

    app.respond = hang
    client = await Client.connect(server)
    try:
        await client.send(post())
        await asyncio.sleep(0.01)
        await server.close()
        assert app.cancelled == 1
        assert await client.closed_by_server()
    finally:
        client.close()


# ---------------------------------------------------------------------- the outbox


class FakeTransport:
    def __init__(self, name: str, log: list[str], *, broken: bool = False) -> None:
        self.name = name
        self.log = log
        self.broken = broken
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise OSError("broken pipe")
        self.log.append(f"{self.name} wrote {data.decode()}")

    def close(self) -> None:
        self.closing = True
        self.log.append(f"{self.name} closed")

    def abort(self) -> None:
        self.closing = True
        self.log.append(f"{self.name} aborted")

    def is_closing(self) -> bool:
        return self.closing


def transport(name: str, log: list[str], *, broken: bool = False) -> asyncio.Transport:
    return FakeTransport(name, log, broken=broken)  # type: ignore[return-value]


@pytest.mark.asyncio
async def test_an_answer_alone_is_written_and_settled_at_once() -> None:
    log: list[str] = []
    outbox = Outbox()
    outbox.send(transport("a", log), b"1", lambda: log.append("a settled"), batch=False)
    assert log == ["a wrote 1", "a settled"]


@pytest.mark.asyncio
async def test_batched_answers_are_written_together_then_settled() -> None:
    log: list[str] = []
    outbox = Outbox()
    a, b = transport("a", log), transport("b", log)
    outbox.send(a, b"1", lambda: log.append("a settled"), batch=True)
    outbox.send(b, b"2", lambda: log.append("b settled"), batch=True)
    assert log == []
    await asyncio.sleep(0)  # the end of the loop's turn
    assert log == ["a wrote 1", "b wrote 2", "a settled", "b settled"]


@pytest.mark.asyncio
async def test_once_anything_waits_every_write_and_close_waits_behind_it() -> None:
    log: list[str] = []
    outbox = Outbox()
    a = transport("a", log)
    outbox.send(a, b"1", None, batch=True)
    outbox.send(a, b"2", None, batch=False)  # would go at once, but must not pass "1"
    outbox.send(transport("b", log), b"3", None, batch=True)
    outbox.send(a, b"4", None, batch=True)
    outbox.close(a)
    assert log == []
    await asyncio.sleep(0)
    # what follows in a row for one connection goes in one write
    assert log == ["a wrote 12", "b wrote 3", "a wrote 4", "a closed"]
    outbox.close(transport("b", log))  # nothing waiting: at once
    assert log[-1] == "b closed"


@pytest.mark.asyncio
async def test_a_gone_client_or_a_broken_socket_still_settles_every_answer() -> None:
    log: list[str] = []
    outbox = Outbox()
    gone, broken, fine = (
        transport("gone", log),
        transport("broken", log, broken=True),
        transport("fine", log),
    )
    gone.close()
    log.clear()

    def failing_settle() -> None:
        log.append("broken settled")
        raise RuntimeError("bookkeeping bug")

    outbox.send(gone, b"1", lambda: log.append("gone settled"), batch=True)
    outbox.send(broken, b"2", failing_settle, batch=True)
    outbox.send(fine, b"3", lambda: log.append("fine settled"), batch=True)
    await asyncio.sleep(0)
    assert log == [
        "broken aborted",
        "fine wrote 3",
        "gone settled",
        "broken settled",
        "fine settled",
    ]


@pytest.mark.asyncio
async def test_answers_ready_together_are_all_delivered_and_settled(
    server: NativeServer, app: App
) -> None:
    gate, all_in = asyncio.Event(), asyncio.Event()
    settled: list[str] = []

    async def held(seen: Seen) -> Result:
        if len(app.seen) == 5:
            all_in.set()
        await gate.wait()
        return Response(200, b"{}", {"x-path": seen.path}, settle=lambda: settled.append(seen.path))

    app.respond = held
    clients = [await Client.connect(server) for _ in range(5)]
    for i, client in enumerate(clients):
        await client.send(post(path=f"/c{i}"))
    await asyncio.wait_for(all_in.wait(), 5)
    assert server.in_flight == 5
    gate.set()  # five answers ready in one turn: written together
    for i, client in enumerate(clients):
        assert (await client.reply()).headers["x-path"] == f"/c{i}"
        client.close()
    assert sorted(settled) == [f"/c{i}" for i in range(5)]
    assert server.in_flight == 0


@pytest.mark.asyncio
async def test_the_in_flight_count_returns_to_zero_when_clients_leave_mid_request(
    server: NativeServer, app: App
) -> None:
    gate = asyncio.Event()
    app.respond = held_until(gate)
    # (Fewer than PIPELINE_DEPTH: past it reading pauses, and a client that leaves is
    # noticed at the next write instead.)
    for pipelined in (1, 3, PIPELINE_DEPTH - 1):
        client = await Client.connect(server)
        await client.send(b"".join(post(path=f"/p{i}") for i in range(pipelined)))
        await asyncio.sleep(0.02)
        assert server.in_flight == pipelined
        client.writer.transport.abort()
        await eventually(lambda: not server.connections)
        assert server.in_flight == 0
    gate.set()
