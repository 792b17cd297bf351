"""HTTP/1.1 framing of the native engine: pure functions, no sockets."""

from __future__ import annotations

import pytest

from llm_edge_agent.server.http1 import (
    DateHeader,
    encode_chunk,
    encode_head,
    request_path,
    status_line,
)


def test_status_lines_carry_the_standard_reason_and_survive_unknown_codes() -> None:
    assert status_line(200) == "HTTP/1.1 200 OK\r\n"
    assert status_line(413) == "HTTP/1.1 413 Request Entity Too Large\r\n"
    assert status_line(599) == "HTTP/1.1 599 Unknown\r\n"


def test_a_head_with_a_length_lists_the_headers_in_order_and_ends_with_a_blank_line() -> None:
    head = encode_head(
        201,
        {"x-request-id": "abc", "x-llm-edge-cache": "miss"},
        "date: D\r\n",
        content_type="application/json",
        content_length=12,
        keep_alive=True,
    )
    assert head == (
        b"HTTP/1.1 201 Created\r\nx-request-id: abc\r\nx-llm-edge-cache: miss\r\n"
        b"content-type: application/json\r\ncontent-length: 12\r\ndate: D\r\n\r\n"
    )


def test_a_chunked_head_says_so_and_a_closing_head_says_connection_close() -> None:
    head = encode_head(
        200,
        {},
        "",
        content_type="text/event-stream",
        content_length=None,
        chunked=True,
        keep_alive=False,
    )
    assert b"transfer-encoding: chunked\r\n" in head
    assert b"content-length" not in head
    assert head.endswith(b"connection: close\r\n\r\n")


def test_a_body_framed_by_the_close_has_neither_length_nor_chunks() -> None:
    head = encode_head(
        200, {}, "", content_type="text/event-stream", content_length=None, keep_alive=False
    )
    assert b"content-length" not in head and b"transfer-encoding" not in head


def test_header_values_outside_latin_1_cannot_break_the_head() -> None:
    head = encode_head(
        200,
        {"x-note": "caf\u00e9 \u2603"},
        "",
        content_type="a/b",
        content_length=0,
        keep_alive=True,
    )
    assert b"x-note: caf\xe9 ?\r\n" in head


def test_chunks_are_framed_with_their_hex_length() -> None:
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/v1/chat/completions", "/v1/chat/completions"),
        (b"/v1/models?limit=5", "/v1/models"),
        (b"/v1/models#frag", "/v1/models"),
        (b"/v1/models/ft%3Agpt-4o%2Fmine", "/v1/models/ft:gpt-4o/mine"),
        (b"/v1/models/caf%C3%A9", "/v1/models/caf\u00e9"),
        (b"http://gateway.local:8080/v1/models?x=1", "/v1/models"),
        (b"http://gateway.local", "/"),
        (b"*", "*"),
    ],
)
def test_the_request_path_is_the_decoded_path_of_any_target_form(target: bytes, path: str) -> None:
    assert request_path(target) == path


def test_the_date_line_is_formatted_once_a_second() -> None:
    date = DateHeader()
    first = date.line(1_795_000_000.1)
    assert first == "date: Wed, 18 Nov 2026 11:06:40 GMT\r\n"
    assert date.line(1_795_000_000.9) is first  # same second: not formatted again
    assert date.line(1_795_000_001.0) == "date: Wed, 18 Nov 2026 11:06:41 GMT\r\n"
