"""Zipf replay: the response cache's hit rate through the gateway on a skewed prompt trace.

    python bench/zipf.py [--requests 5000] [--catalogue 2000] [--exponent 1.0] [--seed 1]
                         [--concurrency 16] [--setups l1,2w-l1,2w-l1+l2,...]
                         [--out FILE] [--json FILE]

The trace: --requests prompts drawn with a fixed seed from a Zipf distribution over a
catalogue of --catalogue distinct prompts, P(rank k) proportional to 1 / k**exponent. Its
ideal hit rate is 1 - distinct / requests: what a cache of unbounded size could do, since
the first request for each prompt must miss.

For each setup (gateway workers, L1 size, with or without a Redis L2), on a fresh gateway
(and a fresh redis-server, loopback, free port, no persistence) over one shared fake
upstream (bench/upstream.py): replay the trace in order with --concurrency requests in
flight (closed loop, aiohttp client), then count the answers by their x-llm-edge-cache
header (hit-l1, hit-l2, miss) and cross-check those counts against the gateway's /metrics
(llm_edge_cache_hits_total / llm_edge_cache_misses_total by tier) and against the
upstream's own count of calls (/stats). A request that joined an identical request's
in-flight upstream call (coalescing) is a header miss that cost no upstream call.

Pinning as in bench/run.py: the gateway (all its workers) on --target-core; the upstream,
the redis-server and this script's client on --load-core. Every process started here is
stopped at the end, also on errors and Ctrl-C.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    CHAT_PATH,
    GATEWAY_ENV,
    BenchError,
    Config,
    cache_counters,
    counter_delta,
    cpu_model,
    display,
    exit_on_signals,
    free_port,
    gateway_command,
    gateway_config,
    log,
    pinned,
    redis_server,
    smoke_check,
    start,
    upstream_process,
    upstream_served,
    versions,
    wait_healthy,
)

PROMPT = "Zipf prompt {rank}: tell me something about catalogue item number {rank}."
# Longer than the L2's back-off after an outage (a PING at most once a second).
WARMUP_PAUSE_S = 1.2


@dataclass(frozen=True)
class Setup:
    name: str
    workers: int
    redis: bool
    small_l1: bool  # L1 of --small-entries entries instead of the default (10,000)
    description: str


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("l1", 1, False, False, "1 worker, L1 only (default size, holds the catalogue)"),
        Setup("l1+l2", 1, True, False, "1 worker, L1 (default size) + Redis L2"),
        Setup("2w-l1", 2, False, False, "2 workers, each its own L1, no L2"),
        Setup("2w-l1+l2", 2, True, False, "2 workers, each its own L1, one shared Redis L2"),
        Setup("small-l1", 1, False, True, "1 worker, small L1, no L2"),
        Setup("small-l1+l2", 1, True, True, "1 worker, small L1 + Redis L2"),
    )
}
DEFAULT_SETUPS = "l1,l1+l2,2w-l1,2w-l1+l2,small-l1,small-l1+l2"


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class Trace:
    ranks: list[int]  # 0-based catalogue rank of each request, in replay order
    catalogue: int
    exponent: float
    seed: int

    @property
    def distinct(self) -> int:
        return len(set(self.ranks))

    @property
    def ideal_hit_rate(self) -> float:
        return 1 - self.distinct / len(self.ranks)

    def share_of_top(self, fraction: float) -> float:
        """Share of the requests that go to the top ``fraction`` of the catalogue."""
        top = max(1, round(self.catalogue * fraction))
        return sum(1 for r in self.ranks if r < top) / len(self.ranks)


def zipf_trace(requests: int, catalogue: int, exponent: float, seed: int) -> Trace:
    weights = [1.0 / (k**exponent) for k in range(1, catalogue + 1)]
    cum = list(itertools.accumulate(weights))
    rng = random.Random(seed)
    ranks = rng.choices(range(catalogue), cum_weights=cum, k=requests)
    return Trace(ranks=ranks, catalogue=catalogue, exponent=exponent, seed=seed)


# --------------------------------------------------------------------------- replay


@dataclass
class Replay:
    wall_s: float = 0.0
    started_at: float = 0.0  # wall clock (time.time()) when the trace began
    latency_s: list[float] = field(default_factory=list)
    # x-llm-edge-cache value of every answer, in completion order, with its latency.
    by_status: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def request_body(rank: int) -> bytes:
    prompt = PROMPT.format(rank=rank + 1)
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})


async def replay(
    url: str,
    ranks: list[int],
    concurrency: int,
    warmup: int,
    between: Callable[[], None],
    cold_l2: bool = False,
) -> Replay:
    """Send the trace in order, ``concurrency`` requests in flight (closed loop).

    First ``warmup`` requests with unique prompts open the client's connections and warm
    the gateway's connection pools, but store nothing: ``x-llm-edge-cache-ttl: 0`` (they
    look up L1 and L2, which opens the Redis connections, and are not stored), or with
    ``cold_l2`` ``Cache-Control: no-store`` (no lookup: the trace's first requests open
    the Redis connections). Then, after a pause longer than the L2's outage back-off (an
    outage in the warm-up is over by then), a second short warm-up, ``between()`` (read
    the counters), and the trace, on the same connections.
    """
    result = Replay()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    warm_headers = {
        **headers,
        **({"Cache-Control": "no-store"} if cold_l2 else {"x-llm-edge-cache-ttl": "0"}),
    }
    bodies = [request_body(r) for r in ranks]
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=30.0)

    async def warm(session: aiohttp.ClientSession, position: Iterator[int]) -> None:
        for i in position:
            body = orjson.dumps(
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Zipf warm-up {i}"}],
                }
            )
            async with session.post(url, data=body, headers=warm_headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise BenchError(f"warm-up request failed: HTTP {resp.status}")

    async def client(session: aiohttp.ClientSession, position: Iterator[int]) -> None:
        for i in position:  # shared iterator: each request is sent once, in trace order
            start = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i], headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                    cache = resp.headers.get("x-llm-edge-cache", "none")
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.error(type(exc).__name__)
                continue
            elapsed = time.perf_counter() - start
            if status != 200:
                result.error(f"status_{status}")
                continue
            result.latency_s.append(elapsed)
            result.by_status.setdefault(cache, []).append(elapsed)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm_position = iter(range(warmup))
        await asyncio.gather(*(warm(session, warm_position) for _ in range(concurrency)))
        if warmup:
            await asyncio.sleep(WARMUP_PAUSE_S)
            warm_position = iter(range(warmup, warmup + concurrency))
            await asyncio.gather(*(warm(session, warm_position) for _ in range(concurrency)))
            await asyncio.sleep(0.1)
        between()
        position = iter(range(len(bodies)))
        began = time.perf_counter()
        result.started_at = time.time()
        await asyncio.gather(*(client(session, position) for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - began
    return result


def percentile_ms(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile in milliseconds of values in seconds (as bench/rate.py)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


# --------------------------------------------------------------------------- one setup


@dataclass
class SetupResult:
    name: str
    description: str
    command: str = ""
    error: str | None = None
    requests: int = 0
    ok: int = 0
    headers: dict[str, int] = field(default_factory=dict)  # x-llm-edge-cache counts
    metrics: dict[str, float] = field(default_factory=dict)  # /metrics deltas
    upstream_calls: int = 0
    rps: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    latency_p50_by_status_ms: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)  # cross-check mismatches; empty = ok
    # The gateway's L2 state changes (log lines), as seconds into the replay.
    l2_events: list[str] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return self.headers.get("hit-l1", 0) + self.headers.get("hit-l2", 0)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.ok if self.ok else 0.0

    @property
    def coalesced(self) -> int:
        return self.headers.get("miss", 0) - self.upstream_calls

    @property
    def upstream_avoided(self) -> float:
        return 1 - self.upstream_calls / self.ok if self.ok else 0.0


def cross_check(r: SetupResult, with_l2: bool) -> list[str]:
    """Header counts against /metrics and the upstream's count; the mismatches found."""
    h, m = r.headers, r.metrics
    found = []

    def same(label: str, header: float, metric: float) -> None:
        if round(header) != round(metric):
            found.append(f"{label}: headers {header:g}, /metrics {metric:g}")

    same("L1 hits", h.get("hit-l1", 0), m["hit_l1"])
    same("L2 hits", h.get("hit-l2", 0), m["hit_l2"])
    same("L1 misses (L2 hits + misses)", h.get("hit-l2", 0) + h.get("miss", 0), m["miss_l1"])
    if with_l2:
        same("L2 misses", h.get("miss", 0), m["miss_l2"])
    if not 0 <= r.coalesced <= h.get("miss", 0):
        found.append(f"upstream calls {r.upstream_calls} vs {h.get('miss', 0)} header misses")
    others = {k: v for k, v in h.items() if k not in ("hit-l1", "hit-l2", "miss")}
    if others:
        found.append(f"unexpected x-llm-edge-cache values: {others}")
    if r.errors:
        found.append(f"errors: {r.errors}")
    if m.get("l2_outages"):
        found.append(f"{m['l2_outages']:g} L2 outages (a Redis operation over 50 ms)")
    return found


