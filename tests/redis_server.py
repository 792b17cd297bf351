"""A real, throwaway ``redis-server`` for tests: loopback only, no persistence.

``RedisServer()`` picks a free port; ``start()`` launches the server and returns once it
answers PING; ``stop()`` kills it (SIGKILL, like a crash); ``start()`` again brings it back
on the same port, empty; ``freeze()``/``thaw()`` (SIGSTOP/SIGCONT) make it hang and resume. ``scripts/ensure-redis`` installs the server on a fresh machine:
the tests need it and never skip.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

START_TIMEOUT_S = 10.0
PING_INTERVAL_S = 0.005


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True if a Redis server on this loopback port answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    __slots__ = ("_dir", "_proc", "executable", "port")

    def __init__(self, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: run scripts/ensure-redis")
        self.executable = executable
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(port={self.port}, {state})"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="llm-edge-redis-")
        # fmt: off
        args = [
            self.executable,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            "--dir", self._dir.name, "--daemonize", "no", "--loglevel", "warning",
        ]
        # fmt: on
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping(self.port):
            if self._proc.poll() is not None:
                output = (
                    self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                )
                self._proc = None
                raise RuntimeError(f"redis-server exited on port {self.port}:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(PING_INTERVAL_S)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open and nothing answers, as with a hung host."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server (no shutdown handshake, as in a crash) and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
