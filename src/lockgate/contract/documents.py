"""The documents the gateway publishes, as pydantic models: what the backend reads.

Command documents, lock documents, events, the station status and the error document of
mqtt-contract.md, serialised to the contract's JSON (times in :mod:`lockgate.contract.times` form).
None of them has a field that could carry key material: credentials live only in the parsed request
(:mod:`lockgate.contract.request`), and no model here accepts them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from lockgate.contract.times import Timestamp
from lockgate.model import (
    BookingChange,
    BookingState,
    Cause,
    CommandState,
    DeviceState,
    ErrorCode,
    EventType,
    HardwareState,
    Health,
    LockState,
    RadioState,
    StationState,
)


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# --- command document --------------------------------------------------------------------------


class CommandEvent(_Document):
    """Bikeep's command event: REQUEST_* (the gateway's), RESPONSE_* (the lock's), STATE_*."""

    name: str
    value: str | None = None
    timestamp: Timestamp


class CommandStatus(_Document):
    value: CommandState
    reason: str | None = None
    timeout_at: Timestamp | None = None


class CommandDocument(_Document):
    id: str
    name: str | None
    station: str
    bike: str | None
    version: int
    state: CommandStatus
    error_code: ErrorCode | None = None
    events: tuple[CommandEvent, ...] = ()


# --- lock document -----------------------------------------------------------------------------


class DeviceStatus(_Document):
    value: DeviceState
    changed_at: Timestamp | None = None
    timeout_at: Timestamp | None = None


class Heartbeat(_Document):
    health: Health
    dead_since: Timestamp | None = None
    last_seen: Timestamp | None = None


class BookingStatus(_Document):
    state: BookingState
    user_id: str | None = None
    timeout_at: Timestamp | None = None


class LockDocument(_Document):
    bike: str
    alias: str
    guid: str
    hardware_id: str
    profile: str
    lock_state: LockState
    state: DeviceStatus
    hardware_state: HardwareState
    heartbeat_v2: Heartbeat
    booking: BookingStatus
    battery: int | None = None
    firmware: str | None = None
    rssi: int | None = None
    seq: int
    boot_id: str


# --- events ------------------------------------------------------------------------------------


class _EventBase(_Document):
    event_id: str
    station: str
    boot_id: str
    seq: int
    type: EventType  # each kind narrows it; declared here so it leads, as in the contract
    bike: str | None
    at: Timestamp
    cause: Cause | None = None
    command_id: str | None = None
    latitude: str
    longitude: str
    replayed: bool = False
    clock_synced: bool = True  # whether the station's wall clock was synchronised (the store's)


class LockStateEvent(_EventBase):
    type: Literal[EventType.LOCK_STATE] = EventType.LOCK_STATE
    lock_state: LockState
    previous: LockState


class BookingEvent(_EventBase):
    type: Literal[EventType.BOOKING] = EventType.BOOKING
    booking_state: BookingChange
    user_id: str | None = None
    timeout_at: Timestamp | None = None
    reason: str | None = None


class HealthEvent(_EventBase):
    """heartbeat_v2 or hardware_state changed; or, with ``bike`` null, the outbox dropped events."""

    type: Literal[EventType.HEALTH] = EventType.HEALTH
    health: Health | None = None
    hardware_state: HardwareState | None = None
    dropped: int | None = None
    dropped_total: int | None = None
    reason: str | None = None


class BatteryEvent(_EventBase):
    type: Literal[EventType.BATTERY] = EventType.BATTERY
    battery: int


class AlarmEvent(_EventBase):
    type: Literal[EventType.ALARM] = EventType.ALARM
    alarm: bool


class RadioEvent(_EventBase):
    """An adapter (or bluetoothd, for all of them) went away or came back; ``bike`` is null."""

    type: Literal[EventType.RADIO] = EventType.RADIO
    adapter: str
    radio_state: RadioState
    reason: str | None = None
    down_s: float | None = None
    """On the way back up: how long it was down."""


class ClockEvent(_EventBase):
    """The station's wall clock stepped (``bike`` null): by ``step_s`` seconds, forward positive.
    Times before it and after it differ by the step plus the time that passed."""

    type: Literal[EventType.CLOCK] = EventType.CLOCK
    step_s: float


Event = (
    LockStateEvent
    | BookingEvent
    | HealthEvent
    | BatteryEvent
    | AlarmEvent
    | RadioEvent
    | ClockEvent
)


# --- station status and errors -----------------------------------------------------------------


class AdapterDocument(_Document):
    """One adapter in the status: as configured, BlueZ's name and address now, up or down."""

    adapter: str
    name: str | None
    address: str | None
    state: RadioState
    since: Timestamp
    reason: str | None = None
    slots: int
    in_use: int


class BleStatus(_Document):
    """The radio: ``state`` is up while any adapter is; ``adapters`` has each one."""

    adapter: str
    slots: int
    in_use: int
    state: RadioState = RadioState.UP
    since: Timestamp | None = None
    reason: str | None = None
    adapters: tuple[AdapterDocument, ...] = ()


class ClockStatus(_Document):
    """Whether the station's wall clock is synchronised, and since when (the station's first look
    that found it so since it started; null while it is not)."""

    synced: bool
    since: Timestamp | None = None
    source: str


class SealingKey(_Document):
    """The station's X25519 public key as a JWK (``kid``: its RFC 7638 thumbprint): a backend
    seals a request's credentials to it (mqtt-contract.md, Signed and sealed commands)."""

    kty: Literal["OKP"]
    crv: Literal["X25519"]
    x: str
    kid: str


class StationStatus(_Document):
    station: str
    state: StationState
    boot_id: str
    version: str
    since: Timestamp
    locks: tuple[str, ...]
    outbox_depth: int
    ble: BleStatus
    clock: ClockStatus | None = None
    sealing_key: SealingKey | None = None  # None: this station opens no sealed credentials


class ErrorDocument(_Document):
    """The answer to a request that cannot be tied to a command id (mqtt-contract.md, Errors)."""

    error_message: str
    status_code: int
    correlation_id: str
    error_code: ErrorCode


def device_state(lock_state: LockState, booking: BookingState) -> DeviceState:
    """Bikeep's device state: BOOKED while a booking or a paused rental holds a locked lock."""
    if lock_state is LockState.UNKNOWN:
        return DeviceState.ALLOCATED
    if lock_state is LockState.LOCKED and booking is not BookingState.AVAILABLE:
        return DeviceState.BOOKED
    return DeviceState(lock_state.upper())


__all__ = [
    "AdapterDocument",
    "AlarmEvent",
    "BatteryEvent",
    "BleStatus",
    "BookingEvent",
    "BookingStatus",
    "ClockEvent",
    "ClockStatus",
    "CommandDocument",
    "CommandEvent",
    "CommandStatus",
    "DeviceStatus",
    "ErrorDocument",
    "Event",
    "HealthEvent",
    "Heartbeat",
    "LockDocument",
    "LockStateEvent",
    "RadioEvent",
    "StationStatus",
    "device_state",
]
