"""The AWS event stream decoder: framing, header types, CRCs, arbitrary chunking."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib
from typing import Any

import pytest

from llm_edge_agent.providers.eventstream import (
    MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    Message,
)

# An encoder for tests: (name, type byte, value) headers and a payload -> one framed message.


def _header(name: str, kind: int, value: Any) -> bytes:
    raw_name = name.encode()
    out = bytes([len(raw_name)]) + raw_name + bytes([kind])
    if kind in (0, 1):
        return out
    fixed = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}
    if kind in fixed:
        return out + struct.pack(fixed[kind], value)
    if kind in (6, 7):
        data: bytes = value.encode() if kind == 7 else value
        return out + struct.pack(">H", len(data)) + data
    if kind == 9:
        raw: bytes = value.bytes
        return out + raw
    raise AssertionError(f"unknown header type {kind}")


def encode_message(headers: list[tuple[str, int, Any]], payload: bytes) -> bytes:
    block = b"".join(_header(name, kind, value) for name, kind, value in headers)
    total = 12 + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + payload
    return head + struct.pack(">I", zlib.crc32(head))


def encode_event(string_headers: dict[str, str], payload: bytes) -> bytes:
    return encode_message([(name, 7, value) for name, value in string_headers.items()], payload)


EVENTS = [
    ({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}'),
    ({":event-type": "contentBlockDelta"}, b'{"delta":{"text":"h\xc3\xa9llo"}}'),
    ({":event-type": "metadata"}, b""),
]
STREAM = b"".join(encode_event(h, p) for h, p in EVENTS)


def _expected() -> list[Message]:
    return [Message(h, p) for h, p in EVENTS]


def test_whole_stream_decodes_into_its_messages_with_string_headers() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(STREAM) == _expected()
    assert decoder.pending == 0
    assert decoder.feed(STREAM)[0].header_str(":event-type") == "messageStart"


def test_every_split_point_gives_the_same_messages() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = EventStreamDecoder()
        got = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert got == _expected(), cut


def test_byte_at_a_time_feeding_gives_the_same_messages() -> None:
    decoder = EventStreamDecoder()
    got: list[Message] = []
    for i in range(len(STREAM)):
        got += decoder.feed(STREAM[i : i + 1])
    assert got == _expected()


def test_all_header_value_types_decode() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    frame = encode_message(
        [
            ("t", 0, True),
            ("f", 1, False),
            ("b", 2, -5),
            ("s", 3, -300),
            ("i", 4, 70000),
            ("l", 5, 2**40),
            ("bytes", 6, b"\x00\xff"),
            ("str", 7, "text"),
            ("ts", 8, 1_700_000_000_123),
            ("id", 9, ident),
        ],
        b"{}",
    )
    (message,) = EventStreamDecoder().feed(frame)
    assert message.headers == {
        "t": True,
        "f": False,
        "b": -5,
        "s": -300,
        "i": 70000,
        "l": 2**40,
        "bytes": b"\x00\xff",
        "str": "text",
        "ts": dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC),
        "id": ident,
    }
    assert message.header_str("b") is None


def test_a_corrupt_prelude_crc_is_rejected() -> None:
    frame = bytearray(encode_event({":event-type": "x"}, b"{}"))
    frame[8] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_a_corrupt_payload_fails_the_message_crc_even_when_fed_in_pieces() -> None:
    frame = bytearray(encode_event({":event-type": "x"}, b'{"a":1}'))
    frame[-6] ^= 0x01
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes(frame[:20])) == []
    with pytest.raises(EventStreamError, match="message CRC"):
        decoder.feed(bytes(frame[20:]))


def test_an_absurd_length_is_rejected_before_buffering_it() -> None:
    prelude = struct.pack(">II", MAX_PAYLOAD_LENGTH * 4, 0)
    with pytest.raises(EventStreamError, match="impossible length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    short = struct.pack(">II", 10, 0)
    with pytest.raises(EventStreamError, match="impossible length"):
        EventStreamDecoder().feed(short + struct.pack(">I", zlib.crc32(short)))


def test_a_header_running_past_its_block_is_rejected() -> None:
    block = bytes([3]) + b"abc" + bytes([7]) + struct.pack(">H", 50) + b"short"
    total = 12 + len(block) + 4
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block
    with pytest.raises(EventStreamError, match="malformed"):
        EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head)))


def test_an_incomplete_message_stays_pending() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(STREAM[:-3]) == _expected()[:2]
    assert decoder.pending == len(encode_event(*EVENTS[2])) - 3
