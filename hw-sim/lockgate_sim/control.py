"""The simulated world's levers: one set of actions, served on D-Bus and used from Python.

Field engineers and tests act on a running simulator (close a lock by hand, jam it, move it out of
range…) through ``org.lockgate.Simulator1`` at ``/org/lockgate/sim``, on the same bus and the same
connection as the fake BlueZ. :class:`Action` names every action once; :func:`apply_action` performs
one on a :class:`~lockgate_sim.bluez.Station` (the D-Bus interface and the scenario runner both use
it), and :class:`SimulatorControl` is the client that tests and ``lockgate-sim ctl`` call.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Annotated, Any

from dbus_fast import DBusError, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from lockgate_sim.bluez import BLUEZ, Station, StationView, UnknownLockError
from lockgate_sim.firmware import LockView
from lockgate_sim.timings import LockTimes

log = logging.getLogger("lockgate_sim")

CONTROL_PATH = "/org/lockgate/sim"
CONTROL_INTERFACE = "org.lockgate.Simulator1"
UNKNOWN_LOCK = "org.lockgate.Simulator1.Error.UnknownLock"
INVALID_VALUE = "org.lockgate.Simulator1.Error.InvalidValue"
CALL_TIMEOUT_S = 10.0

DBusInt32List = Annotated[list[int], DBusSignature("ai")]


class Action(StrEnum):
    """Every action on the simulated world, by the name ``ctl`` and scenario files use."""

    CLOSE_BY_HAND = "close-by-hand"
    OPEN_BY_HAND = "open-by-hand"
    JAM = "jam"
    BATTERY = "battery"
    OUT_OF_RANGE = "out-of-range"
    IN_RANGE = "in-range"
    RSSI = "rssi"
    DROP_LINK = "drop-link"
    REFUSE_CONNECTS = "refuse-connects"
    SLOTS = "slots"
    MOTOR_MS = "motor-ms"
    POWER_CYCLE = "power-cycle"
    ALARM = "alarm"
    BIKE_MOVING = "bike-moving"
    SENSOR_FAULT = "sensor-fault"
    SHOW = "show"

    @property
    def takes_lock(self) -> bool:
        return self not in (Action.SLOTS, Action.SHOW)

    @property
    def takes_value(self) -> bool:
        return self in _VALUE_RANGES

    @property
    def default(self) -> int | None:
        """The value an action takes when none is given (``jam`` blocks the next motion)."""
        return 1 if self is Action.JAM else None


_VALUE_RANGES: dict[Action, tuple[int, int]] = {
    Action.JAM: (0, 1000),
    Action.BATTERY: (0, 100),
    Action.RSSI: (-127, 20),
    Action.REFUSE_CONNECTS: (0, 1000),
    Action.SLOTS: (0, 20),
    Action.MOTOR_MS: (0, 15000),
    Action.ALARM: (0, 1),
    Action.BIKE_MOVING: (0, 1),
    Action.SENSOR_FAULT: (0, 1),
}


class ActionError(ValueError):
    """An action with a missing or out-of-range value."""


def check_value(action: Action, value: int | None) -> int:
    """The action's value, checked against its range; 0 for actions that take none."""
    if not action.takes_value:
        return 0
    if value is None:
        value = action.default
    if value is None:
        raise ActionError(f"{action} needs a value")
    low, high = _VALUE_RANGES[action]
    if not low <= value <= high:
        raise ActionError(f"{action} takes a value in {low}..{high}, not {value}")
    return value


def apply_action(
    station: Station, action: Action, lock: str = "", value: int | None = None
) -> None:
    """Perform one action on a running station, and log it."""
    number = check_value(action, value)
    log.info("action %s %s %s", action, lock, "" if not action.takes_value else number)
    _perform(station, action, lock, number)


