"""The one reader of a lock's GDIO indications, shared by the session and the driver's watch."""

from __future__ import annotations

import pytest

from lockgate.protocol.crc import with_crc
from lockgate.protocol.errors import FrameError, ProtocolError, UnexpectedFrameError
from lockgate.protocol.frames import GdioFrame, chunks, iv_frame, status_frame
from lockgate.protocol.indications import GdioReader, IvIndicated, StatusIndicated
from lockgate.protocol.status import Status


def test_a_status_and_an_iv_are_read_whole() -> None:
    reader = GdioReader()
    assert reader.feed(status_frame(Status.CLOSED).encode()) == StatusIndicated(Status.CLOSED)
    iv = bytes(range(16))
    pieces = chunks(iv_frame(iv).encode(), size=7)
    assert [reader.feed(piece) for piece in pieces] == [None, None, IvIndicated(iv)]


def test_an_unnamed_status_is_reported_as_its_byte() -> None:
    assert GdioReader().feed(status_frame(0x55).encode()) == StatusIndicated(0x55)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (GdioFrame(0x0E, b"\x02\x02").encode(), FrameError),  # a status of two bytes
        (GdioFrame(0x0E, b"").encode(), FrameError),  # a status of none
        (GdioFrame(0x09, bytes(15)).encode(), FrameError),  # a short IV
        (GdioFrame(0x44, b"\x02").encode(), UnexpectedFrameError),  # a type no lock sends
        (with_crc(bytes((0x0E, 5, 0x02)))[:-1] + b"\x00", ProtocolError),  # a broken CRC
    ],
)
def test_a_bad_frame_raises_and_the_next_one_reads_clean(
    frame: bytes, error: type[ProtocolError]
) -> None:
    reader = GdioReader()
    with pytest.raises(error):
        reader.feed(frame)
    assert reader.feed(status_frame(Status.OPEN).encode()) == StatusIndicated(Status.OPEN)
