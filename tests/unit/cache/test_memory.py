from __future__ import annotations

import bisect
import itertools
import random
from collections import OrderedDict

import pytest

from llm_edge_agent.cache.memory import CacheEntry, CacheStats, FrequencySketch, MemoryCache

from ...fake_clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def small(clock: FakeClock, max_entries: int = 10, max_bytes: int = 1_000_000) -> MemoryCache:
    return MemoryCache(max_entries, max_bytes, clock=clock)


# -- get / put / delete ---------------------------------------------------------------


def test_get_returns_what_put_stored_with_its_times(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"answer", ttl_s=60)
    entry = cache.get("k")
    assert isinstance(entry, CacheEntry)
    assert entry.value == b"answer"
    assert entry.stored_at == 1000.0
    assert entry.expires_at == 1060.0


def test_get_of_an_unknown_key_is_none(clock: FakeClock) -> None:
    assert small(clock).get("missing") is None


def test_put_replaces_the_value_and_its_byte_count(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"old", ttl_s=60)
    clock.advance(5)
    cache.put("k", b"newer value", ttl_s=60)
    entry = cache.get("k")
    assert entry is not None
    assert entry.value == b"newer value"
    assert entry.stored_at == 1005.0
    assert len(cache) == 1
    assert cache.size_bytes == len(b"newer value")


def test_delete_removes_the_entry_and_reports_whether_it_was_there(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"abc", ttl_s=60)
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_clear_empties_the_cache(clock: FakeClock) -> None:
    cache = small(clock)
    for i in range(5):
        cache.put(f"k{i}", b"v", ttl_s=60)
    cache.clear()
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_contains_does_not_count_as_a_read(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"v", ttl_s=60)
    assert "k" in cache
    assert "other" not in cache
    assert cache.stats().hits == 0
    assert cache.stats().misses == 0


