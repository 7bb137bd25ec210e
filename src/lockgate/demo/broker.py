"""The demo's MQTT broker: amqtt, in the demo's own process, on a free loopback port.

The demo needs a broker nobody has to install, and one it can take away and bring back to show the
station holding its events through an outage. :class:`DemoBroker` serves amqtt (MQTT 3.1.1) on
127.0.0.1 only; :meth:`DemoBroker.stop` closes the listener and every client connection, and
:meth:`DemoBroker.start` serves again on the same port, so the station and the backend reconnect
to the address they already know. A restarted broker holds no sessions and no retained messages,
as a real broker restarted without persistence: the station publishes its retained documents
again after every reconnect. amqtt speaks 3.1.1 only, and misreads an MQTT 5 CONNECT that carries
a will (it waits for bytes that never come): the demo's broker reads each CONNECT first and
answers an MQTT 5 one at once with "unsupported protocol version", so that the station falls
back to 3.1.1 without waiting out its connect timeout. So that the demo's backend sees the events
the station delivers after an outage, a (re)started broker holds every other client's CONNECT
until the backend has subscribed again (:meth:`DemoBroker.open_to_all`), as a backend with a
persistent session would have them kept for it. What of amqtt's internals this relies on, and
the versions it was checked against: :mod:`lockgate.demo.internals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import ListenerConfig
from amqtt.session import Session

from lockgate.demo.internals import ABANDONED_DELIVERY

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# A backend that never subscribes must not keep the station out for ever.
HOLD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
MQTT_5 = 5
# CONNACK in MQTT 5's form: no session present, reason 0x84 (unsupported protocol version), no
# properties.
_UNSUPPORTED_PROTOCOL_CONNACK = bytes((0x20, 0x03, 0x00, 0x84, 0x00))


class _Replayed(StreamReaderAdapter):
    """amqtt's stream reader, giving back first the bytes the broker already read."""

    def __init__(self, first: bytes, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._first = first

    async def read(self, n: int = -1) -> bytes:
        if not self._first:
            data: bytes = await super().read(n)
            return data
        if n == -1 or n == len(self._first):
            data, self._first = self._first, b""
            return data
        if n < len(self._first):
            data, self._first = self._first[:n], self._first[n:]
            return data
        data, self._first = self._first, b""
        rest: bytes = await super().read(n - len(data))
        return data + rest


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT control packet: the fixed header, its remaining length, the rest."""
    header = await reader.readexactly(1)
    length, shift = 0, 0
    for _ in range(4):
        byte = await reader.readexactly(1)
        header += byte
        length += (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return header + await reader.readexactly(length)


def _protocol_level(connect: bytes) -> int | None:
    """The protocol level of a CONNECT packet (4: 3.1.1, 5: MQTT 5), None if it is none."""
    if not connect or connect[0] >> 4 != 1:
        return None
    at = 1
    while at < len(connect) and connect[at] & 0x80:
        at += 1
    body = connect[at + 1 :]
    if len(body) < 3:
        return None
    name_length = int.from_bytes(body[:2], "big")
    level_at = 2 + name_length
    return body[level_at] if level_at < len(body) else None


# amqtt logs every connection and packet at INFO; the demo's own view says what happens.
logging.getLogger("amqtt").setLevel(logging.ERROR)
logging.getLogger("transitions").setLevel(logging.ERROR)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class _HoldingBroker(Broker):
    """amqtt's broker, holding every client but ``first`` at CONNECT until ``open`` is set."""

    def __init__(self, config: dict[str, object], first: str | None, open_: asyncio.Event) -> None:
        super().__init__(config)
        self._first = first
        self._open = open_
        self._connections: set[asyncio.StreamWriter] = set()
        self.held: set[str] = set()
        """The client ids waiting at CONNECT for ``open``."""

    def drop_connections(self) -> None:
        """Cut every client's TCP connection at once, as a crashing broker does. amqtt's own
        shutdown alone can wait for ever on a client's reader that never stops."""
        for writer in self._connections:
            writer.transport.abort()

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                connect = await _read_packet(reader)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if _protocol_level(connect) == MQTT_5:
            with contextlib.suppress(ConnectionError):
                writer.write(_UNSUPPORTED_PROTOCOL_CONNACK)
                await writer.drain()
            writer.close()
            return
        self._connections.add(writer)
        try:
            await self.external_connected(
                _Replayed(connect, reader), StreamWriterAdapter(writer), listener_name
            )
        finally:
            self._connections.discard(writer)

    # amqtt's private admission (lockgate.demo.internals.AUTHENTICATE, checked there).
    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        if self._first is not None and session.client_id != self._first:
            self.held.add(session.client_id)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HOLD_TIMEOUT_S):
                        await self._open.wait()
            finally:
                self.held.discard(session.client_id)
        admitted: bool = await super()._authenticate(session, listener)
        return admitted


def _quiet_abandoned_deliveries(
    loop: asyncio.AbstractEventLoop, context: dict[str, object]
) -> None:
    """amqtt leaves a delivery whose PUBACK it did not see as a task nobody awaits, and asyncio
    prints its traceback over the demo's output; the backend re-sends what matters."""
    task = context.get("future", context.get("task"))
    if isinstance(task, asyncio.Task):
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_qualname == ABANDONED_DELIVERY:
            return
    loop.default_exception_handler(context)


class DemoBroker:
    """``async with DemoBroker() as broker:`` serves MQTT on ``broker.url`` until the block ends.

    ``first``: the client id let in at once after every start; the others wait for
    :meth:`open_to_all` (or :data:`HOLD_TIMEOUT_S`). ``None``: everyone at once.
    """

    def __init__(self, port: int | None = None, *, first: str | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._first = first
        self._open = asyncio.Event()
        self._broker: _HoldingBroker | None = None
        self._handler_before: (
            Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
        ) = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def held(self) -> frozenset[str]:
        """The client ids held at CONNECT until :meth:`open_to_all` (none while stopped)."""
        return frozenset() if self._broker is None else frozenset(self._broker.held)

    async def start(self) -> None:
        """Serve on the port (again); does nothing while already serving."""
        if self._broker is not None:
            return
        self._open.clear()
        broker = _HoldingBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
                # Anonymous access only: no $SYS topics and no packet logging in the view.
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            },
            self._first,
            self._open,
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            await broker.start()
        self._broker = broker

    def open_to_all(self) -> None:
        """Let in the clients held since the last start (the backend has subscribed)."""
        self._open.set()

    async def stop(self) -> None:
        """Close the listener and drop every client; does nothing while stopped."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        broker.drop_connections()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await broker.shutdown()

    async def __aenter__(self) -> DemoBroker:
        loop = asyncio.get_running_loop()
        self._handler_before = loop.get_exception_handler()
        loop.set_exception_handler(_quiet_abandoned_deliveries)
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            asyncio.get_running_loop().set_exception_handler(self._handler_before)
