"""The simulated world behind the fake bluetoothd: its adapters, its locks, their clock and tasks,
and bluetoothd itself, which may die and start again, or hang.

:class:`Station` is the registry every BlueZ interface of this package reaches through: it owns
the bluetoothd connection and its object tree (:mod:`.objects`), an adapter per
:class:`~.radio.Radio` (:mod:`.adapter`; each with a device per lock, :mod:`.device`, its own
connection slots and discovery), the simulated clock, and the tasks that advertise the locks and
run their timers. It is the one place the control interface and scenarios act on the world
(close by hand, out of range, jam, restart bluetoothd, unplug an adapter, ...).

bluetoothd's process is modelled by its connection to the bus: it owns ``org.bluez`` there. A
restart closes that connection as the process's death would (the bus daemon tells everyone that
``org.bluez`` lost its owner and answers the calls left unanswered with NoReply; bluetoothd sends
no InterfacesRemoved, no PropertiesChanged on its way out; the kernel ends every link). A new
connection then takes the name and announces the adapters and the devices bluetoothd had stored,
with fresh state: no link, no discovery session, no notify session.

Why one module of about 700 lines: bluetoothd's life (start, restart, hang, stop), the world's
actions and the views of it all act on the same registry of adapters, locks and tasks; what is one
adapter's or one lock's alone lives beside it (radio.py, units.py, device.py, firmware).
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, replace
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply
from dbus_fast.service import ServiceInterface

from lockgate_sim.bluez.adapter import Adapter
from lockgate_sim.bluez.device import Device
from lockgate_sim.bluez.objects import BLUEZ, DBUS, BluezBus, ObjectTree
from lockgate_sim.bluez.radio import Radio
from lockgate_sim.bluez.units import Clock, LockUnit
from lockgate_sim.firmware import Effect, LockView, RandomBytes
from lockgate_sim.linklayer import RadioCounts
from lockgate_sim.timings import LockTimes
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")

OBJECTS_PER_BATCH = 16
"""Devices removed at once when the simulator stops, before waiting for the bus to take them."""
BUS_TIMEOUT_S = 10.0
NAME_POLL_S = 0.005
"""How often a restart asks the bus daemon whether ``org.bluez`` has lost its owner yet."""


@dataclass(frozen=True, slots=True)
class AdapterView:
    """What the control interface shows of one adapter."""

    name: str
    """Its name now (``hci1``): a dongle plugged back may come back under another."""
    address: str
    present: bool
    """False while unplugged (``adapter-remove``)."""
    powered: bool
    discovering: bool
    connection_slots: int
    links: int
    most_links: int
    """The most links it held at once since the simulator started."""
    overlapping_connects: int
    """Connects answered InProgress because another one was running on it."""
    devices: tuple[str, ...] = ()
    """The locks it has a device object for now."""
    world_name: str = ""
    """Its name in the world file."""


@dataclass(frozen=True, slots=True)
class StationView:
    """What the control interface shows of the whole world.

    The first fields describe the world's first adapter (``[adapter]``), as they did when a
    world had one; ``adapters`` shows each."""

    adapter: str
    connection_slots: int
    links: int
    discovering: bool
    time_scale: float
    locks: tuple[LockView, ...]
    most_links: int = 0
    """The most links the adapter held at once since the simulator started."""
    overlapping_connects: int = 0
    """Connects answered InProgress because another one was running (refusals asked for by
    ``refuse-connects`` not counted)."""
    adapters: tuple[AdapterView, ...] = ()
    bluez: str = "running"
    """``running``, ``hung`` (calls wait: ``bluez-hang``) or ``stopped`` (``org.bluez`` has no
    owner: a ``bluez-restart`` under way)."""
    bluez_restarts: int = 0
    bluez_held: int = 0
    """Messages bluetoothd holds unanswered while it hangs (calls, clients leaving)."""


class UnknownLockError(LookupError):
    """No lock of that name or address in this world."""


class UnknownAdapterError(LookupError):
    """No adapter of that name in this world."""


class RefusedError(ValueError):
    """An action the world cannot take as it is (unplug an adapter already unplugged...)."""


class NameTakenError(RuntimeError):
    """Another process already owns org.bluez on the bus: the simulator cannot take its place."""


class Station:
    """The simulated station: its adapters, its locks, their clock, and bluetoothd."""

    def __init__(
        self, bus_address: str, world: WorldConfig, random_bytes: RandomBytes = os.urandom
    ) -> None:
        self.bus_address = bus_address
        self.world = world
        self.clock = Clock(world.adapter.time_scale)
        self.units = [
            LockUnit(lock.build(random_bytes), link=world.link_settings(lock))
            for lock in world.locks
        ]
        self.radios = [Radio(self, config) for config in world.all_adapters]
        by_name = {radio.name: radio for radio in self.radios}
        for config in world.locks:
            for name, rssi in config.rssi_by_adapter.items():
                by_name[name].rssi[config.name] = rssi
            for name in config.out_of_range_of:
                by_name[name].deaf_to.add(config.name)
        for radio in self.radios:
            radio.build(self.units)
        self.objects: ObjectTree | None = None
        self.bluez_running = False
        self.answering = asyncio.Event()
        """Set while bluetoothd runs and answers (not hung): the advertisers wait on it."""
        self.restarts = 0
        self.calls: set[asyncio.Task[object]] = set()
        """D-Bus calls under way (Connects) that a stop or a restart cancels."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._also_served: list[tuple[str, ServiceInterface]] = []
        self._hang_until = 0.0
        self._hang: asyncio.Task[None] | None = None
        self._gone = asyncio.Event()

    # --- compatibility with the one-adapter station -------------------------------------------

    @property
    def bus(self) -> MessageBus:
        """bluetoothd's connection to the bus (a new one after each restart)."""
        return self.tree.bus

    @property
    def tree(self) -> ObjectTree:
        if self.objects is None:
            raise RuntimeError("bluetoothd has not started")
        return self.objects

    @property
    def first(self) -> Radio:
        """The world's first adapter (``[adapter]``)."""
        return self.radios[0]

    @property
    def adapter(self) -> Adapter:
        return self.first.adapter

    @property
    def adapter_path(self) -> str:
        return self.first.adapter_path

    @property
    def devices(self) -> list[Device]:
        """The first adapter's device of each lock."""
        return list(self.first.devices.values())

    @property
    def connection_slots(self) -> int:
        return self.first.connection_slots

    def links_in_use(self) -> int:
        return sum(radio.links_in_use() for radio in self.radios)

    def linked_elsewhere(self, device: Device) -> bool:
        """Whether the lock holds a link that is not ``device``'s (through another adapter)."""
        return bool(device.lock.links) and device.link is None

    # --- bluetoothd's life --------------------------------------------------------------------

    def also_serve(self, path: str, interface: ServiceInterface) -> None:
        """Export ``interface`` on every bluetoothd connection too (calls on it are never held)."""
        self._also_served.append((path, interface))

    async def start(self) -> None:
        """Start bluetoothd (take ``org.bluez``, announce the adapters), the advertisers and
        every lock's timers."""
        await self._serve_on(await self._connect())
        for radio in self.radios:
            self.spawn(radio.advertiser(), f"advertiser {radio.config.name}")
        for unit in self.units:
            self.spawn(self._run_timers(unit), f"timers {unit.lock.name}")

    async def _connect(self) -> MessageBus:
        async with asyncio.timeout(BUS_TIMEOUT_S):
            bus = await BluezBus(bus_address=self.bus_address).connect()
            assert isinstance(bus, MessageBus)
            return bus

    async def _serve_on(self, bus: MessageBus) -> None:
        """As bluetoothd starts: take the name, then announce each adapter and its stored
        devices (clients watching ``org.bluez`` hear the InterfacesAdded that way)."""
        self.objects = ObjectTree(bus, open_paths=tuple(path for path, _ in self._also_served))
        await self.objects.start()
        self.objects.on_client_left(self._client_left)
        async with asyncio.timeout(BUS_TIMEOUT_S):
            reply = await bus.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            raise NameTakenError(f"{BLUEZ} is already owned on {self.bus_address}")
        for path, interface in self._also_served:
            bus.export(path, interface)
        self.bluez_running = True
        for radio in self.radios:
            if radio.present:
                await radio.announce()
        self.answering.set()

    def _client_left(self, client: str) -> None:
        for radio in self.radios:
            if radio.on_bus:
                radio.adapter.client_left(client)

    def bluez_restart(self, down_s: float = 0.0) -> None:
        """bluetoothd dies now and starts again ``down_s`` lock seconds after it is gone."""
        if not self.bluez_running:
            raise RefusedError("bluetoothd is not running (a restart is under way)")
        old = self.tree.bus
        self.bluez_running = False
        self.answering.clear()
        self._end_hang(answer=False)
        self.tree.kill()
        if isinstance(old, BluezBus):
            old.dead = True
        for task in self.calls:
            task.cancel()
        for radio in self.radios:
            radio.lose("bluetoothd stopped")
            radio.build(self.units)
        self.restarts += 1
        self._gone.clear()
        log.info("bluetoothd exits")
        self.spawn(self._come_back(old, down_s), "bluetoothd restart")

    async def bluez_gone(self) -> None:
        """Wait until the bus daemon has taken ``org.bluez`` from the bluetoothd that died."""
        await self._gone.wait()

    async def _come_back(self, old: MessageBus, down_s: float) -> None:
        bus: MessageBus | None = None
        try:
            # The next bluetoothd's connection is made while the dead one's socket is still
            # open, so it cannot get the same file descriptor: a reply the dead one's handlers
            # finish late is written to that number, and would corrupt a new socket that had it.
            try:
                bus = await self._connect()
            finally:
                old.disconnect()  # the process's death: the bus daemon frees org.bluez
            with contextlib.suppress(Exception):
                await old.wait_for_disconnect()  # type: ignore[no-untyped-call]
            await self._until_unowned(bus)
            self._gone.set()
            await self.clock.sleep(down_s)
            await self._serve_on(bus)
        except BaseException:
            if bus is not None:
                bus.disconnect()
            raise
        finally:
            self._gone.set()  # a control call waiting on it is answered, whatever went wrong
        log.info("bluetoothd started again (restart %d)", self.restarts)

    @staticmethod
    async def _until_unowned(bus: MessageBus) -> None:
        """Until the bus daemon has noticed the old connection closed: ``org.bluez`` unowned."""
        ask = Message(
            destination=DBUS,
            path="/org/freedesktop/DBus",
            interface=DBUS,
            member="NameHasOwner",
            signature="s",
            body=[BLUEZ],
        )
        async with asyncio.timeout(BUS_TIMEOUT_S):
            while True:
                reply = await bus.call(ask)
                answered = reply is not None and reply.message_type is MessageType.METHOD_RETURN
                if answered and reply is not None and not reply.body[0]:
                    return
                await asyncio.sleep(NAME_POLL_S)

    def bluez_hang(self, seconds: float) -> None:
        """bluetoothd answers nothing for ``seconds`` lock seconds (longer if already hung)."""
        if not self.bluez_running:
            raise RefusedError("bluetoothd is not running (a restart is under way)")
        self.tree.hang()
        self.answering.clear()
        self._hang_until = max(self._hang_until, self.clock.now() + seconds)
        if self._hang is None:
            self._hang = asyncio.create_task(self._hang_ends(), name="bluetoothd hang")
            self.own(self._hang)
        log.info("bluetoothd hangs until %.3f s", self._hang_until)

    async def _hang_ends(self) -> None:
        while (left := self._hang_until - self.clock.now()) > 0:
            await self.clock.sleep(left)
        self._hang = None
        self._end_hang(answer=True)

    def _end_hang(self, *, answer: bool) -> None:
        if self._hang is not None and self._hang is not asyncio.current_task():
            self._hang.cancel()
        self._hang = None
        if self.objects is None or not self.objects.hung:
            return
        if answer:
            log.info("bluetoothd answers again")
            self.objects.resume()
            self.answering.set()
        else:
            self.objects.drop_held()

    # --- the locks' timers --------------------------------------------------------------------

    def _apply(self, unit: LockUnit, effects: list[Effect]) -> None:
        """Make the lock's effects visible through every adapter that knows it."""
        if effects:
            for radio in self.radios:
                radio.device(unit.lock).apply(effects)
        unit.wake.set()

    async def _run_timers(self, unit: LockUnit) -> None:
        """Wake the lock when its next deadline (motor, dropped link) comes, or when told to.

        The deadline is an absolute time on the loop's clock (no drift from re-computing a
        delay), and a deadline that fired is run as due even if the loop's clock stands a hair
        before it, so that it is never slept on twice.
        """
        loop = asyncio.get_running_loop()
        lock = unit.lock
        while True:
            unit.wake.clear()
            deadline = lock.next_deadline()
            when = None if deadline is None else self.clock.loop_time(deadline)
            try:
                async with asyncio.timeout_at(when):
                    await unit.wake.wait()
                now = self.clock.now()
            except TimeoutError:
                assert deadline is not None
                assert when is not None
                late_ms = (loop.time() - when) * 1e3
                log.debug("%s: timer ran %.2f ms late", lock.name, late_ms)
                now = max(self.clock.now(), deadline)
            motion = lock.motion
            effects = lock.advance(now)
            if effects:
                for radio in self.radios:
                    radio.device(lock).apply(effects)
            if motion is not None and lock.motion is not motion and not motion.by_hand:
                unit.times.moved(self.clock.now() - motion.started_at)

    # --- lifecycle ----------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task the station owns: :meth:`stop` cancels and awaits it.

        Not a TaskGroup around the caller's block: an error of the caller's (a failed assertion
        in a test) must come out as itself, not wrapped in an ExceptionGroup.
        """
        self.own(asyncio.create_task(work, name=name))

    def own(self, task: asyncio.Task[None]) -> None:
        """:meth:`stop` cancels and awaits ``task`` too; its failure is logged."""
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("simulator task %r failed", task.get_name(), exc_info=error)

    async def stop(self) -> None:
        """Cancel and await the station's tasks and the D-Bus calls still running."""
        tasks = [*self.calls, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._hang = None
        if self.objects is not None and self.objects.hung:
            self.objects.drop_held()

    async def power_off(self) -> None:
        """As bluetoothd going down: every link ends and every object leaves the bus.

        Clients still connected see Connected turn false and the objects removed, rather than a
        bus name that silently stops answering. The removals go out in batches, each taken by
        the bus daemon before the next (a world of hundreds of locks is too much for one burst).
        """
        if not self.bluez_running or self.objects is None:
            return
        self.bluez_running = False
        for index, unit in enumerate(self.units, start=1):
            self._apply(unit, unit.lock.drop_links("simulator stopping"))
            for radio in self.radios:
                if radio.present:
                    radio.forget(radio.device(unit.lock))
            if index % OBJECTS_PER_BATCH == 0:
                await self.objects.drained()
        for radio in self.radios:
            if radio.present and self.objects.exports(radio.adapter_path):
                self.objects.unexport(radio.adapter_path, radio.adapter)
        await self.objects.drained()

    async def disconnect(self) -> None:
        """Leave the bus (bluetoothd's connection), if still on it."""
        if self.objects is None:
            return
        bus = self.objects.bus
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    # --- the world's levers (control interface, scenarios) ------------------------------------

    def find(self, lock: str) -> LockUnit:
        wanted = lock.strip().upper()
        for unit in self.units:
            if wanted in (unit.lock.name.upper(), unit.lock.address.upper()):
                return unit
        raise UnknownLockError(f"no lock {lock!r} in this world")

    def radio(self, name: str) -> Radio:
        """An adapter by its name now; one plugged in before one unplugged under that name."""
        wanted = name.strip()
        for radio in sorted(self.radios, key=lambda r: not r.present):
            if radio.name == wanted:
                return radio
        raise UnknownAdapterError(f"no adapter {name!r} in this world")

    def _present(self, name: str) -> Radio:
        radio = self.radio(name)
        if not radio.present:
            raise RefusedError(f"adapter {radio.name} is unplugged")
        return radio

    def close_by_hand(self, lock: str) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.close_by_hand(self.clock.now()))

    def open_by_hand(self, lock: str) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.open_by_hand(self.clock.now()))

    def jam(self, lock: str, count: int = 1) -> None:
        self.find(lock).lock.jam(count)

    def set_battery(self, lock: str, percent: int) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.set_battery(percent))

    def set_in_range(self, lock: str, in_range: bool, adapter: str = "") -> None:
        """Every adapter (or only ``adapter``) stops or starts hearing the lock."""
        unit = self.find(lock)
        name = unit.lock.name
        radios = [self.radio(adapter)] if adapter else self.radios
        if not in_range:
            timeout = unit.link.supervision_timeout_s
            silent = [
                radio
                for radio in radios
                if timeout > 0 and radio.on_bus and radio.device(unit.lock).link is not None
            ]
            for radio in silent:
                radio.device(unit.lock).go_silent()
            if adapter:
                radios[0].deaf_to.add(name)
            else:
                self._apply(unit, unit.lock.drop_links("out of range"))
                unit.lock.in_range = False
            for radio in radios:
                if radio.on_bus and radio not in silent:
                    radio.forget(radio.device(unit.lock))
            for radio in silent:
                device = radio.device(unit.lock)
                self.spawn(self._supervision(radio, device, timeout), f"supervision {name}")
            return
        if adapter and not unit.lock.in_range:
            # Back in range of this adapter only: the others still do not hear it.
            for radio in self.radios:
                radio.deaf_to.add(name)
        unit.lock.in_range = True
        for radio in radios:
            radio.deaf_to.discard(name)
        for radio in radios:
            radio.hear(radio.device(unit.lock))

    async def _supervision(self, radio: Radio, device: Device, timeout_s: float) -> None:
        """The central notices a lock gone out of range only when the supervision timeout has
        passed without a packet from it: then the link ends (Connected false) and, if the
        adapter still does not hear the lock, its device goes."""
        link = device.link
        await self.clock.sleep(timeout_s)
        if not radio.on_bus or radio.devices.get(device.lock.name) is not device:
            return  # bluetoothd or the adapter went meanwhile: the link went with them
        if device.link == link and link is not None:
            radio.end_link(device, "supervision timeout")
        if not radio.hears(device.lock):
            radio.forget(device)

    def set_link(
        self,
        lock: str,
        *,
        connection_interval_ms: float | None = None,
        adv_interval_ms: float | None = None,
        packet_loss: float | None = None,
        supervision_timeout_ms: float | None = None,
    ) -> None:
        """Change a lock's link layer (a link keeps the interval it started with)."""
        settings = self.find(lock).link
        if connection_interval_ms is not None and 0 < connection_interval_ms < 7.5:
            raise RefusedError("a connection interval is 0 (instant) or 7.5..4000 ms")
        if adv_interval_ms is not None and 0 < adv_interval_ms < 20:
            raise RefusedError("an advertising interval is 0 (none) or 20..10240 ms")
        if connection_interval_ms is not None:
            settings.connection_interval_ms = connection_interval_ms
        if adv_interval_ms is not None:
            settings.adv_interval_ms = adv_interval_ms
        if packet_loss is not None:
            settings.packet_loss = packet_loss
        if supervision_timeout_ms is not None:
            settings.supervision_timeout_ms = supervision_timeout_ms

    def radio_counts(self, lock: str) -> RadioCounts:
        """The lock's ATT round trips and connection events (a copy; a live link's events
        counted up to now)."""
        unit = self.find(lock)
        now = self.clock.now()
        counts = RadioCounts(
            links=unit.counts.links,
            total=replace(unit.counts.total),
            link=replace(unit.counts.link),
        )
        for radio in self.radios:
            air = radio.device(unit.lock).air
            if air is not None and air.ended_at is None and air.counts is unit.counts:
                live = air.events(now)
                counts.total.connection_events += live
                counts.link.connection_events = live
        return counts

    def set_alarm(self, lock: str, on: bool) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.set_alarm(on))

    def set_bike_moving(self, lock: str, moving: bool) -> None:
        self.find(lock).lock.set_bike_moving(moving)

    def set_sensor_fault(self, lock: str, fault: bool) -> None:
        self.find(lock).lock.set_sensor_fault(fault)

    def deauthorise(self, lock: str) -> None:
        self.find(lock).lock.deauthorise()

    def set_rssi(self, lock: str, rssi: int, adapter: str = "") -> None:
        """The RSSI every adapter (or only ``adapter``) hears the lock at."""
        unit = self.find(lock)
        if adapter:
            radios = [self.radio(adapter)]
            radios[0].rssi[unit.lock.name] = rssi
        else:
            radios = self.radios
            unit.lock.rssi = rssi
            for radio in radios:
                radio.rssi.pop(unit.lock.name, None)
        for radio in radios:
            device = radio.device(unit.lock)
            if radio.on_bus and device.exported:
                device.emit_properties_changed({"RSSI": rssi})

    def drop_link(self, lock: str) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.drop_links("link dropped"))

    def refuse_connects(self, lock: str, count: int) -> None:
        self.find(lock).lock.refuse_connects = max(0, count)

    def set_slots(self, slots: int, adapter: str = "") -> None:
        radio = self.radio(adapter) if adapter else self.first
        radio.connection_slots = max(0, slots)

    def set_motor_ms(self, lock: str, motor_ms: int) -> None:
        self.find(lock).lock.motor_ms = max(0, motor_ms)

    def power_cycle(self, lock: str) -> None:
        unit = self.find(lock)
        self._apply(unit, unit.lock.power_cycle())

    def adapter_power(self, adapter: str, on: bool) -> None:
        self._present(adapter).set_powered(on)

    def adapter_remove(self, adapter: str) -> None:
        self._present(adapter).unplug()

    def adapter_add(self, adapter: str, as_name: str | None = None) -> None:
        radio = self.radio(adapter)
        if radio.present:
            raise RefusedError(f"adapter {radio.name} is plugged in")
        if radio.leaving is not None and not radio.leaving.done():
            raise RefusedError(f"adapter {radio.name} is still leaving the bus")
        name = as_name or radio.name
        if any(other.present and other.name == name for other in self.radios):
            raise RefusedError(f"an adapter {name} is already plugged in")
        radio.plug(name, self.units)

    def times(self, lock: str) -> LockTimes:
        """What the lock really spent on its connects and motor runs (a copy)."""
        return replace(self.find(lock).times)

    def view(self) -> StationView:
        first = self.first
        return StationView(
            adapter=first.address,
            connection_slots=first.connection_slots,
            links=first.links_in_use(),
            discovering=first.discovering,
            time_scale=self.clock.time_scale,
            locks=tuple(self._lock_view(unit) for unit in self.units),
            most_links=first.most_links,
            overlapping_connects=first.overlapping_connects,
            adapters=tuple(self._adapter_view(radio) for radio in self.radios),
            bluez=self._bluez_state(),
            bluez_restarts=self.restarts,
            bluez_held=0 if self.objects is None else self.objects.held,
        )

    def _bluez_state(self) -> str:
        if not self.bluez_running:
            return "stopped"
        return "hung" if self.objects is not None and self.objects.hung else "running"

    def _lock_view(self, unit: LockUnit) -> LockView:
        name = unit.lock.name
        via = [radio.name for radio in self.radios if radio.device(unit.lock).link is not None]
        return replace(
            unit.lock.view(),
            **asdict(unit.times),
            rssi_by_adapter={r.name: r.rssi[name] for r in self.radios if name in r.rssi},
            out_of_range_of=tuple(r.name for r in self.radios if name in r.deaf_to),
            connected_via=via[0] if via else None,
        )

    @staticmethod
    def _adapter_view(radio: Radio) -> AdapterView:
        return AdapterView(
            name=radio.name,
            address=radio.address,
            present=radio.present,
            powered=radio.powered,
            discovering=radio.discovering,
            connection_slots=radio.connection_slots,
            links=radio.links_in_use(),
            most_links=radio.most_links,
            overlapping_connects=radio.overlapping_connects,
            devices=tuple(
                device.lock.name
                for device in radio.devices.values()
                if device.exported and radio.on_bus
            ),
            world_name=radio.config.name,
        )
