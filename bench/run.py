"""One-command benchmark: throughput and added latency of proxies over a fake upstream.

    python bench/run.py [--targets aiohttp,granian,uvicorn,gateway] [--duration 10]
                        [--rate 200] [--out FILE] [--json FILE]

For each target: start the fake upstream (bench/upstream.py) pinned to the load core,
start the target pinned to the target core, check one normal and one streaming request
through it, then measure
  * throughput with wrk (-t1 -c64, unique prompts), non-streaming and streaming,
  * latency at a fixed open-loop rate with bench/rate.py, directly against the upstream
    and through the target, interleaved, so that added = target - direct (p50, p99),
    for non-streaming requests (whole response) and streaming (time to first byte),
  * the target's RSS after the run (VmRSS summed over its process tree, and the
    largest single process: the worker),
  * for targets that answer from their cache, the same fixed-rate latency against a
    second fake upstream pinned to the target's own core ("local"): a cache hit makes no
    upstream call, so hit minus local is what answering from the gateway costs, without
    the cross-core wake-up that "direct" (client and upstream share a core) never pays,
then stop it and print a markdown report: machine, versions, commands and the table.

The load generators run on the same core as the upstream, which is much cheaper per
request than any target, so the target's core is the bottleneck. Timings on shared
cores are noisy: compare ratios within one run.

Targets live in a small registry (TARGETS below); add an entry to benchmark something
else (a gateway with its cache on, LiteLLM, ...). Cache targets that cycle over a set of
prompts (`gateway-l1`, `gateway-l2`) pre-warm the set first; those with a Redis L2 start
their own redis-server (loopback, free port, no persistence) pinned to the load core; for
cache targets the report also gives the cache lookups (L1/L2 hits, misses) per request,
read from the gateway's /metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Child processes run with cwd=ROOT, so paths are relative to it (shorter in the report).
BENCH = Path("bench")
WRK_SCRIPT = BENCH / "wrk" / "chat.lua"
CHAT_PATH = "/v1/chat/completions"
PYTHON = sys.executable


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetContext:
    """What a target needs to know to start: its port, the upstream's, a scratch dir.

    ``stack`` closes with the target's run: a ``prepare`` hook that starts a helper
    process (a redis-server) registers its cleanup there. ``load_core`` is where such
    helpers run (with the upstream and the load generators), None when not pinning.
    """

    port: int
    upstream_port: int
    workdir: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    load_core: str | None = None
    # Adds a helper's command to the report's list of commands.
    record: Callable[[Sequence[str]], None] | None = None

    @property
    def upstream_origin(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    command: Callable[[TargetContext], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[TargetContext], None] | None = None
    health_path: str = "/health/live"
    startup_timeout: float = 30.0
    # Same prompt on every request (to measure cache hits) instead of unique prompts.
    fixed_prompt: bool = False
    # > 0: cycle over this many prompts (sent once each before the measurements, so
    # every measured request is a cache hit) instead of unique prompts.
    prompt_set: int = 0
    # Report cache lookups per request (L1/L2 hits, misses) from GET /metrics.
    cache_metrics: bool = False
    # Answers from its cache: also measure latency against a server on the target's core.
    local_reference: bool = False


def passthrough(name: str, script: str, description: str) -> Target:
    def command(ctx: TargetContext) -> list[str]:
        return [
            PYTHON,
            str(BENCH / "passthrough" / script),
            "--port",
            str(ctx.port),
            "--upstream",
            ctx.upstream_origin,
        ]

    return Target(name=name, description=description, command=command)


GATEWAY_CONFIG = """\
[[providers]]
name = "bench"
type = "{provider_type}"
base_url = "http://127.0.0.1:{upstream_port}{base_path}"
api_key = "sk-bench"
models = ["*"]

[cache]
enabled = {cache}
"""
# Request log lines on (the default): their cost is part of the gateway's.
GATEWAY_ENV = {"METRICS_PORT": "0", "LOG_LEVEL": "info"}


def gateway_config(
    upstream_port: int,
    cache: bool,
    provider_type: str = "openai_compatible",
    max_entries: int | None = None,
    redis_url: str | None = None,
) -> str:
    """The gateway's TOML config: one provider at the fake upstream, the cache as asked."""
    text = GATEWAY_CONFIG.format(
        upstream_port=upstream_port,
        cache=str(cache).lower(),
        provider_type=provider_type,
        base_path="" if provider_type == "anthropic" else "/v1",
    )
    if max_entries is not None:
        text += f"max_entries = {max_entries}\n"
    if redis_url is not None:
        text += f'\n[cache.redis]\nurl = "{redis_url}"\n'
    return text


