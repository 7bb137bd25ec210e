"""The protocol core against the byte-exact vectors: every app frame produced, every lock frame
accepted and turned into the right event, for both credential profiles."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.model import LockState
from lockgate.protocol import (
    Authorised,
    BatteryRead,
    Channel,
    ConfigRead,
    Session,
    SessionEvent,
    SessionState,
    Status,
    StatusReported,
    Write,
    address_to_guid,
    guid_to_address,
    parse_credentials,
)
from lockgate.protocol.crc import crc16
from lockgate.protocol.credentials import parse_key_bytes
from lockgate.protocol.frames import UsdioMessage

# What the app does after each lock frame of the vectors' sessions, and the event that frame is.
NEXT_COMMAND = {
    "status authorised": Session.unlock,
    "status open": Session.read_battery,
    "battery 87": Session.lock,
    "status closed": Session.read_config,
}
EXPECTED_EVENT: dict[str, SessionEvent | None] = {
    "IV": None,
    "challenge": None,
    "status authorised": Authorised(),
    "status unlocking": StatusReported(Status.UNLOCKING),
    "status open": StatusReported(Status.OPEN),
    "battery 87": BatteryRead(87),
    "status locking": StatusReported(Status.LOCKING),
    "status closed": StatusReported(Status.CLOSED),
    "lock config closed, alarm off": ConfigRead(LockState.LOCKED, alarm=False, raw_state=0x02),
}


def _session_ids(vectors: dict[str, Any]) -> list[str]:
    return [s["profile"] for s in vectors["sessions"]]


def _credentials(session: dict[str, Any]) -> Any:
    given = {k: v for k, v in session["credentials"].items() if not k.endswith("_hex")}
    return parse_credentials(session["profile"], given)


def test_crc_vectors(vectors: dict[str, Any]) -> None:
    for case in vectors["crc16_ccitt_false"]:
        data = bytes.fromhex(case["data"])
        assert crc16(data).to_bytes(2, "little").hex() == case["crc_le"]


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_guid_address_both_ways(vectors: dict[str, Any]) -> None:
    for case in vectors["guid_address"]:
        assert guid_to_address(case["guid"]) == case["address"]
        assert address_to_guid(case["address"]) == case["guid"]


def test_copri_key_forms(vectors: dict[str, Any]) -> None:
    for case in vectors["copri_keys"]:
        name = "K_seed" if "K_seed" in case else "K_u"
        length = 16 if name == "K_seed" else 24
        assert parse_key_bytes(case[name], name, length).hex() == case["hex"]


@pytest.mark.parametrize("index", [0, 1], ids=["sharee", "nobond"])
def test_session_reproduces_vectors(vectors: dict[str, Any], index: int) -> None:
    vector = vectors["sessions"][index]
    credentials = _credentials(vector)
    session = Session(credentials)
    app_steps = [step for step in vector["steps"] if step["from"] == "app"]
    produced: list[Write] = [session.start()]
    events: list[tuple[str, SessionEvent]] = []

    for step in vector["steps"]:
        if step["from"] != "lock":
            continue
        outputs = [
            session.receive(Channel(step["characteristic"]), bytes.fromhex(chunk))
            for chunk in step["chunks"]
        ]
        # Only the last chunk completes a frame; the others are held for reassembly.
        assert all(not o.events and not o.writes for o in outputs[:-1])
        produced.extend(outputs[-1].writes)
        events.extend((step["what"], e) for e in outputs[-1].events)
        assert list(outputs[-1].events) == [
            e for e in [EXPECTED_EVENT[step["what"]]] if e is not None
        ], step["what"]
        if step["what"] in NEXT_COMMAND:
            produced.append(NEXT_COMMAND[step["what"]](session))

    assert len(produced) == len(app_steps)
    for write, step in zip(produced, app_steps, strict=True):
        assert write.channel.value == step["characteristic"], step["what"]
        assert write.frame.hex() == step["frame"], step["what"]
        assert [c.hex() for c in write.chunks] == step["chunks"], step["what"]
    assert session.state is SessionState.AUTHORISED
    assert session.counter == 2
    assert next(what for what, _ in events) == "status authorised"


@pytest.mark.parametrize("index", [0, 1], ids=["sharee", "nobond"])
def test_lock_frames_decode_to_the_documented_messages(vectors: dict[str, Any], index: int) -> None:
    """The lock's USDIO frames carry the commands the spec names (0x0004, 0x001B, 0x000F)."""
    vector = vectors["sessions"][index]
    credentials = _credentials(vector)
    iv = bytes.fromhex(vector["iv"])
    by_what = {step["what"]: bytes.fromhex(step["frame"]) for step in vector["steps"]}

    challenge = UsdioMessage.decrypt(by_what["challenge"], credentials.key, iv)
    assert challenge.command == 0x0004
    assert challenge.payload == bytes.fromhex(vector["nonce"])
    assert challenge.encode_inner()[1] == 38

    answer = UsdioMessage.decrypt(by_what["answer"], credentials.key, iv)
    assert answer.command == 0x0010
    assert answer.payload == bytes.fromhex(vector["nonce"]) + credentials.identity
    inner_length, wire_length = {"sharee": (54, 66), "nobond": (46, 50)}[vector["profile"]]
    assert answer.encode_inner()[1] == inner_length
    assert by_what["answer"][1] == len(by_what["answer"]) == wire_length

    battery = UsdioMessage.decrypt(by_what["battery 87"], credentials.key, iv)
    assert (battery.command, battery.payload[0]) == (0x001B, 87)
    config = UsdioMessage.decrypt(by_what["lock config closed, alarm off"], credentials.key, iv)
    assert config.command == 0x000F
    assert config.payload[1] == 0
