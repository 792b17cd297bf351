"""Latency of several servers from one run: requests take turns between them.

    python bench/interleaved.py --seconds 15 --rate 200 PORT [PORT ...]

Each server gets a persistent keep-alive connection from a plain blocking socket (no
client library to add its own noise); requests go round-robin, one at a time, paced at
``--rate`` in all, and each server's p50/p90/p99 is printed. Because the servers take
turns within one run, a drift of the machine (these cores are shared) hits all of them
alike, which separate runs do not: here, separate runs of one server moved by
0.1-0.2 ms p50 while interleaved differences held to a few hundredths.

Before measuring, every prompt is sent once to every server, so a gateway with its cache
on answers the measured requests from L1. Compare a gateway with, say, a bare granian
app and ``bench/upstream.py`` pinned to the same core (``taskset -c 0``), the load on the
other core (``taskset -c 1 python bench/interleaved.py ...``). Two instances of the same
server can differ by up to ~0.05 ms (their place in the turn order, their memory
layout): start a second instance of the baseline when a difference is that small.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

RECV_BYTES = 65536


def request_bytes(prompt: int) -> bytes:
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"interleaved prompt {prompt}: say hello."}],
            "max_tokens": 16,
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def round_trip(sock: socket.socket, request: bytes) -> bytes:
    """Send one request, read its whole response (Content-Length bodies only); the status line."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionError("server closed the connection")
        body += chunk
    return lines[0]


def percentile(sorted_s: list[float], p: float) -> float:
    return sorted_s[min(len(sorted_s) - 1, int(len(sorted_s) * p))] * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ports", type=int, nargs="+", help="servers on 127.0.0.1")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s, all servers")
    parser.add_argument("--prompts", type=int, default=64, help="distinct prompts cycled")
    args = parser.parse_args()
    requests = [request_bytes(i) for i in range(args.prompts)]
    socks = {}
    for port in args.ports:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks[port] = sock
    for port in args.ports:  # warm-up: every prompt once (a cache stores them)
        for request in requests:
            round_trip(socks[port], request)
    latencies: dict[int, list[float]] = {port: [] for port in args.ports}
    interval = 1.0 / args.rate
    next_at = time.perf_counter()
    end = next_at + args.seconds
    turn = 0
    while next_at < end:
        port = args.ports[turn % len(args.ports)]
        request = requests[(turn // len(args.ports)) % len(requests)]
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        started = time.perf_counter()
        status = round_trip(socks[port], request)
        latencies[port].append(time.perf_counter() - started)
        if status.split(b" ")[1:2] != [b"200"]:
            raise SystemExit(f"{port}: {status.decode(errors='replace')}")
        turn += 1
        next_at += interval
    for port, values in latencies.items():
        values.sort()
        print(
            f"{port}: n={len(values)} p50 {percentile(values, 0.5):.3f} "
            f"p90 {percentile(values, 0.9):.3f} p99 {percentile(values, 0.99):.3f} ms"
        )


if __name__ == "__main__":
    main()
