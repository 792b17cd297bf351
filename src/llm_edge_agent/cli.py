"""``llm-edge-agent [serve] ...`` and ``llm-edge-agent check-config FILE``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from . import __version__
from .config import ENGINES, Config, find_config_path, load_config
from .errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-edge-agent",
        description="A fast OpenAI-compatible LLM gateway.",
    )
    parser.add_argument("--version", action="version", version=f"llm-edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the gateway (the default command)")
    for p in (parser, serve):
        p.add_argument("--config", metavar="FILE", help="TOML config file")
        p.add_argument("--host", help="listen address (default 0.0.0.0, env HOST)")
        p.add_argument("--port", type=int, help="listen port (default 8080, env PORT)")
        p.add_argument("--workers", type=int, help="worker processes (default 1, env WORKERS)")
        p.add_argument("--engine", choices=ENGINES, help="HTTP server engine (default native)")
    check = sub.add_parser("check-config", help="validate a config file and print the result")
    check.add_argument("file", metavar="FILE")
    return parser


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    if args.host:
        server = replace(server, host=args.host)
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise ConfigError("--port", f"must be between 1 and 65535, got {args.port}")
        server = replace(server, port=args.port)
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError("--workers", f"must be >= 1, got {args.workers}")
        server = replace(server, workers=args.workers)
    if args.engine:
        server = replace(server, engine=args.engine)
    return replace(config, server=server)


def describe(config: Config) -> str:
    """The effective providers and routes, for humans. Never shows a key."""
    lines = [f"config: {config.source or '(environment only)'}: OK"]
    s = config.server
    lines.append(
        f"server: {s.host}:{s.port} engine={s.engine} workers={s.workers} "
        f"metrics_port={s.metrics_port or 'off'}"
    )
    lines.append(f"providers ({len(config.providers)}):")
    if not config.providers:
        lines.append("  (none: requests will get 503)")
    for p in config.providers:
        key = "set" if p.api_key else "not set"
        models = ", ".join(p.models) or "(only via provider/model or a route)"
        url = p.base_url or "(default)"
        lines.append(f"  {p.name}: type={p.type} base_url={url} api_key={key} models={models}")
    lines.append(f"routes ({len(config.routes)}):")
    for r in config.routes:
        targets = ", ".join(f"{t.provider}/{t.model} (weight {t.weight:g})" for t in r.targets)
        fallbacks = f" fallbacks={', '.join(r.fallbacks)}" if r.fallbacks else ""
        lines.append(f"  {r.model}: strategy={r.strategy} targets={targets}{fallbacks}")
    c = config.cache
    lines.append(
        f"cache: {'on' if c.enabled else 'off'} ttl_s={c.ttl_s:g} "
        f"l2={'redis' if c.redis_url else 'off'}"
    )
    keys = len(config.auth.api_keys)
    lines.append(f"auth: {keys} client key(s){'' if keys else ' (open: no key required)'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.command == "check-config":
        try:
            config = load_config(args.file, env)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(describe(config))
        return 0
    try:
        config = _with_flags(load_config(find_config_path(args.config, env), env), args)
    except ConfigError as exc:
        print(f"llm-edge-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    from .server.supervisor import serve

    return serve(config)
