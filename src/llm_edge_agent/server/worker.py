"""One worker process: an event loop (uvloop), a ``Gateway`` and its listeners.

SIGTERM/SIGINT start a graceful shutdown: stop accepting, let in-flight requests and
streams finish (up to ``server.drain_timeout_s``), flush logs, close the pool, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Protocol

from aiohttp import web

from ..config import Config
from ..observability.logs import get_logger, setup_logging
from ..pipeline.gateway import Gateway
from .aiohttp_engine import create_server, start_metrics_listener
from .dispatch import Dispatcher, freeze_startup_heap
from .native import NativeServer

EXIT_STARTUP_FAILED = 3
PARENT_CHECK_INTERVAL_S = 1.0
LISTEN_BACKLOG = 2048


async def _run(config: Config, index: int, parent_pid: int | None) -> int:
    log = get_logger()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    gateway = Gateway(config)
    await gateway.start()
    s = config.server
    dispatcher = Dispatcher(gateway)
    listener: Listener = (
        NativeServer(
            dispatcher.handle,
            max_body_bytes=gateway.max_body_bytes,
            drain_timeout_s=s.drain_timeout_s,
        )
        if s.engine == "native"
        else AiohttpListener(dispatcher, s.drain_timeout_s)
    )
    metrics_runner: web.ServerRunner | None = None
    try:
        await listener.start(s.host, s.port, reuse_port=s.workers > 1, backlog=LISTEN_BACKLOG)
        if index == 0 and s.metrics_port and config.observability.enable_metrics:
            metrics_runner = await start_metrics_listener(gateway, s.host, s.metrics_port)
    except OSError as exc:
        log.error(
            f"cannot listen on {s.host}:{s.port}: {exc.strerror}",
            extra={"fields": {"host": s.host, "port": s.port}},
        )
        await listener.close()
        await gateway.close()
        return EXIT_STARTUP_FAILED

    freeze_startup_heap()
    log.info(
        f"worker {index} listening on http://{s.host}:{s.port}",
        extra={"fields": {"worker": index, "pid": os.getpid(), "engine": s.engine}},
    )
    watchdog = (
        asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    )
    await stop.wait()
    log.info("shutting down: draining in-flight requests", extra={"fields": {"worker": index}})
    if watchdog is not None:
        watchdog.cancel()
    await listener.close()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await gateway.close()
    log.info("worker stopped", extra={"fields": {"worker": index}})
    return 0


class Listener(Protocol):
    async def start(self, host: str, port: int, *, reuse_port: bool, backlog: int) -> None: ...

    async def close(self) -> None:
        """Stop accepting; let in-flight requests finish (up to the drain timeout)."""
        ...


class AiohttpListener:
    def __init__(self, dispatcher: Dispatcher, drain_timeout_s: float) -> None:
        self._dispatcher = dispatcher
        self._drain_timeout_s = drain_timeout_s
        self._runner: web.ServerRunner | None = None

    def __repr__(self) -> str:
        return f"AiohttpListener({self._runner!r})"

    async def start(self, host: str, port: int, *, reuse_port: bool, backlog: int) -> None:
        self._runner = web.ServerRunner(
            create_server(self._dispatcher), shutdown_timeout=self._drain_timeout_s
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_port=reuse_port, backlog=backlog).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Exit with the supervisor: a worker whose parent died must not linger."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - polling the parent pid has no event
        await asyncio.sleep(PARENT_CHECK_INTERVAL_S)
    stop.set()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(config: Config, index: int = 0, parent_pid: int | None = None) -> int:
    setup_logging(config.observability.log_level, config.observability.log_format)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        code = runner.run(_run(config, index, parent_pid))
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return code
