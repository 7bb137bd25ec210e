"""One Bluetooth adapter of the station: its object, its devices, its slots and its discovery.

A :class:`Radio` is the physical adapter (a Pi's own controller, a USB dongle): its address and
connection slots stay with it when it is unplugged and plugged back, perhaps as another ``hciN``;
its RSSI and range for each lock are its own (a lock out of one adapter's range can be in
another's). What bluetoothd holds in memory for it, the ``Adapter1`` object (:mod:`.adapter`) and
a ``Device1`` per lock (:mod:`.device`), is built anew whenever bluetoothd (re)starts or the
adapter comes back; what bluetoothd keeps on disk, the devices it ever connected to, comes back
with it. Each adapter runs one Connect at a time and holds at most ``connection_slots`` links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from lockgate_sim.bluez.adapter import Adapter
from lockgate_sim.bluez.device import Device
from lockgate_sim.bluez.errors import CONNECTION_ABORTED, NOT_READY_TEXT, BluezError
from lockgate_sim.bluez.gatt_service import DISCOVERY
from lockgate_sim.bluez.objects import BLUEZ_ROOT, ObjectTree
from lockgate_sim.bluez.units import Clock, LockUnit
from lockgate_sim.firmware import Lock, NoFreeLink
from lockgate_sim.linklayer import Exchange
from lockgate_sim.world import RadioConfig


class RadioHost(Protocol):
    """What an adapter asks of the station it is part of (the station passes itself)."""

    answering: asyncio.Event
    bluez_running: bool
    calls: set[asyncio.Task[object]]
    clock: Clock

    @property
    def tree(self) -> ObjectTree: ...

    def linked_elsewhere(self, device: Device) -> bool: ...

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...

    def own(self, task: asyncio.Task[None]) -> None: ...


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
"""Objects announced or removed at once before waiting for the bus daemon to take them."""
OPERATION_ABORTED = "Operation aborted"
"""bluetoothd's answer to a Connect that a Disconnect cancelled."""


