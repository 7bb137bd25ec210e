"""Whether BlueZ and the station's adapters are there, followed on the system D-Bus.

bluetoothd restarts (``systemctl restart bluetooth``, a bluez upgrade, a crash), adapters are
powered off and on, USB dongles are pulled and plugged back (sometimes as another ``hciN``).
:class:`BluezWatch` follows all of it on a D-Bus connection of its own, apart from bleak's:

- the owner of the ``org.bluez`` name (``NameOwnerChanged``): a new owner is a new bluetoothd,
  whose objects, links and discovery sessions are all new (:attr:`BluezView.generation` counts
  them);
- the adapters (``org.bluez.Adapter1`` objects added and removed) and their ``Powered`` property;
- whether bluetoothd answers: every ``probe_interval_s`` one property is read, within
  ``probe_timeout_s``; a hung bluetoothd is reported as not answering until it answers again.

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
        self._heard_during_reload: list[list[Message]] = []  # one list per GetManagedObjects

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
            async with asyncio.timeout(self._probe_timeout_s):
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
        while True:
            await asyncio.sleep(self._probe_interval_s)
            if self._owner is None:
                continue
            answered = await self._look(bus)
            if answered and not self.view.answering:
                log.info("bluetoothd answers again")
                await self._reload(bus)
            elif not answered and self.view.answering:
                timeout = self._probe_timeout_s
                self._set(answering=False, reason=f"bluetoothd did not answer within {timeout:g} s")

    async def _look(self, bus: MessageBus) -> bool:
        """One call to bluetoothd, answered in time or not."""
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
            return False
        return reply.message_type is MessageType.METHOD_RETURN

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

    async def _reload(self, bus: MessageBus) -> None:
        """Every adapter, from GetManagedObjects; BlueZ not answering in time is said so.

        The answer is a snapshot at some moment after the call went out: an adapter added,
        removed or powered in a signal heard while it was on its way may be newer than it (a
        bluetoothd that starts takes its name before its adapters are registered, and announces
        them as they come). Those signals are applied again on top of the snapshot, in order, so
        that a late snapshot never undoes them.
        """
        heard: list[Message] = []
        self._heard_during_reload.append(heard)
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
        finally:
            self._heard_during_reload.remove(heard)
        if reply.message_type is not MessageType.METHOD_RETURN:
            return  # gone again meanwhile: NameOwnerChanged says so
        paths: dict[str, AdapterSeen] = {}
        for path, interfaces in reply.body[0].items():
            seen = _adapter_of(str(path), interfaces.get(ADAPTER))
            if seen is not None:
                paths[str(path)] = seen
        self._paths = paths
        for message in heard:
            self._apply(message)
        self._set(answering=True, adapters=self._by_name())

    def _gone(self, reason: str) -> None:
        self._owner = None
        self._paths = {}
        if self.view.present or self.view.reason != reason:
            self._set(present=False, adapters={}, reason=reason)

    def _on_message(self, message: Message) -> None:
        if message.message_type is not MessageType.SIGNAL:
            return
        if message.member == "NameOwnerChanged" and message.body and message.body[0] == BLUEZ:
            body = message.body
            asyncio.get_running_loop().create_task(self._owner_is(str(body[2]) or None))
            return
        for heard in self._heard_during_reload:
            heard.append(message)
        if self._apply(message):
            self._set(adapters=self._by_name())

    def _apply(self, message: Message) -> bool:
        """Take in an adapter added, removed or powered on or off; whether one was."""
        member, body = message.member, message.body
        if member == "InterfacesAdded" and len(body) == 2:
            seen = _adapter_of(str(body[0]), body[1].get(ADAPTER))
            if seen is not None:
                self._paths[str(body[0])] = seen
                return True
        elif member == "InterfacesRemoved" and len(body) == 2:
            return ADAPTER in body[1] and self._paths.pop(str(body[0]), None) is not None
        elif member == "PropertiesChanged" and body and body[0] == ADAPTER:
            known = self._paths.get(message.path or "")
            powered = body[1].get("Powered")
            if known is not None and powered is not None:
                self._paths[message.path or ""] = replace(known, powered=bool(powered.value))
                return True
        return False

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
