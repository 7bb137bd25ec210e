"""The simulated world's levers: one set of actions, served on D-Bus and used from Python.

Field engineers and tests act on a running simulator (close a lock by hand, jam it, move it out of
range, restart bluetoothd, unplug an adapter…) through ``org.lockgate.Simulator1`` at
``/org/lockgate/sim``, on the simulator's bus under the name ``org.lockgate.Simulator`` (a
connection of its own, which answers while the fake bluetoothd restarts or hangs; the fake
bluetoothd's connection serves the same object too, as it always has). :class:`Action` names
every action once; :func:`apply_action` performs one on a :class:`~lockgate_sim.bluez.Station`
(the D-Bus interface and the scenario runner both use it). Its client, which tests and
``lockgate-sim ctl`` call, is :class:`lockgate_sim.remote.SimulatorControl`.
"""

import json
import logging
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import DBusDict, DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from lockgate_sim.bluez import (
    AdapterView,
    RefusedError,
    Station,
    StationView,
    UnknownAdapterError,
    UnknownLockError,
)
from lockgate_sim.firmware import LockView
from lockgate_sim.world import ADAPTER_NAME

log = logging.getLogger("lockgate_sim")

CONTROL_NAME = "org.lockgate.Simulator"
"""The control interface's own bus name: it stays while ``org.bluez`` goes and comes back."""
CONTROL_PATH = "/org/lockgate/sim"
CONTROL_INTERFACE = "org.lockgate.Simulator1"
UNKNOWN_LOCK = "org.lockgate.Simulator1.Error.UnknownLock"
UNKNOWN_ADAPTER = "org.lockgate.Simulator1.Error.UnknownAdapter"
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
    DEAUTHORISE = "deauthorise"
    """The lock ends its links' authorisation (they stay up): a command on one answers 0x99."""
    SHOW = "show"
    BLUEZ_RESTART = "bluez-restart"
    """bluetoothd dies and starts again: the name goes, links end, objects come back anew."""
    BLUEZ_HANG = "bluez-hang"
    """bluetoothd stops answering for ``seconds``: calls wait, then are answered."""
    ADAPTER_POWER = "adapter-power"
    """An adapter powered off (0) or on (1)."""
    ADAPTER_REMOVE = "adapter-remove"
    """An adapter unplugged: its devices and its object leave the bus."""
    ADAPTER_ADD = "adapter-add"
    """An unplugged adapter plugged back, under its name or ``as_name``."""
    CONNECTION_INTERVAL = "connection-interval"
    """The lock's connection interval in ms from its next link (0: an instant radio)."""
    ADV_INTERVAL = "adv-interval"
    """The lock's advertising interval in ms (0: a connect meets it at once)."""
    PACKET_LOSS = "packet-loss"
    """The chance, in percent, that a packet to or from the lock is lost."""
    SUPERVISION_TIMEOUT = "supervision-timeout"
    """How long, in ms, a lock gone out of range takes to be noticed."""

    @property
    def takes_lock(self) -> bool:
        return self not in (Action.SLOTS, Action.SHOW, *_BLUEZ_ACTIONS, *_ADAPTER_ACTIONS)

    @property
    def takes_adapter(self) -> bool:
        """Whether the action needs an adapter (``adapter-*``)."""
        return self in _ADAPTER_ACTIONS

    @property
    def may_take_adapter(self) -> bool:
        """Whether the action takes an adapter at all (per-adapter RSSI and range too)."""
        return self in _ADAPTER_ACTIONS or self in _MAY_TAKE_ADAPTER

    @property
    def takes_seconds(self) -> bool:
        """Whether the action takes a time in lock seconds (``bluez-hang``, and
        ``bluez-restart`` for the time the name stays unowned)."""
        return self in _BLUEZ_ACTIONS

    @property
    def takes_value(self) -> bool:
        return self in _VALUE_RANGES

    @property
    def default(self) -> int | None:
        """The value an action takes when none is given (``jam`` blocks the next motion)."""
        return 1 if self is Action.JAM else None


_BLUEZ_ACTIONS = (Action.BLUEZ_RESTART, Action.BLUEZ_HANG)
_ADAPTER_ACTIONS = (Action.ADAPTER_POWER, Action.ADAPTER_REMOVE, Action.ADAPTER_ADD)
_MAY_TAKE_ADAPTER = (Action.RSSI, Action.OUT_OF_RANGE, Action.IN_RANGE, Action.SLOTS)
MAX_SECONDS = 3600.0
"""The longest hang (or restart) an action asks for, in lock seconds."""

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
    Action.ADAPTER_POWER: (0, 1),
    Action.CONNECTION_INTERVAL: (0, 4000),
    Action.ADV_INTERVAL: (0, 10240),
    Action.PACKET_LOSS: (0, 90),
    Action.SUPERVISION_TIMEOUT: (0, 32000),
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


