"""Known bodies: raw bytes of bodies the cache answered, bounded, never a large body."""

from __future__ import annotations

from llm_edge_agent.cache.keys import canonical_body, key_for
from llm_edge_agent.cache.known import KnownBodies, KnownBody


def known(model: str = "gpt-4o") -> KnownBody:
    return KnownBody(model=model, stream=False, include_usage=False, canonical=b"{}")


def test_a_body_is_found_by_its_exact_bytes_only() -> None:
    bodies = KnownBodies()
    entry = known()
    bodies.add(b'{"model":"gpt-4o"}', entry)
    assert bodies.get(b'{"model":"gpt-4o"}') is entry
    assert bodies.get(b'{"model": "gpt-4o"}') is None  # the same JSON, other bytes
    assert bodies.get(b"") is None


def test_adding_a_body_again_keeps_the_first_entry() -> None:
    bodies = KnownBodies()
    first = known("a")
    bodies.add(b"x", first)
    bodies.add(b"x", known("b"))
    assert bodies.get(b"x") is first
    assert len(bodies) == 1


def test_a_body_over_the_size_limit_is_neither_kept_nor_looked_up() -> None:
    bodies = KnownBodies(max_body_bytes=8)
    bodies.add(b"123456789", known())
    assert len(bodies) == 0
    bodies.add(b"12345678", known())
    assert bodies.get(b"12345678") is not None


def test_the_entry_bound_empties_the_memo_then_starts_again() -> None:
    bodies = KnownBodies(max_entries=3)
    for raw in (b"a", b"b", b"c"):
        bodies.add(raw, known())
    assert len(bodies) == 3
    bodies.add(b"d", known())
    assert len(bodies) == 1
    assert bodies.get(b"d") is not None
    assert bodies.get(b"a") is None


def test_the_byte_bound_counts_the_raw_bodies() -> None:
    bodies = KnownBodies(max_bytes=10)
    bodies.add(b"12345", known())
    bodies.add(b"67890", known())
    assert len(bodies) == 2
    bodies.add(b"x", known())  # 11 bytes in all: over the bound
    assert len(bodies) == 1
    assert bodies.get(b"x") is not None


def test_a_known_body_gives_the_key_of_every_model_and_scope_it_is_asked_for() -> None:
    canonical = canonical_body({"messages": [{"role": "user", "content": "hi"}]})
    entry = KnownBody(model="gpt-4o", stream=False, include_usage=False, canonical=canonical)
    asks = [("gpt-4o", "a"), ("gpt-4o", "a"), ("gpt-4o", "b"), ("gpt-4o", None)]
    asks += [("fast/gpt-4o", None), ("gpt-4o", "a")]
    for model, scope in asks:
        assert entry.key("chat", model, scope) == key_for("chat", canonical, model, scope)
