"""What :class:`~lockgate.client.StationClient` raises: one root, and a type for each way a command
can fail to end in SUCCESS (docs/mqtt-contract.md, A backend client library)."""

from __future__ import annotations

from typing import Any

from lockgate.errors import LockgateError


class ClientError(LockgateError):
    """The root of every error the client raises on purpose (under the project's own root)."""


class NoAnswerError(ClientError):
    """Nothing came back: the broker could not be reached, or the station sent no receipt (no
    document of the command's id) in time. The command may or may not have been taken: sending the
    same request again (same id) is always safe."""


class BrokerLostError(NoAnswerError):
    """The broker dropped the client's connection; the client does not reconnect by itself (open
    a new one and send the same request again: a repeat is answered with its stored document)."""


class CannotSealError(ClientError):
    """The request's credentials are to be sealed (signed requests, ``seal=True``) and there is no
    station key to seal them to: none given, and the station's status carries no ``sealing_key``."""


class CommandRefusedError(ClientError):
    """The command ended in ERROR, or the station answered its id with an error document on
    ``errors`` (a conflict, a refused signature). ``document`` is that last word, as published."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        state = document.get("state")
        if "error_message" in document:  # an error document on ``errors``
            self.command_id = str(document.get("correlation_id"))
            self.reason: str | None = _text(document.get("error_message"))
        else:
            self.command_id = str(document.get("id"))
            self.reason = _text(state.get("reason")) if isinstance(state, dict) else None
        self.error_code: str | None = _text(document.get("error_code"))
        super().__init__(f"command {self.command_id} refused: {self.error_code} ({self.reason})")


class CommandTimedOutError(ClientError):
    """The station took the command (its receipt came) but no final document came in time: it may
    still end at the station (``last`` is the newest document seen)."""

    def __init__(self, command_id: str, follow_s: float, last: dict[str, Any] | None) -> None:
        self.command_id = command_id
        self.last = last
        super().__init__(f"command {command_id} did not end within {follow_s:g} s of its receipt")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
