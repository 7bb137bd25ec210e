"""A private D-Bus message bus for the simulator: a dbus-daemon of its own on a unix socket.

The simulator stands where bluetoothd stands, so it needs a bus on which it may own ``org.bluez``
without touching the machine's real system bus. :class:`PrivateBus` starts ``dbus-daemon`` with a
config file written into a fresh temporary directory, listening on a socket in that directory and
nowhere else, and on exit stops the daemon and removes the directory: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

DBUS_DAEMON = "dbus-daemon"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

# Anyone who can reach the socket (it sits in a 0700 directory) may own and call anything: the bus
# exists for one simulator and the processes its user starts against it.
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>lockgate-sim</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class BusError(Exception):
    """The private bus could not be started."""


class PrivateBus:
    """``async with PrivateBus() as bus:`` runs a dbus-daemon; ``bus.address`` is its address."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.address = ""

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise BusError("the bus is not running")
        return self._dir / "bus"

    @property
    def directory(self) -> Path | None:
        return self._dir

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aenter__(self) -> PrivateBus:
        self._dir = Path(tempfile.mkdtemp(prefix="lockgate-sim-"))
        try:
            config = self._dir / "bus.conf"
            config.write_text(_CONFIG.format(socket=self.socket_path))
            executable = _dbus_daemon()
            self._process = await asyncio.create_subprocess_exec(
                executable,
                f"--config-file={config}",
                "--nofork",
                "--nopidfile",
                "--print-address=1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                stdin=asyncio.subprocess.DEVNULL,
            )
            assert self._process.stdout is not None
            # The daemon prints its address once it listens: the bus is ready after that line.
            async with asyncio.timeout(START_TIMEOUT_S):
                line = await self._process.stdout.readline()
            self.address = _address(line)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop the daemon (TERM, then KILL) and remove the socket's directory. Safe to repeat."""
        process, self._process = self._process, None
        if process is not None:
            await stop_process(process, STOP_TIMEOUT_S)
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _dbus_daemon() -> str:
    executable = shutil.which(DBUS_DAEMON)
    if executable is None:
        raise BusError("dbus-daemon is not installed (Debian package dbus)")
    return executable


def _address(line: bytes) -> str:
    address = line.decode().strip()
    if not address:
        raise BusError("dbus-daemon exited without printing its address")
    return address


async def stop_process(process: asyncio.subprocess.Process, timeout_s: float) -> None:
    """SIGTERM, up to ``timeout_s`` to exit, then SIGKILL; reaped either way. Safe to repeat."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(timeout_s):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
