from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from ...redis_server import RedisServer

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session (scripts/ensure-redis installs it)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.start()  # no-op unless an earlier test left it stopped
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private server, for tests that stop, restart or pause it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests sharing the session server never collide."""
    return f"test:{next(_prefixes)}:"
