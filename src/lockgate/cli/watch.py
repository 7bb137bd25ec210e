"""``lockgate ctl watch``: a station's status, locks and events as they come, for people or pipes.

The messages come from :meth:`lockgate.client.StationClient.messages`. With ``--json`` each one is a
line of its own, ``{"topic": ..., "retained": ..., "payload": {...}}``, flushed at once so that
``jq`` or a test reads it as it happens. Without, :class:`View` keeps what the station last said
(its status, each lock's retained document, the latest events and command states) and renders it
as a table: redrawn in place on a terminal, printed anew after each message into a pipe. A lost
broker is a line on standard error and a reconnect, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from lockgate.cli.broker import client_for
from lockgate.client import Message, NoAnswerError
from lockgate.contract import topics
from lockgate.mqtt.settings import LinkSettings

RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 15.0
_CLEAR = "\x1b[H\x1b[2J"
_COLUMNS = ("bike", "lock_state", "booking", "user", "health", "battery", "hardware", "seq")


@dataclass
class View:
    """What the station last said, kept for the table."""

    station: str
    events_shown: int = 10
    status: dict[str, Any] | None = None
    locks: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent: deque[str] = field(default_factory=deque)

    def take(self, message: Message) -> None:
        document = message.payload
        if document is None:
            self._note(f"{message.topic}: a payload that is not a JSON object")
        elif message.topic == topics.STATUS:
            self.status = document
        elif message.topic.startswith(topics.LOCKS + "/"):
            self.locks[message.topic.removeprefix(topics.LOCKS + "/")] = document
        elif message.topic == topics.EVENTS:
            self._note(_event_line(document))
        elif message.topic.startswith(topics.COMMANDS + "/"):
            self._note(_command_line(document))
        elif message.topic == topics.ERRORS:
            self._note(
                f"error {document.get('error_code')} ({document.get('correlation_id')}):"
                f" {document.get('error_message')}"
            )

    def _note(self, line: str) -> None:
        self.recent.append(line)
        while len(self.recent) > self.events_shown:
            self.recent.popleft()

    def render(self) -> str:
        lines = [self._status_line(), ""]
        rows = [_COLUMNS] + [_lock_row(bike, self.locks[bike]) for bike in sorted(self.locks)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines += ["", "latest:"] + [f"  {line}" for line in self.recent]
        return "\n".join(lines) + "\n"

    def _status_line(self) -> str:
        if self.status is None:
            return f"station {self.station}: no status yet"
        status = self.status
        return (
            f"station {status.get('station')}: {status.get('state')} since {status.get('since')}"
            f"  outbox {status.get('outbox_depth')}"
            f"  ble {_radio(status)} {_at(status, 'ble', 'in_use')}/{_at(status, 'ble', 'slots')}"
            " links"
            f"  sealing key {'yes' if status.get('sealing_key') else 'no'}"
        )


def _radio(status: dict[str, Any]) -> str:
    """``up``, or ``DOWN (why)``: what an engineer at the station looks for first."""
    if _at(status, "ble", "state") != "down":
        return "up"
    return f"DOWN ({_text(_at(status, 'ble', 'reason'))})"


def _at(document: object, *path: str) -> object:
    """``document[a][b]…``, or None where a step is missing or not an object: a message from
    someone other than the station must not stop the watch."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _lock_row(bike: str, lock: dict[str, Any]) -> tuple[str, ...]:
    battery = lock.get("battery")
    return (
        bike,
        _text(lock.get("lock_state")),
        _text(_at(lock, "booking", "state")),
        _text(_at(lock, "booking", "user_id")),
        _text(_at(lock, "heartbeat_v2", "health")),
        "-" if battery is None else f"{battery}%",
        _text(lock.get("hardware_state")),
        _text(lock.get("seq")),
    )


def _event_line(event: dict[str, Any]) -> str:
    kind = event.get("type")
    detail = {
        "lock_state": lambda: f"{event.get('previous')} -> {event.get('lock_state')}",
        "booking": lambda: f"{event.get('booking_state')} {_text(event.get('user_id'))}",
        "health": lambda: f"{event.get('health')} {_text(event.get('reason'))}",
        "battery": lambda: f"{event.get('battery')}%",
        "clock": lambda: f"stepped {event.get('step_s')} s",
        "radio": lambda: (
            f"{event.get('adapter')} {event.get('radio_state')}"
            f" {_text(event.get('reason')) if event.get('radio_state') == 'down' else ''}"
        ),
    }.get(str(kind), lambda: "")()
    cause = event.get("cause")
    return (
        f"{_text(event.get('at'))}  #{_text(event.get('seq'))} {_text(event.get('bike'))}"
        f" {kind} {detail}{f' ({cause})' if cause else ''}"
    ).rstrip()


def _command_line(document: dict[str, Any]) -> str:
    code = document.get("error_code")
    events = document.get("events")
    latest = _at(events[-1], "name") if isinstance(events, list) and events else None
    return (
        f"command {document.get('id')} {_text(document.get('name'))} {_text(document.get('bike'))}"
        f" v{_text(document.get('version'))}: {_text(_at(document, 'state', 'value'))}"
        f"{f' {code}' if code else ''}{f' ({latest})' if latest else ''}"
    )


def json_line(message: Message) -> str:
    """One message as one JSON line."""
    return json.dumps(
        {"topic": message.topic, "retained": message.retained, "payload": message.payload},
        separators=(",", ":"),
    )


async def watch(
    settings: LinkSettings,
    context: ssl.SSLContext | None,
    *,
    as_json: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> None:
    """Follows the station until cancelled (Ctrl-C); reconnects whenever the broker goes."""
    view = View(settings.station)
    redraw = out.isatty()
    delay = RECONNECT_INITIAL_S
    while True:
        try:
            async with client_for(settings, context) as client:
                delay = RECONNECT_INITIAL_S
                async for message in client.messages():
                    if as_json:
                        out.write(json_line(message) + "\n")
                    else:
                        view.take(message)
                        out.write((_CLEAR if redraw else "\n") + view.render())
                    out.flush()
        except NoAnswerError as error:
            err.write(f"lockgate ctl watch: {error}; again in {delay:g} s\n")
            err.flush()
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)
