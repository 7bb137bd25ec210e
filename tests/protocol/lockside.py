"""A minimal lock side for the protocol's unit tests, built from the frame functions.

It answers one session in the order of docs/protocol.md with a fixed IV and nonce, so that the
session's reactions to the lock's answers (failures, unprompted statuses, replies) can be tested
without a radio. The full firmware model lives in the simulator.
"""

from __future__ import annotations

from lockgate.protocol.credentials import Credentials
from lockgate.protocol.frames import UsdioMessage, iv_frame, status_frame

IV = bytes(range(16))
NONCE = bytes(range(100, 132))


class LockSide:
    def __init__(self, credentials: Credentials, auth_id: int | None = None) -> None:
        self.key = credentials.key
        self.auth_id = credentials.auth_id if auth_id is None else auth_id

    def iv(self) -> bytes:
        return iv_frame(IV).encode()

    def usdio(self, command: int, payload: bytes = b"") -> bytes:
        return UsdioMessage(self.auth_id, command, payload).encrypt(self.key, IV)

    def challenge(self) -> bytes:
        return self.usdio(0x0004, NONCE)

    @staticmethod
    def status(value: int) -> bytes:
        return status_frame(value).encode()

    def open(self, frame: bytes) -> UsdioMessage:
        return UsdioMessage.decrypt(frame, self.key, IV)
