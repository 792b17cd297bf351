"""Chaos run: one of two upstreams killed and restarted while the gateway is under load.

    python bench/chaos.py [--duration 40] [--concurrency 32] [--down-s 3] [--up-s 3]
                          [--stream-share 0.25] [--out FILE] [--json FILE]

Two fake upstreams (bench/upstream.py, separate processes on separate ports, `a` and `b`)
behind one gateway (1 worker, the default native engine) whose route `chaos` sends requests
round robin over both. Then a closed-loop load (--concurrency requests in flight, aiohttp
client, a unique prompt per request; non-streaming, or with --stream-share a share of
streaming requests), and meanwhile a chaos loop: upstream `a` is SIGKILLed, stays down
--down-s seconds, is restarted on the same port (the upstream binds with SO_REUSEADDR),
stays up --up-s seconds, and again, until the load ends.

Gateway config: two `openai_compatible` providers with `connect_timeout_s` 0.5 (default 5)
and the `[resilience]` defaults except `breaker_open_s` (2 here, default 30: the circuit of
the killed upstream is probed again 2 s after it opened); cache off. The report: client-
visible failures (non-200 answers and client exceptions; for streams, error events and
cut streams, counted apart), latency overall, for requests started while `a` was down and
for requests in flight at a kill, the gateway's /metrics (requests by status, retries,
failovers, provider availability, sampled during the run), the reasons of its failovers
and circuit changes from its log, and how many requests each upstream answered.

Pinning as in bench/run.py: the gateway on --target-core; both upstreams and this
script's client on --load-core. Every process started here is stopped at the end, also on
errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    BENCH,
    CHAT_PATH,
    GATEWAY_ENV,
    PYTHON,
    BenchError,
    Process,
    cpu_model,
    display,
    exit_on_signals,
    free_port,
    gateway_command,
    log,
    pinned,
    start,
    upstream_served,
    versions,
    wait_healthy,
)
from bench.zipf import can_pin, cpu_set

MODEL = "chaos"
PROMPT = "Chaos prompt {nonce}-{index}: say hello."

GATEWAY_CONFIG = """\
[[providers]]
name = "a"
type = "openai_compatible"
base_url = "http://127.0.0.1:{port_a}/v1"
api_key = "sk-bench"
connect_timeout_s = {connect_timeout_s:g}

[[providers]]
name = "b"
type = "openai_compatible"
base_url = "http://127.0.0.1:{port_b}/v1"
api_key = "sk-bench"
connect_timeout_s = {connect_timeout_s:g}

[[routes]]
model = "{model}"
strategy = "round_robin"
targets = [
  {{ provider = "a", model = "gpt-4o-mini" }},
  {{ provider = "b", model = "gpt-4o-mini" }},
]

[resilience]
breaker_open_s = {breaker_open_s:g}

[cache]
enabled = false
"""


# --------------------------------------------------------------------------- upstreams


class Upstream:
    """A fake upstream that can be killed and started again on the same port.

    ``launch`` and ``kill`` run in a worker thread (they block); ``stop`` (the exit
    path) marks it closed first, so a launch racing with the exit kills what it started.
    """

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.workdir = workdir
        self.proc: Process | None = None
        self.incarnations = 0
        # Chat completions answered by earlier incarnations, each read just before its kill.
        self.served_before = 0
        self._lock = threading.Lock()
        self._closed = False

    def launch(self, timeout: float = 15.0) -> None:
        with self._lock:
            if self._closed:
                raise BenchError(f"upstream {self.name} is closed")
            self.incarnations += 1
            proc = self.proc = start(
                f"upstream-{self.name}-{self.incarnations}", self.argv, self.workdir
            )
        wait_healthy(proc, f"http://127.0.0.1:{self.port}/health/live", timeout)

    def served(self) -> int | None:
        """This incarnation's count, or None when it cannot be read."""
        try:
            return upstream_served(self.port)
        except (OSError, ValueError, KeyError):
            return None

    def kill(self) -> tuple[int | None, float]:
        """Read this incarnation's count, then SIGKILL it at once (no warning: the kernel
        resets its open connections); the count and ``time.perf_counter()`` at the kill."""
        served = self.served()
        with self._lock:
            proc = self.proc
            killed_at = time.perf_counter()
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(5)
            self.proc = None
        self.served_before += served or 0
        return served, killed_at

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            proc, self.proc = self.proc, None
        if proc is not None:
            proc.stop()


