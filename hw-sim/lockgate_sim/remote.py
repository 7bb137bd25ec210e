"""The simulator's control interface as its users call it: :class:`SimulatorControl` acts on a
running simulator over its bus (tests, benchmarks and ``lockgate-sim ctl``); the actions, their
checks and the D-Bus service it calls are :mod:`lockgate_sim.control`'s."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from lockgate_sim.bluez import AdapterView, StationView
from lockgate_sim.control import (
    CALL_TIMEOUT_S,
    CONTROL_INTERFACE,
    CONTROL_NAME,
    CONTROL_PATH,
    UNKNOWN_ADAPTER,
    UNKNOWN_LOCK,
    Action,
    view_from_json,
)
from lockgate_sim.firmware import LockView
from lockgate_sim.linklayer import RadioCounts
from lockgate_sim.timings import LockTimes


class SimulatorError(Exception):
    """The simulator refused an action: an unknown lock or adapter, or a value out of range."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{text} ({name})")
        self.name = name
        self.text = text


@dataclass(slots=True)
class SimulatorControl:
    """Acts on a running simulator over its bus: the API tests and ``lockgate-sim ctl`` use.

    ``lock`` arguments take a lock's advertised name (``ISHAREIT-2200540``) or its address;
    ``adapter`` arguments an adapter's name as it is now (``hci0``). It calls the control
    interface by its own name, ``org.lockgate.Simulator``, which answers while the fake
    bluetoothd restarts or hangs.
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

    async def act(
        self,
        action: Action,
        lock: str = "",
        value: int | None = None,
        *,
        adapter: str | None = None,
        seconds: float | None = None,
        as_name: str | None = None,
    ) -> None:
        """Perform any :class:`Action` (``SHOW`` does nothing here: use :meth:`show`)."""
        arguments: dict[str, Variant] = {}
        if lock:
            arguments["lock"] = Variant("s", lock)
        if adapter:
            arguments["adapter"] = Variant("s", adapter)
        if value is not None:
            arguments["value"] = Variant("i", value)
        if seconds is not None:
            arguments["seconds"] = Variant("d", float(seconds))
        if as_name:
            arguments["as_name"] = Variant("s", as_name)
        await self._call("Perform", "sa{sv}", [str(action), arguments])

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

    async def out_of_range(self, lock: str, adapter: str | None = None) -> None:
        """The lock leaves every adapter's range (or only ``adapter``'s): its link through
        such an adapter drops and that adapter's device object goes."""
        await self.act(Action.OUT_OF_RANGE, lock, adapter=adapter)

    async def back_in_range(self, lock: str, adapter: str | None = None) -> None:
        """The lock is heard again at the next discovery (of every adapter, or ``adapter``'s)."""
        await self.act(Action.IN_RANGE, lock, adapter=adapter)

    async def set_rssi(self, lock: str, rssi: int, adapter: str | None = None) -> None:
        """The RSSI every adapter (or only ``adapter``) hears the lock at."""
        await self.act(Action.RSSI, lock, rssi, adapter=adapter)

    async def drop_link(self, lock: str) -> None:
        """The link to the lock drops now (as if the supervision timeout hit)."""
        await self.act(Action.DROP_LINK, lock)

    async def refuse_connects(self, lock: str, count: int) -> None:
        """The next ``count`` Connects to the lock fail with ``org.bluez.Error.InProgress``."""
        await self.act(Action.REFUSE_CONNECTS, lock, count)

    async def set_slots(self, slots: int, adapter: str | None = None) -> None:
        """The first adapter (or ``adapter``) holds at most ``slots`` links from now; more
        Connects abort."""
        await self.act(Action.SLOTS, "", slots, adapter=adapter)

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

    async def deauthorise(self, lock: str) -> None:
        """The lock ends every link's authorisation, the links staying up: the next command on
        one is answered 0x99 (not authorised) until the link is authorised again."""
        await self.act(Action.DEAUTHORISE, lock)

    # --- the radio's field faults -------------------------------------------------------------

    async def bluez_restart(self, down_s: float = 0.0) -> None:
        """bluetoothd dies and starts again ``down_s`` lock seconds later.

        Answered once it died: ``org.bluez`` has no owner, every link ended without a signal,
        every call it had not answered failed with ``org.freedesktop.DBus.Error.NoReply``. The
        new one takes the name, then announces its adapters and the devices it had stored
        (InterfacesAdded); ``show().bluez`` is ``"running"`` again from then on.
        """
        await self.act(Action.BLUEZ_RESTART, seconds=down_s)

    async def bluez_hang(self, seconds: float) -> None:
        """bluetoothd answers no call for ``seconds`` lock seconds; then it answers each, in
        order, as the world is then. The control interface keeps answering."""
        await self.act(Action.BLUEZ_HANG, seconds=seconds)

    async def adapter_power(self, adapter: str, on: bool) -> None:
        """The adapter is powered off (links end, discovery stops, Connect answers NotReady)
        or on again."""
        await self.act(Action.ADAPTER_POWER, value=int(on), adapter=adapter)

    async def adapter_remove(self, adapter: str) -> None:
        """The adapter is unplugged: its links end, its devices and itself leave the bus."""
        await self.act(Action.ADAPTER_REMOVE, adapter=adapter)

    async def adapter_add(self, adapter: str, as_name: str | None = None) -> None:
        """The unplugged ``adapter`` is plugged back, as ``as_name`` (``hci1``) if given: same
        address, powered, its stored devices announced again."""
        await self.act(Action.ADAPTER_ADD, adapter=adapter, as_name=as_name)

    # --- looking -------------------------------------------------------------------------------

    async def show(self) -> StationView:
        """The adapters and every lock as they are now."""
        reply = await self._call("Show", "", [])
        return view_from_json(reply.body[0])

    async def adapter(self, adapter: str) -> AdapterView:
        """One adapter as it is now, by its name now (``hci1``)."""
        for view in (await self.show()).adapters:
            if view.name == adapter:
                return view
        raise SimulatorError(UNKNOWN_ADAPTER, f"no adapter {adapter!r} in this world")

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

    async def radio_counts(self, lock: str) -> RadioCounts:
        """The lock's ATT round trips (writes with response, reads, confirmed indications,
        CCCD writes, MTU exchanges, discovery) and connection events: summed over its links
        (``total``) and of its current or last link (``link``). A test or a benchmark takes
        the difference across a command to count the command's round trips."""
        reply = await self._call("RadioCounts", "s", [lock])
        return RadioCounts.from_dict(json.loads(reply.body[0]))

    async def set_link(
        self,
        lock: str,
        *,
        connection_interval_ms: int | None = None,
        adv_interval_ms: int | None = None,
        packet_loss_percent: int | None = None,
        supervision_timeout_ms: int | None = None,
    ) -> None:
        """Change the lock's link layer (docs/simulator.md, "The link layer"): each given
        parameter; a link keeps the connection interval it started with."""
        for action, value in (
            (Action.CONNECTION_INTERVAL, connection_interval_ms),
            (Action.ADV_INTERVAL, adv_interval_ms),
            (Action.PACKET_LOSS, packet_loss_percent),
            (Action.SUPERVISION_TIMEOUT, supervision_timeout_ms),
        ):
            if value is not None:
                await self.act(action, lock, value)

    async def _call(self, member: str, signature: str, body: list[Any]) -> Message:
        message = Message(
            destination=CONTROL_NAME,
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
