"""The lock's frames, byte by byte (docs/protocol.md, "Frames"), and their 20-byte chunks.

Three shapes travel over two characteristics:

- GDIO, app to lock: ``cmd item crc`` (6 bytes, no length byte); only "request IV" is used.
- GDIO, lock to app: ``type len payload… crc``, ``len`` counting the whole frame.
- USDIO, both ways: ``auth_id wire_len ciphertext…`` around an encrypted inner frame
  ``auth_id inner_len cmd payload… crc``.

Both lengths that the receiver reassembles by sit in the second byte and count the whole frame, so
one :class:`Reassembler` serves every frame that carries a length byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from lockgate.protocol.cipher import BLOCK, IV_LENGTH, decrypt, encrypt
from lockgate.protocol.crc import strip_crc, with_crc
from lockgate.protocol.errors import FrameError

CHUNK_SIZE = 20
"""ATT MTU 23 leaves 20 bytes for each write and each indication."""

GDIO_REQUEST_LENGTH = 6
GDIO_MIN_LENGTH = 4
USDIO_MIN_LENGTH = 2 + BLOCK
"""A USDIO wire frame: auth id, length, and at least one AES block."""
USDIO_INNER_MIN_LENGTH = 6
USDIO_MAX_CIPHERTEXT = 240
"""Longest ciphertext accepted (15 blocks): well above the longest frame of the protocol (64)."""


class GdioCommand(IntEnum):
    """Commands the app writes to GDIO."""

    READ = 0x0001


class GdioItem(IntEnum):
    """Items of a GDIO read."""

    IV = 0x0009


class GdioType(IntEnum):
    """Types of the frames a lock indicates on GDIO."""

    IV = 0x09
    STATUS = 0x0E


class UsdioCommand(IntEnum):
    """Commands inside USDIO frames, both directions."""

    READ = 0x0001
    CHALLENGE = 0x0004
    ANSWER = 0x0010
    LOCK_CONTROL = 0x0011
    CONFIG = 0x000F
    BATTERY = 0x001B


class ReadItem(IntEnum):
    """Items of a USDIO read; the reply comes back with the item as its command."""

    CHALLENGE = 0x0004
    CONFIG = 0x000F
    BATTERY = 0x001B


class LockAction(IntEnum):
    """The action byte of a lock control command."""

    OPEN = 0x01
    CLOSE = 0x02


# --- GDIO ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GdioRequest:
    """An app-to-lock GDIO frame."""

    command: int
    item: int

    def encode(self) -> bytes:
        return with_crc(self.command.to_bytes(2, "little") + self.item.to_bytes(2, "little"))

    @classmethod
    def decode(cls, frame: bytes) -> GdioRequest:
        if len(frame) != GDIO_REQUEST_LENGTH:
            raise FrameError(f"GDIO request must be {GDIO_REQUEST_LENGTH} bytes, not {len(frame)}")
        body = strip_crc(frame)
        return cls(int.from_bytes(body[0:2], "little"), int.from_bytes(body[2:4], "little"))


REQUEST_IV = GdioRequest(GdioCommand.READ, GdioItem.IV)


@dataclass(frozen=True, slots=True)
class GdioFrame:
    """A lock-to-app GDIO frame: a type byte and its payload."""

    type: int
    payload: bytes

    def encode(self) -> bytes:
        length = len(self.payload) + GDIO_MIN_LENGTH
        if length > 0xFF:
            raise FrameError(f"GDIO payload of {len(self.payload)} bytes does not fit a frame")
        return with_crc(bytes((self.type, length)) + self.payload)

    @classmethod
    def decode(cls, frame: bytes) -> GdioFrame:
        if len(frame) < GDIO_MIN_LENGTH:
            raise FrameError(f"GDIO frame of {len(frame)} bytes is shorter than {GDIO_MIN_LENGTH}")
        if frame[1] != len(frame):
            raise FrameError(f"GDIO frame says {frame[1]} bytes but has {len(frame)}")
        body = strip_crc(frame)
        return cls(body[0], bytes(body[2:]))


# --- USDIO --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsdioMessage:
    """The plaintext inner frame of a USDIO exchange."""

    auth_id: int
    command: int
    payload: bytes = b""

    def encode_inner(self) -> bytes:
        length = len(self.payload) + USDIO_INNER_MIN_LENGTH
        if length > 0xFF:
            raise FrameError(f"USDIO payload of {len(self.payload)} bytes does not fit a frame")
        return with_crc(
            bytes((self.auth_id, length)) + self.command.to_bytes(2, "little") + self.payload
        )

    @classmethod
    def decode_inner(cls, padded: bytes) -> UsdioMessage:
        """Parse an inner frame from its decrypted, zero-padded bytes."""
        if len(padded) < USDIO_INNER_MIN_LENGTH:
            raise FrameError(f"USDIO inner frame of {len(padded)} bytes is too short")
        length = padded[1]
        if not USDIO_INNER_MIN_LENGTH <= length <= len(padded) or len(padded) - length >= BLOCK:
            raise FrameError(
                f"USDIO inner length {length} does not fit {len(padded)} decrypted bytes"
            )
        if any(padded[length:]):
            raise FrameError("USDIO padding after the inner frame is not zero")
        body = strip_crc(padded[:length])
        return cls(body[0], int.from_bytes(body[2:4], "little"), bytes(body[4:]))

    def encrypt(self, key: bytes, iv: bytes) -> bytes:
        """The wire frame: ``auth_id wire_len`` and the encrypted, padded inner frame."""
        ciphertext = encrypt(key, iv, self.encode_inner())
        return bytes((self.auth_id, len(ciphertext) + 2)) + ciphertext

    @classmethod
    def decrypt(cls, frame: bytes, key: bytes, iv: bytes) -> UsdioMessage:
        """Parse a whole wire frame with the session key and IV; the auth ids must agree."""
        auth_id, ciphertext = wire_auth_id(frame), frame[2:]
        message = cls.decode_inner(decrypt(key, iv, ciphertext))
        if message.auth_id != auth_id:
            raise FrameError(
                f"USDIO auth id {auth_id} outside and {message.auth_id} inside do not agree"
            )
        return message


def wire_auth_id(frame: bytes) -> int:
    """Check a USDIO wire frame's outer layout and return the auth id that picks its key."""
    if len(frame) < USDIO_MIN_LENGTH:
        raise FrameError(f"USDIO frame of {len(frame)} bytes is shorter than one block")
    if frame[1] != len(frame):
        raise FrameError(f"USDIO frame says {frame[1]} bytes but has {len(frame)}")
    ciphertext_length = len(frame) - 2
    if ciphertext_length % BLOCK or ciphertext_length > USDIO_MAX_CIPHERTEXT:
        raise FrameError(f"USDIO ciphertext of {ciphertext_length} bytes is not whole blocks")
    return frame[0]


