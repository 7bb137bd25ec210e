"""The demo's MQTT broker: amqtt, in the demo's own process, on a free loopback port.

The demo needs a broker nobody has to install, and one it can take away and bring back to show the
station holding its events through an outage. :class:`DemoBroker` serves amqtt (MQTT 3.1.1) on
127.0.0.1 only; :meth:`DemoBroker.stop` closes the listener and every client connection, and
:meth:`DemoBroker.start` serves again on the same port, so the station and the backend reconnect
to the address they already know. A restarted broker holds no sessions and no retained messages,
as a real broker restarted without persistence: the station publishes its retained documents
again after every reconnect. So that the demo's backend sees the events the station delivers
after an outage, a (re)started broker holds every other client's CONNECT until the backend has
subscribed again (:meth:`DemoBroker.open_to_all`), as a backend with a persistent session would
have them kept for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType

from amqtt.broker import Broker
from amqtt.contexts import ListenerConfig
from amqtt.session import Session

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# A backend that never subscribes must not keep the station out for ever.
HOLD_TIMEOUT_S = 10.0

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

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        if self._first is not None and session.client_id != self._first:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOLD_TIMEOUT_S):
                    await self._open.wait()
        admitted: bool = await super()._authenticate(session, listener)
        return admitted


class DemoBroker:
    """``async with DemoBroker() as broker:`` serves MQTT on ``broker.url`` until the block ends.

    ``first``: the client id let in at once after every start; the others wait for
    :meth:`open_to_all` (or :data:`HOLD_TIMEOUT_S`). ``None``: everyone at once.
    """

    def __init__(self, port: int | None = None, *, first: str | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._first = first
        self._open = asyncio.Event()
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

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
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await broker.shutdown()

    async def __aenter__(self) -> DemoBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
