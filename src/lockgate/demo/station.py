"""The demo's station: the real daemon, ``lockgate run``, as a child process.

The demo runs the gateway exactly as a station does, only pointed at the demo's broker and the
simulator's bus: :func:`write_station_config` writes its configuration (store, store key and
station key in the demo's temporary directory; unsigned commands accepted, as only a demo may) and
checks it with the daemon's own loader; :class:`StationProcess` starts ``python -m lockgate run``,
stops it with SIGTERM as systemd does, or kills it outright for the tour's power cut. Its log
lines go to a file in the same directory, shown when a headless tour fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from lockgate.config import load
from lockgate.demo.world import BIKES, LATITUDE, LONGITUDE, STATION

STOP_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 5.0


def _quoted(text: str) -> str:
    # TOML basic strings take JSON's escapes for everything a path or a bus address holds.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_station_config(directory: Path, broker_url: str, bus_address: str) -> Path:
    """The daemon's configuration for the demo, in ``directory``; checked before it is returned."""
    locks = "".join(
        f"\n[[locks]]\nbike = {_quoted(bike.bike)}\nname = {_quoted(bike.name)}\n"
        f"guid = {_quoted(bike.guid)}\nprofile = {_quoted(bike.profile.value)}\n"
        for bike in BIKES
    )
    text = f"""# Written by `lockgate demo` for one run; removed with the run's directory.
[station]
id = {_quoted(STATION)}
latitude = {_quoted(LATITUDE)}
longitude = {_quoted(LONGITUDE)}

[mqtt]
url = {_quoted(broker_url)}
client_id = "lockgate-{STATION}"
keepalive_s = 10

[ble]
dbus_address = {_quoted(bus_address)}
connection_slots = 3
connect_timeout_s = 20
sync_interval_s = 30
watch = true

[store]
path = {_quoted(str(directory / "lockgate.db"))}
key_file = {_quoted(str(directory / "store.key"))}

[commands]
require_signed = false
station_key_file = {_quoted(str(directory / "station.jwk"))}
{locks}"""
    path = directory / "station.toml"
    path.write_text(text, encoding="utf-8")
    load(path)  # a mistake here is the demo's own: stop at once with the problem named
    return path


class StationProcess:
    """The daemon as a child process: start, stop (SIGTERM), kill (SIGKILL), start again."""

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.config_file = config_file
        self.log_file = log_file
        self._process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the daemon (again); does nothing while it runs."""
        if self.running:
            return
        with self.log_file.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lockgate",
                "run",
                "--config",
                str(self.config_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own process group: a Ctrl-C on the terminal reaches the demo, which stops
                # the station in order, rather than every process at once.
                start_new_session=True,
            )
        self.starts += 1

    async def stop(self) -> int | None:
        """SIGTERM, as systemd stops it; SIGKILL if it has not ended in time. Its exit code."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                return await self.kill()
        return process.returncode

    async def kill(self) -> int | None:
        """SIGKILL: the power cut. Its exit code (-9)."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            async with asyncio.timeout(KILL_TIMEOUT_S):
                await process.wait()
        return process.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the daemon wrote, for a failure report."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
