"""The shared L2 cache tier: opaque bytes in Redis, never allowed to slow or fail a request.

Every replica and worker process reads and writes the same Redis under ``key_prefix``.
Values are stored as the caller gives them (it serializes); expiry is Redis's own (``SET
... PX``), so nothing here sweeps.

Outages. Redis being down, slow or flapping must cost a request at most ``op_timeout_s``
and never an error, so each operation is bounded by ``asyncio.timeout`` (which also covers
waiting for a pooled connection and connecting) and its failures are swallowed. A refused
or broken connection flips the cache to *unhealthy* at once; timeouts do so only after
``OUTAGE_AFTER_TIMEOUTS`` in a row, because a worker whose event loop is saturated overruns
the budget while Redis is fine (a success resets the count). The flip calls
``on_outage(True)`` once; the caller logs
one warning and counts it, instead of one per request. While unhealthy every operation is
skipped without touching the network, and at most once per ``retry_interval_s`` (by the
injected clock) an operation starts one background ``PING``; when it answers the cache is
healthy again and ``on_outage(False)`` is called. The probe runs off the request path so
that even a blackholed Redis costs requests nothing while it is down.

A reply that Redis itself refuses (``OOM``, ``READONLY`` after a failover) is not an
outage: the server is there, the operation just did not happen. It is counted in
``errors`` and swallowed.

Lifecycle: nothing happens at construction; ``start()`` creates the worker's one
connection pool and probes once, ``drain()`` awaits background puts (with a bound) and
``close()`` closes the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

DEFAULT_KEY_PREFIX = "llm-edge:v1:"
DEFAULT_OP_TIMEOUT_S = 0.05  # the most a request ever waits on Redis
RETRY_INTERVAL_S = 1.0  # while unhealthy, at most one PING per this many seconds
MAX_CONNECTIONS = 64  # per worker process; waiting for one counts against op_timeout_s
MAX_PENDING_PUTS = 1024  # background puts beyond this are dropped, not queued
DRAIN_TIMEOUT_S = 2.0  # how long drain() waits for background puts at shutdown
OUTAGE_AFTER_TIMEOUTS = 3  # consecutive timeouts that mean an outage, not a busy loop
_TIMEOUTS = (TimeoutError, RedisTimeoutError)

# Anything that means "Redis is not answering properly": connection refused or reset,
# timeouts (asyncio's TimeoutError is an OSError), protocol errors, a full pool.
_OUTAGE_ERRORS = (RedisError, OSError)


def redact_url(url: str) -> str:
    """The URL without its password, fit for logs, ``__repr__`` and ``/health``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{user}:***@{host}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable redis url>"