def _perform(station: Station, action: Action, lock: str, value: int) -> None:
    match action:
        case Action.CLOSE_BY_HAND:
            station.close_by_hand(lock)
        case Action.OPEN_BY_HAND:
            station.open_by_hand(lock)
        case Action.JAM:
            station.jam(lock, value)
        case Action.BATTERY:
            station.set_battery(lock, value)
        case Action.OUT_OF_RANGE:
            station.set_in_range(lock, in_range=False)
        case Action.IN_RANGE:
            station.set_in_range(lock, in_range=True)
        case Action.RSSI:
            station.set_rssi(lock, value)
        case Action.DROP_LINK:
            station.drop_link(lock)
        case Action.REFUSE_CONNECTS:
            station.refuse_connects(lock, value)
        case Action.SLOTS:
            station.set_slots(value)
        case Action.MOTOR_MS:
            station.set_motor_ms(lock, value)
        case Action.POWER_CYCLE:
            station.power_cycle(lock)
        case Action.ALARM:
            station.set_alarm(lock, on=bool(value))
        case Action.BIKE_MOVING:
            station.set_bike_moving(lock, moving=bool(value))
        case Action.SENSOR_FAULT:
            station.set_sensor_fault(lock, fault=bool(value))
        case Action.SHOW:
            return


def view_to_json(view: StationView) -> str:
    return json.dumps(asdict(view), indent=2)


def view_from_json(text: str) -> StationView:
    document: dict[str, Any] = json.loads(text)
    locks = tuple(LockView(**lock) for lock in document.pop("locks"))
    return StationView(**document, locks=locks)


# --- served on D-Bus ----------------------------------------------------------------------------


class SimulatorInterface(ServiceInterface):
    """``org.lockgate.Simulator1``: ``Act(action, lock, [value])``, ``Show()`` and
    ``Times(lock)`` (JSON)."""

    def __init__(self, station: Station) -> None:
        super().__init__(CONTROL_INTERFACE)
        self._station = station

    @dbus_method(name="Act")
    def act(self, action: DBusStr, lock: DBusStr, value: DBusInt32List) -> None:
        """``value`` holds the action's value, or nothing for its default (``jam`` blocks once)."""
        try:
            parsed = Action(action)
        except ValueError as err:
            raise DBusError(INVALID_VALUE, f"no action {action!r}") from err
        if len(value) > 1:
            raise DBusError(INVALID_VALUE, "an action takes at most one value")
        try:
            apply_action(self._station, parsed, lock, value[0] if value else None)
        except UnknownLockError as err:
            raise DBusError(UNKNOWN_LOCK, str(err)) from err
        except ActionError as err:
            raise DBusError(INVALID_VALUE, str(err)) from err

    @dbus_method(name="Show")
    def show(self) -> DBusStr:
        return view_to_json(self._station.view())

    @dbus_method(name="Times")
    def times(self, lock: DBusStr) -> DBusStr:
        """One lock's real connect and motor times as JSON (cheaper than ``Show`` for one lock)."""
        try:
            return json.dumps(asdict(self._station.times(lock)))
        except UnknownLockError as err:
            raise DBusError(UNKNOWN_LOCK, str(err)) from err


# --- the client ---------------------------------------------------------------------------------


