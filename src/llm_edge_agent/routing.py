"""Model-based routing: from the client's model name to an ordered list of targets.

Resolution, first match wins (INTERFACE §4):

1. ``x-llm-edge-provider: NAME`` pins a provider (a route's targets on it, else the name as is);
2. a ``[[routes]]`` alias: its targets ordered by its strategy, then its ``fallbacks`` routes;
3. ``provider/model``: that provider, that model;
4. the first provider whose ``models`` globs match the name.

The target lists are immutable and built once per model name (memoized, bounded: names
come from clients); a strategy (``strategies.py``) only reorders them per request, from
live load facts (a ``LoadView``) and the request's size.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence

from .config import Config, RouteConfig
from .errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from .strategies import NO_SIZE, LoadView, RequestSize, StaticView, make_strategy

MEMO_MAX_ENTRIES = 4096


class Target:
    __slots__ = ("model", "provider", "route", "weight")

    def __init__(
        self, provider: str, model: str, weight: float = 1.0, route: str | None = None
    ) -> None:
        self.provider = provider
        self.model = model
        self.weight = weight
        self.route = route

    def __repr__(self) -> str:
        return f"Target({self.provider}/{self.model})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and (
            self.provider,
            self.model,
            self.weight,
            self.route,
        ) == (other.provider, other.model, other.weight, other.route)

    def __hash__(self) -> int:
        return hash((self.provider, self.model, self.route))


class _Route:
    __slots__ = ("config", "strategy", "targets")

    def __init__(self, config: RouteConfig) -> None:
        self.config = config
        self.targets = tuple(
            Target(t.provider, t.model, t.weight, route=config.model) for t in config.targets
        )
        self.strategy = make_strategy(config.strategy, self.targets)


class _Resolution:
    """A model name's routes: ordered per request by each route's strategy."""

    __slots__ = ("routes", "static")

    def __init__(self, routes: Sequence[_Route], static: Sequence[Target] = ()) -> None:
        self.routes = tuple(routes)
        self.static = tuple(static)

    def targets(self, view: LoadView, size: RequestSize) -> list[Target]:
        if not self.routes:
            return list(self.static)
        out: list[Target] = []
        seen: set[tuple[str, str]] = set()
        for route in self.routes:
            for target in route.strategy.order(route.targets, view, size):
                if (target.provider, target.model) not in seen:
                    seen.add((target.provider, target.model))
                    out.append(target)
        return out


class Router:
    def __init__(self, config: Config, view: LoadView | None = None) -> None:
        self.view: LoadView = view or StaticView()
        self._providers = [p.name for p in config.providers]
        self._provider_set = frozenset(self._providers)
        self._raw_globs = [(p.name, g) for p in config.providers for g in p.models]
        self._globs: list[tuple[str, Callable[[str], re.Match[str] | None]]] = [
            (p.name, re.compile(fnmatch.translate(g)).match)
            for p in config.providers
            for g in p.models
        ]
        self._routes = {r.model: _Route(r) for r in config.routes}
        self._chains = {name: self._chain(name) for name in self._routes}
        self._memo: dict[str, _Resolution] = {}

    def __repr__(self) -> str:
        return f"Router(providers={self._providers}, routes={list(self._routes)})"

    @property
    def configured(self) -> bool:
        return bool(self._providers)

    def route_names(self) -> list[str]:
        return list(self._routes)

    def route_config(self, name: str | None) -> RouteConfig | None:
        route = self._routes.get(name) if name is not None else None
        return route.config if route is not None else None

    def _chain(self, name: str) -> list[_Route]:
        """The route, then its fallbacks in order, then theirs (breadth first), each once."""
        out: list[_Route] = []
        stack = [name]
        while stack:
            current = stack.pop(0)
            route = self._routes[current]
            if route in out:
                continue
            out.append(route)
            stack.extend(route.config.fallbacks)
        return out

    def resolve(
        self, model: str, pinned: str | None = None, size: RequestSize = NO_SIZE
    ) -> list[Target]:
        if not self._providers:
            raise ServiceUnavailableError(
                "no provider is configured: set a provider key (e.g. OPENAI_API_KEY) or add "
                "[[providers]] to the config file",
                code="no_provider_configured",
            )
        if pinned is not None:
            return self._pinned(model, pinned)
        resolution = self._memo.get(model)
        if resolution is None:
            resolution = self._resolve(model)
            if len(self._memo) >= MEMO_MAX_ENTRIES:
                self._memo.pop(next(iter(self._memo)))
            self._memo[model] = resolution
        targets = resolution.targets(self.view, size)
        if not targets:
            raise NotFoundError(
                f"model {model!r} is not served by this gateway (no route or provider matches it)",
                param="model",
            )
        return targets

    def _resolve(self, model: str) -> _Resolution:
        if model in self._chains:
            return _Resolution(self._chains[model])
        provider, sep, rest = model.partition("/")
        if sep and rest and provider in self._provider_set:
            return _Resolution((), [Target(provider, rest)])
        for name, match in self._globs:
            if match(model):
                return _Resolution((), [Target(name, model)])
        return _Resolution(())

    def _pinned(self, model: str, provider: str) -> list[Target]:
        if provider not in self._provider_set:
            raise InvalidRequestError(
                f"x-llm-edge-provider names an unknown provider {provider!r}",
                param="x-llm-edge-provider",
                code="unknown_provider",
            )
        if model in self._chains:
            found: list[Target] = []
            for route in self._chains[model]:
                for t in route.targets:
                    if t.provider == provider and all(t.model != f.model for f in found):
                        found.append(t)
            if found:
                return found
        prefix = f"{provider}/"
        return [Target(provider, model[len(prefix) :] if model.startswith(prefix) else model)]

    def listed_models(self, known: Iterable[str] = ()) -> list[tuple[str, str]]:
        """(model id, owner) for ``/v1/models``: route aliases, literal model names, and
        the ``known`` model names admitted by a glob with a literal prefix (``gpt-4o*``)."""
        out: list[tuple[str, str]] = [(name, "llm-edge-agent") for name in self._routes]
        seen = {name for name, _ in out}

        def add(model: str, owner: str) -> None:
            if model not in seen:
                seen.add(model)
                out.append((model, owner))

        for name, glob in self._raw_globs:
            if not any(c in glob for c in "*?["):
                add(glob, name)
            elif glob[0] not in "*?[":
                for model in known:
                    if fnmatch.fnmatchcase(model, glob):
                        add(model, name)
        return out
