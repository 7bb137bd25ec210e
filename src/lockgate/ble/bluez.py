"""Whether BlueZ and the station's adapters are there, followed on the system D-Bus.

bluetoothd restarts (``systemctl restart bluetooth``, a bluez upgrade, a crash), adapters are
powered off and on, USB dongles are pulled and plugged back (sometimes as another ``hciN``).
:class:`BluezWatch` follows all of it on a D-Bus connection of its own, apart from bleak's:

- the owner of the ``org.bluez`` name (``NameOwnerChanged``): a new owner is a new bluetoothd,
  whose objects, links and discovery sessions are all new (:attr:`BluezView.generation` counts
  them);
- the adapters (``org.bluez.Adapter1`` objects added and removed) and their ``Powered`` property;
- whether bluetoothd answers: every ``probe_interval_s`` it is asked one property of one
  adapter (``Powered``), within ``probe_timeout_s``; a hung bluetoothd is reported as not
  answering until it answers again. Its whole object tree (every device too: tens of kilobytes
  at 50 locks) is read only on suspicion: no adapter known, the adapter gone or its answer
  other than the view, bluetoothd answering again after a silence; and every
  ``_FULL_EVERY`` probes, which mends whatever a lost signal would have left wrong.

Every call it makes has a timeout, so a hung bluetoothd holds nothing here. It never raises once
started: a system bus that goes away is reported as BlueZ gone, and joined again every second.
``on_change`` is called (on the event loop, never awaited) after every change of the view.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

log = structlog.get_logger(__name__)

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
_DBUS = "org.freedesktop.DBus"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
_REJOIN_S = 1.0
JOIN_TIMEOUT_S = 5.0
_RELOADS = 5
"""Joining the bus and the first look at BlueZ may take this long at least (a loaded machine)."""
_FULL_EVERY = 30
"""Every this many probes, the whole tree is read even without suspicion (5 min at 10 s)."""


@dataclass(frozen=True, slots=True)
class AdapterSeen:
    """One adapter as BlueZ shows it now."""

    name: str
    """``hci0``, ``hci1``: BlueZ's name for it this time (a re-plugged dongle may get another)."""
    address: str
    powered: bool


@dataclass(frozen=True, slots=True)
class BluezView:
    """What the watch knows of BlueZ at one moment."""

    present: bool = False
    """``org.bluez`` has an owner on the bus."""
    answering: bool = True
    """bluetoothd answered the last probe (or none has gone unanswered yet)."""
    generation: int = 0
    """Counts the owners ``org.bluez`` has had: a change means every link and scan is gone."""
    adapters: dict[str, AdapterSeen] = field(default_factory=dict)
    """By name."""
    reason: str = "BlueZ not looked at yet"
    """Why BlueZ is not usable, when it is not."""

    @property
    def usable(self) -> bool:
        return self.present and self.answering

    def adapter(self, name: str) -> AdapterSeen | None:
        return self.adapters.get(name)


