"""What a lock indicates on GDIO, read from its chunks: one decoder for the session and the watch.

A lock indicates two kinds of GDIO frame: the IV it hands out when a session starts, and a status
byte (motion, a blocked bolt, an alarm, an answer to a command...), which it also sends unprompted
when a rider moves the bolt by hand. :class:`GdioReader` rebuilds the frames from the chunks and
checks each (length, CRC, type, payload size) in one place; the session
(:mod:`lockgate.protocol.session`) reads both kinds, the driver's watch only the statuses. Pure:
bytes in, typed values out, every error a :class:`~lockgate.protocol.errors.ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.protocol.cipher import IV_LENGTH
from lockgate.protocol.errors import FrameError, UnexpectedFrameError
from lockgate.protocol.frames import GDIO_MIN_LENGTH, GdioFrame, GdioType, Reassembler
from lockgate.protocol.status import Status, parse_status


@dataclass(frozen=True, slots=True)
class IvIndicated:
    """The lock handed out a fresh IV (the first answer of a session)."""

    iv: bytes


@dataclass(frozen=True, slots=True)
class StatusIndicated:
    """The lock indicated one status byte; ``status`` is a plain ``int`` where the table does not
    name it (a newer firmware's code, reported rather than fatal)."""

    status: Status | int


Indication = IvIndicated | StatusIndicated


def indication_of(frame: GdioFrame) -> Indication:
    """What one whole GDIO frame from a lock says."""
    if frame.type == GdioType.IV:
        if len(frame.payload) != IV_LENGTH:
            raise FrameError(f"IV frame carries {len(frame.payload)} bytes, not {IV_LENGTH}")
        return IvIndicated(frame.payload)
    if frame.type != GdioType.STATUS:
        raise UnexpectedFrameError(f"GDIO frame of unknown type {frame.type:#04x}")
    if len(frame.payload) != 1:
        raise FrameError(f"status frame carries {len(frame.payload)} bytes, not 1")
    return StatusIndicated(parse_status(frame.payload[0]))


class GdioReader:
    """Reads a lock's GDIO indications, chunk by chunk, in order.

    :meth:`feed` returns the indication a chunk completes, else ``None``; a bad frame raises and
    leaves the reader clean for the next one.
    """

    def __init__(self) -> None:
        self._frames = Reassembler(GDIO_MIN_LENGTH)

    def reset(self) -> None:
        """Forget a half-read frame (a new session, or a new link)."""
        self._frames.reset()

    def feed(self, chunk: bytes) -> Indication | None:
        frame = self._frames.feed(chunk)
        return None if frame is None else indication_of(GdioFrame.decode(frame))
