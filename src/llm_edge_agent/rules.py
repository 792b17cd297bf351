"""``[[rules]]``: pick a route for a request from its model, headers, key, team, size and
metadata.

Rules are tried in config order; the first whose every *present* condition holds names
the route, and no match (or no rules) gives ``None``: the model name routes as usual.
Within a rule the conditions are ANDed; a list condition (``models``, ``keys``,
``teams``) holds when any entry matches, a table condition (``headers``, ``metadata``)
when every entry does.

Matching, all precompiled once:

* ``models``: ``fnmatch`` globs on the requested model name, case-sensitive, like the
  providers' ``models`` globs.
* ``headers``: lower-case header name -> glob on the value, case-insensitive (header
  values such as ``X-Priority: High`` are conventionally case-insensitive). A missing
  header fails the condition. The ``headers`` mapping passed in must use lower-case names.
* ``keys``: the caller's key id (``auth.key_id`` of its SHA-256, as logged as
  ``tenant``). ``teams``: the caller belongs to a listed team, from ``[auth.teams]``,
  whose members are raw keys or ``sha256:<hex>`` digests; both resolve to key ids here.
* ``min_prompt_tokens`` / ``max_prompt_tokens``: inclusive bounds on the estimated
  prompt tokens. The count is asked for lazily, at most once per request, and only when
  a rule whose other conditions all hold has a bound (bounds are checked last).
* ``metadata``: the body's ``metadata`` object has the field, its value is a string,
  number or boolean (numbers as ``str()``, booleans as ``true``/``false``) and the glob
  matches, case-sensitive. A missing or non-object ``metadata`` fails the condition.

An empty rule set costs one truth test per request.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .auth import entry_digest, key_id
from .config import RuleConfig

__all__ = ["RuleSet"]

_Match = Callable[[str], re.Match[str] | None]
_NO_TEAMS: Final[frozenset[str]] = frozenset()
_UNREAD: Final = object()


def _glob(pattern: str, ignore_case: bool = False) -> _Match:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE if ignore_case else 0).match


def _metadata_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


class _Rule:
    """One compiled rule; empty tuples and ``None`` mean "no such condition"."""

    __slots__ = (
        "headers",
        "index",
        "keys",
        "max_tokens",
        "metadata",
        "min_tokens",
        "models",
        "route",
        "teams",
    )

    def __init__(self, index: int, rule: RuleConfig) -> None:
        self.index = index
        self.route = rule.route
        self.models: tuple[_Match, ...] = tuple(_glob(g) for g in rule.models)
        self.headers: tuple[tuple[str, _Match], ...] = tuple(
            (name.lower(), _glob(g, ignore_case=True)) for name, g in rule.headers.items()
        )
        self.keys: frozenset[str] | None = (
            frozenset(k.lower() for k in rule.keys) if rule.keys else None
        )
        self.teams: frozenset[str] | None = frozenset(rule.teams) if rule.teams else None
        self.min_tokens = rule.min_prompt_tokens
        self.max_tokens = rule.max_prompt_tokens
        self.metadata: tuple[tuple[str, _Match], ...] = tuple(
            (name, _glob(g)) for name, g in rule.metadata.items()
        )

    def __repr__(self) -> str:
        return f"_Rule(#{self.index} -> {self.route!r})"


def _team_members(teams: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """key id -> the names of the teams that key belongs to."""
    members: dict[str, set[str]] = {}
    for team, keys in teams.items():
        for i, entry in enumerate(keys):
            digest = entry_digest(f"auth.teams.{team}[{i}]", entry)
            members.setdefault(key_id(digest), set()).add(team)
    return {kid: frozenset(names) for kid, names in members.items()}


class RuleSet:
    """The compiled ``[[rules]]`` of a config, and the team membership they test."""

    __slots__ = ("_members", "_rules")

    def __init__(
        self, rules: Sequence[RuleConfig], teams: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self._rules: tuple[_Rule, ...] = tuple(_Rule(i, r) for i, r in enumerate(rules))
        self._members = _team_members(teams or {})

    def __repr__(self) -> str:
        return f"RuleSet(rules={len(self._rules)}, members={len(self._members)})"

    def __len__(self) -> int:
        return len(self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def uses_prompt_tokens(self) -> bool:
        """Whether any rule has a prompt-token bound."""
        return any(r.min_tokens is not None or r.max_tokens is not None for r in self._rules)

    def teams_of(self, tenant: str | None) -> frozenset[str]:
        """The teams of a caller's key id (empty for unknown keys and no key)."""
        if tenant is None:
            return _NO_TEAMS
        return self._members.get(tenant, _NO_TEAMS)

    def route_for(
        self,
        model: str,
        headers: Mapping[str, str],
        tenant: str | None,
        body: Mapping[str, Any],
        prompt_tokens: Callable[[], int],
    ) -> str | None:
        """The route of the first matching rule, or None."""
        rules = self._rules
        if not rules:
            return None
        metadata: Any = _UNREAD
        tokens: int | None = None
        for rule in rules:
            if rule.keys is not None and (tenant is None or tenant not in rule.keys):
                continue
            if rule.teams is not None and rule.teams.isdisjoint(self.teams_of(tenant)):
                continue
            if rule.models and not any(match(model) for match in rule.models):
                continue
            if rule.headers and not _headers_match(rule.headers, headers):
                continue
            if rule.metadata:
                if metadata is _UNREAD:
                    metadata = body.get("metadata") if isinstance(body, dict | Mapping) else None
                if not _metadata_match(rule.metadata, metadata):
                    continue
            if rule.min_tokens is not None or rule.max_tokens is not None:
                if tokens is None:
                    tokens = prompt_tokens()
                if rule.min_tokens is not None and tokens < rule.min_tokens:
                    continue
                if rule.max_tokens is not None and tokens > rule.max_tokens:
                    continue
            return rule.route
        return None


def _headers_match(conditions: tuple[tuple[str, _Match], ...], headers: Mapping[str, str]) -> bool:
    for name, match in conditions:
        value = headers.get(name)
        if not isinstance(value, str) or match(value) is None:
            return False
    return True


def _metadata_match(conditions: tuple[tuple[str, _Match], ...], metadata: Any) -> bool:
    if not isinstance(metadata, dict):
        return False
    for name, match in conditions:
        text = _metadata_text(metadata.get(name))
        if text is None or match(text) is None:
            return False
    return True
