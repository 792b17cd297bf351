"""Runs the gateway: in this process for one worker, or as a supervisor of N processes.

Workers are separate processes (spawned, so each starts clean) listening on the same port
with ``SO_REUSEPORT``; the kernel spreads connections across them. The supervisor owns
the metrics directory every worker writes to, forwards SIGTERM/SIGINT, waits for the
workers to drain, restarts a worker that dies unexpectedly, and exits 0 after a clean
shutdown (non-zero when workers cannot start).
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from ..config import Config
from ..observability.logs import get_logger, setup_logging
from ..observability.metrics import MULTIPROC_ENV
from .worker import EXIT_STARTUP_FAILED, run_worker

RESTART_DELAY_S = 1.0
STOP_GRACE_S = 5.0


def prepare_metrics_dir() -> str | None:
    """Give every worker the same, empty multiprocess directory; returns one to remove."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        os.makedirs(existing, exist_ok=True)
        for path in glob.glob(os.path.join(existing, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # another process sharing the dir
                os.remove(path)
        return None
    created = tempfile.mkdtemp(prefix="llm-edge-metrics-")
    os.environ[MULTIPROC_ENV] = created
    return created


def serve(config: Config) -> int:
    log = setup_logging(config.observability.log_level, config.observability.log_format)
    created = prepare_metrics_dir()
    try:
        if not config.providers:
            log.warning(
                "no provider is configured: requests will get 503 until a provider key "
                "(e.g. OPENAI_API_KEY) or a config file with [[providers]] is given"
            )
        if not config.auth.api_keys:
            log.warning(
                "client authentication is OFF: anyone who can reach this port can use the "
                "configured providers; set [auth] api_keys to require keys"
            )
        if config.server.engine == "granian":
            from .rsgi import serve_granian

            return serve_granian(config)
        if config.server.workers == 1:
            return run_worker(config, 0)
        return Supervisor(config).run()
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)


def _worker_main(config: Config, index: int, parent_pid: int) -> None:
    raise SystemExit(run_worker(config, index, parent_pid))


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._stopping = False
        self._stop_deadline = 0.0

    def __repr__(self) -> str:
        return f"Supervisor(workers={len(self._workers)}, stopping={self._stopping})"

    def _start(self, index: int) -> None:
        process = self._ctx.Process(
            target=_worker_main,
            args=(self.config, index, os.getpid()),
            name=f"llm-edge-agent-worker-{index}",
            daemon=False,
        )
        process.start()
        self._workers[index] = process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = (
                time.monotonic() + self.config.server.drain_timeout_s + STOP_GRACE_S
            )
            for process in self._workers.values():
                if process.pid is not None and process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        log = get_logger()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.config.server.workers):
            self._start(index)
        log.info(
            f"supervisor started {self.config.server.workers} workers",
            extra={"fields": {"pid": os.getpid()}},
        )
        exit_code = 0
        while self._workers:
            if self._stopping and time.monotonic() > self._stop_deadline:
                for process in self._workers.values():
                    process.kill()
            sentinels = {p.sentinel: i for i, p in self._workers.items()}
            for sentinel in wait(list(sentinels), timeout=1.0):
                index = sentinels[sentinel]  # type: ignore[index]
                process = self._workers.pop(index)
                process.join()
                from ..observability.metrics import mark_process_dead

                if process.pid is not None:
                    mark_process_dead(process.pid)
                code = process.exitcode
                if self._stopping:
                    if code not in (0, None, -signal.SIGTERM):
                        exit_code = 1
                    continue
                if code == EXIT_STARTUP_FAILED:
                    log.error("a worker could not start; stopping")
                    exit_code = 1
                    self._on_signal(signal.SIGTERM, None)
                    continue
                log.error(
                    f"worker {index} exited unexpectedly (code {code}); restarting",
                    extra={"fields": {"worker": index}},
                )
                time.sleep(RESTART_DELAY_S)
                if not self._stopping:
                    self._start(index)
        return exit_code
