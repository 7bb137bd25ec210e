"""What the store keeps, as frozen values: a command's record and a lock's record.

The engine computes new records and hands them to the store in one :class:`Change`; the store
writes them and the messages they cause in one transaction. The documents the backend reads are
derived from these records here, so what is stored and what is published cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lockgate.contract.documents import (
    BookingStatus,
    CommandDocument,
    CommandEvent,
    CommandStatus,
    DeviceStatus,
    ErrorDocument,
    Event,
    Heartbeat,
    LockDocument,
    device_state,
)
from lockgate.contract.station import RegisteredLock
from lockgate.model import (
    BookingState,
    CommandState,
    ErrorCode,
    HardwareState,
    Health,
    LockState,
)
from lockgate.protocol.credentials import Credentials


@dataclass(frozen=True, slots=True)
class Correlation:
    """MQTT 5 request properties that the gateway echoes on the command's documents."""

    correlation_data: bytes | None = None
    response_topic: str | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One command as the station remembers it: the receipt, its walk and its end; no keys."""

    id: str
    fingerprint: str
    name: str | None
    bike: str | None
    state: CommandState
    version: int
    received_at: datetime
    timeout_at: datetime | None = None
    error_code: ErrorCode | None = None
    reason: str | None = None
    events: tuple[CommandEvent, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    correlation: Correlation = field(default_factory=Correlation)
    # Written before a radio operation starts and never published: a command that may have
    # reached the lock is settled by reading after a restart, never run again (write-ahead).
    dispatched_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def may_have_moved(self) -> bool:
        return self.dispatched_at is not None or self.state in (
            CommandState.SENT,
            CommandState.RECEIVED,
        )

    def document(self, station: str) -> CommandDocument:
        return CommandDocument(
            id=self.id,
            name=self.name,
            station=station,
            bike=self.bike,
            version=self.version,
            state=CommandStatus(value=self.state, reason=self.reason, timeout_at=self.timeout_at),
            error_code=self.error_code,
            events=self.events,
        )

    def advanced(
        self,
        state: CommandState,
        at: datetime,
        *,
        events: tuple[CommandEvent, ...] = (),
        error_code: ErrorCode | None = None,
        reason: str | None = None,
    ) -> CommandRecord:
        """The next published version: a new state, and events appended."""
        return replace(
            self,
            state=state,
            version=self.version + 1,
            events=self.events + events,
            error_code=error_code if error_code is not None else self.error_code,
            reason=reason if reason is not None else self.reason,
            ended_at=at if state.final else None,
        )


@dataclass(frozen=True, slots=True)
class LockRecord:
    """The last known state of one lock, its booking, and what was last read of it."""

    bike: str
    lock_state: LockState = LockState.UNKNOWN
    state_changed_at: datetime | None = None
    hardware_state: HardwareState = HardwareState.NORMAL
    health: Health = Health.UNHEALTHY  # not reached yet: nothing says it is healthy
    last_seen: datetime | None = None
    dead_since: datetime | None = None
    booking: BookingState = BookingState.AVAILABLE
    booking_user: str | None = None
    booking_timeout_at: datetime | None = None
    battery: int | None = None
    firmware: str | None = None
    rssi: int | None = None
    alarm: bool | None = None

    def document(self, lock: RegisteredLock, *, seq: int, boot_id: str) -> LockDocument:
        booked = self.booking is BookingState.BOOKED
        return LockDocument(
            bike=self.bike,
            alias=lock.name,
            guid=lock.guid,
            hardware_id=lock.hardware_id,
            profile=lock.profile,
            lock_state=self.lock_state,
            state=DeviceStatus(
                value=device_state(self.lock_state, self.booking),
                changed_at=self.state_changed_at,
                timeout_at=self.booking_timeout_at if booked else None,
            ),
            hardware_state=self.hardware_state,
            heartbeat_v2=Heartbeat(
                health=self.health, dead_since=self.dead_since, last_seen=self.last_seen
            ),
            booking=BookingStatus(
                state=self.booking,
                user_id=self.booking_user,
                timeout_at=self.booking_timeout_at if booked else None,
            ),
            battery=self.battery,
            firmware=self.firmware,
            rssi=self.rssi,
            seq=seq,
            boot_id=boot_id,
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A stored command document published again, for a repeated request (may be dropped)."""

    document: CommandDocument
    correlation: Correlation = field(default_factory=Correlation)


@dataclass(frozen=True, slots=True)
class Provisioning:
    """Standing credentials for one lock to seal and store, or ``None`` to remove them."""

    bike: str
    credentials: Credentials | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Change:
    """Everything one transaction writes: records, and the messages that announce them.

    Each command record is published as its command document, each lock record refreshes the
    lock's retained document, each event gets the station's next ``seq``.
    """

    commands: tuple[CommandRecord, ...] = ()
    locks: tuple[LockRecord, ...] = ()
    events: tuple[Event, ...] = ()
    replies: tuple[Reply, ...] = ()
    errors: tuple[ErrorDocument, ...] = ()
    provisioning: tuple[Provisioning, ...] = ()
    dispatches: tuple[CommandRecord, ...] = ()  # marked dispatched, not published
