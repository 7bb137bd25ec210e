"""The closed sets of values that the whole gateway speaks in, named once.

These are the words of the MQTT contract (COPRI's lock and booking states, Bikeep's device and
command vocabulary, the ``ERRORS.*`` codes). Every layer uses them; this module imports nothing of
the project, so any layer may import it.
"""

from __future__ import annotations

from enum import StrEnum


class LockState(StrEnum):
    """COPRI's ``lock_state``, plus ``unknown`` for a lock not yet read or reporting 0x0F."""

    UNLOCKING = "unlocking"
    UNLOCKED = "unlocked"
    LOCKING = "locking"
    LOCKED = "locked"
    UNKNOWN = "unknown"


class HardwareState(StrEnum):
    """Bikeep's ``hardware_state`` of a lock."""

    NORMAL = "NORMAL"
    ERROR = "ERROR"
    NOT_RESPONDING = "NOT_RESPONDING"
    DISABLED = "DISABLED"
    DISABLED_LOCKING = "DISABLED_LOCKING"
    DISABLED_UNLOCKING = "DISABLED_UNLOCKING"


class Health(StrEnum):
    """Bikeep's ``heartbeat_v2.health``: how recently the lock was reached."""

    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEAD = "DEAD"
    LONG_DEAD = "LONG_DEAD"


class BookingState(StrEnum):
    """COPRI's booking state of a lock (``canceled`` is an event, never a state)."""

    AVAILABLE = "available"
    BOOKED = "booked"
    OCCUPIED = "occupied"


class Profile(StrEnum):
    """The lock's credential profile (docs/protocol.md)."""

    SHAREE = "sharee"
    NOBOND = "nobond"


class ErrorCode(StrEnum):
    """The contract's ``error_code`` values. Every one has a clear reason text where it is used."""

    BAD_REQUEST = "ERRORS.BAD_REQUEST"
    INVALID_TIMEOUT_AT = "ERRORS.INVALID_TIMEOUT_AT"
    NOT_FOUND = "ERRORS.NOT_FOUND"
    COMMAND_NOT_SUPPORTED = "ERRORS.COMMAND_NOT_SUPPORTED"
    MISSING_CREDENTIALS = "ERRORS.MISSING_CREDENTIALS"
    AUTH_FAILED = "ERRORS.AUTH_FAILED"
    LOCK_BLOCKED = "ERRORS.LOCK_BLOCKED"
    LOCK_MOVED = "ERRORS.LOCK_MOVED"
    LOCK_UNREACHABLE = "ERRORS.LOCK_UNREACHABLE"
    LOCK_REJECTED = "ERRORS.LOCK_REJECTED"  # the lock refused a command: 0x90, 0x92 or 0x9A
    TIMED_OUT = "ERRORS.TIMED_OUT"
    ALREADY_BOOKED = "ERRORS.ALREADY_BOOKED"
    BOOKED_BY_OTHER_USER = "ERRORS.BOOKED_BY_OTHER_USER"
    NOT_BOOKED = "ERRORS.NOT_BOOKED"
    ALREADY_OCCUPIED = "ERRORS.ALREADY_OCCUPIED"
    CONFLICT = "ERRORS.CONFLICT"
    # The gateway stopped while the command was at the lock, and the read after the restart does
    # not show the command's end (an unlock that finds the lock closed): never retried blindly.
    INTERRUPTED = "ERRORS.INTERRUPTED"
    INTERNAL = "ERRORS.INTERNAL"
    # Signed and sealed requests (contract/envelope.py): one code per check that can fail.
    UNSIGNED = "ERRORS.UNSIGNED"  # an unsigned request where only signed ones are accepted
    BAD_SIGNATURE = "ERRORS.BAD_SIGNATURE"  # not a well-formed JWS, or its signature fails
    UNKNOWN_KEY = "ERRORS.UNKNOWN_KEY"  # the header's kid names no backend key the station holds
    WRONG_AUDIENCE = "ERRORS.WRONG_AUDIENCE"  # aud is not this station
    EXPIRED = "ERRORS.EXPIRED"  # exp missing, passed, too far ahead, or not the timeout_at
    ID_MISMATCH = "ERRORS.ID_MISMATCH"  # jti is not the request's id
    SEALED_UNREADABLE = "ERRORS.SEALED_UNREADABLE"  # sealed credentials that do not open


