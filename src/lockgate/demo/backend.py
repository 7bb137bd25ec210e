"""The demo's backend: an MQTT client that sends commands and keeps what the station published.

It stands where COPRI stands in the field. :class:`Backend` subscribes to
``{root}/{station}/#`` on the demo's broker, reads every document with the contract's own models
and keeps the latest of each in a :class:`StationPicture` (locks, the last events, commands and
their states, the station status with its outbox depth); the view draws it and the tour waits on
it. It reconnects by itself when the broker comes back. Commands go out as a backend sends them:
plain JSON requests with the (made-up) keys of the simulated locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
from pydantic import TypeAdapter, ValidationError

from lockgate.contract import (
    CommandDocument,
    ErrorDocument,
    Event,
    LockDocument,
    StationStatus,
    format_time,
    topics,
)
from lockgate.errors import LockgateError

BACKEND_CLIENT_ID = "lockgate-demo-backend"
EVENTS_SHOWN = 200
RECONNECT_S = 0.2
# How long a receipt may take before the request goes out again, and how often it does.
RECEIPT_S = 3.0
RESENDS = 5
SOCKET_TIMEOUT_S = 10.0

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


class BackendOfflineError(LockgateError):
    """The backend is not connected to the broker: a command cannot go out now."""


@dataclass
class StationPicture:
    """What the backend knows of the station: the latest of every document it received."""

    locks: dict[str, LockDocument] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_SHOWN))
    events_total: int = 0
    commands: dict[str, CommandDocument] = field(default_factory=dict)
    status: StationStatus | None = None
    errors: list[ErrorDocument] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    connected: bool = False
    # Every event ever received, for the tour's checks (the view shows the last ones).
    history: list[Event] = field(default_factory=list)

    def apply(self, kind: str, rest: str, payload: bytes) -> None:
        """Take one message: ``kind`` is the topic's first level below the station."""
        try:
            if kind == topics.STATUS:
                self.status = StationStatus.model_validate_json(payload)
            elif kind == topics.LOCKS and rest:
                self.locks[rest] = LockDocument.model_validate_json(payload)
            elif kind == topics.EVENTS:
                event = _EVENT.validate_json(payload)
                self.events.append(event)
                self.history.append(event)
                self.events_total += 1
            elif kind == topics.COMMANDS and rest:
                document = CommandDocument.model_validate_json(payload)
                known = self.commands.get(document.id)
                # Delivery is at least once: an older version arriving late changes nothing.
                if known is None or known.version <= document.version:
                    self.commands[document.id] = document
            elif kind == topics.ERRORS:
                self.errors.append(ErrorDocument.model_validate_json(payload))
        except ValidationError as err:
            self.unreadable.append(f"{kind}/{rest}: {err.error_count()} problem(s)")


class Backend:
    """``async with Backend(host, port, station) as backend:`` keeps ``backend.picture`` current.

    ``on_subscribed`` runs after every (re)subscription, before any message is read: the demo's
    broker lets the station in only then, so that nothing the station delivers is missed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        station: str,
        *,
        topic_root: str = "lockgate/v1",
        on_subscribed: Callable[[], None] = lambda: None,
    ) -> None:
        self._host = host
        self._port = port
        self._station = station
        self._prefix = f"{topic_root}/{station}/"
        self._on_subscribed = on_subscribed
        self.picture = StationPicture()
        self._changed = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._ids = itertools.count(1)
        self._run: asyncio.Task[None] | None = None
        self._reconnect = asyncio.Event()

    async def __aenter__(self) -> Backend:
        self._run = asyncio.create_task(self._connection(), name="demo-backend")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._run is not None:
            self._run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run
            self._run = None

    def reconnect_now(self) -> None:
        """The broker is back: try at once instead of at the next retry."""
        self._reconnect.set()

    async def _connection(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self._host,
                    self._port,
                    identifier=BACKEND_CLIENT_ID,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    timeout=SOCKET_TIMEOUT_S,
                ) as client:
                    await client.subscribe(self._prefix + "#", qos=1)
                    self._client = client
                    await self._changed_now(connected=True)
                    self._on_subscribed()
                    async for message in client.messages:
                        await self._receive(message)
            except aiomqtt.MqttError:
                pass
            self._client = None
            await self._changed_now(connected=False)
            self._reconnect.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONNECT_S):
                    await self._reconnect.wait()

    async def _receive(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        if not topic.startswith(self._prefix) or not isinstance(message.payload, bytes):
            return
        kind, _, rest = topic.removeprefix(self._prefix).partition("/")
        self.picture.apply(kind, rest, message.payload)
        await self._changed_now()

    async def _changed_now(self, *, connected: bool | None = None) -> None:
        async with self._changed:
            if connected is not None:
                self.picture.connected = connected
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[StationPicture], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(picture)`` holds; False when ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: predicate(self.picture))
        except TimeoutError:
            return False
        return True

    async def send(
        self, command: str, bike: str, *, timeout_s: float | None = None, **fields: Any
    ) -> str:
        """Publish one request on ``commands`` and re-send it, unchanged, until its receipt (its
        first command document, or an error document naming it) arrives, as the contract tells a
        backend to: a PUBACK is not the receipt. Returns its id; :class:`BackendOfflineError`
        when the broker is away (a backend re-sends later; the demo says so instead)."""
        command_id = f"demo-{next(self._ids)}-{command}"
        request: dict[str, Any] = {"id": command_id, "command": command, "bike": bike, **fields}
        if timeout_s is not None:
            request["timeout_at"] = format_time(datetime.now(UTC) + timedelta(seconds=timeout_s))
        payload = json.dumps(request).encode()
        for _ in range(RESENDS):
            client = self._client
            if client is None:
                raise BackendOfflineError("the backend is not connected to the broker")
            try:
                async with asyncio.timeout(SOCKET_TIMEOUT_S):
                    await client.publish(self._prefix + topics.COMMANDS, payload, qos=1)
            except (aiomqtt.MqttError, TimeoutError) as err:
                raise BackendOfflineError(f"the request did not reach the broker: {err}") from err
            if await self.wait_for(lambda p: _receipted(p, command_id), RECEIPT_S):
                break
        return command_id


def _receipted(picture: StationPicture, command_id: str) -> bool:
    return command_id in picture.commands or any(
        error.correlation_id == command_id for error in picture.errors
    )
