"""Open-loop fixed-rate load generator for chat completions (aiohttp client on uvloop).

    python bench/rate.py --url http://127.0.0.1:8000/v1/chat/completions \\
        --rate 200 --duration 10 [--stream] [--warmup 1] [--fixed-prompt | --prompts N]

Fires requests at a fixed rate, whether or not earlier ones have answered (open loop,
unlike wrk), each with a unique prompt (or one fixed prompt, or cycling over N prompts,
"Benchmark prompt NONCE-kI: say hello." as bench/wrk/chat.lua's keys=N, also in the
warm-up; bench/run.py pre-warms that set to measure cache hits), and prints one JSON
object: per-request latency (until the whole body has been read) and, for --stream, time to
first byte (until the first body bytes arrive) as p50/p90/p99/max in milliseconds.

Latency is timed from the moment the request is handed to the client; how late that was
against the schedule (the generator's own lag) is reported as send_lag_ms. Run it
against the upstream directly and through a proxy: added latency = proxy - direct.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass, field

import aiohttp
import orjson
import uvloop


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles, in milliseconds, of values given in seconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def request_body(prompt: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def one_request(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stream: bool,
    samples: Samples | None,
) -> None:
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if stream:
                first = await resp.content.readany()
                ttfb = time.perf_counter() - start
                tail = first[-32:]
                while chunk := await resp.content.readany():
                    tail = (tail + chunk)[-32:]
                complete = tail.rstrip().endswith(b"data: [DONE]")
            else:
                await resp.read()
                ttfb = 0.0
                complete = True
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        if samples is not None:
            samples.error(type(exc).__name__)
        return
    elapsed = time.perf_counter() - start
    if samples is None:
        return
    if status != 200:
        samples.error(f"status_{status}")
    elif not complete:
        samples.error("incomplete_stream")
    else:
        samples.latency.append(elapsed)
        if stream:
            samples.ttfb.append(ttfb)


async def fire(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    stream: bool,
    fixed_prompt: bool,
    nonce: str,
    samples: Samples | None,
    prompts: int = 0,
) -> int:
    """Send rate*seconds requests on a fixed schedule; return how many were sent."""
    count = max(1, round(rate * seconds))
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.01
    for i in range(count):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if samples is not None:
            samples.send_lag.append(max(0.0, time.perf_counter() - due))
        if prompts > 0:
            prompt = f"Benchmark prompt {nonce}-k{i % prompts}: say hello."
        elif fixed_prompt:
            prompt = f"Rate prompt {nonce}: say hello."
        else:
            prompt = f"Rate prompt {nonce}-{i}"
        body = request_body(prompt, stream)
        task = asyncio.create_task(one_request(session, url, body, headers, stream, samples))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return count


async def run(args: argparse.Namespace) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.api_key}"}
    nonce = args.nonce or f"{time.time_ns():x}"
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    samples = Samples()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.warmup > 0:
            await fire(
                session,
                args.url,
                headers,
                args.rate,
                args.warmup,
                args.stream,
                args.fixed_prompt,
                nonce if args.prompts > 0 else f"{nonce}w",
                None,
                args.prompts,
            )
        began = time.perf_counter()
        sent = await fire(
            session,
            args.url,
            headers,
            args.rate,
            args.duration,
            args.stream,
            args.fixed_prompt,
            nonce,
            samples,
            args.prompts,
        )
        wall = time.perf_counter() - began
    result: dict[str, object] = {
        "url": args.url,
        "stream": args.stream,
        "rate": args.rate,
        "duration_s": args.duration,
        "sent": sent,
        "ok": len(samples.latency),
        "errors": samples.errors,
        "achieved_rate": round(sent / wall, 1) if wall > 0 else 0.0,
        "latency_ms": percentiles(samples.latency),
        "send_lag_ms": percentiles(samples.send_lag),
    }
    if args.stream:
        result["ttfb_ms"] = percentiles(samples.ttfb)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="full URL of /v1/chat/completions")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent first, unmeasured")
    parser.add_argument("--stream", action="store_true", help="SSE requests; also report TTFB")
    parser.add_argument("--fixed-prompt", action="store_true", help="same prompt every time")
    parser.add_argument(
        "--prompts", type=int, default=0, help="cycle over this many prompts (0: unique)"
    )
    parser.add_argument("--nonce", default="", help="prompt prefix (default: current time)")
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.prompts < 0:
        parser.error("--rate and --duration must be positive, --prompts not negative")
    result = uvloop.run(run(args))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