class Cause(StrEnum):
    """Why a lock's state changed, as an event's ``cause`` says."""

    COMMAND = "command"
    MANUAL = "manual"
    SYNC = "sync"
    STARTUP = "startup"


class CommandName(StrEnum):
    """The ``command`` of a request (mqtt-contract.md, Commands)."""

    LOCK = "lock"
    UNLOCK = "unlock"
    BOOK = "book"
    CANCEL_BOOKING = "cancel-booking"
    FORCE_LOCK = "force-lock"
    FORCE_UNLOCK = "force-unlock"
    FORCE_CANCEL_BOOKING = "force-cancel-booking"
    SYNC_DEVICE = "sync-device"
    TAKE_PHOTO = "take-photo"
    PROVISION = "provision"


class CommandState(StrEnum):
    """Bikeep's command ``state.value``; SUCCESS and ERROR are final."""

    NOT_SENT = "NOT_SENT"
    SENT = "SENT"
    RECEIVED = "RECEIVED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"

    @property
    def final(self) -> bool:
        return self in (CommandState.SUCCESS, CommandState.ERROR)


class ForceReason(StrEnum):
    """Bikeep's reasons for a ``force-unlock``."""

    STUCK_USER_RFID_ISSUE = "STUCK_USER_RFID_ISSUE"
    STUCK_USER_APP_ISSUE = "STUCK_USER_APP_ISSUE"
    STUCK_USER_USER_ERROR = "STUCK_USER_USER_ERROR"
    STUCK_USER_OTHER_ISSUE = "STUCK_USER_OTHER_ISSUE"
    LOCKED_EMPTY = "LOCKED_EMPTY"
    MAINTENANCE = "MAINTENANCE"
    TESTING = "TESTING"
    RENTAL_VEHICLE_LOCKED = "RENTAL_VEHICLE_LOCKED"
    FALSE_LOCK = "FALSE_LOCK"
    OTHER = "OTHER"

    @property
    def needs_comment(self) -> bool:
        return self in (ForceReason.STUCK_USER_OTHER_ISSUE, ForceReason.OTHER)


class DeviceState(StrEnum):
    """Bikeep's device ``state.value`` in a lock document, derived from lock and booking state."""

    LOCKED = "LOCKED"
    LOCKING = "LOCKING"
    UNLOCKED = "UNLOCKED"
    UNLOCKING = "UNLOCKING"
    BOOKED = "BOOKED"
    ALLOCATED = "ALLOCATED"


class EventType(StrEnum):
    """An event's ``type``."""

    LOCK_STATE = "lock_state"
    BOOKING = "booking"
    HEALTH = "health"
    BATTERY = "battery"
    ALARM = "alarm"
    RADIO = "radio"
    CLOCK = "clock"


class BookingChange(StrEnum):
    """A ``booking`` event's ``booking_state``: the booking states plus ``canceled``."""

    BOOKED = "booked"
    OCCUPIED = "occupied"
    AVAILABLE = "available"
    CANCELED = "canceled"


class RadioState(StrEnum):
    """The station's radio (an adapter, or all of them): usable or not."""

    UP = "up"
    DOWN = "down"


class StationState(StrEnum):
    """The station status document's ``state``."""

    ONLINE = "online"
    OFFLINE = "offline"


class MessageKind(StrEnum):
    """What an outbox message is, which decides whether the outbox may drop it when full."""

    EVENT = "event"
    COMMAND = "command"  # a command document at a change of its state: never dropped
    REPLY = "reply"  # a stored command document published again for a repeated request
    ERROR = "error"  # an error document for a request with no usable id


class Admission(StrEnum):
    """What the engine did with one raw request."""

    ACCEPTED = "accepted"  # a new command: its receipt is stored and it is queued
    REPEATED = "repeated"  # a known id with the same content: its stored document again
    CONFLICT = "conflict"  # a known id with other content: an error document
    REJECTED = "rejected"  # a usable id, a broken rule: a command document in ERROR
    UNUSABLE = "unusable"  # no usable id: an error document on ``errors``
