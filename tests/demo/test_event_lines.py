"""The demo's one line per event: every kind of event the contract has gets one."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pytest

from lockgate.contract import Event, RadioEvent
from lockgate.contract.stamps import stamp
from lockgate.contract.station import Station
from lockgate.demo.app import describe_event
from lockgate.model import RadioState

STATION = Station("DEMO1", "47.976634", "7.825490", (), "boot-1")
AT = datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)


def test_every_kind_of_event_is_described() -> None:
    kinds = typing.get_args(Event)
    # Each kind's own fields are filled with the first value its model accepts.
    samples = {
        "lock_state": {"lock_state": "locked", "previous": "locking"},
        "booking": {"booking_state": "booked"},
        "health": {"health": "HEALTHY"},
        "battery": {"battery": 40},
        "alarm": {"alarm": True},
        "radio": {"adapter": "hci0", "radio_state": "down", "reason": "gone"},
        "clock": {"step_s": -259200.0},
    }
    for kind in kinds:
        name = kind.model_fields["type"].default.value
        event = kind.model_validate({**stamp(STATION, AT, bike=None), **samples[name]})
        assert describe_event(event)


@pytest.mark.parametrize(
    ("state", "down_s", "line"),
    [
        (RadioState.DOWN, None, "radio hci0 down"),
        (RadioState.UP, 2.04, "radio hci0 up after 2.0 s"),
    ],
)
def test_radio_events(state: RadioState, down_s: float | None, line: str) -> None:
    event = RadioEvent(
        **stamp(STATION, AT, bike=None), adapter="hci0", radio_state=state, down_s=down_s
    )
    assert describe_event(event) == line
