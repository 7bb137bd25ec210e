"""Every form a key could be written in, for the tests that search files, logs and messages."""

from __future__ import annotations

import base64
import json

from lockgate.protocol.credentials import signed_byte_string


def forms(secret: bytes) -> list[bytes]:
    """The raw bytes, hex either case, COPRI's signed-byte string, a JSON array, base64."""
    signed = signed_byte_string(secret)
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        signed.encode(),
        signed.replace(" ", "").encode(),
        json.dumps(list(secret)).encode(),
        json.dumps(list(secret)).replace(" ", "").encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]
