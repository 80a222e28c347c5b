"""The decoder's one-whole-request path gives what the general path gives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.postfix.netstring import NetstringDecoder, NetstringError


def _general(max_length: int, chunks: list[bytes]) -> list[bytes | type[NetstringError] | None]:
    decoder = NetstringDecoder(max_length)
    out: list[bytes | type[NetstringError] | None] = []
    for chunk in chunks:
        decoder.feed(chunk)
        out.extend(_drain(decoder))
    return out


def _whole(max_length: int, chunks: list[bytes]) -> list[bytes | type[NetstringError] | None]:
    decoder = NetstringDecoder(max_length)
    out: list[bytes | type[NetstringError] | None] = []
    for chunk in chunks:
        payload = decoder.take_whole(chunk)
        if payload is not None:
            assert decoder.buffered == 0
            out.append(payload)
        out.extend(_drain(decoder))
    return out


def _drain(decoder: NetstringDecoder) -> list[bytes | type[NetstringError] | None]:
    out: list[bytes | type[NetstringError] | None] = []
    while True:
        try:
            payload = decoder.next_payload()
        except NetstringError as exc:
            out.append(type(exc))
            return out
        if payload is None:
            return out
        out.append(payload)


_FRAMED = st.binary(max_size=30).map(lambda p: b"%d:%s," % (len(p), p))
_CHUNK = st.one_of(_FRAMED, st.binary(max_size=12), st.lists(_FRAMED, max_size=3).map(b"".join),
                   st.sampled_from([b"03:abc,", b"0:,", b"100:", b"9999:x,", b":,", b"3:ab,"]))


@given(st.integers(0, 40), st.lists(_CHUNK, min_size=1, max_size=6))
def test_whole_requests_decode_as_the_general_path_does(
        max_length: int, chunks: list[bytes]) -> None:
    assert _whole(max_length, chunks) == _general(max_length, chunks)


@pytest.mark.parametrize("data", [b"3:abc,", b"0:,", b"10:0123456789,"])
def test_one_whole_request_is_taken_without_buffering(data: bytes) -> None:
    decoder = NetstringDecoder(100)
    assert decoder.take_whole(data) == data[data.index(b":") + 1 : -1]
    assert decoder.buffered == 0
