"""``lockgate ctl watch``'s view of the station: the radio's state and its events, as an engineer
at the station reads them."""

from __future__ import annotations

from lockgate.cli.watch import View
from lockgate.client import Message


def status(ble: dict[str, object]) -> Message:
    return Message(
        "status",
        {"station": "FR101", "state": "online", "since": "t0", "outbox_depth": 0, "ble": ble},
        retained=True,
    )


def test_a_radio_that_is_up() -> None:
    view = View("FR101")
    view.take(status({"adapter": "hci0", "slots": 3, "in_use": 1, "state": "up"}))
    assert "ble up 1/3 links" in view.render()


def test_a_radio_that_is_down_says_why() -> None:
    view = View("FR101")
    reason = "adapter hci0 is powered off"
    view.take(
        status({"adapter": "hci0", "slots": 3, "in_use": 0, "state": "down", "reason": reason})
    )
    assert f"ble DOWN ({reason}) 0/3 links" in view.render()


def test_radio_events_name_the_adapter_and_the_cause() -> None:
    view = View("FR101")
    for state, reason in (("down", "bluetoothd is not running"), ("up", "up")):
        event = {
            "type": "radio",
            "seq": 7,
            "bike": None,
            "at": "t1",
            "adapter": "hci0",
            "radio_state": state,
            "reason": reason,
        }
        view.take(Message("events", event, retained=False))
    text = view.render()
    assert "radio hci0 down bluetoothd is not running" in text
    assert "radio hci0 up" in text
