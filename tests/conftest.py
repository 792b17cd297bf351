from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture(scope="session")
def backup_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    upstream_server.reset()
    return upstream_server


@pytest.fixture
def backup(backup_server: FakeUpstream) -> FakeUpstream:
    backup_server.reset()
    return backup_server
