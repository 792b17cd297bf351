"""Per-request cache controls from request headers (INTERFACE §5).

``Cache-Control: no-cache`` skips the lookup but still stores; ``no-store`` does neither;
``max-age=N`` accepts only an entry at most N seconds old; ``x-llm-edge-cache-ttl: S``
keeps what this request stores for S seconds instead of ``cache.ttl_s``. Unknown
directives are ignored, as HTTP caches do; a malformed number is the client's error.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidRequestError

TTL_HEADER = "x-llm-edge-cache-ttl"
MAX_TTL_S = 30 * 24 * 3600.0


class CacheControls:
    __slots__ = ("lookup", "max_age_s", "store", "ttl_s")

    def __init__(
        self,
        lookup: bool = True,
        store: bool = True,
        max_age_s: float | None = None,
        ttl_s: float | None = None,
    ) -> None:
        self.lookup = lookup
        self.store = store
        self.max_age_s = max_age_s
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return (
            f"CacheControls(lookup={self.lookup}, store={self.store}, "
            f"max_age_s={self.max_age_s}, ttl_s={self.ttl_s})"
        )


DEFAULT = CacheControls()


def _seconds(value: str, what: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_TTL_S:
        raise InvalidRequestError(
            f"{what} must be a number of seconds between 0 and {MAX_TTL_S:g}, got {value!r}",
            param=what,
        )
    return seconds


def parse_controls(headers: Mapping[str, str]) -> CacheControls:
    cache_control = headers.get("cache-control")
    ttl = headers.get(TTL_HEADER)
    if not cache_control and ttl is None:
        return DEFAULT
    controls = CacheControls()
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name == "no-store":
            controls.lookup = controls.store = False
        elif name == "no-cache":
            controls.lookup = False
        elif name == "max-age":
            controls.max_age_s = _seconds(value.strip().strip('"'), "Cache-Control max-age")
    if ttl is not None:
        controls.ttl_s = _seconds(ttl.strip(), TTL_HEADER)
    return controls
