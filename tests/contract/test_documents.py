"""The published documents have the contract's shape, and no field that could carry a key."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from lockgate.contract import (
    BookingEvent,
    CommandDocument,
    CommandEvent,
    CommandStatus,
    ErrorDocument,
    LockStateEvent,
    RegisteredLock,
    device_state,
    documents,
)
from lockgate.model import (
    BookingChange,
    BookingState,
    Cause,
    CommandState,
    DeviceState,
    ErrorCode,
    LockState,
    Profile,
)
from lockgate.store import LockRecord

AT = datetime(2026, 11, 22, 10, 15, 4, 20000, tzinfo=UTC)


def test_command_document_shape() -> None:
    document = CommandDocument(
        id="3f0c",
        name="unlock",
        station="FR101",
        bike="FR1540",
        version=4,
        state=CommandStatus(value=CommandState.SUCCESS, timeout_at=AT),
        events=(CommandEvent(name="REQUEST_UNLOCK", timestamp=AT),),
    )
    loaded = json.loads(document.to_bytes())
    assert loaded == {
        "id": "3f0c",
        "name": "unlock",
        "station": "FR101",
        "bike": "FR1540",
        "version": 4,
        "state": {"value": "SUCCESS", "reason": None, "timeout_at": "2026-11-22T10:15:04.020Z"},
        "error_code": None,
        "events": [
            {"name": "REQUEST_UNLOCK", "value": None, "timestamp": "2026-11-22T10:15:04.020Z"}
        ],
    }


def test_event_shape() -> None:
    event = LockStateEvent(
        event_id="5d2c",
        station="FR101",
        boot_id="0b6f",
        seq=1235,
        bike="FR1540",
        at=AT,
        cause=Cause.COMMAND,
        command_id="3f0c",
        latitude="47.976634",
        longitude="7.825490",
        lock_state=LockState.UNLOCKED,
        previous=LockState.UNLOCKING,
    )
    assert json.loads(event.to_bytes()) == {
        "event_id": "5d2c",
        "station": "FR101",
        "boot_id": "0b6f",
        "seq": 1235,
        "type": "lock_state",
        "bike": "FR1540",
        "lock_state": "unlocked",
        "previous": "unlocking",
        "at": "2026-11-22T10:15:04.020Z",
        "cause": "command",
        "command_id": "3f0c",
        "latitude": "47.976634",
        "longitude": "7.825490",
        "replayed": False,
        "clock_synced": True,
    }
    booking = BookingEvent(
        **{
            k: v
            for k, v in event.model_dump().items()
            if k not in ("type", "lock_state", "previous")
        },
        booking_state=BookingChange.CANCELED,
    )
    assert json.loads(booking.to_bytes())["booking_state"] == "canceled"


def test_lock_document_shape() -> None:
    lock = RegisteredLock(
        "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
    )
    record = LockRecord(
        "FR1540",
        lock_state=LockState.LOCKED,
        booking=BookingState.BOOKED,
        booking_user="u",
        booking_timeout_at=AT,
        battery=87,
    )
    loaded = json.loads(record.document(lock, seq=1234, boot_id="0b6f").to_bytes())
    assert set(loaded) == {
        "bike", "alias", "guid", "hardware_id", "profile", "lock_state", "state",
        "hardware_state", "heartbeat_v2", "booking", "battery", "firmware", "rssi", "seq",
        "boot_id",
    }  # fmt: skip
    assert loaded["hardware_id"] == "FC:3C:00:2A:2A:DD"
    assert loaded["state"] == {
        "value": "BOOKED",
        "changed_at": None,
        "timeout_at": "2026-11-22T10:15:04.020Z",
    }
    assert loaded["booking"] == {
        "state": "booked",
        "user_id": "u",
        "timeout_at": "2026-11-22T10:15:04.020Z",
    }
    assert loaded["heartbeat_v2"]["health"] == "UNHEALTHY"


def test_device_state_follows_lock_and_booking() -> None:
    assert device_state(LockState.UNKNOWN, BookingState.AVAILABLE) is DeviceState.ALLOCATED
    assert device_state(LockState.LOCKED, BookingState.AVAILABLE) is DeviceState.LOCKED
    assert device_state(LockState.LOCKED, BookingState.OCCUPIED) is DeviceState.BOOKED
    assert device_state(LockState.UNLOCKING, BookingState.BOOKED) is DeviceState.UNLOCKING


def test_error_document_shape() -> None:
    document = ErrorDocument(
        error_message="payload is not valid JSON",
        status_code=400,
        correlation_id="x",
        error_code=ErrorCode.BAD_REQUEST,
    )
    assert json.loads(document.to_bytes()) == {
        "error_message": "payload is not valid JSON",
        "status_code": 400,
        "correlation_id": "x",
        "error_code": "ERRORS.BAD_REQUEST",
    }


def test_no_document_has_a_credentials_field() -> None:
    for name in documents.__all__:
        model = getattr(documents, name)
        fields = getattr(model, "model_fields", {})
        assert not {"credentials", "K_seed", "K_u", "ltk", "phone_id"} & set(fields), name
