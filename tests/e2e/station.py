"""A whole station for end-to-end tests: the simulator, and ``lockgate run`` as a subprocess.

The daemon is started exactly as systemd starts it (``python -m lockgate run --config FILE``, with
``NOTIFY_SOCKET`` pointing at a datagram socket the test binds), pointed at a mosquitto that the
test runs and at the simulator's private bus. Everything it prints goes to a log file, which the
tests read (and search for keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from lockgate.model import Profile
from lockgate.protocol.credentials import signed_byte_string
from lockgate.protocol.identity import address_to_guid
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig

STATION = "FR101"
ROOT = "lockgate/v1"
STOP_TIMEOUT_S = 15.0


def sharee(index: int, **fields: object) -> LockConfig:
    return LockConfig.model_validate(
        {
            "name": f"ISHAREIT-22005{index:02d}",
            "address": f"FC:3C:00:2A:2C:{index:02X}",
            "profile": Profile.SHAREE,
            "k_seed": signed_byte_string(bytes((index * 11 + i) % 256 for i in range(16))),
            "k_u": signed_byte_string(bytes((index * 5 + i) % 256 for i in range(20)) + bytes(4)),
            "motor_ms": 1200,
            "connect_ms": 250,
        }
        | fields
    )


def nobond(index: int, **fields: object) -> LockConfig:
    return LockConfig.model_validate(
        {
            "name": f"ILOCKIT-45003{index:02d}",
            "address": f"D4:12:99:00:46:{index:02X}",
            "profile": Profile.NOBOND,
            "auth_id": index,
            "phone_id": bytes(range(index, index + 8)).hex(),
            "ltk": bytes((3 * index + i) % 256 for i in range(32)).hex(),
            "motor_ms": 1000,
            "connect_ms": 300,
        }
        | fields
    )


def world(*locks: LockConfig, slots: int = 5) -> WorldConfig:
    return WorldConfig.model_validate(
        {"adapter": AdapterConfig(connection_slots=slots), "lock": list(locks)}
    )


def bike_of(lock: LockConfig) -> str:
    return "B" + lock.name.split("-")[1]


def sharee_keys(lock: LockConfig) -> dict[str, object]:
    return {"K_seed": lock.k_seed, "K_u": lock.k_u}


def nobond_keys(lock: LockConfig) -> dict[str, object]:
    return {"auth_id": lock.auth_id, "phone_id": lock.phone_id, "ltk": lock.ltk}


def keys_of(lock: LockConfig) -> dict[str, object]:
    return sharee_keys(lock) if lock.profile is Profile.SHAREE else nobond_keys(lock)


def write_config(
    directory: Path,
    *,
    broker_port: int,
    bus_address: str,
    sim: WorldConfig,
    mqtt: str = "",
    ble: str = "",
    commands: str = "",
    extra: str = "",
    slots: int = 3,
    watch: bool = True,
    sync_interval_s: float = 3600.0,
    synchronized: bool = True,
) -> Path:
    """A station config for the simulated world, its state (and its sealing key) kept in
    ``directory``; ``commands`` adds lines to the ``[commands]`` section. Whether the station's
    clock is synchronised is the file :func:`synchronized_file` (timesyncd's marker, moved), made
    here when ``synchronized``: never the test machine's own kernel, which may say either."""
    marker = synchronized_file(directory)
    if synchronized:
        marker.touch()
    lines = [
        "[station]",
        f'id = "{STATION}"',
        'latitude = "47.976634"',
        'longitude = "7.825490"',
        "",
        "[mqtt]",
        f'url = "mqtt://127.0.0.1:{broker_port}"',
        f'client_id = "lockgate-{STATION}"',
        f'topic_root = "{ROOT}"',
        mqtt,
        "",
        "[ble]",
        f'dbus_address = "{bus_address}"',
        f"connection_slots = {slots}",
        "connect_timeout_s = 10.0",
        f"sync_interval_s = {sync_interval_s}",
        f"watch = {'true' if watch else 'false'}",
        ble,
        "",
        "[store]",
        f'path = "{directory / "lockgate.db"}"',
        f'key_file = "{directory / "store.key"}"',
        "",
        "[commands]",
        f'station_key_file = "{directory / "station.jwk"}"',
        commands,
        "",
        "[clock]",
        'source = "timesyncd"',
        f'synchronized_file = "{marker}"',
        "",
    ]
    for lock in sim.locks:
        lines += [
            "[[locks]]",
            f'bike = "{bike_of(lock)}"',
            f'name = "{lock.name}"',
            f'guid = "{address_to_guid(lock.address)}"',
            f'profile = "{lock.profile}"',
            "",
        ]
    path = directory / "lockgate.toml"
    path.write_text("\n".join(lines) + extra)
    return path


def synchronized_file(directory: Path) -> Path:
    """The file whose presence tells the station of ``directory`` that its clock is synchronised."""
    return directory / "clock-synchronized"


@dataclass
class NotifySocket:
    """The datagram socket systemd would listen on; every message the daemon sent, in order."""

    path: Path
    sock: socket.socket
    messages: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(4096).decode())
                self.changed.set()

    def sent(self, prefix: str) -> list[str]:
        return [line for m in self.messages for line in m.split("\n") if line.startswith(prefix)]

    async def wait_for(self, prefix: str, timeout_s: float = 60.0) -> str:
        async with asyncio.timeout(timeout_s):
            while not (found := self.sent(prefix)):
                self.changed.clear()
                await self.changed.wait()
        return found[-1]


@contextlib.asynccontextmanager
async def notify_socket(directory: Path) -> AsyncIterator[NotifySocket]:
    path = directory / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)  # noqa: FBT003 - the socket API's own flag
    listener = NotifySocket(path, sock)
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), listener._readable)
    try:
        yield listener
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


class Daemon:
    """``lockgate run`` as a child process; its output appended to ``log``."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        environ: dict[str, str] | None = None,
        arguments: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.log = log
        self.environ = environ or {}
        self.arguments = arguments
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lockgate",
                "run",
                "--config",
                str(self.config),
                *self.arguments,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=environ | self.environ,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, as systemd stops it; the exit code (the process is killed past the limit)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                return await self.process.wait()
        except TimeoutError:
            await self.kill()
            raise

    async def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def close(self) -> None:
        if self.running:
            await self.kill()
