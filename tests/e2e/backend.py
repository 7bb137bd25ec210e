"""The backend's side of the contract, written for the tests with aiomqtt (not lockgate code).

It subscribes to everything under ``{root}/{station}/``, keeps every message in arrival order, and
sends commands the way the contract asks a backend to: re-sending with the same id until it sees
the receipt. It knows the contract only from mqtt-contract.md (plain JSON, no lockgate models), so
a mistake the gateway shares with its own models would still show here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiomqtt

FINAL = ("SUCCESS", "ERROR")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # after {root}/{station}/
    payload: bytes
    retain: bool
    at: float

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.payload)
        return document


def deadline(seconds: float = 60.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def command(bike: str, name: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": uuid.uuid4().hex, "command": name, "bike": bike}
    body["timeout_at"] = deadline()
    return body | fields


class Backend:
    """A subscriber and publisher on the station's topics; use :func:`backend`."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.prefix = prefix
        self._client = client
        self._messages: list[Message] = []
        self._by_topic: dict[str, list[Message]] = {}  # a thousand-kill run holds 10^5 of them
        self._changed = asyncio.Condition()

    async def _receive(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker went away: this backend ends
            await self._messages_until_disconnected()

    async def _messages_until_disconnected(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            topic = str(message.topic).removeprefix(self.prefix)
            async with self._changed:
                seen = Message(topic, payload, message.retain, time.monotonic())
                self._messages.append(seen)
                self._by_topic.setdefault(topic, []).append(seen)
                self._changed.notify_all()

    # --- reading -----------------------------------------------------------------------------

    def messages(self, topic: str | None = None) -> list[Message]:
        return list(self._messages if topic is None else self._by_topic.get(topic, ()))

    def documents(self, topic: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.messages(topic)]

    def events(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.documents("events") if all(e.get(k) == v for k, v in match.items())]

    def latest(self, topic: str) -> dict[str, Any] | None:
        found = self.messages(topic)
        return found[-1].json() if found else None

    async def wait_for(self, check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
        """Until ``check()`` returns something truthy; a wait limit, not a timing assertion."""
        async with asyncio.timeout(timeout_s), self._changed:
            while not (result := check()):
                await self._changed.wait()
            return result

    # --- sending -----------------------------------------------------------------------------

    async def publish(self, payload: bytes | str, topic: str = "commands") -> None:
        await self._client.publish(self.prefix + topic, payload, qos=1)

    async def send(
        self, body: dict[str, Any], *, resend_s: float = 2.0, timeout_s: float = 60.0
    ) -> None:
        """Publish ``body`` until its receipt (any document of its id) is seen."""
        topic = f"commands/{body['id']}"
        payload = json.dumps(body)
        async with asyncio.timeout(timeout_s):
            while True:
                await self.publish(payload)
                with contextlib.suppress(TimeoutError):
                    await self.wait_for(lambda: self.messages(topic), timeout_s=resend_s)
                    return

    async def final(self, command_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The command's final document, once it arrives."""

        def ended() -> dict[str, Any] | None:
            for document in self.documents(f"commands/{command_id}"):
                if document["state"]["value"] in FINAL:
                    return document
            return None

        return await self.wait_for(ended, timeout_s)

    async def run(self, body: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        """Send a command and follow it to its end."""
        await self.send(body, timeout_s=timeout_s)
        return await self.final(body["id"], timeout_s)


@contextlib.asynccontextmanager
async def backend(
    port: int,
    *,
    station: str,
    root: str = "lockgate/v1",
    password: str | None = None,
    topics: tuple[str, ...] = ("#",),
) -> AsyncIterator[Backend]:
    """A backend connected to the broker on 127.0.0.1:``port``, subscribed to the station (as the
    station's own user where the broker wants a password)."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"backend-{uuid.uuid4().hex[:8]}",
        username=station if password is not None else None,
        password=password,
        # Small messages out at once (no Nagle): a backend waits for every answer.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    ) as client:
        prefix = f"{root}/{station}/"
        for topic in topics:
            await client.subscribe(prefix + topic, qos=1)
        peer = Backend(client, prefix)
        receiving = asyncio.create_task(peer._receive(), name="backend-receive")
        try:
            yield peer
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
