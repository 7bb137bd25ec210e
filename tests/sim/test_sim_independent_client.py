"""A nobond lock of the simulator answers an independent implementation of the published protocol.

The client below is written straight from docs/protocol.md with ``cryptography`` and its own
CRC, and shares no code with ``lockgate.protocol`` (which the simulator's firmware uses): if both
sides shared a mistake, this test would still catch it against the vectors file. It drives the
simulator through bleak, with the lock's IV and nonce fed from the vectors, so the whole
transcript on the air, both directions, must equal the vectors byte for byte.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak_retry_connector import establish_connection
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lockgate_sim.testing import run_simulator
from tests.sim.simkit import NOBOND_NAME, NOBOND_VECTOR, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GDIO = "0000baaa-1212-efde-1523-785fef13d123"
USDIO = "0000bbbb-1212-efde-1523-785fef13d123"


def crc16_ccitt_false(data: bytes) -> bytes:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc.to_bytes(2, "little")


def test_own_crc_matches_the_published_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == bytes.fromhex("b129")


class NoBondApp:
    """The app side of the NoBond protocol, minimal, from the published description."""

    def __init__(self, auth_id: int, phone_id: bytes, ltk: bytes) -> None:
        self.auth_id, self.phone_id, self.ltk = auth_id, phone_id, ltk
        self.iv = b""

    def _aes(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.ltk), modes.CBC(self.iv))

    def request_iv(self) -> bytes:
        body = bytes([0x01, 0x00, 0x09, 0x00])
        return body + crc16_ccitt_false(body)

    def take_iv(self, frame: bytes) -> None:
        assert frame[0] == 0x09
        assert frame[1] == len(frame) == 20
        assert crc16_ccitt_false(frame[:-2]) == frame[-2:]
        self.iv = frame[2:18]

    def usdio(self, command: int, payload: bytes) -> bytes:
        inner = bytes([self.auth_id, 6 + len(payload)]) + command.to_bytes(2, "little") + payload
        inner += crc16_ccitt_false(inner)
        inner += bytes(-len(inner) % 16)
        encryptor = self._aes().encryptor()
        ciphertext = encryptor.update(inner) + encryptor.finalize()
        return bytes([self.auth_id, 2 + len(ciphertext)]) + ciphertext

    def open_usdio(self, frame: bytes) -> tuple[int, bytes]:
        assert frame[0] == self.auth_id
        assert frame[1] == len(frame)
        decryptor = self._aes().decryptor()
        inner = decryptor.update(frame[2:]) + decryptor.finalize()
        length = inner[1]
        assert inner[0] == self.auth_id
        assert crc16_ccitt_false(inner[: length - 2]) == inner[length - 2 : length]
        assert not any(inner[length:])
        return int.from_bytes(inner[2:4], "little"), inner[4 : length - 2]

    @staticmethod
    def status(frame: bytes) -> int:
        assert frame[0] == 0x0E
        assert frame[1] == len(frame) == 5
        assert crc16_ccitt_false(frame[:3]) == frame[3:]
        return frame[2]


class Air:
    """What went over the air, in order, and a reassembler per characteristic."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.transcript: list[tuple[str, str, str]] = []
        self.frames: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._buffers = {"GDIO": b"", "USDIO": b""}

    def on(self, name: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def callback(_: BleakGATTCharacteristic, data: bytearray) -> None:
            self.transcript.append(("lock", name, bytes(data).hex()))
            buffer = self._buffers[name] + bytes(data)
            if len(buffer) >= 2 and len(buffer) >= buffer[1]:
                self.frames.put_nowait((name, buffer))
                buffer = b""
            self._buffers[name] = buffer

        return callback

    async def write(self, name: str, frame: bytes) -> None:
        for i in range(0, len(frame), 20):
            chunk = frame[i : i + 20]
            self.transcript.append(("app", name, chunk.hex()))
            await self.client.write_gatt_char(
                GDIO if name == "GDIO" else USDIO, chunk, response=True
            )

    async def frame(self, name: str) -> bytes:
        async with asyncio.timeout(3):
            got, frame = await self.frames.get()
        assert got == name
        return frame


def _vector_randoms() -> Callable[[int], bytes]:
    values: Iterator[bytes] = iter(
        [bytes.fromhex(NOBOND_VECTOR["iv"]), bytes.fromhex(NOBOND_VECTOR["nonce"])]
    )

    def random_bytes(n: int) -> bytes:
        value = next(values)
        assert len(value) == n
        return value

    return random_bytes


async def test_a_nobond_lock_answers_as_the_vectors_say() -> None:
    only_nobond = world()
    only_nobond = only_nobond.model_copy(
        update={"locks": [lock for lock in only_nobond.locks if lock.name == NOBOND_NAME]}
    )
    credentials = NOBOND_VECTOR["credentials"]
    app = NoBondApp(
        credentials["auth_id"],
        bytes.fromhex(credentials["phone_id"]),
        bytes.fromhex(credentials["ltk"]),
    )
    randoms = _vector_randoms()
    async with run_simulator(only_nobond, random_bytes=randoms) as sim:
        assert sim.environ == {"DBUS_SYSTEM_BUS_ADDRESS": sim.bus_address}
        with sim.bleak_pointed_here():
            air = await _session(app)
    assert os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") != sim.bus_address

    expected = [
        (step["from"], step["characteristic"], chunk)
        for step in NOBOND_VECTOR["steps"]
        for chunk in step["chunks"]
    ]
    assert air.transcript == expected


async def _session(app: NoBondApp) -> Air:
    """The whole session of the vectors file, from the app's side, through bleak."""
    device = await BleakScanner.find_device_by_name(NOBOND_NAME, timeout=10)
    assert device is not None
    client = await establish_connection(BleakClient, device, NOBOND_NAME)
    air = Air(client)
    try:
        await client.start_notify(GDIO, air.on("GDIO"))
        await client.start_notify(USDIO, air.on("USDIO"))

        await air.write("GDIO", app.request_iv())
        app.take_iv(await air.frame("GDIO"))
        await air.write("USDIO", app.usdio(0x0001, bytes([0x04, 0x00])))
        command, nonce = app.open_usdio(await air.frame("USDIO"))
        assert command == 0x0004
        assert len(nonce) == 32
        await air.write("USDIO", app.usdio(0x0010, nonce + app.phone_id))
        assert app.status(await air.frame("GDIO")) == 0x30

        await air.write("USDIO", app.usdio(0x0011, bytes([0x01, 0x00, 0x01])))
        assert app.status(await air.frame("GDIO")) == 0x0A
        assert app.status(await air.frame("GDIO")) == 0x0B
        await air.write("USDIO", app.usdio(0x0001, bytes([0x1B, 0x00])))
        assert app.open_usdio(await air.frame("USDIO")) == (0x001B, bytes([87]))
        await air.write("USDIO", app.usdio(0x0011, bytes([0x02, 0x00, 0x02])))
        assert app.status(await air.frame("GDIO")) == 0x01
        assert app.status(await air.frame("GDIO")) == 0x02
        await air.write("USDIO", app.usdio(0x0001, bytes([0x0F, 0x00])))
        assert app.open_usdio(await air.frame("USDIO")) == (0x000F, bytes([0x02, 0x00]))
    finally:
        await client.disconnect()
    return air
