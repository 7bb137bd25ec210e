"""``lockgate demo``'s live terminal view (textual): the station as its backend sees it.

Draws the :class:`~lockgate.demo.backend.StationPicture` a few times a second: the locks (lock
state, booking, health, hardware state, battery), the last events, the commands and their states,
and a status line (broker up or down, the station's process and boot, the outbox depth it
reported). The scripted tour (:mod:`lockgate.demo.tour`) runs in a worker, its captions on top;
keys act by hand meanwhile. The app only views and drives a running demo: :func:`run_app` starts
the demo around it, so that leaving the app, by ``q`` or Ctrl-C, stops every part of it.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable
from typing import ClassVar

from rich.console import Console
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from lockgate.contract import (
    AlarmEvent,
    BatteryEvent,
    BookingEvent,
    CommandDocument,
    Event,
    HealthEvent,
    LockStateEvent,
    RadioEvent,
)
from lockgate.demo.backend import BackendOfflineError
from lockgate.demo.internals import screen_renderable
from lockgate.demo.session import Demo, DemoOptions, running_demo
from lockgate.demo.tour import Outcome, Step, run_tour

REFRESH_S = 0.25
EVENTS_SHOWN = 8
COMMANDS_SHOWN = 8
LOCK_COLUMNS = ("bike", "lock", "lock_state", "booking", "health", "hardware", "battery")


def describe_event(event: Event) -> str:
    """One line for one event, as the view lists it."""
    if isinstance(event, LockStateEvent):
        text = f"{event.previous} → {event.lock_state}"
    elif isinstance(event, BookingEvent):
        text = f"booking {event.booking_state}" + (f" by {event.user_id}" if event.user_id else "")
    elif isinstance(event, HealthEvent):
        text = f"health {event.health or ''} {event.hardware_state or ''}".rstrip()
        if event.dropped is not None:
            text = f"outbox dropped {event.dropped}"
    elif isinstance(event, BatteryEvent):
        text = f"battery {event.battery} %"
    elif isinstance(event, AlarmEvent):
        text = f"alarm {'on' if event.alarm else 'off'}"
    elif isinstance(event, RadioEvent):  # an adapter (or bluetoothd, for all) went or came back
        text = f"radio {event.adapter} {event.radio_state}"
        text += f" after {event.down_s:.1f} s" if event.down_s is not None else ""
    else:  # ClockEvent: the station's wall clock stepped
        text = f"clock stepped {event.step_s:+.1f} s"
    cause = f" ({event.cause})" if event.cause else ""
    replayed = " replayed" if event.replayed else ""
    return f"{text}{cause}{replayed}"


def describe_command(document: CommandDocument) -> str:
    reason = f" {document.error_code}" if document.error_code else ""
    return f"{document.state.value}{reason}"


class DemoApp(App[None]):
    """The view of one running :class:`Demo`; ``tour``: run the scripted tour at start."""

    TITLE = "lockgate demo"
    CSS = """
    #caption { height: auto; border: round $accent; padding: 0 1; }
    #locks { height: auto; max-height: 9; }
    #lower { height: 1fr; }
    #commands, #events { height: 1fr; border: round $panel; }
    #status { height: 1; background: $boost; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "unlock", "Unlock"),
        Binding("l", "lock", "Lock"),
        Binding("h", "close_by_hand", "Close by hand"),
        Binding("o", "open_by_hand", "Open by hand"),
        Binding("b", "toggle_broker", "Broker stop/start"),
        Binding("r", "restart_bluez", "BlueZ"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, demo: Demo, *, tour: bool = True) -> None:
        super().__init__()
        self.demo = demo
        self.tour = tour
        self.captions: list[str] = []
        self.tour_passed: bool | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="caption")
        yield DataTable(id="locks", cursor_type="row", zebra_stripes=True)
        with Vertical(id="lower"):
            yield DataTable(id="commands", cursor_type="none", show_cursor=False)
            yield DataTable(id="events", cursor_type="none", show_cursor=False)
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"station {self.demo.station_id}"
        locks = self.query_one("#locks", DataTable)
        for column in LOCK_COLUMNS:
            locks.add_column(column, key=column)
        for bike in self.demo.bikes:
            locks.add_row(bike.bike, bike.name, "?", "?", "?", "?", "?", key=bike.bike)
        self.query_one("#commands", DataTable).add_columns("command", "bike", "state", "id")
        self.query_one("#events", DataTable).add_columns("seq", "at", "bike", "event")
        self.query_one("#commands", DataTable).border_title = "commands"
        self.query_one("#events", DataTable).border_title = "events"
        locks.focus()
        self.refresh_view()
        self.set_interval(REFRESH_S, self.refresh_view)
        if self.tour:
            self.run_worker(self._tour(), name="tour", group="tour")
        else:
            self._caption("Keys: ↑/↓ choose a bike, u unlock, l lock, h close by hand, b broker.")

    # --- drawing ----------------------------------------------------------------------------------

    def _caption(self, line: str) -> None:
        self.captions.append(line)
        self.query_one("#caption", Static).update("\n".join(self.captions[-4:]))

    def refresh_view(self) -> None:
        picture = self.demo.backend.picture
        locks = self.query_one("#locks", DataTable)
        for bike in self.demo.bikes:
            document = picture.locks.get(bike.bike)
            if document is None:
                continue
            battery = "" if document.battery is None else f"{document.battery} %"
            values = {
                "lock_state": str(document.lock_state),
                "booking": str(document.booking.state),
                "health": str(document.heartbeat_v2.health),
                "hardware": str(document.hardware_state),
                "battery": battery,
            }
            for column, value in values.items():
                locks.update_cell(bike.bike, column, value, update_width=True)

        commands = self.query_one("#commands", DataTable)
        commands.clear()
        for command in list(picture.commands.values())[-COMMANDS_SHOWN:]:
            commands.add_row(
                command.name or "?",
                command.bike or "",
                describe_command(command),
                command.id,
            )

        events = self.query_one("#events", DataTable)
        events.clear()
        for event in list(picture.events)[-EVENTS_SHOWN:]:
            events.add_row(
                str(event.seq), event.at.strftime("%H:%M:%S"), event.bike or "—",
                describe_event(event),
            )  # fmt: skip

        status = picture.status
        broker = "broker up" if self.demo.broker.running else "broker DOWN"
        backend = "backend connected" if picture.connected else "backend offline"
        station = (
            f"station pid {self.demo.station.pid}"
            if self.demo.station.running
            else "station stopped"
        )
        outbox = "outbox ?" if status is None else f"outbox {status.outbox_depth}"
        boot = "" if status is None else f"boot {status.boot_id[:8]} {status.state}"
        self.query_one("#status", Static).update(
            Text("  ·  ".join((broker, backend, station, outbox, boot)))
        )

    def screen_text(self) -> str:
        """The screen as plain text: for the README's capture, and for tests to read."""
        width, height = self.size
        console = Console(
            width=width, height=height, file=io.StringIO(), record=True, color_system=None
        )
        console.print(screen_renderable(self.screen))
        return console.export_text()

    # --- the tour ---------------------------------------------------------------------------------

    async def _tour(self) -> None:
        def report(index: int, step: Step, outcome: Outcome | None) -> None:
            if outcome is None:
                self._caption(f"▶ {index + 1}. {step.caption}")
            else:
                self._caption(f"  {'✔' if outcome.ok else '✘'} {outcome.detail}")

        self.tour_passed = await run_tour(self.demo, report)
        verdict = "every step as it should be" if self.tour_passed else "a step FAILED"
        self._caption(f"Tour done: {verdict}. Keys drive it now; q or Ctrl-C stops everything.")

    # --- keys -------------------------------------------------------------------------------------

    def _chosen_bike(self) -> str:
        locks = self.query_one("#locks", DataTable)
        return self.demo.bikes[locks.cursor_row].bike

    async def action_unlock(self) -> None:
        bike = self._chosen_bike()
        self.run_worker(self._command(f"unlock {bike}", self.demo.unlock(bike)), group="keys")

    async def action_lock(self) -> None:
        bike = self._chosen_bike()
        self.run_worker(self._command(f"lock {bike}", self.demo.lock(bike)), group="keys")

    async def _command(self, what: str, sending: Awaitable[str]) -> None:
        try:
            command_id = await sending
        except BackendOfflineError as err:
            self.notify(f"{what}: {err}", severity="warning")
            return
        self.notify(f"{what}: sent as {command_id}")

    async def action_close_by_hand(self) -> None:
        bike = self._chosen_bike()
        self.run_worker(self.demo.close_by_hand(bike), group="keys")
        self.notify(f"a rider pushes {bike}'s bolt shut")

    async def action_open_by_hand(self) -> None:
        bike = self._chosen_bike()
        self.run_worker(self.demo.open_by_hand(bike), group="keys")
        self.notify(f"{bike}'s bolt springs open")

    async def action_toggle_broker(self) -> None:
        going = "away" if self.demo.broker.running else "back"
        self.run_worker(self.demo.toggle_broker(), group="keys", exclusive=True)
        self.notify(f"the broker goes {going}")

    async def action_restart_bluez(self) -> None:
        self.run_worker(self.demo.bluez_restart(), group="keys", exclusive=True)
        self.notify("bluetoothd restarts")


async def run_app(options: DemoOptions, *, tour: bool = True) -> int:
    """Start the demo, show it until the viewer leaves (q or Ctrl-C), stop all of it."""
    print("lockgate demo: starting the broker, the simulated locks and the station…")  # noqa: T201
    async with running_demo(options) as demo:
        await DemoApp(demo, tour=tour).run_async()
        print("lockgate demo: stopping the station, the simulated locks and the broker…")  # noqa: T201
    return 0