def check_seconds(action: Action, seconds: float | None) -> float:
    """The action's time in lock seconds: needed by ``bluez-hang``, optional (0) for
    ``bluez-restart``, none for the others."""
    if not action.takes_seconds:
        if seconds is not None:
            raise ActionError(f"{action} takes no seconds")
        return 0.0
    if seconds is None:
        if action is Action.BLUEZ_HANG:
            raise ActionError(f"{action} needs seconds")
        return 0.0
    if not 0.0 <= seconds <= MAX_SECONDS:
        raise ActionError(f"{action} takes 0..{MAX_SECONDS:g} seconds, not {seconds}")
    return seconds


def check_arguments(
    action: Action,
    *,
    lock: str = "",
    adapter: str = "",
    value: int | None = None,
    seconds: float | None = None,
    as_name: str = "",
) -> None:
    """Everything an action is given fits it (a lock, an adapter, a value, seconds, a name)."""
    check_value(action, value)
    check_seconds(action, seconds)
    if action.takes_lock and not lock:
        raise ActionError(f"{action} needs a lock")
    if action.takes_adapter and not adapter:
        raise ActionError(f"{action} needs an adapter")
    if adapter and not action.may_take_adapter:
        raise ActionError(f"{action} takes no adapter")
    if as_name and action is not Action.ADAPTER_ADD:
        raise ActionError(f"{action} takes no as_name")
    if as_name and not ADAPTER_NAME.match(as_name):
        raise ActionError(f"an adapter's name looks like hci<digits>, not {as_name!r}")


def apply_action(
    station: Station,
    action: Action,
    lock: str = "",
    value: int | None = None,
    *,
    adapter: str = "",
    seconds: float | None = None,
    as_name: str = "",
) -> None:
    """Perform one action on a running station, and log it."""
    check_arguments(
        action, lock=lock, adapter=adapter, value=value, seconds=seconds, as_name=as_name
    )
    number = check_value(action, value)
    log.info(
        "action %s",
        " ".join(
            str(part)
            for part in (
                action,
                lock,
                adapter,
                number if action.takes_value else "",
                f"{seconds:g}s" if seconds is not None else "",
                f"as {as_name}" if as_name else "",
            )
            if part != ""
        ),
    )
    _perform(
        station,
        action,
        lock,
        number,
        adapter=adapter,
        seconds=check_seconds(action, seconds),
        as_name=as_name,
    )


def _perform(
    station: Station,
    action: Action,
    lock: str,
    value: int,
    *,
    adapter: str,
    seconds: float,
    as_name: str,
) -> None:
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
            station.set_in_range(lock, in_range=False, adapter=adapter)
        case Action.IN_RANGE:
            station.set_in_range(lock, in_range=True, adapter=adapter)
        case Action.RSSI:
            station.set_rssi(lock, value, adapter=adapter)
        case Action.DROP_LINK:
            station.drop_link(lock)
        case Action.REFUSE_CONNECTS:
            station.refuse_connects(lock, value)
        case Action.SLOTS:
            station.set_slots(value, adapter=adapter)
        case Action.MOTOR_MS:
            station.set_motor_ms(lock, value)
        case Action.POWER_CYCLE:
            station.power_cycle(lock)
        case Action.ALARM | Action.BIKE_MOVING | Action.SENSOR_FAULT | Action.DEAUTHORISE:
            _perform_on_firmware(station, action, lock, value)
        case Action.BLUEZ_RESTART:
            station.bluez_restart(down_s=seconds)
        case Action.BLUEZ_HANG:
            station.bluez_hang(seconds)
        case Action.ADAPTER_POWER:
            station.adapter_power(adapter, on=bool(value))
        case Action.ADAPTER_REMOVE:
            station.adapter_remove(adapter)
        case Action.ADAPTER_ADD:
            station.adapter_add(adapter, as_name=as_name or None)
        case Action.CONNECTION_INTERVAL:
            station.set_link(lock, connection_interval_ms=value)
        case Action.ADV_INTERVAL:
            station.set_link(lock, adv_interval_ms=value)
        case Action.PACKET_LOSS:
            station.set_link(lock, packet_loss=value / 100)
        case Action.SUPERVISION_TIMEOUT:
            station.set_link(lock, supervision_timeout_ms=value)
        case Action.SHOW:
            return


