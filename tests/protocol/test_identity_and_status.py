"""Lock identity (GUID, address, names) and the status table of docs/protocol.md."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.model import ErrorCode, HardwareState, LockState, Profile
from lockgate.protocol import IdentityError, Status, meaning_of, parse_status, profile_of_name
from lockgate.protocol.identity import address_to_guid, guid_to_address, normalise_address
from lockgate.protocol.status import AUTH_FAILURES, Notice, config_lock_state


@given(st.binary(min_size=6, max_size=6))
def test_guid_and_address_round_trip(raw: bytes) -> None:
    address = ":".join(f"{b:02X}" for b in raw)
    assert guid_to_address(address_to_guid(address)) == address


def test_identity_errors() -> None:
    with pytest.raises(IdentityError, match="not a GUID"):
        guid_to_address("nope")
    with pytest.raises(IdentityError, match="ten zero bytes"):
        guid_to_address("00000000-0000-0000-0001-fc3c002a2add")
    with pytest.raises(IdentityError, match="not a Bluetooth address"):
        normalise_address("FC:3C:00:2A:2A")
    assert normalise_address("fc:3c:00:2a:2a:dd") == "FC:3C:00:2A:2A:DD"


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("ISHAREIT-2200540", Profile.SHAREE),
        ("ILOCKIT-4500329", Profile.NOBOND),
        ("ISHAREIT-", None),
        ("ilockit-12", None),
        ("ISHAREIT-22x", None),
        ("Polar H10", None),
    ],
)
def test_names(name: str, profile: Profile | None) -> None:
    assert profile_of_name(name) is profile


# The spec's table, row by row: byte → (lock_state, hardware_state, error).
TABLE = {
    0x01: (LockState.LOCKING, HardwareState.NORMAL, None),
    0x02: (LockState.LOCKED, HardwareState.NORMAL, None),
    0x03: (None, HardwareState.ERROR, ErrorCode.LOCK_BLOCKED),
    0x04: (None, HardwareState.NORMAL, ErrorCode.LOCK_MOVED),
    0x0A: (LockState.UNLOCKING, HardwareState.NORMAL, None),
    0x0B: (LockState.UNLOCKED, HardwareState.NORMAL, None),
    0x0C: (None, HardwareState.ERROR, ErrorCode.LOCK_BLOCKED),
    0x0F: (LockState.UNKNOWN, HardwareState.ERROR, None),
    0x10: (None, None, None),
    0x20: (None, None, None),
    0x30: (None, None, None),
    0x31: (None, None, None),
    0x40: (None, None, None),
    0x90: (None, None, ErrorCode.LOCK_REJECTED),
    0x92: (None, None, ErrorCode.LOCK_REJECTED),
    0x96: (None, None, ErrorCode.AUTH_FAILED),
    0x97: (None, None, ErrorCode.AUTH_FAILED),
    0x99: (None, None, ErrorCode.AUTH_FAILED),
    0x9A: (None, None, ErrorCode.LOCK_REJECTED),
}


def test_every_status_byte_is_named() -> None:
    assert {int(s) for s in Status} == set(TABLE)


@pytest.mark.parametrize("byte", sorted(TABLE), ids=lambda b: f"{b:#04x}")
def test_status_meaning(byte: int) -> None:
    meaning = meaning_of(Status(byte))
    assert (meaning.lock_state, meaning.hardware_state, meaning.error) == TABLE[byte]
    assert meaning.authorised == (byte in (0x30, 0x31))
    assert meaning.text


def test_notices_and_authorisation_failures() -> None:
    assert meaning_of(Status.ALARM_ON).notice is Notice.ALARM
    assert meaning_of(Status.ALARM_OFF).notice is Notice.ALARM
    assert meaning_of(Status.BATTERY_LOW).notice is Notice.BATTERY
    assert {0x90, 0x92, 0x96, 0x97} == {int(s) for s in AUTH_FAILURES}


@given(st.integers(0, 255))
def test_parse_status_tolerates_unknown_bytes(byte: int) -> None:
    parsed = parse_status(byte)
    assert int(parsed) == byte
    assert isinstance(parsed, Status) == (byte in TABLE)


@pytest.mark.parametrize(
    ("byte", "state"),
    [(0x0B, LockState.UNLOCKED), (0x0F, LockState.UNKNOWN), (0x02, LockState.LOCKED)],
)
def test_config_state_byte(byte: int, state: LockState) -> None:
    assert config_lock_state(byte) is state
