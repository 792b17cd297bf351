"""The granian engine: an RSGI application around the ``Dispatcher``.

granian (a Rust HTTP server) parses HTTP and manages worker processes; each worker runs
this application on uvloop. ``__rsgi_init__`` builds the gateway before the worker takes
traffic, ``__rsgi_del__`` flushes and closes it after granian has drained in-flight
requests. A client that disconnects cancels its handler (and so its upstream request)
through the protocol's ``client_disconnect`` future, as aiohttp's handler cancellation does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Mapping
from typing import Any

from ..config import Config
from ..observability.logs import get_logger, setup_logging
from ..pipeline.gateway import Gateway
from ..pipeline.responses import SSE, StreamingResponse
from .dispatch import Dispatcher, freeze_startup_heap, read_limited

SSE_HEADERS = [("content-type", SSE), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]


class RsgiBody:
    __slots__ = ("_proto", "content_length")

    def __init__(self, proto: Any, headers: Mapping[str, str]) -> None:
        self._proto = proto
        length = headers.get("content-length")
        self.content_length = int(length) if length and length.isdigit() else None

    def read(self, limit: int) -> Awaitable[bytes]:
        if self.content_length is not None:
            # granian's own awaitable, not wrapped in a coroutine of ours (one less a request)
            body: Awaitable[bytes] = self._proto()
            return body
        return read_limited(self._proto, limit)


class RsgiApp:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._gateway: Gateway | None = None
        self._dispatcher: Dispatcher | None = None
        self._metrics_listener: Any = None
        self._closed: Any = None  # granian's ProtocolClosed, imported with granian
        self._in_flight = 0  # requests this worker is handling

    def __repr__(self) -> str:
        return f"RsgiApp({self._gateway!r})"

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]

        from .aiohttp_engine import start_metrics_listener

        obs = self.config.observability
        setup_logging(obs.log_level, obs.log_format)
        self._closed = ProtocolClosed
        gateway = self._gateway = Gateway(self.config)
        loop.run_until_complete(gateway.start())
        self._dispatcher = Dispatcher(gateway)
        s = self.config.server
        if s.metrics_port and obs.enable_metrics:
            # Every worker tries the port; the first one to bind serves it.
            self._metrics_listener = loop.run_until_complete(
                start_metrics_listener(gateway, s.host, s.metrics_port, quiet=s.workers > 1)
            )
        freeze_startup_heap()
        get_logger().info(
            f"worker listening on http://{s.host}:{s.port}",
            extra={"fields": {"pid": os.getpid(), "engine": "granian"}},
        )

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._metrics_listener is not None:
            loop.run_until_complete(self._metrics_listener.cleanup())
        if self._gateway is not None:
            loop.run_until_complete(self._gateway.close())
        get_logger().info("worker stopped", extra={"fields": {"pid": os.getpid()}})

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        dispatcher = self._dispatcher
        assert dispatcher is not None, "granian did not call __rsgi_init__"
        headers = scope.headers
        self._in_flight += 1
        try:
            result = await dispatcher.handle(
                scope.method, scope.path, headers, RsgiBody(proto, headers)
            )
            if isinstance(result, StreamingResponse):
                await self._stream(proto, result)
                return
            result.headers["content-type"] = result.content_type
            try:
                proto.response_bytes(result.status, list(result.headers.items()), result.body)
            finally:
                if result.settle is not None:
                    if self._in_flight == 1:
                        # Alone in this worker: let granian's I/O thread, which shares the
                        # core, write the answer before the bookkeeping runs. Otherwise the
                        # client waits for it too (measured: ~0.04 ms at low rates). Under
                        # load the I/O thread gets its turn anyway, and a yield per
                        # request would only add context switches.
                        os.sched_yield()
                    result.settle()
        finally:
            self._in_flight -= 1

    async def _stream(self, proto: Any, result: StreamingResponse) -> None:
        # A client that leaves mid-stream cancels this task, and so the upstream read it is
        # waiting on, even while the upstream is silent (a send would notice only at the
        # next chunk). Watched for streams only: in granian 2.8 each ``client_disconnect()``
        # future of a plain response stays alive until its keep-alive connection closes
        # (~1 KiB a request: measured, RSS grew without bound under load).
        task = asyncio.current_task()
        assert task is not None
        disconnected = proto.client_disconnect()

        def on_disconnect(_: Any) -> None:
            task.cancel()

        disconnected.add_done_callback(on_disconnect)
        try:
            transport = proto.response_stream(
                result.status, [*result.headers.items(), *SSE_HEADERS]
            )
            async for chunk in result.chunks:
                await transport.send_bytes(chunk)
        except self._closed:
            pass  # the client left; aclose() below releases the upstream
        except asyncio.CancelledError:
            if not disconnected.done():
                raise  # not the client leaving: a shutdown
        finally:
            disconnected.remove_done_callback(on_disconnect)
            await result.aclose()


def serve_granian(config: Config) -> int:
    """Run granian with ``config.server.workers`` processes; returns the exit code."""
    from granian import Granian
    from granian.constants import Interfaces, Loops, RuntimeModes
    from granian.log import LogLevels

    app = RsgiApp(config)

    def load(*_args: Any, **_kwargs: Any) -> RsgiApp:
        return app

    s = config.server
    server = Granian(
        target="llm_edge_agent",  # unused: load() hands granian the application
        address=s.host,
        port=s.port,
        interface=Interfaces.RSGI,
        workers=s.workers,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        backlog=2048,
        log_level=LogLevels.warning,
        log_access=False,
        websockets=False,
        respawn_failed_workers=True,
        workers_kill_timeout=max(1, round(s.drain_timeout_s)),
    )
    try:
        server.serve(target_loader=load, wrap_loader=False)  # type: ignore[arg-type]
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except RuntimeError as exc:  # granian's bind errors carry a Rust backtrace: keep line 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        get_logger().error(
            f"cannot listen on {s.host}:{s.port}: {reason}",
            extra={"fields": {"host": s.host, "port": s.port}},
        )
        return 1
    return 0