@pytest.mark.parametrize(("max_entries", "max_bytes"), [(0, 10), (10, 0), (-1, -1)])
def test_non_positive_bounds_are_refused(max_entries: int, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        MemoryCache(max_entries, max_bytes)


# -- TTL and max-age ------------------------------------------------------------------


def test_entry_is_served_until_its_ttl_and_dropped_after(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"v", ttl_s=10)
    clock.advance(9.999)
    assert cache.get("k") is not None
    clock.advance(0.001)
    assert cache.get("k") is None
    assert "k" not in cache
    assert cache.size_bytes == 0
    assert cache.stats().expired == 1


def test_each_entry_keeps_its_own_ttl(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("short", b"v", ttl_s=5)
    cache.put("long", b"v", ttl_s=50)
    clock.advance(10)
    assert cache.get("short") is None
    assert cache.get("long") is not None


def test_non_positive_ttl_stores_nothing_and_drops_the_old_value(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"v", ttl_s=60)
    cache.put("k", b"w", ttl_s=0)
    assert "k" not in cache
    assert cache.stats().rejected == 0


def test_max_age_refuses_an_older_entry_without_deleting_it(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"v", ttl_s=3600)
    clock.advance(30)
    assert cache.get("k", max_age_s=20) is None
    assert "k" in cache
    assert cache.get("k", max_age_s=30) is not None
    assert cache.get("k") is not None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expired) == (2, 1, 0)


def test_max_age_zero_accepts_only_an_entry_stored_this_instant(clock: FakeClock) -> None:
    cache = small(clock)
    cache.put("k", b"v", ttl_s=60)
    assert cache.get("k", max_age_s=0) is not None
    clock.advance(0.5)
    assert cache.get("k", max_age_s=0) is None


def test_expired_main_entries_make_room_before_live_ones_are_dueled(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10)
    for i in range(10):
        cache.put(f"old{i}", b"v", ttl_s=10)
        cache.get(f"old{i}")  # popular, but about to expire
    clock.advance(11)
    for i in range(10):
        cache.put(f"new{i}", b"v", ttl_s=10)
    # Every newcomer but the one still in the window got in, each over an expired entry.
    assert sum(f"new{i}" in cache for i in range(10)) == 10
    assert cache.stats().rejected == 0
    assert cache.stats().evictions == 0


# -- bounds ---------------------------------------------------------------------------


def test_entry_count_never_passes_max_entries(clock: FakeClock) -> None:
    cache = small(clock, max_entries=50)
    for i in range(1000):
        cache.put(f"k{i}", b"v", ttl_s=60)
        assert len(cache) <= 50
    assert len(cache) == 50


def test_byte_count_never_passes_max_bytes(clock: FakeClock) -> None:
    cache = small(clock, max_entries=100, max_bytes=1000)
    rng = random.Random(3)
    for _ in range(2000):
        cache.put(f"k{rng.randrange(300)}", b"x" * rng.randrange(1, 200), ttl_s=60)
        cache.get(f"k{rng.randrange(300)}")
        assert cache.size_bytes <= 1000
    assert cache.size_bytes == sum(
        len(e.value) for k in (f"k{i}" for i in range(300)) if (e := cache.get(k)) is not None
    )


def test_value_larger_than_max_bytes_is_never_stored(clock: FakeClock) -> None:
    cache = small(clock, max_bytes=100)
    cache.put("small", b"x" * 10, ttl_s=60)
    cache.put("huge", b"x" * 101, ttl_s=60)
    assert "huge" not in cache
    assert "small" in cache
    assert cache.stats().rejected == 1


def test_oversize_replacement_drops_the_stale_value(clock: FakeClock) -> None:
    cache = small(clock, max_bytes=100)
    cache.put("k", b"x" * 10, ttl_s=60)
    cache.put("k", b"x" * 101, ttl_s=60)
    assert "k" not in cache
    assert cache.size_bytes == 0


def test_value_of_exactly_max_bytes_displaces_everything_else(clock: FakeClock) -> None:
    cache = small(clock, max_bytes=100)
    for i in range(5):
        cache.put(f"k{i}", b"x" * 10, ttl_s=60)
    cache.put("big", b"x" * 100, ttl_s=60)
    assert cache.get("big") is not None
    assert len(cache) == 1
    assert cache.size_bytes == 100


def test_value_growing_in_place_sheds_other_entries(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10, max_bytes=100)
    for i in range(5):
        cache.put(f"k{i}", b"x" * 20, ttl_s=60)
    assert cache.size_bytes == 100
    cache.put("k2", b"x" * 60, ttl_s=60)
    assert cache.size_bytes <= 100
    assert "k2" in cache


def test_a_cache_of_one_entry_keeps_the_newest(clock: FakeClock) -> None:
    cache = small(clock, max_entries=1)
    cache.put("a", b"v", ttl_s=60)
    cache.put("b", b"v", ttl_s=60)
    assert len(cache) == 1
    assert cache.get("b") is not None


# -- eviction order -------------------------------------------------------------------


def fill_main(cache: MemoryCache, n: int) -> None:
    """Put k0..k{n-1}; with room to spare, all but the newest pass the window into main."""
    for i in range(n):
        cache.put(f"k{i}", b"v", ttl_s=60)


def test_newest_entry_is_always_readable_after_put(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10)
    fill_main(cache, 10)
    for i in range(10):
        cache.get(f"k{i}")
    cache.put("fresh", b"v", ttl_s=60)
    assert cache.get("fresh") is not None


def test_window_leaver_no_more_popular_than_the_victim_is_rejected(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10)  # window 1, main 9
    fill_main(cache, 10)  # k9 in the window, k0..k8 in probation
    cache.put("x", b"v", ttl_s=60)  # pushes k9 out of the window: a tie with k0
    assert "k9" not in cache
    assert "k0" in cache
    assert cache.stats().rejected == 1
    assert cache.stats().evictions == 0


def test_more_popular_leaver_evicts_the_least_recently_used_probation_entry(
    clock: FakeClock,
) -> None:
    cache = small(clock, max_entries=10)
    fill_main(cache, 9)  # k8 in the window, k0..k7 in probation
    cache.get("k0")  # read: promoted to protected, so k1 is now probation's oldest
    for _ in range(3):
        cache.get("popular")  # misses still count towards its frequency
    cache.put("popular", b"v", ttl_s=60)  # k8 leaves the window into the last free slot
    cache.put("next", b"v", ttl_s=60)  # "popular" leaves the window and duels k1
    assert "popular" in cache
    assert "k1" not in cache
    assert all(f"k{i}" in cache for i in (0, 2, 3, 4, 5, 6, 7, 8))
    assert cache.stats().evictions == 1


def test_frequently_read_entries_survive_a_scan_of_one_off_keys(clock: FakeClock) -> None:
    # 100 scan keys plus the other 19 hot ones pass between two reads of a hot key: more
    # than the 100 entries, so plain LRU would lose every hot key to the scan.
    cache = small(clock, max_entries=100)
    hot = [f"hot{i}" for i in range(20)]
    for k in hot:
        cache.put(k, b"v", ttl_s=600)
    for _ in range(3):
        for k in hot:
            assert cache.get(k) is not None  # proven popular before the scan starts
    hot_misses = 0
    for i in range(5000):
        if cache.get(f"scan{i}") is None:
            cache.put(f"scan{i}", b"v", ttl_s=600)
        if i % 100 == 99:
            for k in hot:
                if cache.get(k) is None:
                    hot_misses += 1
                    cache.put(k, b"v", ttl_s=600)
    assert hot_misses == 0
    assert all(k in cache for k in hot)


def read_through(cache: MemoryCache, key: str, value: bytes = b"v") -> bool:
    """A gateway request: True on a hit, else the answer is stored."""
    if cache.get(key) is not None:
        return True
    cache.put(key, value, ttl_s=3600)
    return False


def test_stale_hot_entry_at_probation_head_does_not_block_new_keys_forever(
    clock: FakeClock,
) -> None:
    # The bug: the hot keys still in the window when traffic moves on enter probation
    # with a saturated frequency (15) and are never read there. Once a flood of one-off
    # keys fills the cache, the first of them is the victim of every duel, wins each (no
    # candidate can count past 15, ties go to the incumbent), and no new key got in until
    # the sketch halved; with saturated keys not counting towards the halving, never.
    cache = small(clock, max_entries=1000)  # window 10
    hot = [f"hot{i}" for i in range(64)]
    for _ in range(30):
        for k in hot:
            read_through(cache, k)
    for i in range(2000):
        read_through(cache, f"uniq{i}")
    new = [f"new{i}" for i in range(64)]
    hits = [sum(read_through(cache, k) for k in new) for _ in range(12)]
    assert hits[2] > 0, hits
    assert all(h >= 60 for h in hits[3:]), hits
    assert all(k in cache for k in hot)  # passed over, not evicted: none was outcounted


def test_stale_hot_entry_at_protected_head_does_not_block_new_keys_when_bytes_bind(
    clock: FakeClock,
) -> None:
    # With the byte bound reached before the entry count, every main entry can have been
    # read (so probation is empty) and the victim is protected's least recently read one.
    cache = small(clock, max_entries=1000, max_bytes=100 * 100)  # 100 entries, window 1
    value = b"x" * 100
    for _ in range(20):
        read_through(cache, "hot", value)
    for i in range(99):
        read_through(cache, f"k{i}", value)  # pushes the previous key out of the window
        read_through(cache, f"k{i - 1}" if i else "hot", value)  # and reads it: protected
    assert cache.size_bytes == 100 * 100
    new = [f"new{i}" for i in range(4)]
    hits = [sum(read_through(cache, k, value) for k in new) for _ in range(8)]
    assert hits[-1] == len(new), hits
    assert "hot" in cache


def test_victim_that_wins_a_duel_moves_to_the_back_of_probation(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10)  # window 1, main 9
    fill_main(cache, 10)  # k9 in the window, k0..k8 in probation
    for _ in range(3):
        cache.get("popular")
    cache.put("popular", b"v", ttl_s=60)  # k9 leaves the window and ties with k0: k0 stays
    assert "k9" not in cache
    cache.put("next", b"v", ttl_s=60)  # "popular" leaves and duels k1, no longer k0
    assert "popular" in cache
    assert "k0" in cache
    assert "k1" not in cache
    assert cache.stats().rejected == 1
    assert cache.stats().evictions == 1


def test_protected_overflow_is_demoted_not_dropped(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10)  # main 9, protected 7
    fill_main(cache, 10)
    for i in range(9):
        assert cache.get(f"k{i}") is not None  # all promoted: two demoted back
    assert len(cache) == 10
    assert all(f"k{i}" in cache for i in range(10))


# -- stats and repr -------------------------------------------------------------------


def test_stats_count_hits_misses_evictions_and_rejections(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10, max_bytes=50)
    cache.put("a", b"v", ttl_s=60)
    cache.get("a")
    cache.get("a")
    cache.get("b")
    cache.put("big", b"x" * 51, ttl_s=60)
    stats = cache.stats()
    assert stats == CacheStats(hits=2, misses=1, evictions=0, rejected=1, expired=0)
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_hit_rate_of_an_unused_cache_is_zero(clock: FakeClock) -> None:
    assert small(clock).stats().hit_rate == 0.0


def test_repr_shows_fill_and_counters(clock: FakeClock) -> None:
    cache = small(clock, max_entries=10, max_bytes=100)
    cache.put("k", b"abc", ttl_s=60)
    cache.get("k")
    text = repr(cache)
    assert text.startswith("MemoryCache(entries=1/10, bytes=3/100,")
    assert "hits=1" in text
    assert "CacheEntry(size=3" in repr(cache.get("k"))


def test_sketch_counts_saturate_at_fifteen_and_halve_with_age() -> None:
    sketch = FrequencySketch(capacity=4)  # resets after 40 counted increments
    for _ in range(20):
        sketch.increment("a")
    assert sketch.frequency("a") == 15
    assert sketch.frequency("never") == 0
    for i in range(40):
        sketch.increment(f"other{i}")
    assert sketch.frequency("a") <= 7


# -- hit rate against plain LRU -------------------------------------------------------

TRACE_LENGTH = 50_000
DISTINCT_KEYS = 5_000
CAPACITY = 500


def zipf_trace(length: int, keys: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(keys)))
    total = cumulative[-1]
    return [f"z{bisect.bisect(cumulative, rng.random() * total)}" for _ in range(length)]


