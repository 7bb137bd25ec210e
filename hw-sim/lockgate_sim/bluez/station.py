"""The simulated world behind the fake bluetoothd: one adapter, its locks, their clock and tasks.

:class:`Station` is the registry every BlueZ interface of this package reaches through: it owns
the object tree (:mod:`.objects`), the adapter (:mod:`.adapter`), a device per lock
(:mod:`.device`), the simulated clock, the adapter's connection slots, and the tasks that
advertise the locks and run their timers. It turns ``Connect`` / ``Disconnect`` into links on the
locks' firmware, and it is the one place the control interface and scenarios act on the world
(close by hand, out of range, jam, ...).
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, replace
from typing import Any

from dbus_fast.aio import MessageBus

from lockgate_sim.bluez.adapter import Adapter
from lockgate_sim.bluez.device import Device
from lockgate_sim.bluez.errors import CONNECTION_ABORTED, BluezError
from lockgate_sim.bluez.objects import BLUEZ_ROOT, ObjectTree
from lockgate_sim.firmware import Effect, Lock, LockView, NoFreeLink, RandomBytes
from lockgate_sim.timings import LockTimes
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")

ADVERTISING_INTERVAL_S = 1.0
"""How often, in lock seconds, a lock in range is heard (an RSSI update) while discovering."""
MIN_REAL_INTERVAL_S = 0.02
"""The advertiser never spins faster than this, whatever the time scale."""
MIN_HEARING_GAP_S = 0.01
"""Real seconds at least between two moments of a round at which locks are heard."""
MAX_HEARD_TOGETHER = 16
"""Locks heard at one moment at most, and signals sent before waiting for the bus daemon to
take them (a few kilobytes, far below the 200 KB or so a socket holds)."""
OBJECTS_PER_BATCH = 16
"""Devices removed at once when the simulator stops, before waiting for the bus to take them."""


class Clock:
    """Lock seconds on the event loop's clock: ``time_scale`` 0.05 runs it all 20 times faster."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self._origin = asyncio.get_running_loop().time()

    def now(self) -> float:
        return (asyncio.get_running_loop().time() - self._origin) / self.time_scale

    def real(self, seconds: float) -> float:
        return seconds * self.time_scale

    def loop_time(self, lock_seconds: float) -> float:
        """The event loop's time at which the lock's clock reads ``lock_seconds``."""
        return self._origin + lock_seconds * self.time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real(seconds))


@dataclass(frozen=True, slots=True)
class StationView:
    """What the control interface shows of the whole world."""

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


class UnknownLockError(LookupError):
    """No lock of that name or address in this world."""