def l2_events(log_path: Path, started_at: float) -> list[str]:
    """The gateway's "L2 cache (Redis) is ..." log lines, timed from the replay's start."""
    events = []
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if '"msg":"L2 cache' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                stamp = datetime.datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
                offset = stamp.timestamp() - started_at
                events.append(f"{offset:+.2f} s: {record['msg']}")
    return events


def run_setup(
    args: argparse.Namespace,
    cfg: Config,
    setup: Setup,
    trace: Trace,
    upstream_port: int,
    workdir: Path,
) -> SetupResult:
    result = SetupResult(name=setup.name, description=setup.description)
    with contextlib.ExitStack() as stack:
        try:
            redis_url = None
            if setup.redis:
                redis_proc, redis_url = stack.enter_context(
                    redis_server(workdir, cfg.load_core, f"zipf-{setup.name}-redis")
                )
                cfg.record(redis_proc.argv)
            config = workdir / f"zipf-{setup.name}.toml"
            max_entries = args.small_entries if setup.small_l1 else None
            config.write_text(
                gateway_config(upstream_port, True, max_entries=max_entries, redis_url=redis_url)
            )
            port = free_port()
            argv = pinned(cfg.target_core, gateway_command(config, port, workers=setup.workers))
            env = " ".join(f"{k}={v}" for k, v in GATEWAY_ENV.items())
            result.command = f"{env} {display(argv)}"
            cfg.record(argv)
            proc = start(f"zipf-{setup.name}", argv, workdir, GATEWAY_ENV)
            stack.callback(proc.stop)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_healthy(proc, base + "/health/live", 30.0)
                smoke_check(base)  # two unique prompts, before the counters are read
                if setup.workers > 1:
                    time.sleep(1.0)  # let every worker come up, not only the first
                before: dict[str, float] = {}
                served = 0

                def snapshot() -> None:
                    nonlocal served
                    before.update(cache_counters(base))
                    served = upstream_served(upstream_port)

                log(
                    f"[{setup.name}] replaying {len(trace.ranks)} requests, "
                    f"{args.concurrency} in flight"
                )
                rep = uvloop.run(
                    replay(
                        base + CHAT_PATH,
                        trace.ranks,
                        args.concurrency,
                        args.warmup_requests,
                        snapshot,
                        args.cold_l2,
                    )
                )
                time.sleep(0.2)  # background metric flushes of the other workers
                result.upstream_calls = upstream_served(upstream_port) - served
                result.metrics = counter_delta(cache_counters(base), before)
            except BenchError as exc:
                raise BenchError(f"{exc}\n--- {proc.log} ---\n{proc.log_tail(8)}") from exc
            result.requests = len(trace.ranks)
            result.ok = len(rep.latency_s)
            result.errors = rep.errors
            result.headers = {k: len(v) for k, v in sorted(rep.by_status.items())}
            result.rps = result.ok / rep.wall_s if rep.wall_s else 0.0
            result.latency_ms = {
                p: percentile_ms(rep.latency_s, q)
                for p, q in (("p50", 50), ("p90", 90), ("p99", 99))
            }
            result.latency_p50_by_status_ms = {
                k: percentile_ms(v, 50) for k, v in sorted(rep.by_status.items())
            }
            result.checks = cross_check(result, setup.redis)
            result.l2_events = l2_events(proc.log, rep.started_at)
        except (BenchError, OSError, KeyError, ValueError, aiohttp.ClientError) as exc:
            result.error = str(exc)
            log(f"[{setup.name}] FAILED: {exc}")
    return result