def gateway_command(config: Path, port: int, workers: int = 1, engine: str = "native") -> list[str]:
    return [
        PYTHON,
        "-m",
        "llm_edge_agent",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--engine",
        engine,
    ]


def gateway(
    name: str,
    cache: bool,
    description: str,
    engine: str = "native",
    provider_type: str = "openai_compatible",
    *,
    redis: bool = False,
    max_entries: int | None = None,
    prompt_set: int = 0,
    unique: bool = False,
) -> Target:
    """A gateway target. With the cache on it sends one fixed prompt (L1 hits), unless
    ``prompt_set`` (cycle over that many pre-warmed prompts) or ``unique`` (misses)."""
    config_name = f"{name}.toml"

    def prepare(ctx: TargetContext) -> None:
        redis_url = None
        if redis:
            redis_proc, redis_url = ctx.stack.enter_context(
                redis_server(ctx.workdir, ctx.load_core, f"{name}-redis")
            )
            if ctx.record is not None:
                ctx.record(redis_proc.argv)
        text = gateway_config(ctx.upstream_port, cache, provider_type, max_entries, redis_url)
        (ctx.workdir / config_name).write_text(text)

    def command(ctx: TargetContext) -> list[str]:
        return gateway_command(ctx.workdir / config_name, ctx.port, engine=engine)

    return Target(
        name=name,
        description=description,
        command=command,
        prepare=prepare,
        env=dict(GATEWAY_ENV),
        fixed_prompt=cache and not prompt_set and not unique,
        prompt_set=prompt_set,
        cache_metrics=cache,
        local_reference=cache and not unique,
    )


# Prompts cycled by the gateway-l1 / gateway-l2 targets: more than an L1 of one entry can
# hold, few enough to pre-warm in a second.
PROMPT_SET = 256


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        passthrough(
            "aiohttp", "aiohttp_web.py", "bare pass-through, aiohttp.web server + aiohttp client"
        ),
        passthrough(
            "granian", "granian_rsgi.py", "bare pass-through, granian RSGI (1 worker) + aiohttp"
        ),
        passthrough(
            "uvicorn",
            "uvicorn_asgi.py",
            "bare pass-through, uvicorn (httptools) raw ASGI + aiohttp",
        ),
        gateway(
            "gateway", cache=False, description="llm_edge_agent, cache off (every request a miss)"
        ),
        gateway(
            "gateway-granian",
            cache=False,
            engine="granian",
            description="llm_edge_agent on the granian (RSGI) engine, cache off",
        ),
        gateway(
            "gateway-aiohttp",
            cache=False,
            engine="aiohttp",
            description="llm_edge_agent on the aiohttp.web engine, cache off",
        ),
        gateway(
            "gateway-anthropic",
            cache=False,
            provider_type="anthropic",
            description="llm_edge_agent translating to an Anthropic-dialect upstream, cache off",
        ),
        # Same prompt every request with the cache on: after the first, L1 hits.
        gateway("gateway-cached", cache=True, description="llm_edge_agent, cache on, L1 hits"),
        # The L1/L2 pair below cycle over the same pre-warmed prompts: only the tier that
        # answers differs. An L2 hit refills L1, so for L2 hits the L1 holds one entry and
        # the next prompt of the cycle is always elsewhere (in Redis).
        gateway(
            "gateway-l1",
            cache=True,
            prompt_set=PROMPT_SET,
            description=(
                f"llm_edge_agent, cache on, {PROMPT_SET} pre-warmed prompts cycled: L1 hits"
            ),
        ),
        gateway(
            "gateway-l2",
            cache=True,
            redis=True,
            max_entries=1,
            prompt_set=PROMPT_SET,
            description=(
                f"llm_edge_agent, cache on, L1 of 1 entry + Redis L2, {PROMPT_SET} pre-warmed "
                "prompts cycled: L2 hits"
            ),
        ),
        gateway(
            "gateway-l1-miss",
            cache=True,
            unique=True,
            description=(
                "llm_edge_agent, cache on, L1 only, unique prompts: every request misses "
                "and is stored"
            ),
        ),
        gateway(
            "gateway-l2-miss",
            cache=True,
            redis=True,
            unique=True,
            description=(
                "llm_edge_agent, cache on with Redis L2, unique prompts: every request misses "
                "both tiers and is stored in both"
            ),
        ),
    )
}
DEFAULT_TARGETS = "aiohttp,granian,uvicorn,gateway,gateway-granian,gateway-aiohttp"


# --------------------------------------------------------------------------- processes


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: str | None, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if core is not None else list(argv)