class RedisCache:
    """One worker process's handle on the shared Redis tier (see the module docstring)."""

    __slots__ = (
        "_client",
        "_clock",
        "_generation",
        "_healthy",
        "_key_prefix",
        "_max_connections",
        "_next_probe_at",
        "_on_outage",
        "_op_timeout_s",
        "_probing",
        "_retry_interval_s",
        "_tasks",
        "_timeouts",
        "_url",
        "errors",
        "outages",
    )

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        op_timeout_s: float = DEFAULT_OP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        on_outage: Callable[[bool], None] | None = None,
        retry_interval_s: float = RETRY_INTERVAL_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if op_timeout_s <= 0:
            raise ValueError("op_timeout_s must be positive")
        self._url = url
        self._key_prefix = key_prefix
        self._op_timeout_s = op_timeout_s
        self._clock = clock
        self._on_outage = on_outage
        self._retry_interval_s = retry_interval_s
        self._max_connections = max_connections
        self._client: Redis | None = None
        self._healthy = True
        # Bumped on every recovery, so a slow failure of an operation begun before the
        # outage cannot knock a freshly recovered cache down again.
        self._generation = 0
        self._next_probe_at = 0.0
        self._probing = False
        self._timeouts = 0  # consecutive operations that timed out
        # Strong references: the event loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self.outages = 0  # healthy -> unhealthy transitions since construction
        self.errors = 0  # replies Redis refused (OOM, READONLY, ...), not outages

    def __repr__(self) -> str:
        state = "healthy" if self._healthy else "unhealthy"
        started = "started" if self._client is not None else "not started"
        return (
            f"RedisCache(url={redact_url(self._url)!r}, prefix={self._key_prefix!r}, "
            f"{state}, {started}, outages={self.outages}, errors={self.errors}, "
            f"pending={len(self._tasks)})"
        )

    @property
    def healthy(self) -> bool:
        """False from the first failure until a retry PING answers."""
        return self._healthy

    @property
    def pending(self) -> int:
        """Background puts (and a probe) not finished yet."""
        return len(self._tasks)

    async def start(self) -> None:
        """Create this process's connection pool and probe Redis once.

        A Redis that is down at start-up does not stop the gateway: the cache starts
        unhealthy (``on_outage(True)``) and recovers by itself.
        """
        if self._client is not None:
            return
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=None,  # the wait is bounded by each operation's asyncio.timeout
            socket_timeout=self._op_timeout_s,
            socket_connect_timeout=self._op_timeout_s,
            # Retrying inside one request only stretches it; the outage logic retries.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._client = Redis.from_pool(pool)
        await self.probe()

    async def close(self) -> None:
        """Cancel what is still pending and close the pool; ``drain()`` first to keep puts."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None on a miss, a timeout or an outage."""
        client = self._ready()
        if client is None:
            return None
        generation = self._generation
        try:
            async with asyncio.timeout(self._op_timeout_s):
                value = await client.get(self._key_prefix + key)
        except ResponseError:
            self.errors += 1
            return None
        except _TIMEOUTS:
            self._timed_out(generation)
            return None
        except _OUTAGE_ERRORS:
            self._failed(generation)
            return None
        self._timeouts = 0
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds (Redis expires it); failures are swallowed."""
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:
            return
        client = self._ready()
        if client is None:
            return
        generation = self._generation
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await client.set(self._key_prefix + key, value, px=ttl_ms)
        except ResponseError:
            self.errors += 1
        except _TIMEOUTS:
            self._timed_out(generation)
        except _OUTAGE_ERRORS:
            self._failed(generation)
        else:
            self._timeouts = 0

    def put_later(self, key: str, value: bytes, ttl_s: float) -> None:
        """Schedule ``put`` as a background task, off the request path.

        Skipped outright while unhealthy (no task is created unless a probe is due) and
        when ``MAX_PENDING_PUTS`` are already in flight: a cache store is never worth
        queueing memory behind a slow Redis.
        """
        if self._client is None or len(self._tasks) >= MAX_PENDING_PUTS:
            return
        if not self._healthy:
            self._ready()  # only to start a due probe
            return
        self._spawn(self.put(key, value, ttl_s))

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> int:
        """Wait up to ``timeout_s`` for background work; cancel the rest and return its count."""
        if not self._tasks:
            return 0
        _, still = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        return len(still)

    async def probe(self) -> bool:
        """PING Redis now (bounded by ``op_timeout_s``), update the state and return it."""
        client = self._client
        if client is None:
            return False
        self._next_probe_at = self._clock() + self._retry_interval_s
        generation = self._generation
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await client.ping()
        except _OUTAGE_ERRORS:
            self._failed(generation)
            return False
        self._recovered()
        return True

    def _ready(self) -> Redis | None:
        """The client if operations may go to Redis now; while unhealthy, maybe start a probe."""
        client = self._client
        if client is None or self._healthy:
            return client
        if not self._probing and self._clock() >= self._next_probe_at:
            self._probing = True
            self._next_probe_at = self._clock() + self._retry_interval_s
            self._spawn(self._background_probe())
        return None

    async def _background_probe(self) -> None:
        try:
            await self.probe()
        finally:
            self._probing = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _timed_out(self, generation: int) -> None:
        self._timeouts += 1
        if self._timeouts >= OUTAGE_AFTER_TIMEOUTS:
            self._failed(generation)

    def _failed(self, generation: int) -> None:
        if not self._healthy or generation != self._generation:
            return
        self._healthy = False
        self._next_probe_at = self._clock() + self._retry_interval_s
        self.outages += 1
        if self._on_outage is not None:
            self._on_outage(True)

    def _recovered(self) -> None:
        if self._healthy:
            return
        self._healthy = True
        self._generation += 1
        self._timeouts = 0
        if self._on_outage is not None:
            self._on_outage(False)
