"""The lock's status bytes and what lockgate makes of each (docs/protocol.md, status table).

A status byte the table does not name is not an error of the link: :func:`parse_status` returns it
as a plain ``int`` so that a newer firmware's codes are reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from lockgate.model import ErrorCode, HardwareState, LockState


class Status(IntEnum):
    """Status bytes a lock indicates on GDIO."""

    LOCKING = 0x01
    CLOSED = 0x02
    LOCKING_BLOCKED = 0x03
    LOCK_MOVED = 0x04
    UNLOCKING = 0x0A
    OPEN = 0x0B
    UNLOCKING_BLOCKED = 0x0C
    UNKNOWN = 0x0F
    ALARM_ON = 0x10
    ALARM_OFF = 0x20
    AUTHORISED = 0x30
    AUTHORISED_ALT = 0x31
    BATTERY_LOW = 0x40
    GENERAL_ERROR = 0x90
    CRC_ERROR = 0x92
    WRONG_AUTH_ID = 0x96
    AUTH_FAILED = 0x97
    NOT_AUTHORISED = 0x99
    WRONG_COUNTER = 0x9A


class Notice(StrEnum):
    """Happenings a status reports beside the lock state: they become events of their own."""

    ALARM = "alarm"
    BATTERY = "battery"


@dataclass(frozen=True, slots=True)
class Meaning:
    """What one status byte means to the gateway. ``None`` leaves the current value unchanged."""

    text: str
    lock_state: LockState | None = None
    hardware_state: HardwareState | None = None
    error: ErrorCode | None = None
    notice: Notice | None = None
    authorised: bool = False


_NORMAL = HardwareState.NORMAL
MEANINGS: dict[Status, Meaning] = {
    Status.LOCKING: Meaning("locking", LockState.LOCKING, _NORMAL),
    Status.CLOSED: Meaning("closed", LockState.LOCKED, _NORMAL),
    Status.LOCKING_BLOCKED: Meaning(
        "locking blocked", None, HardwareState.ERROR, ErrorCode.LOCK_BLOCKED
    ),
    Status.LOCK_MOVED: Meaning("closing refused, lock moved", None, _NORMAL, ErrorCode.LOCK_MOVED),
    Status.UNLOCKING: Meaning("unlocking", LockState.UNLOCKING, _NORMAL),
    Status.OPEN: Meaning("open", LockState.UNLOCKED, _NORMAL),
    Status.UNLOCKING_BLOCKED: Meaning(
        "unlocking blocked", None, HardwareState.ERROR, ErrorCode.LOCK_BLOCKED
    ),
    Status.UNKNOWN: Meaning("state unknown", LockState.UNKNOWN, HardwareState.ERROR),
    Status.ALARM_ON: Meaning("alarm on", notice=Notice.ALARM),
    Status.ALARM_OFF: Meaning("alarm off", notice=Notice.ALARM),
    Status.AUTHORISED: Meaning("authorised", authorised=True),
    Status.AUTHORISED_ALT: Meaning("authorised", authorised=True),
    Status.BATTERY_LOW: Meaning("battery low", notice=Notice.BATTERY),
    Status.GENERAL_ERROR: Meaning("general error", error=ErrorCode.LOCK_REJECTED),
    Status.CRC_ERROR: Meaning("CRC error", error=ErrorCode.LOCK_REJECTED),
    Status.WRONG_AUTH_ID: Meaning("wrong auth id", error=ErrorCode.AUTH_FAILED),
    Status.AUTH_FAILED: Meaning("authorisation failed", error=ErrorCode.AUTH_FAILED),
    Status.NOT_AUTHORISED: Meaning("not authorised", error=ErrorCode.AUTH_FAILED),
    Status.WRONG_COUNTER: Meaning("wrong counter", error=ErrorCode.LOCK_REJECTED),
}

AUTH_FAILURES = frozenset(
    {Status.GENERAL_ERROR, Status.CRC_ERROR, Status.WRONG_AUTH_ID, Status.AUTH_FAILED}
)
"""Statuses with which a lock answers a failed authorisation (and then drops the link)."""


def parse_status(value: int) -> Status | int:
    """The :class:`Status` for a byte, or the byte itself where the table does not name it."""
    try:
        return Status(value)
    except ValueError:
        return value


def meaning_of(status: Status) -> Meaning:
    return MEANINGS[status]


# Config reads report the bolt with one byte: open, unknown, or anything else for closed.
CONFIG_OPEN = 0x0B
CONFIG_UNKNOWN = 0x0F


def config_lock_state(value: int) -> LockState:
    """The lock state that a lock-config read's state byte stands for."""
    if value == CONFIG_OPEN:
        return LockState.UNLOCKED
    if value == CONFIG_UNKNOWN:
        return LockState.UNKNOWN
    return LockState.LOCKED
