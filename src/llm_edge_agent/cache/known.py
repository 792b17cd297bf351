"""Request bodies the cache has answered, by their raw bytes: what a repeat of them needs.

A client that repeats a request nearly always sends the same bytes: the same SDK renders
the same prompt the same way. So for a body the cache has already answered, a
byte-identical repeat can skip the JSON parse, the validation and the canonical form of
its cache key (``keys.canonical_body``): one dict probe (the bytes' hash) instead of
~8 µs, a fifth of an L1 hit.

What makes that safe:

- a body is added only after it was parsed, validated and answered from the cache, and
  validating a body depends on nothing but its bytes, so every entry is a valid request;
- an entry holds immutable values (no parsed dict that a request could share and change);
- the cache key is still derived per request from the tenant, the routed model and the
  stored canonical form, so nothing here can serve one tenant's answer to another;
- a repeat whose answer the cache no longer holds is parsed in full before it goes out.

Bounded by entries and bytes of raw bodies (a large body is never kept nor looked up: its
hash would cost more than it could save), and emptied when full: hot bodies come back after one
full parse each. One per pipeline, so one per endpoint and configuration.
"""

from __future__ import annotations

from .keys import key_for

KNOWN_MAX_ENTRIES = 4096
KNOWN_MAX_BYTES = 8 * 1024 * 1024  # raw bodies kept, in all
KNOWN_MAX_BODY_BYTES = 64 * 1024  # a larger body is never kept


class KnownBody:
    """What a cache hit needs from a request body, without the body."""

    __slots__ = (
        "_key",
        "_model_for",
        "_scope_for",
        "canonical",
        "include_usage",
        "model",
        "stream",
    )

    def __init__(self, model: str, stream: bool, include_usage: bool, canonical: bytes) -> None:
        self.model = model
        self.stream = stream
        self.include_usage = include_usage
        self.canonical = canonical
        self._model_for: str | None = None
        self._scope_for: str | None = None
        self._key = ""

    def __repr__(self) -> str:
        return f"KnownBody(model={self.model!r}, stream={self.stream})"

    def key(self, endpoint: str, model: str, scope: str | None) -> str:
        """The cache key of this body under ``model`` and ``scope``: composed again only
        when they differ from the last call's (a body mostly repeats from one tenant, under
        one model; ``endpoint`` is the same on every call, as there is one memo per
        endpoint)."""
        if model != self._model_for or scope != self._scope_for:
            self._key = key_for(endpoint, self.canonical, model, scope)
            self._model_for = model
            self._scope_for = scope
        return self._key


class KnownBodies:
    __slots__ = ("_bodies", "_bytes", "_max_body_bytes", "_max_bytes", "_max_entries")

    def __init__(
        self,
        max_entries: int = KNOWN_MAX_ENTRIES,
        max_bytes: int = KNOWN_MAX_BYTES,
        max_body_bytes: int = KNOWN_MAX_BODY_BYTES,
    ) -> None:
        self._bodies: dict[bytes, KnownBody] = {}
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"KnownBodies({len(self._bodies)} bodies, {self._bytes} bytes)"

    def __len__(self) -> int:
        return len(self._bodies)

    def get(self, raw: bytes) -> KnownBody | None:
        if len(raw) > self._max_body_bytes:
            return None  # never kept; and hashing it could cost more than it saves
        return self._bodies.get(raw)

    def add(self, raw: bytes, known: KnownBody) -> None:
        size = len(raw)
        if size > self._max_body_bytes or raw in self._bodies:
            return
        if len(self._bodies) >= self._max_entries or self._bytes + size > self._max_bytes:
            self._bodies.clear()
            self._bytes = 0
        self._bodies[raw] = known
        self._bytes += size
