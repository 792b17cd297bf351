"""An incremental decoder for AWS event stream framing (``application/vnd.amazon.eventstream``).

Bedrock's ConverseStream answers in this binary framing, not SSE
(https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html and
https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html describe it). One message::

    total length  u32 BE   (the whole message, these 4 bytes and the trailing CRC included)
    headers length u32 BE
    prelude CRC   u32 BE   (CRC-32 of the 8 bytes above)
    headers       name length u8, name (UTF-8), value type u8, value
    payload       total - headers - 16 bytes
    message CRC   u32 BE   (CRC-32 of everything before it, prelude CRC included)

The decoder is pure: it is fed arbitrary chunks and returns the messages they complete.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

PRELUDE_LENGTH: Final = 8
PRELUDE_CRC_LENGTH: Final = 4
MESSAGE_CRC_LENGTH: Final = 4
MIN_MESSAGE_LENGTH: Final = PRELUDE_LENGTH + PRELUDE_CRC_LENGTH + MESSAGE_CRC_LENGTH
# The limits AWS's own SDK decoders enforce: larger lengths mean a corrupt or hostile stream.
MAX_HEADERS_LENGTH: Final = 128 * 1024
MAX_PAYLOAD_LENGTH: Final = 24 * 1024 * 1024

# Header value types (the wire's type byte).
TYPE_TRUE: Final = 0
TYPE_FALSE: Final = 1
TYPE_BYTE: Final = 2
TYPE_SHORT: Final = 3
TYPE_INTEGER: Final = 4
TYPE_LONG: Final = 5
TYPE_BYTES: Final = 6
TYPE_STRING: Final = 7
TYPE_TIMESTAMP: Final = 8  # milliseconds since the epoch, i64
TYPE_UUID: Final = 9

_FIXED: Final[Mapping[int, struct.Struct]] = {
    TYPE_BYTE: struct.Struct(">b"),
    TYPE_SHORT: struct.Struct(">h"),
    TYPE_INTEGER: struct.Struct(">i"),
    TYPE_LONG: struct.Struct(">q"),
    TYPE_TIMESTAMP: struct.Struct(">q"),
}
_U16: Final = struct.Struct(">H")
_PRELUDE: Final = struct.Struct(">III")
_U32: Final = struct.Struct(">I")
UUID_LENGTH: Final = 16

HeaderValue = bool | int | bytes | str | dt.datetime | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, absurd length, truncated header)."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: Mapping[str, HeaderValue]
    payload: bytes

    def header_str(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Feed bytes in any chunking; get back each message as soon as it is whole."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __repr__(self) -> str:
        return f"EventStreamDecoder(pending={len(self._buf)})"

    @property
    def pending(self) -> int:
        """Bytes held of a message not yet complete (non-zero at EOF: a cut stream)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        messages: list[Message] = []
        start = 0
        buf = self._buf
        while len(buf) - start >= PRELUDE_LENGTH + PRELUDE_CRC_LENGTH:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(buf, start)
            _check_prelude(bytes(buf[start : start + PRELUDE_LENGTH]), total, headers_length)
            if zlib.crc32(buf[start : start + PRELUDE_LENGTH]) != prelude_crc:
                raise EventStreamError("event stream prelude CRC mismatch")
            if len(buf) - start < total:
                break
            end = start + total
            (message_crc,) = _U32.unpack_from(buf, end - MESSAGE_CRC_LENGTH)
            if zlib.crc32(buf[start : end - MESSAGE_CRC_LENGTH]) != message_crc:
                raise EventStreamError("event stream message CRC mismatch")
            headers_start = start + PRELUDE_LENGTH + PRELUDE_CRC_LENGTH
            payload_start = headers_start + headers_length
            headers = decode_headers(bytes(buf[headers_start:payload_start]))
            messages.append(Message(headers, bytes(buf[payload_start : end - MESSAGE_CRC_LENGTH])))
            start = end
        if start:
            del buf[:start]
        return messages


def _check_prelude(prelude: bytes, total: int, headers_length: int) -> None:
    payload_length = total - headers_length - MIN_MESSAGE_LENGTH
    if (
        total < MIN_MESSAGE_LENGTH
        or headers_length > MAX_HEADERS_LENGTH
        or payload_length < 0
        or payload_length > MAX_PAYLOAD_LENGTH
    ):
        raise EventStreamError(
            f"event stream message has an impossible length (total {total}, "
            f"headers {headers_length}, prelude {prelude.hex()})"
        )


def decode_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(data):
            name_length = data[at]
            raw_name = data[at + 1 : at + 1 + name_length]
            if len(raw_name) != name_length:
                raise ValueError("header name runs past the header block")
            name = raw_name.decode("utf-8")
            at += 1 + name_length
            value, at = _decode_value(data, at)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise EventStreamError(f"event stream header block is malformed: {exc}") from exc
    return headers


def _decode_value(data: bytes, at: int) -> tuple[HeaderValue, int]:
    kind = data[at]
    at += 1
    if kind == TYPE_TRUE:
        return True, at
    if kind == TYPE_FALSE:
        return False, at
    fixed = _FIXED.get(kind)
    if fixed is not None:
        (number,) = fixed.unpack_from(data, at)
        at += fixed.size
        if kind == TYPE_TIMESTAMP:
            return dt.datetime.fromtimestamp(number / 1000.0, tz=dt.UTC), at
        return int(number), at
    if kind in (TYPE_BYTES, TYPE_STRING):
        (length,) = _U16.unpack_from(data, at)
        at += _U16.size
        raw = data[at : at + length]
        if len(raw) != length:
            raise ValueError("header value runs past the header block")
        return (raw.decode("utf-8") if kind == TYPE_STRING else raw), at + length
    if kind == TYPE_UUID:
        raw = data[at : at + UUID_LENGTH]
        if len(raw) != UUID_LENGTH:
            raise ValueError("uuid header value is truncated")
        return uuid.UUID(bytes=raw), at + UUID_LENGTH
    raise ValueError(f"unknown header value type {kind}")
