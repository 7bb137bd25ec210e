"""What a station publishes, built with the contract's own models, for the demo's tests to feed
through a real broker where the daemon is not the subject."""

from __future__ import annotations

from datetime import UTC, datetime

from lockgate.contract import (
    BleStatus,
    BookingStatus,
    CommandDocument,
    CommandStatus,
    DeviceStatus,
    Heartbeat,
    LockDocument,
    LockStateEvent,
    StationStatus,
    device_state,
)
from lockgate.demo.world import BIKES, STATION
from lockgate.model import (
    BookingState,
    Cause,
    CommandState,
    HardwareState,
    Health,
    LockState,
    StationState,
)

NOW = datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)
ROOT = f"lockgate/v1/{STATION}"


def status(outbox_depth: int = 0, boot_id: str = "boot-1") -> StationStatus:
    return StationStatus(
        station=STATION,
        state=StationState.ONLINE,
        boot_id=boot_id,
        version="0.1.0",
        since=NOW,
        locks=tuple(b.bike for b in BIKES),
        outbox_depth=outbox_depth,
        ble=BleStatus(adapter="hci0", slots=3, in_use=0),
    )


def lock(bike: str, state: LockState, battery: int = 87) -> LockDocument:
    demo_bike = next(b for b in BIKES if b.bike == bike)
    return LockDocument(
        bike=bike,
        alias=demo_bike.name,
        guid=demo_bike.guid,
        hardware_id=demo_bike.lock.address,
        profile=demo_bike.profile.value,
        lock_state=state,
        state=DeviceStatus(value=device_state(state, BookingState.AVAILABLE), changed_at=NOW),
        hardware_state=HardwareState.NORMAL,
        heartbeat_v2=Heartbeat(health=Health.HEALTHY, last_seen=NOW),
        booking=BookingStatus(state=BookingState.AVAILABLE),
        battery=battery,
        firmware="2.18",
        rssi=-61,
        seq=1,
        boot_id="boot-1",
    )


def lock_event(bike: str, seq: int, state: LockState, *, replayed: bool = False) -> LockStateEvent:
    return LockStateEvent(
        event_id=f"e-{seq}",
        station=STATION,
        boot_id="boot-1",
        seq=seq,
        bike=bike,
        at=NOW,
        cause=Cause.MANUAL,
        latitude="47.976634",
        longitude="7.825490",
        replayed=replayed,
        lock_state=state,
        previous=LockState.LOCKING,
    )


def command(command_id: str, version: int, state: CommandState) -> CommandDocument:
    return CommandDocument(
        id=command_id,
        name="unlock",
        station=STATION,
        bike="FR1540",
        version=version,
        state=CommandStatus(value=state, timeout_at=NOW),
    )