def upstream_argv(port: int, core: str | None, latency_ms: float, chunk_ms: float) -> list[str]:
    # fmt: off
    return pinned(core, [
        PYTHON, str(BENCH / "upstream.py"), "--port", str(port),
        "--latency-ms", f"{latency_ms:g}", "--chunk-interval-ms", f"{chunk_ms:g}",
    ])
    # fmt: on


# --------------------------------------------------------------------------- load


@dataclass
class Sample:
    start: float  # seconds since the measured run began
    end: float
    stream: bool
    outcome: str  # ok, http, exception, stream_error_event, stream_cut, bad_body
    status: int = 0
    provider: str = ""  # x-llm-edge-provider: the upstream that answered
    detail: str = ""
    content_before_error: bool = False  # streams: content had arrived before the failure


@dataclass
class Window:
    """One kill of upstream a: when it died, when it answered its health check again."""

    kill: float
    served_before_kill: int | None
    restart: float = math.nan  # the restart began
    ready: float = math.nan  # healthy again


@dataclass
class State:
    t0: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    # (time, value of llm_edge_provider_available) per provider, sampled from /metrics.
    availability: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    metrics_errors: int = 0

    def now(self) -> float:
        return time.perf_counter() - self.t0


def body_for(prompt: str, stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return orjson.dumps(payload)


def error_detail(status: int, body: bytes) -> str:
    try:
        error = orjson.loads(body)["error"]
        return f"HTTP {status} {error.get('code') or error.get('type')}: {error.get('message')}"
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"HTTP {status}: {body[:120].decode(errors='replace')}"


def classify_stream(body: bytes) -> tuple[str, str, bool]:
    """(outcome, detail, content before the failure) of a whole SSE body."""
    done = False
    content = False
    for event in body.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return "bad_body", f"unparsable event {data[:80]!r}", content
            if isinstance(obj, dict) and "error" in obj:
                error = obj["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                return "stream_error_event", f"error event: {message}", content
            for choice in obj.get("choices") or () if isinstance(obj, dict) else ():
                if (choice.get("delta") or {}).get("content"):
                    content = True
    if done:
        return "ok", "", content
    return "stream_cut", "stream ended without [DONE] or an error event", content


async def one_request(
    session: aiohttp.ClientSession, url: str, state: State, prompt: str, stream: bool
) -> Sample:
    start_t = state.now()
    try:
        async with session.post(url, data=body_for(prompt, stream)) as resp:
            body = await resp.read()
            status = resp.status
            provider = resp.headers.get("x-llm-edge-provider", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = f"{type(exc).__name__}: {exc}"[:200]
        return Sample(start_t, state.now(), stream, "exception", detail=detail)
    end_t = state.now()
    if status != 200:
        detail = error_detail(status, body)
        return Sample(start_t, end_t, stream, "http", status, provider, detail)
    if stream:
        outcome, detail, content = classify_stream(body)
        return Sample(start_t, end_t, stream, outcome, status, provider, detail, content)
    if b'"choices"' not in body:
        return Sample(start_t, end_t, stream, "bad_body", status, provider, repr(body[:120]))
    return Sample(start_t, end_t, stream, "ok", status, provider)


async def load(
    url: str,
    state: State,
    concurrency: int,
    until: float,
    stream_share: float,
    nonce: str,
    seed: int,
    record: bool,
) -> None:
    """``concurrency`` requests in flight until ``until`` (state time), closed loop."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=30.0)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    counter = itertools.count()
    rng = random.Random(seed)

    async def worker(session: aiohttp.ClientSession) -> None:
        while state.now() < until:
            index = next(counter)
            stream = rng.random() < stream_share
            prompt = PROMPT.format(nonce=nonce, index=index)
            sample = await one_request(session, url, state, prompt, stream)
            if record:
                state.samples.append(sample)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))


async def chaos(victim: Upstream, state: State, until: float, down_s: float, up_s: float) -> None:
    """Kill the victim, wait, restart it, wait; again while a whole down window fits."""

    async def pause(seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, until - state.now())))

    await pause(up_s)
    while state.now() + down_s < until:
        served, killed_at = await asyncio.to_thread(victim.kill)
        window = Window(kill=killed_at - state.t0, served_before_kill=served)
        state.windows.append(window)
        log(f"[chaos] t={window.kill:6.2f} s: upstream a killed ({served} answered)")
        await asyncio.sleep(down_s)
        window.restart = state.now()
        await asyncio.to_thread(victim.launch)
        window.ready = state.now()
        log(
            f"[chaos] t={window.ready:6.2f} s: upstream a back "
            f"(healthy {window.ready - window.restart:.2f} s after the restart)"
        )
        await pause(up_s)


# --------------------------------------------------------------------------- metrics


def parse_metrics(text: str, prefixes: Iterable[str]) -> dict[str, float]:
    """Prometheus text lines whose name starts with one of ``prefixes``: series -> value."""
    wanted = tuple(prefixes)
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            series, _, value = line.rpartition(" ")
            key = series.replace(" ", "")
            with contextlib.suppress(ValueError):
                found[key] = found.get(key, 0.0) + float(value)
    return found


METRIC_PREFIXES = (
    "llm_edge_requests_total",
    "llm_edge_retries_total",
    "llm_edge_failovers_total",
    "llm_edge_provider_available",
    "llm_edge_request_errors_total",
    "llm_edge_hedges_total",
)


async def fetch_metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(base + "/metrics") as resp:
        text = await resp.text()
    return parse_metrics(text, METRIC_PREFIXES)


async def sample_availability(base: str, state: State, until: float, every_s: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        while state.now() < until:
            t = state.now()
            try:
                metrics = await fetch_metrics(session, base)
            except (aiohttp.ClientError, TimeoutError):
                state.metrics_errors += 1
            else:
                for series, value in metrics.items():
                    if series.startswith("llm_edge_provider_available"):
                        provider = series.partition('provider="')[2].partition('"')[0]
                        state.availability.setdefault(provider, []).append((t, value))
            await asyncio.sleep(max(0.0, every_s - (state.now() - t)))


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def gateway_log_events(path: Path, offset: int = 0) -> dict[str, Counter[str]]:
    """Failover reasons, circuit changes and request-log retries from the gateway's log,
    from byte ``offset`` on."""
    events: dict[str, Counter[str]] = {
        "failover": Counter(),
        "circuit": Counter(),
        "access_retries": Counter(),
        "other_warnings": Counter(),
    }
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return events
    for line in text.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        message = str(record.get("message") or record.get("msg") or "")
        nested = record.get("fields")
        fields: dict[str, Any] = nested if isinstance(nested, dict) else record
        if message == "failover":
            events["failover"][f"{fields.get('provider')}: {fields.get('error')}"] += 1
        elif message.startswith("circuit of provider"):
            events["circuit"][message] += 1
        elif "attempts" in fields:
            retries = fields.get("retries", 0)
            failovers = len(fields.get("failovers") or ())
            events["access_retries"][f"{retries} retries, {failovers} failovers"] += 1
        elif str(record.get("level", "")).lower() in ("warning", "error"):
            events["other_warnings"][message[:160]] += 1
    return events


# --------------------------------------------------------------------------- report


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:,.1f}"


def latency_row(label: str, samples: list[Sample]) -> str:
    lat = [s.end - s.start for s in samples]
    failed = sum(s.outcome != "ok" for s in samples)
    return (
        f"| {label} | {len(samples):,} | {failed:,} | {ms(pct(lat, 50))} | {ms(pct(lat, 99))} "
        f"| {ms(max(lat) if lat else None)} |"
    )


@dataclass
class Run:
    args: argparse.Namespace
    argv: list[str]
    config_text: str
    commands: list[str]
    pin: tuple[str | None, str | None]
    state: State
    measured_s: float
    metrics_delta: dict[str, float]
    metrics_after: dict[str, float]
    served: dict[str, int | None]
    log_events: dict[str, Counter[str]]


def in_window(t: float, windows: list[Window]) -> bool:
    return any(w.kill <= t < (w.ready if not math.isnan(w.ready) else math.inf) for w in windows)


def at_kill(s: Sample, windows: list[Window]) -> bool:
    return any(s.start <= w.kill < s.end for w in windows)


def report(run: Run) -> str:
    args = run.args
    state = run.state
    windows = state.windows
    samples = state.samples
    plain = [s for s in samples if not s.stream]
    streams = [s for s in samples if s.stream]
    target_core, load_core = run.pin
    vers = versions()
    vers.pop("wrk", None)
    vers.pop("uvicorn", None)
    vers.pop("httptools", None)
    down_total = sum(
        (w.ready if not math.isnan(w.ready) else run.measured_s) - w.kill for w in windows
    )
    lines = [
        f"Chaos run {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
        f"- command: `{shlex.join(['python', *run.argv])}`",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible; kernel {platform.release()}",
        f"- pinning: gateway on core {target_core}, both upstreams + this client on core "
        f"{load_core}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- upstreams: two `bench/upstream.py` processes, {args.upstream_latency_ms:g} ms before "
        f"each answer, {args.chunk_interval_ms:g} ms between SSE events",
        f"- gateway: 1 worker, native engine; route `{MODEL}` round_robin over `a` and `b`; "
        f"providers' `connect_timeout_s` {args.connect_timeout_s:g}; `[resilience]` defaults "
        f"except `breaker_open_s = {args.breaker_open_s:g}`; cache off (config below)",
        f"- load: {args.concurrency} in flight, closed loop, aiohttp, a unique prompt per "
        f"request, {args.stream_share:.0%} streaming, {run.measured_s:.1f} s measured after "
        f"a {args.warmup:g} s warm-up",
        f"- chaos: upstream `a` SIGKILLed, restarted on the same port {args.down_s:g} s later, "
        f"killed again {args.up_s:g} s after it is back: {len(windows)} kills, "
        f"{sum(not math.isnan(w.ready) for w in windows)} restarts; `a` down "
        f"{down_total:.1f} s of {run.measured_s:.1f} s (kill to healthy)",
        "",
    ]
    ok_plain = sum(s.outcome == "ok" for s in plain)
    ok_stream = sum(s.outcome == "ok" for s in streams)
    lines += [
        "| | non-streaming | streaming |",
        "|---|---:|---:|",
        f"| requests | {len(plain):,} | {len(streams):,} |",
        f"| answered OK | {ok_plain:,} | {ok_stream:,} |",
        f"| client-visible failures | **{len(plain) - ok_plain:,}** | "
        f"{len(streams) - ok_stream:,} |",
        f"| throughput, OK req/s | {ok_plain / run.measured_s:,.0f} | "
        f"{ok_stream / run.measured_s:,.0f} |",
        "",
    ]
    failures = Counter(
        ("stream" if s.stream else "non-stream", s.outcome, s.detail, s.content_before_error)
        for s in samples
        if s.outcome != "ok"
    )
    if failures:
        lines += [
            "Client-visible failures:",
            "",
            "| kind | outcome | detail | content before | count |",
            "|---|---|---|---|---:|",
        ]
        for (kind, outcome, detail, content), n in failures.most_common():
            before = ("yes" if content else "no") if kind == "stream" else "-"
            lines.append(f"| {kind} | {outcome} | {detail} | {before} | {n:,} |")
        lines.append("")
    lines += [
        "Latency (whole response), ms:",
        "",
        "| requests | count | failed | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, group in (("non-streaming", plain), ("streaming", streams)):
        if not group:
            continue
        lines += [
            latency_row(f"{kind}, all", group),
            latency_row(
                f"{kind}, started while `a` was down",
                [s for s in group if in_window(s.start, windows)],
            ),
            latency_row(
                f"{kind}, started while `a` was up",
                [s for s in group if not in_window(s.start, windows)],
            ),
            latency_row(f"{kind}, in flight at a kill", [s for s in group if at_kill(s, windows)]),
        ]
    lines.append("")
    providers = Counter(s.provider or "(none)" for s in samples if s.outcome == "ok")
    served = run.served
    lines += [
        "Who answered: by the `x-llm-edge-provider` header of OK answers, and by the "
        "upstreams' own counts (`/stats`; for `a`, summed over its incarnations, each read "
        "just before its kill: it counts a request when it has read it, so requests it held "
        "(the upstream's latency) when it was killed are counted, though their answers never "
        "left, and requests read between that count and the kill are missing), over the "
        "measured run.",
        "",
        "| upstream | OK answers (header) | answered (upstream's count) |",
        "|---|---:|---:|",
    ]
    for name in ("a", "b"):
        count = served.get(name)
        upstream_count = "n/a" if count is None else f"{count:,}"
        lines.append(f"| `{name}` | {providers.get(name, 0):,} | {upstream_count} |")
    lines += [
        "",
        "Gateway `/metrics`, change over the measured run:",
        "",
        "| series | change |",
        "|---|---:|",
    ]
    for series, value in sorted(run.metrics_delta.items()):
        if not series.startswith("llm_edge_provider_available"):
            lines.append(f"| `{series}` | {value:,.0f} |")
    for series, value in sorted(run.metrics_after.items()):
        if series.startswith("llm_edge_provider_available"):
            lines.append(f"| `{series}` (at the end, not a change) | {value:g} |")
    lines.append("")
    avail = state.availability
    if avail:
        parts = []
        for name, points in sorted(avail.items()):
            down = sum(v < 1 for _, v in points)
            down_in = sum(v < 1 and in_window(t, windows) for t, v in points)
            parts.append(
                f"`{name}` unavailable in {down} of {len(points)} samples "
                f"({down_in} of them while `a` was down)"
            )
        lines += [
            f"`llm_edge_provider_available` sampled every {args.sample_s:g} s (circuit not "
            "open = 1): "
            + "; ".join(parts)
            + (f"; {state.metrics_errors} scrapes failed" if state.metrics_errors else ""),
            "",
        ]
    ev = run.log_events
    for key, title in (
        ("failover", "Failovers in the gateway's log (provider: reason)"),
        ("circuit", "Circuit changes in the gateway's log"),
        ("access_retries", "Request log lines by retries and failovers"),
        ("other_warnings", "Other warnings and errors in the gateway's log"),
    ):
        if ev.get(key):
            lines += [f"{title}:", ""]
            lines += [f"- {n:,} x {what}" for what, n in ev[key].most_common(12)]
            lines.append("")
    lines += ["Kills (s since the measured run began):", ""]
    for i, w in enumerate(windows, 1):
        lines.append(
            f"- {i}: killed at {w.kill:.2f} (had answered {w.served_before_kill}), restart at "
            f"{w.restart:.2f}, healthy at {w.ready:.2f}"
        )
    lines += ["", "Gateway config:", "", "```toml", run.config_text.rstrip(), "```", ""]
    lines += ["Commands:", "", "```", *run.commands, "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def measure(
    args: argparse.Namespace, base: str, upstreams: dict[str, Upstream], gateway_log: Path
) -> Run:
    """Warm-up, then the measured load with chaos on upstream a; the gateway's /metrics,
    the upstreams' counts and the gateway log's offset before and after."""
    state = State()
    victim = upstreams["a"]
    url = base + CHAT_PATH
    nonce = f"{time.time_ns():x}"
    state.t0 = time.perf_counter()
    if args.warmup > 0:
        log(f"[load] warm-up {args.warmup:g} s")
        await load(
            url,
            state,
            args.concurrency,
            args.warmup,
            args.stream_share,
            nonce + "w",
            args.seed + 1,
            record=False,
        )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as session:
        before = await fetch_metrics(session, base)
        baseline = {n: await asyncio.to_thread(u.served) for n, u in upstreams.items()}
        log_offset = (await asyncio.to_thread(gateway_log.stat)).st_size
        victim.served_before = 0
        state.t0 = time.perf_counter()
        until = float(args.duration)
        log(f"[load] {args.concurrency} in flight for {args.duration} s, chaos on upstream a")
        await asyncio.gather(
            load(
                url,
                state,
                args.concurrency,
                until,
                args.stream_share,
                nonce,
                args.seed,
                record=True,
            ),
            chaos(victim, state, until, args.down_s, args.up_s),
            sample_availability(base, state, until, args.sample_s),
        )
        measured_s = state.now()
        after = await fetch_metrics(session, base)
    served: dict[str, int | None] = {}
    for name, upstream in upstreams.items():
        now = await asyncio.to_thread(upstream.served) if upstream.proc is not None else 0
        start_count = baseline[name]
        if now is None or start_count is None:
            served[name] = None
        else:
            served[name] = upstream.served_before + now - start_count
    await asyncio.sleep(0.2)  # let the last log lines land
    return Run(
        args=args,
        argv=[],
        config_text="",
        commands=[],
        pin=(None, None),
        state=state,
        measured_s=measured_s,
        metrics_delta=delta(after, before),
        metrics_after=after,
        served=served,
        log_events=await asyncio.to_thread(gateway_log_events, gateway_log, log_offset),
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=40, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--down-s", type=float, default=3.0, help="upstream a down this long")
    parser.add_argument("--up-s", type=float, default=3.0, help="then up this long")
    parser.add_argument(
        "--stream-share", type=float, default=0.0, help="share of streaming requests (0-1)"
    )
    parser.add_argument("--upstream-latency-ms", type=float, default=20.0)
    parser.add_argument("--chunk-interval-ms", type=float, default=5.0)
    parser.add_argument("--breaker-open-s", type=float, default=2.0)
    parser.add_argument("--connect-timeout-s", type=float, default=0.5)
    parser.add_argument("--sample-s", type=float, default=0.5, help="/metrics sampling period")
    parser.add_argument("--seed", type=int, default=1, help="seed of the streaming draw")
    parser.add_argument("--target-core", default="0", help="CPU list for the gateway")
    parser.add_argument("--load-core", default="1", help="CPU list for upstreams and client")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--json",
        type=Path,
        help="write raw results (every request) as JSON here, and the gateway's log next to "
        "it (same name, suffix .gateway.log)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.concurrency < 1 or args.down_s <= 0 or args.up_s <= 0:
        parser.error("need --duration >= 1, --concurrency >= 1, --down-s > 0, --up-s > 0")
    if not 0.0 <= args.stream_share <= 1.0:
        parser.error("--stream-share is a share, between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    exit_on_signals()
    pin = can_pin(args.no_pin)
    target_core = args.target_core if pin else None
    load_core = args.load_core if pin else None
    if load_core is not None:
        os.sched_setaffinity(0, cpu_set(load_core))  # this client's core
    commands: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llm-chaos-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        upstreams: dict[str, Upstream] = {}
        for name in ("a", "b"):
            port = free_port()
            argv_up = upstream_argv(
                port, load_core, args.upstream_latency_ms, args.chunk_interval_ms
            )
            commands.append(display(argv_up))
            upstream = upstreams[name] = Upstream(name, argv_up, port, workdir)
            stack.callback(upstream.stop)
            upstream.launch()
        config_text = GATEWAY_CONFIG.format(
            port_a=upstreams["a"].port,
            port_b=upstreams["b"].port,
            connect_timeout_s=args.connect_timeout_s,
            breaker_open_s=args.breaker_open_s,
            model=MODEL,
        )
        config = workdir / "chaos.toml"
        config.write_text(config_text)
        port = free_port()
        argv_gw = pinned(target_core, gateway_command(config, port))
        env = " ".join(f"{k}={v}" for k, v in GATEWAY_ENV.items())
        commands.append(f"{env} {display(argv_gw)}")
        gateway = start("gateway", argv_gw, workdir, dict(GATEWAY_ENV))
        stack.callback(gateway.stop)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(gateway, base + "/health/live", 30.0)
        log(
            f"[chaos] upstreams a :{upstreams['a'].port}, b :{upstreams['b'].port}; gateway :{port}"
        )
        run = uvloop.run(measure(args, base, upstreams, gateway.log))
        if args.json is not None:
            shutil.copy(gateway.log, args.json.with_suffix(".gateway.log"))
    run.argv = [os.path.relpath(sys.argv[0]), *argv]
    run.config_text = config_text.replace(f":{upstreams['a'].port}/", ":PORT_A/").replace(
        f":{upstreams['b'].port}/", ":PORT_B/"
    )
    run.commands = commands
    run.pin = (target_core, load_core)
    text = report(run)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if args.json is not None:
        raw = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "measured_s": run.measured_s,
            "samples": [asdict(s) for s in run.state.samples],
            "windows": [asdict(w) for w in run.state.windows],
            "availability": run.state.availability,
            "metrics_delta": run.metrics_delta,
            "metrics_after": run.metrics_after,
            "served": run.served,
            "log_events": {k: dict(v) for k, v in run.log_events.items()},
            "commands": commands,
            "versions": versions(),
            "cpu": cpu_model(),
        }
        args.json.write_text(json.dumps(raw, indent=2))
    plain_failed = any(s.outcome != "ok" for s in run.state.samples if not s.stream)
    return 1 if plain_failed else 0


if __name__ == "__main__":
    sys.exit(main())