def scan_polluted_trace(length: int, keys: int, s: float, seed: int) -> list[str]:
    """The Zipf trace with a one-off scan key after about every other request."""
    rng = random.Random(seed + 1)
    trace: list[str] = []
    scan = itertools.count()
    for key in zipf_trace(length, keys, s, seed):
        trace.append(key)
        if rng.random() < 0.5:
            trace.append(f"scan{next(scan)}")
    return trace


def lru_hit_rate(trace: list[str], capacity: int) -> float:
    lru: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in trace:
        if key in lru:
            lru.move_to_end(key)
            hits += 1
        else:
            lru[key] = None
            if len(lru) > capacity:
                lru.popitem(last=False)
    return hits / len(trace)


def tinylfu_hit_rate(trace: list[str], capacity: int) -> float:
    cache = MemoryCache(capacity, 1 << 30, clock=FakeClock())
    for key in trace:
        if cache.get(key) is None:
            cache.put(key, b"answer", ttl_s=3600)
    return cache.stats().hit_rate


def test_hit_rate_on_a_zipf_trace_is_at_least_lrus() -> None:
    trace = zipf_trace(TRACE_LENGTH, DISTINCT_KEYS, 1.0, seed=7)
    assert tinylfu_hit_rate(trace, CAPACITY) >= lru_hit_rate(trace, CAPACITY)


def test_hit_rate_on_a_scan_polluted_trace_beats_lru_by_a_margin() -> None:
    trace = scan_polluted_trace(TRACE_LENGTH, DISTINCT_KEYS, 1.0, seed=7)
    assert tinylfu_hit_rate(trace, CAPACITY) >= lru_hit_rate(trace, CAPACITY) + 0.05