def iv_frame(iv: bytes) -> GdioFrame:
    """The GDIO frame in which a lock hands out a fresh IV."""
    if len(iv) != IV_LENGTH:
        raise FrameError(f"IV must be {IV_LENGTH} bytes, not {len(iv)}")
    return GdioFrame(GdioType.IV, iv)


def status_frame(status: int) -> GdioFrame:
    """The GDIO frame in which a lock indicates one status byte."""
    return GdioFrame(GdioType.STATUS, bytes((status,)))


# --- chunks -------------------------------------------------------------------------------------


def chunks(frame: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    """``frame`` in pieces of at most ``size`` bytes, in order."""
    if not frame:
        raise FrameError("an empty frame has no chunks")
    return [frame[i : i + size] for i in range(0, len(frame), size)]


class Reassembler:
    """Rebuilds frames whose second byte is their whole length from the chunks that carry them.

    Feed every chunk of one characteristic in order; :meth:`feed` returns the frame once its last
    chunk is in, else ``None``. A chunk that overruns the declared length, or a declared length too
    short to hold a frame, raises :class:`FrameError` and clears the buffer, so the next frame
    starts clean.
    """

    def __init__(self, min_length: int = GDIO_MIN_LENGTH, max_length: int = 0xFF) -> None:
        self._min = min_length
        self._max = max_length
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held so far."""
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()

    def feed(self, chunk: bytes) -> bytes | None:
        if not chunk:
            raise FrameError("empty chunk")
        if len(chunk) > CHUNK_SIZE:
            self.reset()
            raise FrameError(f"chunk of {len(chunk)} bytes exceeds {CHUNK_SIZE}")
        self._buffer += chunk
        if len(self._buffer) < 2:
            return None
        declared = self._buffer[1]
        if not self._min <= declared <= self._max:
            self.reset()
            raise FrameError(
                f"declared frame length {declared} is outside {self._min}..{self._max}"
            )
        if len(self._buffer) < declared:
            return None
        if len(self._buffer) > declared:
            overrun = len(self._buffer)
            self.reset()
            raise FrameError(f"chunks carry {overrun} bytes for a frame of {declared}")
        frame = bytes(self._buffer)
        self.reset()
        return frame