class Radio:
    """One adapter: present or unplugged, powered or not, and what bluetoothd knows of it."""

    def __init__(self, station: RadioHost, config: RadioConfig) -> None:
        self.station = station
        self.config = config
        self.name = config.name
        """Its name now: a dongle plugged back may come back as another ``hciN``."""
        self.address = config.address
        self.present = True
        self._powered = True
        self.connection_slots = config.connection_slots
        self.rssi: dict[str, int] = {}
        """Lock name → the RSSI this adapter hears it at, where it differs from the lock's own."""
        self.deaf_to: set[str] = set()
        """Names of the locks out of this adapter's range (whatever their own ``in_range``)."""
        self.stored: set[str] = set()
        """Names of the locks it connected to: bluetoothd keeps them on disk (per adapter
        address) and announces them again when it restarts or the adapter comes back."""
        self.gatt_cache: set[str] = set()
        """Names of the locks whose attribute table bluetoothd has discovered through this
        adapter: kept on disk with the device (``Cache = always``, its default), so a later
        connect skips GATT discovery."""
        self.most_links = 0
        self.overlapping_connects = 0
        self.adapter = Adapter(self, self.address, self.name)
        self.devices: dict[str, Device] = {}
        self._connecting: Device | None = None
        self._attempt: asyncio.Task[object] | None = None
        self.new_round = asyncio.Event()
        self.leaving: asyncio.Task[None] | None = None
        """Its objects leaving the bus after an unplug, batch by batch."""

    def __repr__(self) -> str:
        return f"Radio({self.name}, {self.address})"

    # --- what the adapter and its devices ask ------------------------------------------------

    @property
    def adapter_path(self) -> str:
        return f"{BLUEZ_ROOT}/{self.name}"

    @property
    def objects(self) -> ObjectTree:
        return self.station.tree

    @property
    def clock(self) -> Clock:
        return self.station.clock

    @property
    def powered(self) -> bool:
        return self._powered

    @property
    def on_bus(self) -> bool:
        """Whether bluetoothd serves this adapter now (it runs, the adapter is plugged in)."""
        return self.present and self.station.bluez_running

    def rssi_of(self, lock: Lock) -> int:
        return self.rssi.get(lock.name, lock.rssi)

    def hears(self, lock: Lock) -> bool:
        """Whether the lock is within this adapter's range."""
        return lock.in_range and lock.name not in self.deaf_to

    def device(self, lock: Lock) -> Device:
        return self.devices[lock.name]

    # --- bluetoothd's memory of the adapter --------------------------------------------------

    def build(self, units: list[LockUnit]) -> None:
        """What a bluetoothd that has just found the adapter holds: fresh objects, no session,
        no link, no Connect under way (nothing exported yet: :meth:`announce`)."""
        self.adapter = Adapter(self, self.address, self.name)
        self.devices = {
            unit.lock.name: Device(
                self,
                unit.lock,
                times=unit.times,
                wake=unit.wake,
                link_settings=unit.link,
                counts=unit.counts,
            )
            for unit in units
        }
        self._connecting, self._attempt = None, None

    async def announce(self) -> None:
        """Export the adapter, then every device bluetoothd had stored for it, in batches that
        the bus daemon takes before the next (hundreds at once would fill the socket)."""
        tree, adapter = self.objects, self.adapter
        tree.export(self.adapter_path, adapter)
        sent = 0
        for device in list(self.devices.values()):
            if self.adapter is not adapter or not self.on_bus:
                return  # unplugged, or bluetoothd died, meanwhile
            if device.lock.name in self.stored and not device.exported:
                self._export(device)
                sent += 1
                if sent % OBJECTS_PER_BATCH == 0:
                    await tree.drained()
        log.info("%s (%s) on the bus, %d stored devices", self.name, self.address, sent)

    def lose(self, reason: str) -> None:
        """The lock side of bluetoothd losing the adapter: every link it held ends, with no
        signal (no one is left to send one); the caller builds fresh objects after."""
        for device in self.devices.values():
            if device.link is not None:
                device.lock.disconnect(device.link)
                log.info("%s: link %s ended (%s)", device.lock.name, device.link, reason)
                device.link = None
                device.end_air()
            device.abort_reason = CONNECTION_ABORTED
            device.abort_connect.set()

    # --- connections --------------------------------------------------------------------------

    def links_in_use(self) -> int:
        return sum(device.link is not None for device in self.devices.values())

    @property
    def discovering(self) -> bool:
        return self.on_bus and self.adapter.discovering

    async def connect(self, device: Device) -> None:
        """``Device1.Connect``: one attempt per adapter at a time, ``connect_ms`` to resolve."""
        self._require_current(device)
        if device.connected and device.services_resolved:
            return
        received = self.clock.now()
        lock = device.lock
        if not self._powered:
            raise BluezError.NOT_READY(NOT_READY_TEXT)
        if self._connecting is not None:
            self.overlapping_connects += 1
            raise BluezError.IN_PROGRESS("In Progress")
        if lock.refuse_connects > 0:
            lock.refuse_connects -= 1
            log.info("%s: Connect refused (InProgress), %s more", lock.name, lock.refuse_connects)
            raise BluezError.IN_PROGRESS("In Progress")
        task = asyncio.current_task()
        assert task is not None
        self.station.calls.add(task)
        self._connecting, self._attempt = device, task
        device.abort_connect.clear()
        try:
            await self._connect(device)
            device.times.connected(self.clock.now() - received)
            self.stored.add(lock.name)
        finally:
            if self._attempt is task:  # not already ended by a Disconnect, nor a newer attempt's
                self._connecting, self._attempt = None, None
            self.station.calls.discard(task)

    def _require_current(self, device: Device) -> None:
        """A call dispatched to a device object just before it went (its adapter unplugged, its
        bluetoothd dead) runs after: it meets the object gone, not today's adapter."""
        if not self.on_bus or self.devices.get(device.lock.name) is not device:
            raise BluezError.UNKNOWN_OBJECT(f"Method on unknown object {device.path}")

    async def _connect(self, device: Device) -> None:
        """``connect_ms`` in two halves around the link layer's share: the lock's next
        advertisement, then the MTU exchange and (first connect through this adapter) GATT
        discovery's round trips on the new link's connection events."""
        lock = device.lock
        # Every step ends at a time fixed from the start: a later one does not inherit an
        # earlier one's lateness (the event loop wakes a timer a millisecond or two late).
        started = self.clock.now()
        half = lock.connect_ms / 2000
        if await self._aborted(device, started + half):
            raise BluezError.FAILED(device.abort_reason)
        advertised = device.link_settings.next_advertisement(lock.name, started + half)
        if advertised > started + half and await self._aborted(device, advertised):
            raise BluezError.FAILED(device.abort_reason)
        if not self.hears(lock) or not device.exported or self.station.linked_elsewhere(device):
            # Out of range, or connected through another adapter (a lock takes one central and
            # stops advertising): the controller never meets it, and bluetoothd gives up.
            raise BluezError.FAILED(CONNECTION_ABORTED)
        try:
            link = self._take_slot(lock)
        except NoFreeLink as err:
            # bluetoothd reports the link it could not keep as connected, then gone.
            log.info("%s: Connect aborted: %s", lock.name, err)
            device.set_connected(True)
            device.set_connected(False)
            raise BluezError.FAILED(CONNECTION_ABORTED) from err
        air = device.attach(link, advertised)
        log.info("%s: link %s up through %s", lock.name, link, self.name)
        resolved = air.request(advertised, Exchange.MTU)
        if lock.name not in self.gatt_cache:
            resolved = air.request(resolved, Exchange.DISCOVERY, DISCOVERY.total)
        if await self._aborted(device, resolved + half):
            device.detach("connect cancelled")
            raise BluezError.FAILED(device.abort_reason)
        self.gatt_cache.add(lock.name)
        device.set_services_resolved(True)

    def _take_slot(self, lock: Lock) -> int:
        if self.links_in_use() >= self.connection_slots:
            raise NoFreeLink(f"{self.name} holds {self.connection_slots} links")
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
        self._require_current(device)
        self._cancel_connect(device, OPERATION_ABORTED)
        device.detach("disconnected by the host")

    def _cancel_connect(self, device: Device, reason: str) -> None:
        """A pending Connect of ``device`` is over for the adapter at once, as in bluetoothd: the
        next Connect may start while the cancelled call is still answering."""
        if self._connecting is device:
            device.abort_reason = reason
            device.abort_connect.set()
            self._connecting, self._attempt = None, None

    def remove_device(self, path: str) -> bool:
        """``Adapter1.RemoveDevice``: forgotten, on disk too."""
        for device in self.devices.values():
            if device.path == path and device.exported:
                self.forget(device)
                self.stored.discard(device.lock.name)
                self.gatt_cache.discard(device.lock.name)
                return True
        return False

    def forget(self, device: Device) -> None:
        """The adapter forgets the device: link ended, object gone (UnknownObject from now)."""
        self._cancel_connect(device, CONNECTION_ABORTED)
        device.detach("device removed")
        if device.exported:
            self.objects.unexport(device.path, device)
            device.exported = False

    def end_link(self, device: Device, reason: str) -> None:
        """The link through this adapter (or its Connect under way) ends: Connected false."""
        self._cancel_connect(device, CONNECTION_ABORTED)
        device.detach(reason)

    # --- power and plugging -------------------------------------------------------------------

    def set_powered(self, powered: bool) -> None:
        """Powered off as bluetoothd's ``adapter_stop``: every link ends (Connected false), every
        discovery session ends (Discovering false), then Powered false. Devices stay known."""
        if powered == self._powered:
            return
        self._powered = powered
        if not self.on_bus:
            return
        if not powered:
            for device in self.devices.values():
                self.end_link(device, "adapter powered off")
            self.adapter.end_discovery()
        self.adapter.powered_changed(powered)
        log.info("%s powered %s", self.name, "on" if powered else "off")

    def unplug(self) -> None:
        """The adapter is gone from the machine: its links end (Connected false), its devices
        leave the bus (InterfacesRemoved, in batches), then the adapter object."""
        if self.on_bus:
            for device in self.devices.values():
                self.end_link(device, "adapter removed")
            self.present = False
            self.leaving = asyncio.create_task(
                self._leave(self.objects, self.adapter_path, self.adapter, self.devices),
                name=f"unplug {self.name}",
            )
            self.station.own(self.leaving)
        else:
            self.lose("adapter removed")
            self.present = False
        log.info("%s (%s) removed", self.name, self.address)

    async def _leave(
        self, tree: ObjectTree, path: str, adapter: Adapter, devices: dict[str, Device]
    ) -> None:
        removed = 0
        for device in devices.values():
            if not tree.bus.connected or tree.dead:
                return  # bluetoothd died meanwhile: it removes nothing more
            if device.exported:
                tree.unexport(device.path, device)
                device.exported = False
                removed += 1
                if removed % OBJECTS_PER_BATCH == 0:
                    await tree.drained()
        tree.unexport(path, adapter)

    def plug(self, name: str, units: list[LockUnit]) -> None:
        """Plugged back, as ``name``: powered (bluetoothd powers new adapters on), its stored
        devices announced again after it."""
        self.name = name
        self.present = True
        self._powered = True
        self.build(units)
        if self.on_bus:
            self.station.spawn(self.announce(), f"announce {self.name}")
        log.info("%s (%s) added", self.name, self.address)

    # --- advertising --------------------------------------------------------------------------

    def hear(self, device: Device) -> bool:
        """One advertisement of ``device`` heard: a new lock appears, a known one updates its RSSI.

        A lock connected through another adapter does not advertise. Whether anything went onto
        the bus.
        """
        lock = device.lock
        if not self.discovering or not self.station.answering.is_set():
            return False
        if not self.hears(lock) or self.station.linked_elsewhere(device):
            return False
        if not device.exported:
            self._export(device)
            log.info("%s: discovered by %s at %s dBm", lock.name, self.name, self.rssi_of(lock))
            return True
        if not device.connected:
            device.emit_properties_changed({"RSSI": self.rssi_of(lock)})
            return True
        return False

    def _export(self, device: Device) -> None:
        self.objects.export(device.path, device)
        device.exported = True

    def discovery_started(self) -> None:
        """The adapter began discovering: a round of advertisements starts now, not at the next
        tick of the advertiser."""
        self.new_round.set()

    def _rounds(self, real_interval: float) -> list[list[str]]:
        """The locks heard together at each moment of a round, spread evenly over the round.

        Each lock advertises on its own schedule, so bluetoothd hears (and announces) them one
        by one, never hundreds in one burst. Moments are at least ``MIN_HEARING_GAP_S`` apart,
        so that a big world at a fast time scale does not spin the loop, yet hold at most
        ``MAX_HEARD_TOGETHER`` locks, so that one moment's signals stay far below what the
        socket to the bus daemon holds.
        """
        names = list(self.devices)
        count = len(names)
        if count == 0:
            return []
        moments = min(count, max(1, int(real_interval / MIN_HEARING_GAP_S)))
        moments = max(moments, -(-count // MAX_HEARD_TOGETHER))
        groups: list[list[str]] = [[] for _ in range(moments)]
        for index, name in enumerate(names):
            groups[index * moments // count].append(name)
        return groups

    async def advertiser(self) -> None:
        """A round of advertisements every interval, each lock at its own moment of the round.

        Once it has sent ``MAX_HEARD_TOGETHER`` signals, the advertiser waits for the bus daemon
        to take them before it goes on (a slow bus delays the round rather than piling signals
        up); a round trip per moment would cost a world of a dozen locks as much CPU as its
        advertisements. A round that ran late is not made up for: the next one starts when it
        ends. Without discovery it sleeps until the next discovery starts a round; while
        bluetoothd hangs, it hears nothing.
        """
        loop = asyncio.get_running_loop()
        interval = max(MIN_REAL_INTERVAL_S, self.clock.real(ADVERTISING_INTERVAL_S))
        rounds = self._rounds(interval)
        unconfirmed = 0  # signals sent since the bus daemon last confirmed it took them all
        while True:
            if not self.discovering:
                await self.new_round.wait()
            started = loop.time()
            self.new_round.clear()
            for index, group in enumerate(rounds):
                await asyncio.sleep(
                    max(0.0, started + index * interval / len(rounds) - loop.time())
                )
                await self.station.answering.wait()
                if self.new_round.is_set():
                    break
                unconfirmed += sum(self.hear(self.devices[name]) for name in group)
                if unconfirmed >= MAX_HEARD_TOGETHER:
                    await self.objects.drained()
                    unconfirmed = 0
            if self.new_round.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(max(loop.time(), started + interval)):
                    await self.new_round.wait()
