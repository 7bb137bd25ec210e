"""Worlds, a bleak-side session helper and waits for the simulator's integration tests.

A module of its own (not conftest.py) so that test modules import it by a name no other test
directory uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak_retry_connector import establish_connection

from lockgate.protocol import Channel, Session
from lockgate.protocol.credentials import Credentials, NobondCredentials, ShareeCredentials
from lockgate.protocol.session import SessionEvent, Write
from lockgate_sim.world import WorldConfig

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "ilockit-sessions.json").read_text()
)
SHAREE_VECTOR = VECTORS["sessions"][0]
NOBOND_VECTOR = VECTORS["sessions"][1]
SHAREE_NAME = "ISHAREIT-2200540"
NOBOND_NAME = "ILOCKIT-4500329"
SECOND_SHAREE = "ISHAREIT-2200541"
TIME_SCALE = 0.05


def sharee_credentials() -> ShareeCredentials:
    c = SHAREE_VECTOR["credentials"]
    return ShareeCredentials.parse(c["K_seed"], c["K_u"])


def nobond_credentials() -> NobondCredentials:
    c = NOBOND_VECTOR["credentials"]
    return NobondCredentials.parse(c["auth_id"], c["phone_id"], c["ltk"])


def world(**overrides: Any) -> WorldConfig:
    """Two sharee locks and one nobond lock, keyed as in the vectors file."""
    s, n = SHAREE_VECTOR["credentials"], NOBOND_VECTOR["credentials"]
    locks: list[dict[str, Any]] = [
        {
            "name": SHAREE_NAME,
            "address": "FC:3C:00:2A:2A:DD",
            "profile": "sharee",
            "k_seed": s["K_seed"],
            "k_u": s["K_u"],
            "battery": 87,
            "motor_ms": 1200,
            "connect_ms": 250,
        },
        {
            "name": SECOND_SHAREE,
            "address": "FC:3C:00:2A:2B:01",
            "profile": "sharee",
            "k_seed": s["K_seed"],
            "k_u": s["K_u"],
            "state": "unlocked",
            "connect_ms": 6000,
        },
        {
            "name": NOBOND_NAME,
            "address": "D4:12:99:00:45:03",
            "profile": "nobond",
            "auth_id": n["auth_id"],
            "phone_id": n["phone_id"],
            "ltk": n["ltk"],
            "battery": 87,
        },
    ]
    for lock in locks:
        lock.update(overrides.get(lock["name"], {}))
    return WorldConfig.model_validate(
        {"adapter": {"time_scale": TIME_SCALE, "connection_slots": 5}, "lock": locks}
    )


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> None:
    """Wait until ``check()`` holds: simulated time passes at the loop's pace, even on a busy CI."""
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110 - the state is across the bus: poll it
            await asyncio.sleep(0.01)


class Link:
    """A bleak connection to one simulated lock, with the indications it received, in order."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.indications: asyncio.Queue[tuple[Channel, bytes]] = asyncio.Queue()
        self.disconnected = asyncio.Event()

    @classmethod
    async def open(cls, name: str, *, subscribe: bool = True) -> Link:
        device = await BleakScanner.find_device_by_name(name, timeout=10)
        assert device is not None, f"{name} not found by the scan"
        holder: list[Link] = []

        def on_disconnect(_: BleakClient) -> None:
            if holder:
                holder[0].disconnected.set()

        client = await establish_connection(
            BleakClient, device, name, disconnected_callback=on_disconnect, max_attempts=2
        )
        link = cls(client)
        holder.append(link)
        if subscribe:
            await client.start_notify(Channel.GDIO.uuid, link._on(Channel.GDIO))
            await client.start_notify(Channel.USDIO.uuid, link._on(Channel.USDIO))
        return link

    def _on(self, channel: Channel) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def callback(_: BleakGATTCharacteristic, data: bytearray) -> None:
            self.indications.put_nowait((channel, bytes(data)))

        return callback

    async def send(self, write: Write) -> None:
        for chunk in write.chunks:
            await self.client.write_gatt_char(write.channel.uuid, chunk, response=True)

    async def next(self, within_s: float = 3.0) -> tuple[Channel, bytes]:
        async with asyncio.timeout(within_s):
            return await self.indications.get()

    async def events(
        self, session: Session, count: int, within_s: float = 3.0
    ) -> list[SessionEvent]:
        """Feed indications to ``session`` (sending what it asks) until ``count`` events came."""
        events: list[SessionEvent] = []
        while len(events) < count:
            channel, chunk = await self.next(within_s)
            out = session.receive(channel, chunk)
            events += out.events
            for write in out.writes:
                await self.send(write)
        return events

    async def authorise(self, credentials: Credentials) -> tuple[Session, list[SessionEvent]]:
        session = Session(credentials)
        await self.send(session.start())
        return session, await self.events(session, 1)

    async def close(self) -> None:
        await self.client.disconnect()


def crowd(
    count: int, *, time_scale: float, connect_ms: int = 250, motor_ms: int = 300
) -> WorldConfig:
    """A station of ``count`` sharee locks, all keyed as the vectors' sharee lock (the
    simulator does not care that keys repeat), named and addressed by their index."""
    s = SHAREE_VECTOR["credentials"]
    locks = [
        {
            "name": crowd_name(index),
            "address": f"FC:3C:00:2B:{index >> 8:02X}:{index & 0xFF:02X}",
            "profile": "sharee",
            "k_seed": s["K_seed"],
            "k_u": s["K_u"],
            "connect_ms": connect_ms,
            "motor_ms": motor_ms,
        }
        for index in range(count)
    ]
    return WorldConfig.model_validate(
        {"adapter": {"time_scale": time_scale, "connection_slots": 5}, "lock": locks}
    )


def crowd_name(index: int) -> str:
    return f"ISHAREIT-{2300000 + index}"
