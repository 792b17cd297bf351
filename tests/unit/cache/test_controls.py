"""Cache-Control and x-llm-edge-cache-ttl request headers."""

from __future__ import annotations

import pytest

from llm_edge_agent.cache.controls import DEFAULT, parse_controls
from llm_edge_agent.errors import InvalidRequestError


def test_no_headers_mean_lookup_and_store_with_the_configured_ttl() -> None:
    controls = parse_controls({})
    assert controls is DEFAULT
    assert controls.lookup and controls.store
    assert controls.max_age_s is None and controls.ttl_s is None


def test_no_cache_skips_the_lookup_but_still_stores() -> None:
    controls = parse_controls({"cache-control": "no-cache"})
    assert not controls.lookup and controls.store


def test_no_store_does_neither() -> None:
    controls = parse_controls({"cache-control": "No-Store"})
    assert not controls.lookup and not controls.store


def test_max_age_and_ttl_are_read_with_other_directives_ignored() -> None:
    controls = parse_controls(
        {"cache-control": "private, max-age=30, must-revalidate", "x-llm-edge-cache-ttl": "600"}
    )
    assert controls.lookup and controls.store
    assert controls.max_age_s == 30 and controls.ttl_s == 600


@pytest.mark.parametrize(
    "headers",
    [
        {"cache-control": "max-age=soon"},
        {"cache-control": "max-age=-1"},
        {"x-llm-edge-cache-ttl": "forever"},
        {"x-llm-edge-cache-ttl": "1e12"},
    ],
)
def test_malformed_numbers_are_the_clients_error(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError):
        parse_controls(headers)