def display(argv: Sequence[str]) -> str:
    """The command as a person would type it (in the project's venv, from its root)."""
    return shlex.join("python" if a == PYTHON else a for a in argv)


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group it leads, then SIGKILL what is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Children (e.g. granian's worker) may outlive the leader: kill the group by id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def start(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Process:
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    # Run from the source tree whether or not the package is installed.
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=full_env,
            start_new_session=True,
        )
    return Process(name=name, argv=argv, log=log, popen=popen)


def wait_healthy(proc: Process, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(
                f"{proc.name} exited with code {proc.popen.returncode} before it was ready "
                f"(command: {display(proc.argv)})\n--- {proc.log} ---\n{proc.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
                last_error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise BenchError(
        f"{proc.name} did not answer 200 on GET {url} within {timeout:.0f} s ({last_error})"
        f"\ncommand: {display(proc.argv)}\n--- {proc.log} ---\n{proc.log_tail()}"
    )


def smoke_check(base_url: str) -> None:
    """One normal and one streaming completion must work before load is applied."""
    for stream in (False, True):
        payload: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"smoke check {time.time_ns()}"}],
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        req = urllib.request.Request(
            base_url + CHAT_PATH,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
            method="POST",
        )
        kind = "streaming" if stream else "non-streaming"
        try:
            with urllib.request.urlopen(req, timeout=10.0) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise BenchError(f"{kind} smoke request failed: HTTP {exc.code}: {detail}") from exc
        except OSError as exc:
            raise BenchError(f"{kind} smoke request failed: {exc}") from exc
        ok = b"[DONE]" in body if stream else b'"choices"' in body
        if not ok:
            raise BenchError(f"{kind} smoke request: unexpected body {body[:300]!r}")


