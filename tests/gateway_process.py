"""Run the real gateway (``python -m llm_edge_agent serve``) as a subprocess on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from .fake_upstream import free_port

START_TIMEOUT_S = 20.0


class GatewayProcess:
    def __init__(
        self,
        config: str | None,
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        metrics_port: int = 0,
        args: tuple[str, ...] = (),
        cache: bool = False,
        resilience: bool = False,
    ) -> None:
        # Most tests send the same prompt again and again and expect the upstream to see
        # each one: they run with the response cache off unless they ask for it (or their
        # config has a [cache] table of its own).
        if config is not None and not cache and "[cache]" not in config:
            config += "\n[cache]\nenabled = false\n"
        # Likewise, tests of error mapping expect each failure to reach the client as it
        # is: no retries, no circuit opening halfway through a module, no 429 cooldown
        # (a longer Retry-After than the cap is not waited for). The resilience
        # tests ask for it (or bring their own [resilience] table).
        if config is not None and not resilience and "[resilience]" not in config:
            config += (
                "\n[resilience]\nmax_retries = 0\nbreaker_failure_threshold = 1000000\n"
                "retry_after_max_s = 0\n"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="llm-edge-test-")
        self.config_path: str | None = None
        if config is not None:
            self.config_path = str(Path(self._dir.name) / "gateway.toml")
            Path(self.config_path).write_text(config)
        self.log_path = Path(self._dir.name) / "gateway.log"
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_API_KEY") and not k.startswith(("LLM_EDGE", "PROMETHEUS"))
        }
        full_env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WORKERS": str(workers),
                "METRICS_PORT": str(metrics_port),
                "LOG_FORMAT": "json",
                **(env or {}),
            }
        )
        command = [sys.executable, "-m", "llm_edge_agent", "serve", *args]
        engine = os.environ.get("LLM_EDGE_TEST_ENGINE")
        if engine:
            command += ["--engine", engine]
        if self.config_path:
            command += ["--config", self.config_path]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self._dir.name
        )
        self._wait_ready(workers)

    def _wait_ready(self, workers: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                live = httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200
                if live and (workers == 1 or self.log().count("listening on") >= workers):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, object]]:
        import orjson

        out = []
        for line in self.log().splitlines():
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                out.append(parsed)
        return out

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()