class BluezWatch:
    """Follows BlueZ's presence, its answers and its adapters; see the module's docstring."""

    def __init__(
        self,
        *,
        on_change: Callable[[BluezView], None],
        probe_interval_s: float = 10.0,
        probe_timeout_s: float = 5.0,
        bus_address: str | None = None,
    ) -> None:
        self._on_change = on_change
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._bus_address = bus_address
        self.view = BluezView()
        self._bus: MessageBus | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._owner: str | None = None
        self._paths: dict[str, AdapterSeen] = {}  # by object path
        self._pending: set[asyncio.Task[None]] = set()
        self._heard = 0  # adapter signals handled so far

    async def start(self, timeout_s: float) -> BluezView:
        """Join the bus and take a first look (within ``timeout_s``); the view, even if BlueZ is
        not there (then the watch goes on looking)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ble-bluez-watch")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._joined.wait()
        return self.view

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._leave()

    # --- the watch's own loop ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                bus = await self._join()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - no system bus (yet): no BlueZ either
                self._gone(f"the system bus cannot be reached: {type(err).__name__}: {err}")
                self._joined.set()
                await asyncio.sleep(_REJOIN_S)
                continue
            self._joined.set()
            probing = asyncio.get_running_loop().create_task(self._probe_loop(bus))
            try:
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - how it ended changes nothing
                log.debug("system bus connection ended", error=repr(err))
            finally:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)
            self._leave()
            self._gone("the system bus connection was lost")
            await asyncio.sleep(_REJOIN_S)

    async def _join(self) -> MessageBus:
        if self._bus_address:
            bus = MessageBus(bus_address=self._bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        try:
            async with asyncio.timeout(max(self._probe_timeout_s, JOIN_TIMEOUT_S)):
                await bus.connect()
                bus.add_message_handler(self._on_message)
                for rule in (
                    f"type='signal',sender='{_DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'",
                    f"type='signal',interface='{_OBJECT_MANAGER}',path_namespace='/org/bluez'",
                    f"type='signal',interface='{_OBJECT_MANAGER}',path='/'",
                    (
                        f"type='signal',interface='{_PROPERTIES}',member='PropertiesChanged',"
                        f"arg0='{ADAPTER}'"
                    ),
                ):
                    _check(await bus.call(_bus_call("AddMatch", "s", [rule])))
                reply = await bus.call(_bus_call("GetNameOwner", "s", [BLUEZ]))
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        owner = str(reply.body[0]) if reply.message_type is MessageType.METHOD_RETURN else None
        await self._owner_is(owner)
        return bus

    def _leave(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()

    async def _probe_loop(self, bus: MessageBus) -> None:
        """Every ``probe_interval_s``: one adapter's ``Powered``, within ``probe_timeout_s``. Not
        answered: hung. Answered otherwise than the view says, or nothing to ask, or every
        ``_FULL_EVERY`` probes: the whole tree (:meth:`_reload`), which mends the view."""
        probes = 0
        while True:
            await asyncio.sleep(self._probe_interval_s)
            if self._owner is None:
                continue
            probes += 1
            if probes % _FULL_EVERY == 0 or not await self._probe(bus):
                await self._reload(bus, attempts=1)

    async def _probe(self, bus: MessageBus) -> bool:
        """Asks one adapter's ``Powered``: True if bluetoothd answered as the view says (no
        need to read the whole tree); False on any suspicion."""
        if not self.view.answering or not self._paths:
            return False
        path, seen = next(iter(self._paths.items()))
        heard = self._heard
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                reply = await bus.call(
                    Message(
                        destination=BLUEZ,
                        path=path,
                        interface=_PROPERTIES,
                        member="Get",
                        signature="ss",
                        body=[ADAPTER, "Powered"],
                    )
                )
        except TimeoutError:
            timeout = self._probe_timeout_s
            self._set(answering=False, reason=f"bluetoothd did not answer within {timeout:g} s")
            return True  # not answering: the next probe reads the whole tree
        if reply.message_type is not MessageType.METHOD_RETURN or heard != self._heard:
            return False
        powered = reply.body[0].value if reply.body else None
        return powered is not None and bool(powered) == seen.powered

    # --- what BlueZ says -----------------------------------------------------------------

    async def _owner_is(self, owner: str | None) -> None:
        if owner == self._owner and owner is not None:
            return
        self._owner = owner or None
        if owner:
            generation = self.view.generation + 1
            self._paths = {}
            self._set(present=True, answering=True, generation=generation, adapters={})
            if self._bus is not None:
                await self._reload(self._bus)
        else:
            self._gone("bluetoothd is not running (org.bluez has no owner on the system bus)")

    async def _reload(self, bus: MessageBus, *, attempts: int = _RELOADS) -> None:
        """Every adapter, from GetManagedObjects; BlueZ not answering in time is said so.

        A signal about an adapter can be handled before the reply of a call sent earlier is
        (the signal's handler runs as it arrives, the call's caller a moment later): a bluetoothd
        that takes its name and then announces its adapter would have that adapter undone by
        the older, empty snapshot. So a snapshot is taken only if no such signal came while it
        was asked for; otherwise it is asked for again."""
        for _ in range(attempts):
            heard = self._heard
            try:
                async with asyncio.timeout(self._probe_timeout_s):
                    reply = await bus.call(
                        Message(
                            destination=BLUEZ,
                            path="/",
                            interface=_OBJECT_MANAGER,
                            member="GetManagedObjects",
                        )
                    )
            except TimeoutError:
                timeout = self._probe_timeout_s
                self._set(answering=False, reason=f"bluetoothd did not answer within {timeout:g} s")
                return
            if reply.message_type is not MessageType.METHOD_RETURN:
                return  # gone again meanwhile: NameOwnerChanged says so
            if not self.view.answering:
                log.info("bluetoothd answers again")
            if heard != self._heard:
                continue  # an adapter signal came meanwhile: this snapshot may be older
            paths: dict[str, AdapterSeen] = {}
            for path, interfaces in reply.body[0].items():
                seen = _adapter_of(str(path), interfaces.get(ADAPTER))
                if seen is not None:
                    paths[str(path)] = seen
            self._paths = paths
            break
        # Kept as the signals left it if the snapshots never settled.
        self._set(answering=True, adapters=self._by_name())

    def _gone(self, reason: str) -> None:
        self._owner = None
        self._paths = {}
        if self.view.present or self.view.reason != reason:
            self._set(present=False, adapters={}, reason=reason)

    def _on_message(self, message: Message) -> None:
        if message.message_type is not MessageType.SIGNAL:
            return
        member, body = message.member, message.body
        if member == "NameOwnerChanged" and body and body[0] == BLUEZ:
            task = asyncio.get_running_loop().create_task(self._owner_is(str(body[2]) or None))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        elif message.sender != self._owner:
            return  # another program's objects, or a bluetoothd that is gone
        elif _about_an_adapter(member, message.body):
            self._heard += 1
            self._on_bluez_signal(message)

    def _on_bluez_signal(self, message: Message) -> None:
        member, body = message.member, message.body
        if member == "InterfacesAdded" and len(body) == 2:
            seen = _adapter_of(str(body[0]), body[1].get(ADAPTER))
            if seen is not None:
                self._paths[str(body[0])] = seen
                self._set(adapters=self._by_name())
        elif member == "InterfacesRemoved" and len(body) == 2:
            if ADAPTER in body[1] and self._paths.pop(str(body[0]), None) is not None:
                self._set(adapters=self._by_name())
        elif member == "PropertiesChanged" and body and body[0] == ADAPTER:
            known = self._paths.get(message.path or "")
            powered = body[1].get("Powered")
            if known is not None and powered is not None:
                self._paths[message.path or ""] = replace(known, powered=bool(powered.value))
                self._set(adapters=self._by_name())

    def _by_name(self) -> dict[str, AdapterSeen]:
        return {seen.name: seen for seen in self._paths.values()}

    def _set(self, **changes: Any) -> None:
        view = replace(self.view, **changes)
        if view == self.view:
            return
        self.view = view
        try:
            self._on_change(view)
        except Exception:  # the driver's reaction is its own affair: the watch goes on
            log.exception("reacting to a change of BlueZ failed")


def _about_an_adapter(member: str | None, body: list[Any]) -> bool:
    if member == "InterfacesAdded" and len(body) == 2 and isinstance(body[1], dict):
        return ADAPTER in body[1]
    if member == "InterfacesRemoved" and len(body) == 2 and isinstance(body[1], list):
        return ADAPTER in body[1]
    return member == "PropertiesChanged" and bool(body) and body[0] == ADAPTER


def _adapter_of(path: str, properties: Any) -> AdapterSeen | None:
    if not isinstance(properties, dict):
        return None
    address = properties.get("Address")
    powered = properties.get("Powered")
    name = path.rsplit("/", 1)[-1]
    return AdapterSeen(
        name=name,
        address=str(address.value).upper() if address is not None else "",
        powered=bool(powered.value) if powered is not None else False,
    )


def _bus_call(member: str, signature: str, body: list[Any]) -> Message:
    return Message(
        destination=_DBUS,
        path="/org/freedesktop/DBus",
        interface=_DBUS,
        member=member,
        signature=signature,
        body=body,
    )


def _check(reply: Message) -> None:
    if reply.message_type is MessageType.ERROR:
        raise RuntimeError(f"{reply.error_name}: {reply.body}")