def chat_request(base_url: str, prompt: str, timeout: float = 10.0) -> tuple[int, str]:
    """POST one non-streaming completion; its status and ``x-llm-edge-cache`` header."""
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    req = urllib.request.Request(
        base_url + CHAT_PATH,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status, resp.headers.get("x-llm-edge-cache", "")
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, exc.headers.get("x-llm-edge-cache", "")


# One prompt of a cycled set: bench/wrk/chat.lua (-- keys=N) and bench/rate.py (--prompts N)
# build the same text, so one pre-warm pass serves both.
SET_PROMPT = "Benchmark prompt {nonce}-k{index}: say hello."


def prewarm(base_url: str, nonce: str, count: int) -> dict[str, int]:
    """Send each prompt of the set once (so the cache holds them all); header counts."""
    seen: dict[str, int] = {}
    for index in range(count):
        status, cache = chat_request(base_url, SET_PROMPT.format(nonce=nonce, index=index))
        if status != 200:
            raise BenchError(f"pre-warm request {index} failed: HTTP {status}")
        seen[cache] = seen.get(cache, 0) + 1
    return seen


# The gateway's cache counters (prometheus text format, merged over its workers).
CACHE_SERIES = {
    'llm_edge_cache_hits_total{tier="l1"}': "hit_l1",
    'llm_edge_cache_hits_total{tier="l2"}': "hit_l2",
    'llm_edge_cache_misses_total{tier="l1"}': "miss_l1",
    'llm_edge_cache_misses_total{tier="l2"}': "miss_l2",
    # A Redis operation that failed or timed out (op timeout 50 ms, which under overload
    # includes waiting for the worker's event loop): L2 is skipped until a PING answers.
    "llm_edge_cache_l2_outages_total": "l2_outages",
}


def cache_counters(base_url: str) -> dict[str, float]:
    """L1/L2 hit and miss counts (and L2 outages) so far, from ``GET /metrics``."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10.0) as resp:
        text = resp.read().decode(errors="replace")
    counts = dict.fromkeys(CACHE_SERIES.values(), 0.0)
    for line in text.splitlines():
        if line.startswith("llm_edge_cache_"):
            series, _, value = line.rpartition(" ")
            name = CACHE_SERIES.get(series.replace(" ", ""))
            if name is not None:
                counts[name] += float(value)
    return counts


def counter_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(
    workdir: Path, core: str | None, name: str = "redis"
) -> Iterator[tuple[Process, str]]:
    """A private redis-server (loopback, free port, no persistence) and its URL.

    Like tests/redis_server.py; killed on exit, whatever happens.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise BenchError("redis-server not found (scripts/ensure-redis installs it)")
    port = free_port()
    data_dir = workdir / f"{name}-data"
    data_dir.mkdir(exist_ok=True)
    # fmt: off
    argv = pinned(core, [
        executable,
        "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no",
        "--dir", str(data_dir), "--daemonize", "no", "--loglevel", "warning",
    ])
    # fmt: on
    proc = start(name, argv, workdir)
    try:
        deadline = time.monotonic() + 10.0
        while not redis_ping(port):
            if proc.popen.poll() is not None:
                raise BenchError(f"redis-server exited:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server did not answer PING on port {port}")
            time.sleep(0.01)
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


def upstream_served(upstream_port: int) -> int:
    """How many chat completions the fake upstream has answered so far."""
    url = f"http://127.0.0.1:{upstream_port}/stats"
    with urllib.request.urlopen(url, timeout=5.0) as resp:
        served: int = json.loads(resp.read())["chat_completions"]
        return served


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    i = 0
    while i < len(pids):
        task_dir = Path(f"/proc/{pids[i]}/task")
        with contextlib.suppress(OSError):
            for task in task_dir.iterdir():
                with contextlib.suppress(OSError):
                    pids.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return pids


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS of pid and all its descendants, and of the largest one (a worker), in MiB."""
    sizes = []
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
    return sum(sizes) / 1024, max(sizes, default=0) / 1024


# --------------------------------------------------------------------------- load


@dataclass
class Config:
    duration: int
    rate: float
    rate_duration: float
    warmup: int
    connections: int
    target_core: str | None
    load_core: str | None
    upstream_latency_ms: float
    commands: list[str] = field(default_factory=list)

    def record(self, argv: Sequence[str]) -> None:
        self.commands.append(display(argv))


def run_wrk(
    cfg: Config,
    url: str,
    seconds: int,
    stream: bool,
    fixed: bool,
    core: str | None,
    keys: int = 0,
    nonce: str | None = None,
) -> dict[str, Any]:
    """wrk's summary; ``keys`` > 0 cycles over that many prompts (with a given nonce)."""
    nonce = nonce or f"{time.time_ns():x}"
    argv = pinned(
        core,
        [
            "wrk",
            "-t1",
            f"-c{cfg.connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            f"nonce={nonce}",
            *(["stream"] if stream else []),
            *(["fixed"] if fixed else []),
            *([f"keys={keys}"] if keys > 0 else []),
        ],
    )
    cfg.record(argv)
    out = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=seconds + 60, cwd=ROOT
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["error_count"] = sum(data["errors"].values())
            return data
    raise BenchError(f"wrk gave no summary (rc {out.returncode}):\n{out.stdout}\n{out.stderr}")


def run_rate(
    cfg: Config, url: str, stream: bool, fixed: bool, prompts: int = 0, nonce: str = ""
) -> dict[str, Any]:
    """rate.py's result; ``prompts`` > 0 cycles over that many prompts (with a given nonce)."""
    argv = pinned(
        cfg.load_core,
        [
            PYTHON,
            str(BENCH / "rate.py"),
            "--url",
            url,
            "--rate",
            f"{cfg.rate:g}",
            "--duration",
            f"{cfg.rate_duration:g}",
            "--warmup",
            "1",
            *(["--stream"] if stream else []),
            *(["--fixed-prompt"] if fixed else []),
            *(["--prompts", str(prompts), "--nonce", nonce] if prompts > 0 else []),
        ],
    )
    cfg.record(argv)
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=cfg.rate_duration + 120,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise BenchError(f"rate.py failed (rc {out.returncode}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@dataclass
class TargetResult:
    """One round of measurements of one target."""

    name: str
    description: str
    round: int
    command: str = ""
    error: str | None = None
    wrk: dict[str, Any] = field(default_factory=dict)
    wrk_stream: dict[str, Any] = field(default_factory=dict)
    direct: dict[str, Any] = field(default_factory=dict)
    direct_stream: dict[str, Any] = field(default_factory=dict)
    # The fake upstream on the target's core (cache targets only): see the module doc.
    local: dict[str, Any] = field(default_factory=dict)
    local_stream: dict[str, Any] = field(default_factory=dict)
    via: dict[str, Any] = field(default_factory=dict)
    via_stream: dict[str, Any] = field(default_factory=dict)
    rss_mib: float | None = None
    rss_max_mib: float | None = None
    # Upstream calls per request through the target in the non-streaming wrk run:
    # 1.0 for a proxy, below 1 when a cache answers.
    upstream_share: float | None = None
    # Cache counters (hit_l1, hit_l2, miss_l1, miss_l2, l2_outages: /metrics deltas) over
    # the non-streaming wrk run and the non-streaming fixed-rate run through the target.
    cache_wrk: dict[str, float] = field(default_factory=dict)
    cache_rate: dict[str, float] = field(default_factory=dict)
    # What the pre-warm pass of a prompt set saw (x-llm-edge-cache header counts).
    prewarm: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | None]:
        """The numbers the report shows (latencies in ms)."""

        def pct(run: dict[str, Any], key: str, p: str) -> float | None:
            value = run.get(key, {}).get(p)
            return None if value is None else float(value)

        def diff(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        m: dict[str, float | None] = {
            "rps": self.wrk.get("rps"),
            "rps_stream": self.wrk_stream.get("rps"),
            "rss_mib": self.rss_mib,
            "rss_max_mib": self.rss_max_mib,
            "upstream_share": self.upstream_share,
        }
        for p in ("p50", "p99"):
            m[f"direct_{p}"] = pct(self.direct, "latency_ms", p)
            m[f"via_{p}"] = pct(self.via, "latency_ms", p)
            m[f"direct_ttfb_{p}"] = pct(self.direct_stream, "ttfb_ms", p)
            m[f"via_ttfb_{p}"] = pct(self.via_stream, "ttfb_ms", p)
            m[f"added_{p}"] = diff(m[f"via_{p}"], m[f"direct_{p}"])
            m[f"added_ttfb_{p}"] = diff(m[f"via_ttfb_{p}"], m[f"direct_ttfb_{p}"])
            m[f"local_{p}"] = pct(self.local, "latency_ms", p)
            m[f"local_ttfb_{p}"] = pct(self.local_stream, "ttfb_ms", p)
            m[f"added_local_{p}"] = diff(m[f"via_{p}"], m[f"local_{p}"])
            m[f"added_local_ttfb_{p}"] = diff(m[f"via_ttfb_{p}"], m[f"local_ttfb_{p}"])
            wrk_us = self.wrk.get("latency_us", {}).get(p)
            m[f"wrk_{p}"] = None if wrk_us is None else wrk_us / 1000
        return m

    def errors(self) -> list[str]:
        found = []
        for label, run in (("wrk", self.wrk), ("wrk stream", self.wrk_stream)):
            if run.get("error_count"):
                found.append(f"{label}: {run['errors']}")
        for label, run in (
            ("direct", self.direct),
            ("direct stream", self.direct_stream),
            ("local", self.local),
            ("local stream", self.local_stream),
            ("rate", self.via),
            ("rate stream", self.via_stream),
        ):
            if run.get("errors"):
                found.append(f"{label}: {run['errors']}")
        return found


def bench_target(
    cfg: Config,
    target: Target,
    upstream_port: int,
    workdir: Path,
    round_no: int,
    local_port: int | None = None,
) -> TargetResult:
    result = TargetResult(name=target.name, description=target.description, round=round_no)
    with contextlib.ExitStack() as stack:
        ctx = TargetContext(
            port=free_port(),
            upstream_port=upstream_port,
            workdir=workdir,
            stack=stack,
            load_core=cfg.load_core,
            record=cfg.record,
        )
        try:
            if target.prepare is not None:
                target.prepare(ctx)
            argv = pinned(cfg.target_core, target.command(ctx))
        except (BenchError, OSError) as exc:
            result.error = str(exc)
            log(f"[{target.name} #{round_no}] FAILED: {exc}")
            return result
        env = " ".join(f"{k}={v}" for k, v in target.env.items())
        result.command = (f"{env} " if env else "") + display(argv)
        proc = start(target.name, argv, workdir, target.env)
        stack.callback(proc.stop)
        measure(cfg, target, ctx, proc, result, round_no, local_port)
    return result


def measure(
    cfg: Config,
    target: Target,
    ctx: TargetContext,
    proc: Process,
    result: TargetResult,
    round_no: int,
    local_port: int | None = None,
) -> None:
    """Run every measurement of one target (already started) into ``result``."""
    upstream_port = ctx.upstream_port
    base = f"http://127.0.0.1:{ctx.port}"
    direct = f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"
    local = f"http://127.0.0.1:{local_port}{CHAT_PATH}" if local_port else None
    if not target.local_reference:
        local = None
    fixed = target.fixed_prompt
    keys = target.prompt_set
    # Every run of this target uses one prompt set (the pre-warmed one); else fresh nonces.
    nonce = f"set{time.time_ns():x}" if keys else None
    rate_nonce = nonce or ""
    try:
        wait_healthy(proc, base + target.health_path, target.startup_timeout)
        smoke_check(base)
        log(f"[{target.name} #{round_no}] up (pid {proc.pid})")
        if keys:
            log(f"[{target.name} #{round_no}] pre-warming {keys} prompts")
            result.prewarm = prewarm(base, rate_nonce, keys)
            time.sleep(0.5)  # let background L2 writes land
        log(f"[{target.name} #{round_no}] wrk warm-up {cfg.warmup:g} s")
        if cfg.warmup > 0:
            run_wrk(cfg, base + CHAT_PATH, cfg.warmup, False, fixed, cfg.load_core, keys, nonce)
        log(f"[{target.name} #{round_no}] wrk non-streaming {cfg.duration:g} s")
        served = upstream_served(upstream_port)
        counters = cache_counters(base) if target.cache_metrics else {}
        result.wrk = run_wrk(
            cfg, base + CHAT_PATH, cfg.duration, False, fixed, cfg.load_core, keys, nonce
        )
        if result.wrk["requests"]:
            calls = upstream_served(upstream_port) - served
            result.upstream_share = calls / result.wrk["requests"]
            if target.cache_metrics:
                result.cache_wrk = counter_delta(cache_counters(base), counters)
        log(f"[{target.name} #{round_no}] wrk streaming {cfg.duration:g} s")
        result.wrk_stream = run_wrk(
            cfg, base + CHAT_PATH, cfg.duration, True, fixed, cfg.load_core, keys, nonce
        )
        log(
            f"[{target.name} #{round_no}] fixed rate {cfg.rate:g}/s, direct then through the target"
        )
        result.direct = run_rate(cfg, direct, False, fixed, keys, rate_nonce)
        if local is not None:
            result.local = run_rate(cfg, local, False, fixed, keys, rate_nonce)
        counters = cache_counters(base) if target.cache_metrics else {}
        result.via = run_rate(cfg, base + CHAT_PATH, False, fixed, keys, rate_nonce)
        if target.cache_metrics:
            # Includes rate.py's unmeasured warm-up requests (same prompts, same tiers).
            result.cache_rate = counter_delta(cache_counters(base), counters)
        result.direct_stream = run_rate(cfg, direct, True, fixed, keys, rate_nonce)
        if local is not None:
            result.local_stream = run_rate(cfg, local, True, fixed, keys, rate_nonce)
        result.via_stream = run_rate(cfg, base + CHAT_PATH, True, fixed, keys, rate_nonce)
        result.rss_mib, result.rss_max_mib = rss_mib(proc.pid)
    except (
        BenchError,
        OSError,
        KeyError,
        subprocess.TimeoutExpired,
        json.JSONDecodeError,
    ) as exc:
        result.error = str(exc)
        if str(proc.log) not in result.error:
            result.error += f"\n--- {proc.log} (last lines) ---\n{proc.log_tail(8)}"
        log(f"[{target.name} #{round_no}] FAILED: {result.error}")


# --------------------------------------------------------------------------- report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "aiohttp",
        "uvloop",
        "granian",
        "uvicorn",
        "httptools",
        "orjson",
        "llm-edge-agent",
    ):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (out.stdout + out.stderr).splitlines()[0]
        found["wrk"] = first.split(" Copyright")[0].removeprefix("wrk ")
    except (OSError, IndexError):
        found["wrk"] = "not found"
    return found


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def p50_p99(m: dict[str, float | None], prefix: str) -> str:
    """A report cell: the ``prefix`` metric at p50 and p99."""
    return f"{fmt(m[prefix + 'p50'])} / {fmt(m[prefix + 'p99'])}"


def median_metrics(rounds: list[TargetResult]) -> dict[str, float | None]:
    """Per metric, the median over the rounds that measured it."""
    per_round = [r.metrics() for r in rounds if r.error is None]
    merged: dict[str, float | None] = {}
    for key in per_round[0] if per_round else {}:
        values = [m[key] for m in per_round if m[key] is not None]
        merged[key] = statistics.median(v for v in values if v is not None) if values else None
    return merged


def report(
    cfg: Config,
    results: list[TargetResult],
    upstream_direct: dict[str, dict[str, Any]],
    argv: list[str],
    rounds: int,
) -> str:
    vers = versions()
    names = list(dict.fromkeys(r.name for r in results))
    by_name = {n: [r for r in results if r.name == n] for n in names}
    medians = {n: median_metrics(rs) for n, rs in by_name.items()}
    ok = [n for n in names if any(r.error is None for r in by_name[n])]
    of_rounds = f", median of {rounds} rounds" if rounds > 1 else ""
    lines = [
        f"Benchmark run {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
        f"- command: `{shlex.join(['python', *argv])}`",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible; kernel {platform.release()}",
        f"- pinning: target on core {cfg.target_core}, upstream + wrk + rate.py on core "
        f"{cfg.load_core}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- throughput: wrk -t1 -c{cfg.connections} -d{cfg.duration:g}s, unique prompts "
        f"(after a {cfg.warmup:g} s warm-up); added latency: bench/rate.py at "
        f"{cfg.rate:g} req/s for {cfg.rate_duration:g} s, target minus direct{of_rounds}",
    ]
    if upstream_direct:
        up = upstream_direct
        lines.append(
            f"- fake upstream alone (its own core, wrk on the other): "
            f"{up['wrk']['rps']:,.0f} req/s non-streaming, "
            f"{up['wrk_stream']['rps']:,.0f} req/s streaming"
        )
    lines += [
        "",
        "| target | non-stream req/s | stream req/s | added p50 ms | added p99 ms "
        "| stream TTFB added p50/p99 ms | RSS MiB (all / largest process) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        if n not in ok:
            lines.append(f"| {n} | failed | | | | | |")
            continue
        m = medians[n]
        lines.append(
            f"| {n} | {fmt(m['rps'], 0)} | {fmt(m['rps_stream'], 0)} "
            f"| {fmt(m['added_p50'])} | {fmt(m['added_p99'])} "
            f"| {fmt(m['added_ttfb_p50'])} / {fmt(m['added_ttfb_p99'])} "
            f"| {fmt(m['rss_mib'], 1)} / {fmt(m['rss_max_mib'], 1)} |"
        )
    lines += [
        "",
        f"Absolute latencies, ms{of_rounds} (direct = the same fixed-rate load straight at "
        "the upstream, just before):",
        "",
        "| target | direct p50/p99 | via p50/p99 | direct TTFB p50/p99 | via TTFB p50/p99 "
        "| wrk p50/p99 (c64) | upstream calls/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in ok:
        m = medians[n]
        errors = "; ".join(e for r in by_name[n] for e in r.errors()) or "none"
        lines.append(
            f"| {n} | {p50_p99(m, 'direct_')} | {p50_p99(m, 'via_')} "
            f"| {p50_p99(m, 'direct_ttfb_')} | {p50_p99(m, 'via_ttfb_')} "
            f"| {p50_p99(m, 'wrk_')} | {fmt(m['upstream_share'])} | {errors} |"
        )
    cached = [n for n in ok if any(r.cache_wrk or r.cache_rate for r in by_name[n])]
    if cached:
        lines += [
            "",
            "Cache lookups per request, from the gateway's /metrics (L1 hit / L2 hit / miss "
            "of both tiers; and L2 outages: Redis operations that failed or took over 50 ms, "
            "after which L2 is skipped until a PING answers), in the non-streaming wrk run and "
            "the non-streaming fixed-rate run (with its warm-up):",
            "",
            "| target | wrk: L1 hit / L2 hit / miss | rate.py: L1 hit / L2 hit / miss "
            "| pre-warm pass (x-llm-edge-cache) |",
            "|---|---:|---:|---|",
        ]
        for n in cached:
            r = next(r for r in by_name[n] if r.error is None)

            def tiers(c: dict[str, float]) -> str:
                lookups = c.get("hit_l1", 0.0) + c.get("miss_l1", 0.0)
                if not lookups:
                    return "n/a"
                # A request that missed L1 went to L2 when there is one: miss = miss_l2
                # with an L2, miss_l1 without.
                miss = c["miss_l2"] if c["hit_l2"] or c["miss_l2"] else c["miss_l1"]
                text = " / ".join(f"{v / lookups:.3f}" for v in (c["hit_l1"], c["hit_l2"], miss))
                if c.get("l2_outages"):
                    text += f" ({c['l2_outages']:g} L2 outages)"
                return text

            warm = ", ".join(f"{k} {v}" for k, v in sorted(r.prewarm.items())) or "none"
            lines.append(f"| {n} | {tiers(r.cache_wrk)} | {tiers(r.cache_rate)} | {warm} |")
    local = [n for n in ok if medians[n].get("local_p50") is not None]
    if local:
        lines += [
            "",
            "Cache hits against a server on the target's own core, ms"
            f"{of_rounds}: local = the same fixed-rate load at a second fake upstream "
            "pinned to the target's core. A hit calls no upstream, so via minus local is "
            "what answering from the gateway adds; via minus direct (above) also counts the "
            "cross-core wake-up that direct, whose upstream shares the client's core, never "
            "pays.",
            "",
            "| target | local p50/p99 | via p50/p99 | added p50/p99 | local TTFB p50/p99 "
            "| via TTFB p50/p99 | stream TTFB added p50/p99 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n in local:
            m = medians[n]
            lines.append(
                f"| {n} | {p50_p99(m, 'local_')} | {p50_p99(m, 'via_')} "
                f"| {p50_p99(m, 'added_local_')} | {p50_p99(m, 'local_ttfb_')} "
                f"| {p50_p99(m, 'via_ttfb_')} | {p50_p99(m, 'added_local_ttfb_')} |"
            )
    if rounds > 1:
        lines += [
            "",
            "Per round (non-stream req/s, stream req/s, added p50 ms):",
            "",
        ]
        for n in ok:
            cells = []
            for r in by_name[n]:
                if r.error is None:
                    m = r.metrics()
                    cells.append(
                        f"{fmt(m['rps'], 0)}, {fmt(m['rps_stream'], 0)}, {fmt(m['added_p50'])}"
                    )
                else:
                    cells.append("failed")
            lines.append(f"- {n}: " + " | ".join(cells))
    lines += ["", "Targets:", ""]
    for n in names:
        first = by_name[n][0]
        lines.append(f"- `{n}` ({first.description}): `{first.command}`")
    failed = [r for r in results if r.error is not None]
    if failed:
        lines += ["", "Failures:", ""]
        for r in failed:
            lines += [f"- `{r.name}` (round {r.round}):", "", "```", (r.error or "").strip(), "```"]
    lines += ["", "Commands, in order:", "", "```", *cfg.commands, "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def upstream_process(
    cfg: Config, workdir: Path, core: str | None, name: str = "upstream"
) -> Iterator[tuple[Process, int]]:
    port = free_port()
    argv = pinned(
        core,
        [
            PYTHON,
            str(BENCH / "upstream.py"),
            "--port",
            str(port),
            "--latency-ms",
            f"{cfg.upstream_latency_ms:g}",
        ],
    )
    cfg.record(argv)
    proc = start(name, argv, workdir)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health/live", 15.0)
        yield proc, port
    finally:
        proc.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="targets: " + ", ".join(f"{n} ({t.description})" for n, t in TARGETS.items()),
    )
    parser.add_argument("--targets", default=DEFAULT_TARGETS, help="comma-separated names")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rate", type=float, default=200.0, help="req/s for added latency")
    parser.add_argument(
        "--rate-duration", type=float, default=None, help="seconds per rate.py run (--duration)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat all targets, interleaved; report medians"
    )
    parser.add_argument("--warmup", type=int, default=2, help="wrk warm-up seconds (0: none)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--target-core", default="0", help="CPU list for the target")
    parser.add_argument("--load-core", default="1", help="CPU list for upstream and load")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--skip-upstream-check",
        action="store_true",
        help="skip measuring the fake upstream's own throughput",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="write raw results as JSON here")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1 or args.rate <= 0:
        parser.error("need --duration >= 1, --warmup >= 0, --rounds >= 1, --rate > 0")
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    args.target_names = names
    return args


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C (SystemExit), so every helper process
    (started in its own session, out of reach of a signal to ours) is stopped."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    exit_on_signals()
    for tool in ("wrk", *(() if args.no_pin else ("taskset",))):
        if shutil.which(tool) is None:
            package = "wrk" if tool == "wrk" else "util-linux"
            log(f"error: {tool} not found (apt-get install -y {package})")
            return 2
    pin = not args.no_pin
    if pin and (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores, not pinning")
        pin = False
    cfg = Config(
        duration=args.duration,
        rate=args.rate,
        rate_duration=args.rate_duration or args.duration,
        warmup=args.warmup,
        connections=args.connections,
        target_core=args.target_core if pin else None,
        load_core=args.load_core if pin else None,
        upstream_latency_ms=args.upstream_latency_ms,
    )
    results: list[TargetResult] = []
    upstream_direct: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        workdir = Path(tmp)
        with contextlib.ExitStack() as stack:
            _upstream, upstream_port = stack.enter_context(
                upstream_process(cfg, workdir, cfg.load_core)
            )
            local_port = None
            if any(TARGETS[n].local_reference for n in args.target_names):
                # Idle except while rate.py measures it: never competes with a target's load.
                _local, local_port = stack.enter_context(
                    upstream_process(cfg, workdir, cfg.target_core, "local-upstream")
                )
            if not args.skip_upstream_check:
                # The upstream's own capacity, load on the other core: must dwarf the targets.
                url = f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"
                log("[upstream] wrk directly, from the target core")
                dur = min(cfg.duration, 5)
                upstream_direct["wrk"] = run_wrk(cfg, url, dur, False, False, cfg.target_core)
                upstream_direct["wrk_stream"] = run_wrk(cfg, url, dur, True, False, cfg.target_core)
            for round_no in range(1, args.rounds + 1):
                for name in args.target_names:
                    target = TARGETS[name]
                    results.append(
                        bench_target(cfg, target, upstream_port, workdir, round_no, local_port)
                    )
    text = report(cfg, results, upstream_direct, [os.path.relpath(sys.argv[0]), *argv], args.rounds)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if args.json is not None:
        raw = {
            "upstream": upstream_direct,
            "results": [r.__dict__ for r in results],
            "commands": cfg.commands,
            "versions": versions(),
            "cpu": cpu_model(),
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