class Station:
    """The simulated station: one adapter, its locks, their clock and their tasks."""

    def __init__(
        self, bus: MessageBus, world: WorldConfig, random_bytes: RandomBytes = os.urandom
    ) -> None:
        self.bus = bus
        self.world = world
        self.objects = ObjectTree(bus)
        self.adapter_path = f"{BLUEZ_ROOT}/{world.adapter.name}"
        self.adapter = Adapter(self, world.adapter.address, world.adapter.name)
        self.clock = Clock(world.adapter.time_scale)
        self.connection_slots = world.adapter.connection_slots
        self.devices = [Device(self, lock.build(random_bytes)) for lock in world.locks]
        self._by_path = {device.path: device for device in self.devices}
        self._connecting: Device | None = None
        self._attempt: asyncio.Task[object] | None = None  # the Connect call under way
        self.most_links = 0
        self.overlapping_connects = 0
        self._calls: set[asyncio.Task[object]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._new_round = asyncio.Event()

    # --- connections --------------------------------------------------------------------------

    def links_in_use(self) -> int:
        return sum(device.link is not None for device in self.devices)

    async def connect(self, device: Device) -> None:
        """``Device1.Connect``: one attempt per adapter at a time, ``connect_ms`` to resolve."""
        if device.connected and device.services_resolved:
            return
        received = self.clock.now()
        lock = device.lock
        if self._connecting is not None:
            self.overlapping_connects += 1
            raise BluezError.IN_PROGRESS("In Progress")
        if lock.refuse_connects > 0:
            lock.refuse_connects -= 1
            log.info("%s: Connect refused (InProgress), %s more", lock.name, lock.refuse_connects)
            raise BluezError.IN_PROGRESS("In Progress")
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        self._connecting, self._attempt = device, task
        device.abort_connect.clear()
        try:
            await self._connect(device)
            device.times.connected(self.clock.now() - received)
        finally:
            if self._attempt is task:  # not already ended by a Disconnect, nor a newer attempt's
                self._connecting, self._attempt = None, None
            self._calls.discard(task)

    async def _connect(self, device: Device) -> None:
        lock = device.lock
        # Both halves end at times fixed from the start: the second does not inherit the first
        # one's lateness (the event loop wakes a timer a millisecond or two late).
        started = self.clock.now()
        half = lock.connect_ms / 2000
        if await self._aborted(device, started + half):
            raise BluezError.FAILED("Operation aborted")
        if not lock.in_range or not device.exported:
            raise BluezError.FAILED(CONNECTION_ABORTED)
        try:
            link = self._take_slot(lock)
        except NoFreeLink as err:
            # bluetoothd reports the link it could not keep as connected, then gone.
            log.info("%s: Connect aborted: %s", lock.name, err)
            device.set_connected(True)
            device.set_connected(False)
            raise BluezError.FAILED(CONNECTION_ABORTED) from err
        device.attach(link)
        log.info("%s: link %s up", lock.name, link)
        if await self._aborted(device, started + 2 * half):
            device.detach("connect cancelled")
            raise BluezError.FAILED("Operation aborted")
        device.set_services_resolved(True)

    def _take_slot(self, lock: Lock) -> int:
        if self.links_in_use() >= self.connection_slots:
            raise NoFreeLink(f"the adapter holds {self.connection_slots} links")
        link = lock.connect()
        self.most_links = max(self.most_links, self.links_in_use() + 1)
        return link

    async def _aborted(self, device: Device, until: float) -> bool:
        """Whether the connect was aborted before the lock's clock reads ``until``."""
        try:
            async with asyncio.timeout_at(self.clock.loop_time(until)):
                await device.abort_connect.wait()
        except TimeoutError:
            return False
        return True

    def disconnect(self, device: Device) -> None:
        """``Device1.Disconnect``: cancels a pending Connect, ends a link; else nothing to do."""
        self._cancel_connect(device)
        device.detach("disconnected by the host")

    def _cancel_connect(self, device: Device) -> None:
        """A pending Connect of ``device`` is over for the adapter at once, as in bluetoothd: the
        next Connect may start while the cancelled call is still answering "Operation aborted"."""
        if self._connecting is device:
            device.abort_connect.set()
            self._connecting, self._attempt = None, None

    def remove_device(self, path: str) -> bool:
        device = self._by_path.get(path)
        if device is None or not device.exported:
            return False
        self.forget(device)
        return True

    def forget(self, device: Device) -> None:
        """The adapter forgets the device: link ended, object gone (UnknownObject from now)."""
        self._cancel_connect(device)
        device.detach("device removed")
        if device.exported:
            self.objects.unexport(device.path, device)
            device.exported = False

    # --- advertising --------------------------------------------------------------------------

    def hear(self, device: Device) -> bool:
        """One advertisement of ``device`` heard: a new lock appears, a known one updates its RSSI.

        Whether anything went onto the bus.
        """
        if not self.adapter.discovering or not device.lock.in_range:
            return False
        if not device.exported:
            self.objects.export(device.path, device)
            device.exported = True
            log.info("%s: discovered at %s dBm", device.lock.name, device.lock.rssi)
            return True
        if not device.connected:
            device.emit_properties_changed({"RSSI": device.lock.rssi})
            return True
        return False

    def discovery_started(self) -> None:
        """The adapter began discovering: a round of advertisements starts now, not at the next
        tick of the advertiser."""
        self._new_round.set()

    def _rounds(self, real_interval: float) -> list[list[Device]]:
        """The locks heard together at each moment of a round, spread evenly over the round.

        Each lock advertises on its own schedule, so bluetoothd hears (and announces) them one
        by one, never hundreds in one burst. Moments are at least ``MIN_HEARING_GAP_S`` apart,
        so that a big world at a fast time scale does not spin the loop, yet hold at most
        ``MAX_HEARD_TOGETHER`` locks, so that one moment's signals stay far below what the
        socket to the bus daemon holds.
        """
        count = len(self.devices)
        if count == 0:
            return []
        moments = min(count, max(1, int(real_interval / MIN_HEARING_GAP_S)))
        moments = max(moments, -(-count // MAX_HEARD_TOGETHER))
        groups: list[list[Device]] = [[] for _ in range(moments)]
        for index, device in enumerate(self.devices):
            groups[index * moments // count].append(device)
        return groups

    async def _advertiser(self) -> None:
        """A round of advertisements every interval, each lock at its own moment of the round.

        Once it has sent ``MAX_HEARD_TOGETHER`` signals, the advertiser waits for the bus daemon
        to take them before it goes on (a slow bus delays the round rather than piling signals
        up); a round trip per moment would cost a world of a dozen locks as much CPU as its
        advertisements. A round that ran late is not made up for: the next one starts when it
        ends. Without discovery it sleeps until the next discovery starts a round.
        """
        loop = asyncio.get_running_loop()
        interval = max(MIN_REAL_INTERVAL_S, self.clock.real(ADVERTISING_INTERVAL_S))
        rounds = self._rounds(interval)
        unconfirmed = 0  # signals sent since the bus daemon last confirmed it took them all
        while True:
            if not self.adapter.discovering:
                await self._new_round.wait()
            started = loop.time()
            self._new_round.clear()
            for index, group in enumerate(rounds):
                await asyncio.sleep(
                    max(0.0, started + index * interval / len(rounds) - loop.time())
                )
                if self._new_round.is_set():
                    break
                unconfirmed += sum(self.hear(device) for device in group)
                if unconfirmed >= MAX_HEARD_TOGETHER:
                    await self.objects.drained()
                    unconfirmed = 0
            if self._new_round.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(max(loop.time(), started + interval)):
                    await self._new_round.wait()

    async def _run_timers(self, device: Device) -> None:
        """Wake the lock when its next deadline (motor, dropped link) comes, or when told to.

        The deadline is an absolute time on the loop's clock (no drift from re-computing a
        delay), and a deadline that fired is run as due even if the loop's clock stands a hair
        before it, so that it is never slept on twice.
        """
        loop = asyncio.get_running_loop()
        while True:
            device.wake.clear()
            deadline = device.lock.next_deadline()
            when = None if deadline is None else self.clock.loop_time(deadline)
            try:
                async with asyncio.timeout_at(when):
                    await device.wake.wait()
                now = self.clock.now()
            except TimeoutError:
                assert deadline is not None
                assert when is not None
                late_ms = (loop.time() - when) * 1e3
                log.debug("%s: timer ran %.2f ms late", device.lock.name, late_ms)
                now = max(self.clock.now(), deadline)
            motion = device.lock.motion
            device.apply(device.lock.advance(now))
            if motion is not None and device.lock.motion is not motion and not motion.by_hand:
                device.times.moved(self.clock.now() - motion.started_at)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Export the adapter and start the advertiser and every lock's timers."""
        await self.objects.start()
        self.objects.on_client_left(self.adapter.client_left)
        self.objects.export(self.adapter_path, self.adapter)
        self.spawn(self._advertiser(), "advertiser")
        for device in self.devices:
            self.spawn(self._run_timers(device), f"timers {device.lock.name}")

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task the station owns: :meth:`stop` cancels and awaits it.

        Not a TaskGroup around the caller's block: an error of the caller's (a failed assertion
        in a test) must come out as itself, not wrapped in an ExceptionGroup.
        """
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("simulator task %r failed", task.get_name(), exc_info=error)

    async def stop(self) -> None:
        """Cancel and await the station's tasks and the D-Bus calls still running."""
        tasks = [*self._calls, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def power_off(self) -> None:
        """As bluetoothd going down: every link ends and every object leaves the bus.

        Clients still connected see Connected turn false and the objects removed, rather than a
        bus name that silently stops answering. The removals go out in batches, each taken by
        the bus daemon before the next (a world of hundreds of locks is too much for one burst).
        """
        for index, device in enumerate(self.devices, start=1):
            self._act(device, device.lock.drop_links("simulator stopping"))
            self.forget(device)
            if index % OBJECTS_PER_BATCH == 0:
                await self.objects.drained()
        if self.objects.exports(self.adapter_path):
            self.objects.unexport(self.adapter_path, self.adapter)
        await self.objects.drained()

    # --- the world's levers (control interface, scenarios) ------------------------------------

    def find(self, lock: str) -> Device:
        wanted = lock.strip().upper()
        for device in self.devices:
            if wanted in (device.lock.name.upper(), device.lock.address.upper()):
                return device
        raise UnknownLockError(f"no lock {lock!r} in this world")

    def _act(self, device: Device, effects: list[Effect]) -> None:
        device.apply(effects)
        device.wake.set()

    def close_by_hand(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.close_by_hand(self.clock.now()))

    def open_by_hand(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.open_by_hand(self.clock.now()))

    def jam(self, lock: str, count: int = 1) -> None:
        self.find(lock).lock.jam(count)

    def set_battery(self, lock: str, percent: int) -> None:
        device = self.find(lock)
        self._act(device, device.lock.set_battery(percent))

    def set_in_range(self, lock: str, in_range: bool) -> None:
        device = self.find(lock)
        device.lock.in_range = in_range
        if not in_range:
            self._act(device, device.lock.drop_links("out of range"))
            self.forget(device)
        else:
            self.hear(device)

    def set_alarm(self, lock: str, on: bool) -> None:
        device = self.find(lock)
        self._act(device, device.lock.set_alarm(on))

    def set_bike_moving(self, lock: str, moving: bool) -> None:
        self.find(lock).lock.set_bike_moving(moving)

    def set_sensor_fault(self, lock: str, fault: bool) -> None:
        self.find(lock).lock.set_sensor_fault(fault)

    def set_rssi(self, lock: str, rssi: int) -> None:
        device = self.find(lock)
        device.lock.rssi = rssi
        if device.exported:
            device.emit_properties_changed({"RSSI": rssi})

    def drop_link(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.drop_links("link dropped"))

    def refuse_connects(self, lock: str, count: int) -> None:
        self.find(lock).lock.refuse_connects = max(0, count)

    def set_slots(self, slots: int) -> None:
        self.connection_slots = max(0, slots)

    def set_motor_ms(self, lock: str, motor_ms: int) -> None:
        self.find(lock).lock.motor_ms = max(0, motor_ms)

    def power_cycle(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.power_cycle())

    def times(self, lock: str) -> LockTimes:
        """What the lock really spent on its connects and motor runs (a copy)."""
        return replace(self.find(lock).times)

    def view(self) -> StationView:
        return StationView(
            adapter=self.world.adapter.address,
            connection_slots=self.connection_slots,
            links=self.links_in_use(),
            discovering=self.adapter.discovering,
            time_scale=self.clock.time_scale,
            locks=tuple(
                replace(device.lock.view(), **asdict(device.times)) for device in self.devices
            ),
            most_links=self.most_links,
            overlapping_connects=self.overlapping_connects,
        )
