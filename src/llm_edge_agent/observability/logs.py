"""Structured logs to stdout: one line per request (batched), plus the stdlib logger.

Request lines are buffered and written together at most every ``FLUSH_INTERVAL_S`` (or
when the buffer fills, or at shutdown), so a busy worker makes one write system call per
batch, not per request. Records never hold keys, and prompt text only when asked.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from .batching import FlushTimer

FLUSH_INTERVAL_S = 0.2
MAX_BUFFER_BYTES = 64 * 1024
LOGGER_NAME = "llm_edge_agent"
_NEWLINE = orjson.OPT_APPEND_NEWLINE


def _timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock:
    """RFC 3339 timestamps with milliseconds: formatted once per millisecond (a busy worker
    logs several lines in one), the date and time part once a second."""

    __slots__ = ("_millis", "_now", "_prefix", "_second", "_stamp")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._prefix = ""
        self._millis = -1
        self._stamp = ""

    def now(self) -> str:
        millis = int(self._now() * 1000)
        if millis == self._millis:
            return self._stamp
        self._millis = millis
        second, ms = divmod(millis, 1000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        self._stamp = f"{self._prefix}.{ms:03d}Z"
        return self._stamp


def _text_line(record: Mapping[str, Any]) -> bytes:
    parts = [str(record.get("ts", "")), str(record.get("level", "info")).upper()]
    msg = record.get("msg")
    if msg:
        parts.append(str(msg))
    for key, value in record.items():
        if key in ("ts", "level", "msg") or value is None:
            continue
        parts.append(f"{key}={value}")
    return " ".join(parts).encode() + b"\n"


class AccessLog:
    def __init__(self, *, enabled: bool = True, json: bool = True, fd: int = 1) -> None:
        self.enabled = enabled
        self._json = json
        self._fd = fd
        self._buf: list[bytes] = []
        self._size = 0
        self._timer = FlushTimer(FLUSH_INTERVAL_S, self.flush)
        self._clock = _Clock()

    def __repr__(self) -> str:
        return f"AccessLog(enabled={self.enabled}, buffered={len(self._buf)})"

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record["ts"] = self._clock.now()
        line = orjson.dumps(record, option=_NEWLINE) if self._json else _text_line(record)
        self._buf.append(line)
        self._size += len(line)
        if self._size >= MAX_BUFFER_BYTES:
            self.flush()
        else:
            self._timer.schedule()

    def flush(self) -> None:
        self._timer.cancel()
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            pass  # stdout gone (closed pipe): nothing sensible left to do with the lines


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        line = (
            _text_line(
                {
                    "ts": _timestamp(record.created),
                    "level": record.levelname,
                    "msg": record.getMessage(),
                    **fields,
                }
            )
            .decode()
            .rstrip("\n")
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str, fmt: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
