"""Frames, chunking and reassembly: round trips; every corruption is rejected with a typed error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lockgate.protocol.cipher import decrypt, encrypt, zero_pad
from lockgate.protocol.crc import strip_crc, with_crc
from lockgate.protocol.errors import ChecksumError, FrameError, ProtocolError
from lockgate.protocol.frames import (
    CHUNK_SIZE,
    GdioFrame,
    GdioRequest,
    Reassembler,
    UsdioMessage,
    chunks,
    status_frame,
    wire_auth_id,
)

keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
ivs = st.binary(min_size=16, max_size=16)
usdio_messages = st.builds(
    UsdioMessage,
    auth_id=st.integers(0, 255),
    command=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=120),
)
gdio_frames = st.builds(GdioFrame, type=st.integers(0, 255), payload=st.binary(max_size=60))


@given(st.binary(min_size=1, max_size=300), st.integers(1, CHUNK_SIZE))
def test_chunks_rejoin_to_the_frame(frame: bytes, size: int) -> None:
    pieces = chunks(frame, size)
    assert b"".join(pieces) == frame
    assert all(0 < len(p) <= size for p in pieces)
    assert all(len(p) == size for p in pieces[:-1])


@given(usdio_messages, keys, ivs)
def test_usdio_round_trip_through_chunks(message: UsdioMessage, key: bytes, iv: bytes) -> None:
    wire = message.encrypt(key, iv)
    assert wire[1] == len(wire)
    assert (len(wire) - 2) % 16 == 0
    reassembler = Reassembler(18)
    results = [reassembler.feed(piece) for piece in chunks(wire)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == wire
    assert UsdioMessage.decrypt(wire, key, iv) == message


@given(gdio_frames)
def test_gdio_round_trip_through_chunks(frame: GdioFrame) -> None:
    encoded = frame.encode()
    reassembler = Reassembler()
    *waiting, last = [reassembler.feed(piece) for piece in chunks(encoded)]
    assert waiting == [None] * len(waiting)
    assert last is not None
    assert GdioFrame.decode(last) == frame


@given(gdio_frames, st.data())
def test_corrupted_gdio_frame_is_rejected(frame: GdioFrame, data: st.DataObject) -> None:
    encoded = bytearray(frame.encode())
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    encoded[position] ^= flip
    with pytest.raises(FrameError):
        GdioFrame.decode(bytes(encoded))


@given(usdio_messages, keys, ivs, st.data())
def test_corrupted_usdio_frame_is_rejected(
    message: UsdioMessage, key: bytes, iv: bytes, data: st.DataObject
) -> None:
    wire = bytearray(message.encrypt(key, iv))
    position = data.draw(st.integers(0, len(wire) - 1), label="position")
    wire[position] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        decoded = UsdioMessage.decrypt(bytes(wire), key, iv)
    except FrameError:
        return
    # CBC: a changed last-block byte garbles the frame; only a CRC collision (p = 2**-16 with
    # the length and padding checks on top) could decode, and never to the original message.
    assert decoded != message


@given(st.binary(max_size=40))
def test_request_frames_accept_only_their_own_encoding(raw: bytes) -> None:
    try:
        request = GdioRequest.decode(raw)
    except FrameError:
        return
    assert request.encode() == raw


def test_request_iv_frame() -> None:
    assert GdioRequest(0x0001, 0x0009).encode().hex() == "01000900ec48"
    assert GdioRequest.decode(bytes.fromhex("01000900ec48")) == GdioRequest(1, 9)


def test_status_frame_matches_the_spec() -> None:
    assert status_frame(0x30).encode().hex() == "0e05303b1e"


def test_checksum_error_is_a_frame_error() -> None:
    with pytest.raises(ChecksumError):
        strip_crc(b"\x01\x02\x00\x00")
    assert strip_crc(with_crc(b"abc")) == b"abc"


def test_reassembler_rejects_overrun_and_recovers() -> None:
    reassembler = Reassembler()
    good = status_frame(0x02).encode()
    with pytest.raises(FrameError):
        reassembler.feed(good + b"\x00")
    assert reassembler.pending == 0
    assert reassembler.feed(good) == good


def test_reassembler_rejects_impossible_lengths() -> None:
    with pytest.raises(FrameError, match="outside"):
        Reassembler(18).feed(b"\x01\x05")
    with pytest.raises(FrameError, match="exceeds"):
        Reassembler().feed(bytes(21))
    with pytest.raises(FrameError, match="empty"):
        Reassembler().feed(b"")


def test_reassembler_waits_for_the_length_byte() -> None:
    reassembler = Reassembler()
    frame = status_frame(0x0B).encode()
    assert reassembler.feed(frame[:1]) is None
    assert reassembler.feed(frame[1:]) == frame


def test_wire_layout_checks() -> None:
    with pytest.raises(FrameError, match="shorter"):
        wire_auth_id(b"\x01\x03\x00")
    with pytest.raises(FrameError, match="says"):
        wire_auth_id(b"\x01\x20" + bytes(16))
    with pytest.raises(FrameError, match="whole blocks"):
        wire_auth_id(b"\x01\x13" + bytes(17))


@given(st.binary(min_size=1, max_size=64), keys, ivs)
def test_cipher_round_trip_keeps_zero_padding(plain: bytes, key: bytes, iv: bytes) -> None:
    assert decrypt(key, iv, encrypt(key, iv, plain)) == zero_pad(plain)


def test_cipher_rejects_bad_key_iv_and_length() -> None:
    with pytest.raises(FrameError):
        encrypt(bytes(15), bytes(16), b"x")
    with pytest.raises(FrameError):
        encrypt(bytes(16), bytes(8), b"x")
    with pytest.raises(FrameError):
        decrypt(bytes(16), bytes(16), bytes(15))
    with pytest.raises(FrameError):
        decrypt(bytes(16), bytes(16), b"")


@given(st.binary(min_size=16, max_size=96).filter(lambda b: len(b) % 16 == 0), keys, ivs)
def test_random_ciphertext_never_raises_another_kind(cipher: bytes, key: bytes, iv: bytes) -> None:
    frame = bytes((1, len(cipher) + 2)) + cipher
    assume(len(frame) <= 0xFF)
    with contextlib.suppress(ProtocolError):
        UsdioMessage.decrypt(frame, key, iv)
