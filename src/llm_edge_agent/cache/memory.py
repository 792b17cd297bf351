"""The per-process L1 response cache: W-TinyLFU, bounded by entries and bytes, TTL each.

Layout (after Caffeine and Moka, which the seeds used; Einziger, Friedman, Manes,
"TinyLFU: A Highly Efficient Cache Admission Policy", 2017)::

    put ──> window LRU (1%) ──overflow──> admission duel ──> probation ──hit──> protected
                                          (sketch freq of      (main SLRU: protected 80%,
                                           candidate vs main    its overflow demoted back
                                           LRU victim)          to probation)

A new entry always lands in the small window, so a burst of new keys can hit while fresh.
An entry leaving the window joins the main space only if the frequency sketch says it is
asked for more often than the main space's least recently used entry; otherwise the
newcomer is dropped. One-off keys (a scan, a crawler, unique prompts) so never push the
popular answers out, which is where plain LRU loses.

A victim that wins its duel stays cached but moves to the back of its segment, so the
next leaver duels the next least recently used entry. Otherwise one stale hot entry would
gate admission alone: an entry at the head of probation was not read since it got there
(a read promotes it), yet its count may still be saturated at 15, which no candidate can
beat (ties go to the incumbent), and saturated increments do not count towards the
halving, so with traffic on a small new set the sketch may never age it. The victim is
protected's oldest only when probation is empty (the byte bound reached first, every main
entry read), and the same holds there. An entry passed over is still evicted later by a
candidate that outcounts it, or after its count halves.

The frequency sketch is a count-min sketch, four rows of 4-bit saturating counters
(stored a byte each: a shift-free read is worth the 16 KiB per 1,000 entries), halved
every ``SAMPLE_FACTOR x max_entries`` increments so old popularity fades. Every ``get``
(hit or miss) and every ``put`` counts as an access.

Expired entries are dropped when read, and first when a victim is needed. No threads and
no locks: one event loop per process owns the cache, and every method runs to completion.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_FRACTION = 0.01  # of max_entries and max_bytes: Caffeine's starting split
PROTECTED_FRACTION = 0.8  # of the main space
SKETCH_DEPTH = 4  # rows of the count-min sketch
SKETCH_WIDTH_FACTOR = 4  # counters per row, per entry of capacity (rounded up to 2**n)
SKETCH_MIN_WIDTH = 1024  # small caches get room enough that collisions stay rare
SAMPLE_FACTOR = 10  # increments per entry of capacity between two halvings
COUNTER_MAX = 15  # 4-bit counters
_HALVE = bytes(i >> 1 for i in range(256))
_MASK32 = 0xFFFFFFFF


class CacheEntry:
    """A stored answer: the bytes, when they were stored and when they stop being served."""

    __slots__ = ("decoded", "expires_at", "size", "stored_at", "value")

    def __init__(self, value: bytes, stored_at: float, expires_at: float) -> None:
        self.value = value
        self.stored_at = stored_at
        self.expires_at = expires_at
        self.size = len(value)
        self.decoded: object = None  # the caller's parsed form of ``value``, memoized

    def __repr__(self) -> str:
        return (
            f"CacheEntry(size={self.size}, stored_at={self.stored_at:.3f}, "
            f"expires_at={self.expires_at:.3f})"
        )


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int  # entries pushed out of the main space (or the window) to make room
    rejected: int  # admissions refused: lost the duel, or larger than max_bytes
    expired: int  # entries dropped because their TTL had passed

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class FrequencySketch:
    """Approximate access counts of recent keys, aged by periodic halving."""

    __slots__ = ("_additions", "_mask", "_sample_size", "_table", "_width")

    def __init__(self, capacity: int) -> None:
        width = SKETCH_MIN_WIDTH
        while width < capacity * SKETCH_WIDTH_FACTOR:
            width <<= 1
        self._width = width
        self._mask = width - 1
        self._table = bytearray(width * SKETCH_DEPTH)
        self._sample_size = max(capacity, 1) * SAMPLE_FACTOR
        self._additions = 0

    def increment(self, key: str) -> None:
        # Double hashing (Kirsch-Mitzenmacher) from the halves of one str hash: four
        # nearly independent row indexes for the price of one hash() call.
        h = hash(key)
        h1 = h & _MASK32
        h2 = ((h >> 32) & _MASK32) | 1
        mask, width, table = self._mask, self._width, self._table
        added = False
        i = h1 & mask
        if table[i] < COUNTER_MAX:
            table[i] += 1
            added = True
        i = width + ((h1 + h2) & mask)
        if table[i] < COUNTER_MAX:
            table[i] += 1
            added = True
        i = 2 * width + ((h1 + 2 * h2) & mask)
        if table[i] < COUNTER_MAX:
            table[i] += 1
            added = True
        i = 3 * width + ((h1 + 3 * h2) & mask)
        if table[i] < COUNTER_MAX:
            table[i] += 1
            added = True
        if added:
            self._additions += 1
            if self._additions >= self._sample_size:
                self._reset()

    def frequency(self, key: str) -> int:
        h = hash(key)
        h1 = h & _MASK32
        h2 = ((h >> 32) & _MASK32) | 1
        mask, width, table = self._mask, self._width, self._table
        return min(
            table[h1 & mask],
            table[width + ((h1 + h2) & mask)],
            table[2 * width + ((h1 + 2 * h2) & mask)],
            table[3 * width + ((h1 + 3 * h2) & mask)],
        )

    def _reset(self) -> None:
        # translate() halves every counter in C: tens of microseconds once per sample,
        # against milliseconds for a Python loop.
        self._table = self._table.translate(_HALVE)
        self._additions //= 2

    def __repr__(self) -> str:
        return f"FrequencySketch(width={self._width}, depth={SKETCH_DEPTH})"


class MemoryCache:
    """Bytes by key, bounded by ``max_entries`` and ``max_bytes``, each entry with a TTL."""

    __slots__ = (
        "_bytes",
        "_clock",
        "_evictions",
        "_expired",
        "_hits",
        "_main_cap",
        "_max_bytes",
        "_max_entries",
        "_misses",
        "_probation",
        "_protected",
        "_protected_cap",
        "_rejected",
        "_sketch",
        "_window",
        "_window_bytes",
        "_window_cap",
        "_window_max_bytes",
    )

    def __init__(
        self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._window_cap = max(1, round(max_entries * WINDOW_FRACTION))
        self._window_max_bytes = max(1, round(max_bytes * WINDOW_FRACTION))
        self._main_cap = max_entries - self._window_cap
        self._protected_cap = int(self._main_cap * PROTECTED_FRACTION)
        self._window: OrderedDict[str, CacheEntry] = OrderedDict()
        self._probation: OrderedDict[str, CacheEntry] = OrderedDict()
        self._protected: OrderedDict[str, CacheEntry] = OrderedDict()
        self._sketch = FrequencySketch(max_entries)
        self._bytes = 0  # of every stored entry, window and main
        self._window_bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._rejected = 0
        self._expired = 0

    # -- reads ------------------------------------------------------------------------

    def get(self, key: str, max_age_s: float | None = None) -> CacheEntry | None:
        """The live entry for ``key``; with ``max_age_s``, only one stored at most that
        many seconds ago (an older one is kept for readers with laxer bounds)."""
        self._sketch.increment(key)
        entry = self._protected.get(key)
        if entry is not None:
            segment = self._protected
        else:
            entry = self._probation.get(key)
            if entry is not None:
                segment = self._probation
            else:
                entry = self._window.get(key)
                if entry is None:
                    self._misses += 1
                    return None
                segment = self._window
        now = self._clock()
        if entry.expires_at <= now:
            self._remove(key)
            self._expired += 1
            self._misses += 1
            return None
        if max_age_s is not None and now - entry.stored_at > max_age_s:
            self._misses += 1
            return None
        self._hits += 1
        if segment is self._probation:
            del self._probation[key]
            self._protected[key] = entry
            self._demote_protected()
        else:
            segment.move_to_end(key)
        return entry

    def __contains__(self, key: object) -> bool:
        """Stored (expired or not), without counting an access."""
        return key in self._protected or key in self._probation or key in self._window

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._evictions, self._rejected, self._expired)

    # -- writes -----------------------------------------------------------------------

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds, if it fits and is admitted."""
        self._sketch.increment(key)
        if len(value) > self._max_bytes or ttl_s <= 0:
            # Never storable; a stale older value must not outlive its replacement.
            self._remove(key)
            if ttl_s > 0:
                self._rejected += 1
            return
        now = self._clock()
        entry = CacheEntry(value, now, now + ttl_s)
        if key in self._protected:
            self._replace(self._protected, key, entry)
        elif key in self._probation:
            self._replace(self._probation, key, entry)
        elif key in self._window:
            self._window_bytes += entry.size - self._window[key].size
            self._replace(self._window, key, entry)
        else:
            self._window[key] = entry
            self._window_bytes += entry.size
            self._bytes += entry.size
        self._evict(now)

    def delete(self, key: str) -> bool:
        """Drop ``key``; True if it was stored."""
        return self._remove(key)

    def clear(self) -> None:
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._bytes = self._window_bytes = 0

    # -- policy -----------------------------------------------------------------------

    def _replace(self, segment: OrderedDict[str, CacheEntry], key: str, entry: CacheEntry) -> None:
        self._bytes += entry.size - segment[key].size
        segment[key] = entry
        segment.move_to_end(key)

    def _remove(self, key: str) -> bool:
        entry = self._window.pop(key, None)
        if entry is not None:
            self._window_bytes -= entry.size
        else:
            entry = self._probation.pop(key, None)
            if entry is None:
                entry = self._protected.pop(key, None)
                if entry is None:
                    return False
        self._bytes -= entry.size
        return True

    def _demote_protected(self) -> None:
        while len(self._protected) > self._protected_cap:
            key, entry = self._protected.popitem(last=False)
            self._probation[key] = entry

    def _evict(self, now: float) -> None:
        window = self._window
        # Keep the newest entry in the window even if it alone passes the window's byte
        # share: it has had no chance to be read yet.
        while len(window) > self._window_cap or (
            self._window_bytes > self._window_max_bytes and len(window) > 1
        ):
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry.size
            self._bytes -= entry.size
            self._admit(key, entry, now)
        # Only bytes can still be over (entry counts hold by construction), e.g. after a
        # value grew in place: shed main entries, then old window ones.
        while self._bytes > self._max_bytes:
            victim = self._victim()
            if victim is None:
                if len(window) <= 1:
                    break
                key, entry = window.popitem(last=False)
                self._window_bytes -= entry.size
                self._bytes -= entry.size
                self._evictions += 1
                continue
            self._evict_main(victim, now)

    def _admit(self, key: str, entry: CacheEntry, now: float) -> None:
        """Let a window leaver into probation if it beats the victims it would displace."""
        if entry.expires_at <= now:
            self._expired += 1
            return
        main_len = len(self._probation) + len(self._protected)
        candidate_freq = -1
        while main_len >= self._main_cap or self._bytes + entry.size > self._max_bytes:
            victim = self._victim()
            if victim is None:  # nothing left to displace: the candidate cannot fit
                self._rejected += 1
                return
            segment = self._probation if victim in self._probation else self._protected
            if segment[victim].expires_at > now:
                if candidate_freq < 0:
                    candidate_freq = self._sketch.frequency(key)
                # Ties go to the incumbent: a newcomer must prove itself more popular.
                if candidate_freq <= self._sketch.frequency(victim):
                    self._rejected += 1
                    # The victim stays, but at the back of its segment, so the next
                    # leaver duels the next entry: one stale hot entry no candidate can
                    # outcount must not be the only gate until the sketch ages.
                    segment.move_to_end(victim)
                    return
            self._evict_main(victim, now)
            main_len -= 1
        self._probation[key] = entry
        self._bytes += entry.size

    def _victim(self) -> str | None:
        """The main space's least recently used entry: probation first, then protected."""
        for segment in (self._probation, self._protected):
            if segment:
                return next(iter(segment))
        return None

    def _evict_main(self, key: str, now: float) -> None:
        entry = self._probation.pop(key, None)
        if entry is None:
            entry = self._protected.pop(key)
        self._bytes -= entry.size
        if entry.expires_at <= now:
            self._expired += 1
        else:
            self._evictions += 1

    def __repr__(self) -> str:
        return (
            f"MemoryCache(entries={len(self)}/{self._max_entries}, "
            f"bytes={self._bytes}/{self._max_bytes}, window={len(self._window)}, "
            f"probation={len(self._probation)}, protected={len(self._protected)}, "
            f"hits={self._hits}, misses={self._misses}, evictions={self._evictions}, "
            f"rejected={self._rejected})"
        )