# --------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report(
    args: argparse.Namespace,
    cfg: Config,
    trace: Trace,
    results: list[SetupResult],
    argv: list[str],
) -> str:
    vers = versions()
    vers.pop("uvicorn", None)
    vers.pop("httptools", None)
    executable = shutil.which("redis-server")
    with contextlib.suppress(OSError, IndexError):
        if executable is not None:
            out = subprocess.run([executable, "--version"], capture_output=True, text=True)
            vers["redis-server"] = out.stdout.split(" v=")[1].split()[0]
    n = len(trace.ranks)
    warm_header = (
        "`Cache-Control: no-store` (`--cold-l2`: the trace opens the Redis connections)"
        if args.cold_l2
        else "`x-llm-edge-cache-ttl: 0` (looked up in L1 and L2, stored nowhere)"
    )
    lines = [
        f"Zipf replay {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
        f"- command: `{shlex.join(['python', *argv])}`",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible; kernel {platform.release()}",
        f"- pinning: gateway (all workers) on core {cfg.target_core}; upstream, redis-server "
        f"and the replay client on core {cfg.load_core}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- trace: {n:,} requests, Zipf exponent s = {trace.exponent:g} over {trace.catalogue:,}"
        f" prompts, seed {trace.seed}: {trace.distinct:,} distinct prompts requested; top 1% "
        f"of the catalogue gets {trace.share_of_top(0.01):.0%} of the requests, top 10% "
        f"{trace.share_of_top(0.1):.0%}",
        f"- **ideal hit rate** (unbounded cache, 1 - distinct / requests): "
        f"**{trace.ideal_hit_rate:.1%}**",
        f"- replay: in trace order, {args.concurrency} requests in flight (closed loop), "
        f"non-streaming, cold caches (fresh gateway and redis-server per setup; first "
        f"{args.warmup_requests} requests with unique prompts and {warm_header}, to open "
        f"connections); upstream latency {cfg.upstream_latency_ms:g} ms; small L1 = "
        f"{args.small_entries} entries",
        "",
        "| setup | hit rate | hit-l1 / hit-l2 / miss | upstream calls (avoided) "
        "| coalesced | req/s | p50 / p90 / p99 ms | p50 ms hit-l1 / hit-l2 / miss "
        "| cross-check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.error is not None:
            lines.append(f"| {r.name} | failed | | | | | | | |")
            continue
        h, lat, by = r.headers, r.latency_ms, r.latency_p50_by_status_ms
        lines.append(
            f"| {r.name} | {r.hit_rate:.1%} "
            f"| {h.get('hit-l1', 0):,} / {h.get('hit-l2', 0):,} / {h.get('miss', 0):,} "
            f"| {r.upstream_calls:,} ({r.upstream_avoided:.1%}) | {r.coalesced:,} "
            f"| {r.rps:,.0f} | {fmt(lat['p50'])} / {fmt(lat['p90'])} / {fmt(lat['p99'])} "
            f"| {fmt(by.get('hit-l1'))} / {fmt(by.get('hit-l2'))} / {fmt(by.get('miss'))} "
            f"| {'ok' if not r.checks else '; '.join(r.checks)} |"
        )
    lines += ["", "Setups:", ""]
    for r in results:
        lines.append(f"- `{r.name}` ({r.description}): `{r.command}`")
    events = [r for r in results if r.l2_events]
    if events:
        lines += ["", "L2 state changes logged by the gateway (time from the replay's start):", ""]
        for r in events:
            lines.append(f"- `{r.name}`: " + "; ".join(r.l2_events))
    failed = [r for r in results if r.error is not None]
    if failed:
        lines += ["", "Failures:", ""]
        for r in failed:
            lines += [f"- `{r.name}`:", "", "```", (r.error or "").strip(), "```"]
    lines += [
        "",
        "cross-check: hit-l1 = llm_edge_cache_hits_total{tier=l1}, hit-l2 = ..{tier=l2}, "
        "hit-l2 + miss = llm_edge_cache_misses_total{tier=l1}, miss = ..{tier=l2} (with an "
        "L2), and upstream calls <= misses (the difference: coalesced requests).",
        "",
        "Commands, in order:",
        "",
        "```",
        *cfg.commands,
        "```",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="setups: " + ", ".join(f"{n} ({s.description})" for n, s in SETUPS.items()),
    )
    parser.add_argument("--requests", type=int, default=5000, help="length of the trace")
    parser.add_argument("--catalogue", type=int, default=2000, help="distinct prompts")
    parser.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--warmup-requests",
        type=int,
        default=64,
        help="requests with unique prompts first, stored nowhere (to open connections)",
    )
    parser.add_argument(
        "--cold-l2",
        action="store_true",
        help="warm-up requests skip the cache: the trace's first lookups open the Redis pool",
    )
    parser.add_argument("--setups", default=DEFAULT_SETUPS, help="comma-separated names")
    parser.add_argument(
        "--small-entries", type=int, default=200, help="L1 max_entries of the small-* setups"
    )
    parser.add_argument("--target-core", default="0", help="CPU list for the gateway")
    parser.add_argument("--load-core", default="1", help="CPU list for upstream, redis, client")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0)
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="write raw results as JSON here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.catalogue < 1 or args.concurrency < 1 or args.warmup_requests < 0:
        parser.error("need --requests, --catalogue, --concurrency >= 1, --warmup-requests >= 0")
    if args.exponent < 0 or args.small_entries < 1:
        parser.error("need --exponent >= 0 and --small-entries >= 1")
    names = [n.strip() for n in args.setups.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        parser.error(f"unknown setups {unknown}; known: {', '.join(SETUPS)}")
    args.setup_names = names
    return args


def cpu_set(spec: str) -> set[int]:
    """A taskset-style CPU list ("1", "0,2", "2-3") as a set."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def can_pin(no_pin: bool) -> bool:
    """Whether to pin processes to cores (asked for, 2+ cores, taskset present); says why not."""
    pin = not no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if not no_pin and not pin:
        log("warning: not pinning (fewer than 2 cores, or no taskset)")
    return pin


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    exit_on_signals()
    pin = can_pin(args.no_pin)
    need_redis = any(SETUPS[n].redis for n in args.setup_names)
    if need_redis and shutil.which("redis-server") is None:
        log("error: redis-server not found (scripts/ensure-redis installs it)")
        return 2
    cfg = Config(
        duration=0,
        rate=1.0,
        rate_duration=0.0,
        warmup=0,
        connections=args.concurrency,
        target_core=args.target_core if pin else None,
        load_core=args.load_core if pin else None,
        upstream_latency_ms=args.upstream_latency_ms,
    )
    if cfg.load_core is not None:
        os.sched_setaffinity(0, cpu_set(cfg.load_core))  # the replay client's core
    trace = zipf_trace(args.requests, args.catalogue, args.exponent, args.seed)
    log(
        f"trace: {len(trace.ranks)} requests, {trace.distinct} distinct prompts, "
        f"ideal hit rate {trace.ideal_hit_rate:.1%}"
    )
    results: list[SetupResult] = []
    with tempfile.TemporaryDirectory(prefix="llm-zipf-") as tmp:
        workdir = Path(tmp)
        with upstream_process(cfg, workdir, cfg.load_core) as (_upstream, upstream_port):
            for name in args.setup_names:
                results.append(run_setup(args, cfg, SETUPS[name], trace, upstream_port, workdir))
    text = report(args, cfg, trace, results, [os.path.relpath(sys.argv[0]), *argv])
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if args.json is not None:
        raw: dict[str, Any] = {
            "trace": {
                "requests": len(trace.ranks),
                "catalogue": trace.catalogue,
                "exponent": trace.exponent,
                "seed": trace.seed,
                "distinct": trace.distinct,
                "ideal_hit_rate": trace.ideal_hit_rate,
            },
            "results": [asdict(r) for r in results],
            "commands": cfg.commands,
            "versions": versions(),
            "cpu": cpu_model(),
        }
        args.json.write_text(json.dumps(raw, indent=2))
    failed = any(r.error is not None or r.checks for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
