"""CRC-16/CCITT-FALSE as the lock uses it: poly 0x1021, init 0xFFFF, no reflection, no final XOR.

That is the standard library's ``binascii.crc_hqx`` started at 0xFFFF. The checksum travels low
byte first after the bytes it covers.
"""

from __future__ import annotations

import binascii

from lockgate.protocol.errors import ChecksumError, FrameError


def crc16(data: bytes) -> int:
    """The CRC-16/CCITT-FALSE of ``data``; ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


def with_crc(data: bytes) -> bytes:
    """``data`` followed by its CRC, low byte first."""
    return data + crc16(data).to_bytes(2, "little")


def strip_crc(frame: bytes) -> bytes:
    """The bytes covered by the CRC at the end of ``frame``, once the CRC is checked."""
    if len(frame) < 2:
        raise FrameError(f"frame of {len(frame)} bytes is too short to carry a CRC")
    body, received = frame[:-2], int.from_bytes(frame[-2:], "little")
    expected = crc16(body)
    if received != expected:
        raise ChecksumError(
            f"CRC mismatch: frame carries {received:#06x}, contents give {expected:#06x}"
        )
    return body
