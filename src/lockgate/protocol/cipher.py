"""AES-CBC with zero padding, one frame at a time, as the lock encrypts USDIO frames.

Each frame is encrypted on its own with the session key and the session IV: the IV is not chained
from frame to frame. The key length picks the AES variant (24 bytes for sharee's K_u, 32 for
nobond's ltk).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lockgate.protocol.errors import FrameError

BLOCK = 16
IV_LENGTH = 16
KEY_LENGTHS = (16, 24, 32)


def zero_pad(data: bytes) -> bytes:
    """``data`` padded with zero bytes to a whole number of AES blocks."""
    return data + bytes(-len(data) % BLOCK)


def _cipher(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if len(key) not in KEY_LENGTHS:
        raise FrameError(f"AES key must be 16, 24 or 32 bytes, not {len(key)}")
    if len(iv) != IV_LENGTH:
        raise FrameError(f"IV must be {IV_LENGTH} bytes, not {len(iv)}")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC of ``plaintext`` zero-padded to a multiple of 16 bytes."""
    encryptor = _cipher(key, iv).encryptor()
    return encryptor.update(zero_pad(plaintext)) + encryptor.finalize()


def decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """The padded plaintext of ``ciphertext``; its length must be a positive multiple of 16."""
    if not ciphertext or len(ciphertext) % BLOCK:
        raise FrameError(f"ciphertext of {len(ciphertext)} bytes is not a whole number of blocks")
    decryptor = _cipher(key, iv).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