class SimulatorError(Exception):
    """The simulator refused an action: an unknown lock or a value out of range."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{text} ({name})")
        self.name = name
        self.text = text


@dataclass(slots=True)
class SimulatorControl:
    """Acts on a running simulator over its bus: the API tests and ``lockgate-sim ctl`` use.

    ``lock`` arguments take a lock's advertised name (``ISHAREIT-2200540``) or its address.
    """

    bus: MessageBus

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, bus_address: str) -> AsyncIterator["SimulatorControl"]:
        """``async with SimulatorControl.connect(address) as control:``, one bus connection."""
        async with asyncio.timeout(CALL_TIMEOUT_S):
            bus = await MessageBus(bus_address=bus_address).connect()
        try:
            yield cls(bus)
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def act(self, action: Action, lock: str = "", value: int | None = None) -> None:
        """Perform any :class:`Action` (``SHOW`` does nothing here: use :meth:`show`)."""
        await self._call("Act", "ssai", [str(action), lock, [] if value is None else [value]])

    async def close_by_hand(self, lock: str) -> None:
        """A rider pushes the bolt shut: a connected lock indicates locking, then closed."""
        await self.act(Action.CLOSE_BY_HAND, lock)

    async def open_by_hand(self, lock: str) -> None:
        """The bolt springs open: a connected lock indicates unlocking, then open."""
        await self.act(Action.OPEN_BY_HAND, lock)

    async def jam(self, lock: str, count: int = 1) -> None:
        """The next ``count`` motor runs block (status 0x0C or 0x03); 0 clears a jam."""
        await self.act(Action.JAM, lock, count)

    async def set_battery(self, lock: str, percent: int) -> None:
        await self.act(Action.BATTERY, lock, percent)

    async def out_of_range(self, lock: str) -> None:
        """The lock leaves the adapter's range: its link drops and its device object goes."""
        await self.act(Action.OUT_OF_RANGE, lock)

    async def back_in_range(self, lock: str) -> None:
        """The lock is heard again at the next discovery."""
        await self.act(Action.IN_RANGE, lock)

    async def set_rssi(self, lock: str, rssi: int) -> None:
        await self.act(Action.RSSI, lock, rssi)

    async def drop_link(self, lock: str) -> None:
        """The link to the lock drops now (as if the supervision timeout hit)."""
        await self.act(Action.DROP_LINK, lock)

    async def refuse_connects(self, lock: str, count: int) -> None:
        """The next ``count`` Connects to the lock fail with ``org.bluez.Error.InProgress``."""
        await self.act(Action.REFUSE_CONNECTS, lock, count)

    async def set_slots(self, slots: int) -> None:
        """The adapter holds at most ``slots`` links from now; more Connects abort."""
        await self.act(Action.SLOTS, "", slots)

    async def set_motor_ms(self, lock: str, motor_ms: int) -> None:
        await self.act(Action.MOTOR_MS, lock, motor_ms)

    async def power_cycle(self, lock: str) -> None:
        """The lock reboots: its link drops, a motion stops, a pending jam is forgotten."""
        await self.act(Action.POWER_CYCLE, lock)

    async def set_alarm(self, lock: str, *, on: bool) -> None:
        """The alarm goes on or off: connected locks indicate 0x10 or 0x20."""
        await self.act(Action.ALARM, lock, int(on))

    async def set_bike_moving(self, lock: str, *, moving: bool) -> None:
        """While the bike moves, close commands are refused with 0x04 (lock moved)."""
        await self.act(Action.BIKE_MOVING, lock, int(moving))

    async def set_sensor_fault(self, lock: str, *, fault: bool) -> None:
        """A failed bolt sensor: motions end in 0x0F and config reads say unknown."""
        await self.act(Action.SENSOR_FAULT, lock, int(fault))

    async def show(self) -> StationView:
        """The adapter and every lock as they are now."""
        reply = await self._call("Show", "", [])
        return view_from_json(reply.body[0])

    async def lock(self, lock: str) -> LockView:
        """One lock as it is now, by name or address."""
        wanted = lock.upper()
        for view in (await self.show()).locks:
            if wanted in (view.name.upper(), view.address.upper()):
                return view
        raise SimulatorError(UNKNOWN_LOCK, f"no lock {lock!r} in this world")

    async def times(self, lock: str) -> LockTimes:
        """What the lock really spent: its last connect and motor run, and the totals.

        A benchmark takes these off a command's end-to-end time rather than the world's
        ``connect_ms`` and ``motor_ms``, which leave the simulator's own lateness in the
        gateway's share.
        """
        reply = await self._call("Times", "s", [lock])
        return LockTimes(**json.loads(reply.body[0]))

    async def _call(self, member: str, signature: str, body: list[Any]) -> Message:
        message = Message(
            destination=BLUEZ,
            path=CONTROL_PATH,
            interface=CONTROL_INTERFACE,
            member=member,
            signature=signature,
            body=body,
        )
        async with asyncio.timeout(CALL_TIMEOUT_S):
            reply = await self.bus.call(message)
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            raise SimulatorError(reply.error_name or "", reply.body[0] if reply.body else "")
        return reply
