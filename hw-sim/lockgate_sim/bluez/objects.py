"""The root of the fake bluetoothd: which objects are on the bus, who calls, and who left.

bluetoothd keeps a registry of the objects it serves below ``/org/bluez``, answers a call on any
other path there with ``org.freedesktop.DBus.Error.UnknownObject``, and ties per-client state
(discovery sessions, notify sessions) to the caller's unique bus name, dropping it when that name
leaves the bus. :class:`ObjectTree` is that registry for the simulator: the adapter, devices and
GATT objects export through it; it watches every incoming message to remember the caller of the
call being dispatched and to hear ``NameOwnerChanged`` when a client disconnects. dbus-fast itself
serves ``org.freedesktop.DBus.ObjectManager`` at ``/`` and emits InterfacesAdded /
InterfacesRemoved as objects come and go. While bluetoothd hangs (``bluez-hang``) the tree holds
every call and every notice of a client leaving, and handles them in order when it resumes.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from lockgate_sim.bluez.errors import BluezError

log = logging.getLogger("lockgate_sim")

BLUEZ = "org.bluez"
BLUEZ_ROOT = "/org/bluez"
DBUS = "org.freedesktop.DBus"
MATCH_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0

# The bus daemon tells everyone who asks when a unique name (a client connection) goes away.
_NAME_OWNER_CHANGED = (
    f"type='signal',sender='{DBUS}',interface='{DBUS}',path='/org/freedesktop/DBus',"
    "member='NameOwnerChanged'"
)

ClientLeft = Callable[[str], None]
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
OBJECT_MANAGER_PATH = "/"


class BluezBus(MessageBus):
    """bluetoothd's connection: InterfacesAdded and InterfacesRemoved come from ``/``.

    bluetoothd serves its ObjectManager at ``/`` and sends both signals from there; dbus-fast
    sends them from the object's own path. A client that watches the manager's path (GLib's
    object manager client does) would miss them, so this connection sends them as bluetoothd
    does.
    """

    dead = False
    """Set when bluetoothd dies: a dead process writes nothing more (what its handlers finish late,
    a reply or a signal, is dropped), whatever its socket still is."""

    def send(self, msg: Message) -> asyncio.Future[None]:  # type: ignore[override]
        if self.dead:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        return super().send(msg)

    def _emit_interface_added(self, path: str, interface: ServiceInterface) -> None:
        if self._disconnected:
            return

        def send(_: ServiceInterface, result: Any, __: Any, error: Exception | None) -> None:
            if error is not None:
                log.error("the properties of %s at %s: %r", interface.name, path, error)
            self.send(
                Message.new_signal(
                    path=OBJECT_MANAGER_PATH,
                    interface=OBJECT_MANAGER,
                    member="InterfacesAdded",
                    signature="oa{sa{sv}}",
                    body=[path, {interface.name: result}],
                )
            )

        ServiceInterface._get_all_property_values(interface, send)

    def _emit_interface_removed(self, path: str, removed_interfaces: list[str]) -> None:
        if self._disconnected:
            return
        self.send(
            Message.new_signal(
                path=OBJECT_MANAGER_PATH,
                interface=OBJECT_MANAGER,
                member="InterfacesRemoved",
                signature="oas",
                body=[path, removed_interfaces],
            )
        )


class ObjectTree:
    """The objects served below ``/org/bluez`` and the clients calling them.

    One tree per bluetoothd process: a restart (:meth:`~.station.Station.bluez_restart`) builds
    a new one on a new connection. While :attr:`hung`, every method call and every notice of a
    client leaving is held, unread as far as bluetoothd is concerned, and :meth:`resume` handles
    them in the order they came.
    """

    def __init__(self, bus: MessageBus, *, open_paths: tuple[str, ...] = ()) -> None:
        """Calls on ``open_paths`` (the simulator's control object) are never held."""
        self.bus = bus
        self._open_paths = open_paths
        self._exported: set[str] = set()
        self._client_left: list[ClientLeft] = []
        self._held: list[Message] = []
        self.hung = False
        self.dead = False
        self.caller = ""
        """The unique bus name of the method call being dispatched right now.

        Read it synchronously at the start of a method: dbus-fast runs the message handlers and
        then the method for one message without yielding to the loop in between.
        """

    # --- objects ------------------------------------------------------------------------------

    def export(self, path: str, interface: ServiceInterface) -> None:
        self.bus.export(path, interface)
        self._exported.add(path)

    def unexport(self, path: str, interface: ServiceInterface) -> None:
        self.bus.unexport(path, interface)
        self._exported.discard(path)

    def exports(self, path: str) -> bool:
        return path in self._exported

    async def drained(self) -> bool:
        """Wait until the bus daemon has read everything sent so far: one round trip to it.

        The socket is a queue, so the daemon's answer comes after it took every earlier message.
        Whoever sends many signals at once waits on this between batches, as libdbus in
        bluetoothd waits for the socket to take more: the kernel holds only about 200 KB of a
        connection's unread messages, and dbus-fast takes a full socket (EAGAIN) for a lost
        connection. False when the daemon did not answer in time or the bus is gone.
        """
        ping = Message(
            destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS, member="GetId"
        )
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                reply = await self.bus.call(ping)
        except (TimeoutError, EOFError, OSError) as err:
            log.warning("the bus daemon did not take the simulator's messages: %r", err)
            return False
        return reply is not None and reply.message_type is MessageType.METHOD_RETURN

    # --- clients ------------------------------------------------------------------------------

    def on_client_left(self, callback: ClientLeft) -> None:
        """Call ``callback(unique_name)`` whenever a client's connection leaves the bus."""
        self._client_left.append(callback)

    async def start(self) -> None:
        """Watch every incoming message, and ask the bus daemon for clients leaving."""
        self.bus.add_message_handler(self._on_message)
        reply = await asyncio.wait_for(
            self.bus.call(
                Message(
                    destination=DBUS,
                    path="/org/freedesktop/DBus",
                    interface=DBUS,
                    member="AddMatch",
                    signature="s",
                    body=[_NAME_OWNER_CHANGED],
                )
            ),
            MATCH_TIMEOUT_S,
        )
        if reply is None or reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"the bus refused to report clients leaving: {reply}")

    # --- hanging ------------------------------------------------------------------------------

    def hang(self) -> None:
        """From now, hold every call (and every client's leaving) until :meth:`resume`."""
        self.hung = True

    def resume(self) -> None:
        """Handle what was held, in order, as the world now is; answer calls again."""
        self.hung = False
        held, self._held = self._held, []
        if held:
            log.info("bluetoothd answers again: %d held messages", len(held))
        for message in held:
            if not self.bus.connected:
                return
            self.bus._process_message(message)

    def kill(self) -> None:
        """bluetoothd died: nothing more is read, whatever the connection still delivers (its
        callers get the bus daemon's NoReply once the connection is closed)."""
        self.dead = True
        self.drop_held()

    def drop_held(self) -> None:
        """Forget what was held, unanswered (bluetoothd died: the bus daemon answers for it)."""
        self.hung = False
        self._held.clear()

    @property
    def held(self) -> int:
        return len(self._held)

    def _holds(self, message: Message) -> bool:
        if not self.hung:
            return False
        if message.message_type is MessageType.METHOD_CALL:
            return message.path not in self._open_paths
        return message.message_type is MessageType.SIGNAL and message.member == "NameOwnerChanged"

    def _on_message(self, message: Message) -> Message | bool | None:
        if self.dead:
            return message.message_type is MessageType.METHOD_CALL
        if self._holds(message):
            self._held.append(message)
            return True
        if message.message_type is MessageType.METHOD_CALL:
            self.caller = message.sender or ""
            return self._unknown_object(message)
        if (
            message.message_type is MessageType.SIGNAL
            and message.member == "NameOwnerChanged"
            and message.sender == DBUS
        ):
            name, _old_owner, new_owner = message.body
            if name.startswith(":") and not new_owner:
                for callback in self._client_left:
                    callback(name)
        return None

    def _unknown_object(self, message: Message) -> Message | None:
        """bluetoothd answers calls on an object it does not serve with UnknownObject."""
        path = message.path or ""
        if path.startswith(BLUEZ_ROOT + "/") and path not in self._exported:
            return Message.new_error(
                message, BluezError.UNKNOWN_OBJECT.value, f"Method on unknown object {path}"
            )
        return None