def _perform_on_firmware(station: Station, action: Action, lock: str, value: int) -> None:
    """The actions that change what the lock's firmware says, not the radio."""
    match action:
        case Action.ALARM:
            station.set_alarm(lock, on=bool(value))
        case Action.BIKE_MOVING:
            station.set_bike_moving(lock, moving=bool(value))
        case Action.SENSOR_FAULT:
            station.set_sensor_fault(lock, fault=bool(value))
        case Action.DEAUTHORISE:
            station.deauthorise(lock)
        case _:
            raise AssertionError(f"{action} is not a firmware action")


def view_to_json(view: StationView) -> str:
    return json.dumps(asdict(view), indent=2)


def view_from_json(text: str) -> StationView:
    document: dict[str, Any] = json.loads(text)
    locks = tuple(
        LockView(**{**lock, "out_of_range_of": tuple(lock.get("out_of_range_of", ()))})
        for lock in document.pop("locks")
    )
    adapters = tuple(
        AdapterView(**{**adapter, "devices": tuple(adapter.get("devices", ()))})
        for adapter in document.pop("adapters", ())
    )
    return StationView(**document, locks=locks, adapters=adapters)


# --- served on D-Bus ----------------------------------------------------------------------------


def _argument(arguments: dict[str, Variant], key: str, signature: str) -> Any:
    variant = arguments.get(key)
    if variant is None:
        return None
    if variant.signature != signature:
        raise DBusError(INVALID_VALUE, f"{key} must be of type {signature!r}")
    return variant.value


class SimulatorInterface(ServiceInterface):
    """``org.lockgate.Simulator1``: ``Perform(action, arguments)``, ``Act(action, lock,
    [value])``, ``Show()``, ``Times(lock)`` and ``RadioCounts(lock)`` (JSON)."""

    def __init__(self, station: Station) -> None:
        super().__init__(CONTROL_INTERFACE)
        self._station = station

    @dbus_method(name="Act")
    def act(self, action: DBusStr, lock: DBusStr, value: DBusInt32List) -> None:
        """``value`` holds the action's value, or nothing for its default (``jam`` blocks once).

        The first form of the interface, kept for the actions on a lock and ``slots``:
        ``lock`` is the target. :meth:`perform` takes every action."""
        if len(value) > 1:
            raise DBusError(INVALID_VALUE, "an action takes at most one value")
        self._apply(action, lock=lock, value=value[0] if value else None)

    @dbus_method(name="Perform")
    async def perform(self, action: DBusStr, arguments: DBusDict) -> None:
        """Any action, its arguments by name: ``lock`` (s), ``adapter`` (s), ``value`` (i),
        ``seconds`` (d), ``as_name`` (s); unknown names are refused.

        Answered once the action is done; ``bluez-restart`` once the bus daemon has taken
        ``org.bluez`` from the bluetoothd that died (the new one comes after)."""
        unknown = set(arguments) - {"lock", "adapter", "value", "seconds", "as_name"}
        if unknown:
            raise DBusError(INVALID_VALUE, f"no argument {sorted(unknown)[0]!r}")
        self._apply(
            action,
            lock=_argument(arguments, "lock", "s") or "",
            adapter=_argument(arguments, "adapter", "s") or "",
            value=_argument(arguments, "value", "i"),
            seconds=_argument(arguments, "seconds", "d"),
            as_name=_argument(arguments, "as_name", "s") or "",
        )
        if action == Action.BLUEZ_RESTART:
            await self._station.bluez_gone()

    def _apply(
        self,
        action: str,
        *,
        lock: str = "",
        adapter: str = "",
        value: int | None = None,
        seconds: float | None = None,
        as_name: str = "",
    ) -> None:
        try:
            parsed = Action(action)
        except ValueError as err:
            raise DBusError(INVALID_VALUE, f"no action {action!r}") from err
        try:
            apply_action(
                self._station,
                parsed,
                lock,
                value,
                adapter=adapter,
                seconds=seconds,
                as_name=as_name,
            )
        except UnknownLockError as err:
            raise DBusError(UNKNOWN_LOCK, str(err)) from err
        except UnknownAdapterError as err:
            raise DBusError(UNKNOWN_ADAPTER, str(err)) from err
        except (ActionError, RefusedError) as err:
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

    @dbus_method(name="RadioCounts")
    def radio_counts(self, lock: DBusStr) -> DBusStr:
        """One lock's ATT round trips and connection events as JSON (``RadioCounts``)."""
        try:
            return json.dumps(asdict(self._station.radio_counts(lock)))
        except UnknownLockError as err:
            raise DBusError(UNKNOWN_LOCK, str(err)) from err
