"""The demo's MQTT broker: amqtt, in the demo's own process, on a free loopback port.

The demo needs a broker nobody has to install, and one it can take away and bring back to show the
station holding its events through an outage. :class:`DemoBroker` serves amqtt (MQTT 3.1.1) on
127.0.0.1 only; :meth:`DemoBroker.stop` closes the listener and every client connection, and
:meth:`DemoBroker.start` serves again on the same port, so the station and the backend reconnect
to the address they already know. A restarted broker holds no sessions and no retained messages,
as a real broker restarted without persistence: the station publishes its retained documents
again after every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType

from amqtt.broker import Broker

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

# amqtt logs every connection and packet at INFO; the demo's own view says what happens.
logging.getLogger("amqtt").setLevel(logging.ERROR)
logging.getLogger("transitions").setLevel(logging.ERROR)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class DemoBroker:
    """``async with DemoBroker() as broker:`` serves MQTT on ``broker.url`` until the block ends."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
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
        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
                # Anonymous access only: no $SYS topics and no packet logging in the view.
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            await broker.start()
        self._broker = broker

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
