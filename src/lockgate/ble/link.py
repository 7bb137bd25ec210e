"""One BLE connection to one lock, over bleak and bleak-retry-connector.

A :class:`Link` connects with ``establish_connection`` under a safety timeout, subscribes to the
lock's GDIO and USDIO indications, writes frames in 20-byte chunks with response, and reads the
standard battery and firmware characteristics. Indicated chunks wait in one queue for whoever holds
the lock's turn (an operation while it runs, the watch between operations). Every bleak
failure leaves this module as an :class:`~lockgate.ble.errors.OperationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

import structlog
from bleak import BleakClient
from bleak.backends.bluezdbus.manager import get_global_bluez_manager
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from lockgate.ble.errors import OperationError, connect_failure, link_failure
from lockgate.protocol.gatt import BATTERY_LEVEL, FIRMWARE_REVISION, GDIO, USDIO, Channel
from lockgate.protocol.session import Write
from lockgate.radio import Outcome

log = structlog.get_logger(__name__)

Chunk = tuple[Channel, bytes]
_CHANNELS = {GDIO: Channel.GDIO, USDIO: Channel.USDIO}
_FIRMWARE_MAX = 32


class _AbortCounter:
    """Counts links the adapter opened and dropped at once while a connection was attempted.

    BlueZ reports a link it could not keep (no free connection slot) as ``Connected`` true, then
    false, and answers ``le-connection-abort-by-local``, which bleak retries silently until its
    timeout. Watching the device's ``Connected`` property through bleak's BlueZ manager is the
    one typed way to tell that from a lock that never answered.
    """

    def __init__(self, device: BLEDevice) -> None:
        details = device.details
        self._path = details.get("path") if isinstance(details, dict) else None
        self._watcher: Any = None
        self._manager: Any = None
        self._up = False
        self.count = 0

    def _on_connected(self, connected: bool) -> None:
        if connected:
            self._up = True
        elif self._up:
            self._up = False
            self.count += 1

    async def __aenter__(self) -> Self:
        if self._path is None:
            return self
        manager = await get_global_bluez_manager()
        with contextlib.suppress(BleakError):  # the device went away: the connect will say so
            self._watcher = manager.add_device_watcher(
                self._path, self._on_connected, lambda _path, _value: None
            )
            self._manager = manager
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._watcher is not None:
            self._manager.remove_device_watcher(self._watcher)
            self._watcher = None


class Link:
    """An open connection to one lock."""

    def __init__(self, bike: str, address: str) -> None:
        self.bike = bike
        self.address = address
        self.lost = asyncio.Event()
        self._client: BleakClient | None = None
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue()

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "open"
        return f"Link({self.bike}, {self.address}, {state})"

    @classmethod
    async def connect(
        cls,
        bike: str,
        device: BLEDevice,
        *,
        timeout_s: float,
        max_attempts: int,
        step_timeout_s: float,
    ) -> Link:
        """Connect and subscribe to both channels, or raise :class:`OperationError`."""
        link = cls(bike, device.address)
        aborts = _AbortCounter(device)
        try:
            async with asyncio.timeout(timeout_s), aborts:
                link._client = await establish_connection(
                    BleakClientWithServiceCache,
                    device,
                    bike,
                    disconnected_callback=link._on_disconnected,
                    max_attempts=max_attempts,
                    use_services_cache=True,
                )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise connect_failure(err, aborts=aborts.count) from err
        client = link._client
        try:
            # Both at once: one D-Bus round trip's wait per connect instead of two.
            # (gather, not a TaskGroup: bleak's own error, not a group, says what failed; the
            # link is closed below whichever way it fails.)
            async with asyncio.timeout(step_timeout_s):
                await asyncio.gather(
                    *(client.start_notify(uuid, link._on_indication) for uuid in (GDIO, USDIO))
                )
        except asyncio.CancelledError:
            await link.close(step_timeout_s)
            raise
        except Exception as err:
            await link.close(step_timeout_s)
            raise link_failure(err, "subscribing to the lock's indications") from err
        return link

    # --- bleak callbacks (synchronous, on the event loop) ----------------------------------

    def _on_disconnected(self, _client: Any) -> None:
        self.lost.set()

    def _on_indication(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        channel = _CHANNELS.get(characteristic.uuid.lower())
        if channel is not None:
            self._queue.put_nowait((channel, bytes(data)))

    # --- listening -------------------------------------------------------------------------

    @property
    def chunks(self) -> asyncio.Queue[Chunk]:
        """Every chunk the lock indicated, in order, until read: one queue for the link's life.

        Whoever holds the lock's turn reads it (an operation, or the watch between operations),
        so nothing the lock says between two of them is lost.
        """
        return self._queue

    async def next_chunk(self, queue: asyncio.Queue[Chunk], timeout_s: float, doing: str) -> Chunk:
        """The next chunk on ``queue``; OperationError if the link drops or time runs out."""
        if not queue.empty():
            return queue.get_nowait()
        if self.lost.is_set():
            raise OperationError(Outcome.LINK_LOST, f"the link dropped while {doing}")
        getter = asyncio.ensure_future(queue.get())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, lost}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (getter, lost):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(getter, lost, return_exceptions=True)
        if getter in done:
            return getter.result()
        if lost in done:
            raise OperationError(Outcome.LINK_LOST, f"the link dropped while {doing}")
        raise OperationError(Outcome.TIMED_OUT, f"no answer from the lock while {doing}")

    # --- GATT ------------------------------------------------------------------------------

    def _require(self, doing: str) -> BleakClient:
        if self._client is None or self.lost.is_set():
            raise OperationError(Outcome.LINK_LOST, f"the link dropped before {doing}")
        return self._client

    async def write(self, write: Write, timeout_s: float) -> None:
        """Write one frame, chunk by chunk, each with response."""
        doing = f"writing to {write.channel}"
        client = self._require(doing)
        try:
            for chunk in write.chunks:
                async with asyncio.timeout(timeout_s):
                    await client.write_gatt_char(write.channel.uuid, chunk, response=True)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise link_failure(err, doing) from err

    async def read_battery(self, timeout_s: float) -> int | None:
        """The standard battery level, or None where the lock has no such characteristic."""
        raw = await self._read(BATTERY_LEVEL, timeout_s, "reading the battery level")
        if raw is None or len(raw) != 1 or raw[0] > 100:
            return None
        return raw[0]

    async def read_firmware(self, timeout_s: float) -> str | None:
        """The firmware revision string, cleaned for logs and documents."""
        raw = await self._read(FIRMWARE_REVISION, timeout_s, "reading the firmware revision")
        if raw is None:
            return None
        text = raw[:_FIRMWARE_MAX].decode("utf-8", errors="replace")
        cleaned = "".join(c for c in text if c.isprintable()).strip()
        return cleaned or None

    async def _read(self, uuid: str, timeout_s: float, doing: str) -> bytes | None:
        client = self._require(doing)
        if client.services.get_characteristic(uuid) is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return bytes(await client.read_gatt_char(uuid))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise link_failure(err, doing) from err

    async def close(self, timeout_s: float) -> None:
        """Disconnect; never raises for a link that is already gone."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await client.disconnect()
        except asyncio.CancelledError:
            raise
        except (BleakError, TimeoutError, EOFError, OSError) as err:
            # A link that went away on its own is closed all the same.
            log.debug("disconnect failed", bike=self.bike, error=type(err).__name__)
        finally:
            self.lost.set()


CLEANUP_GRACE_S = 2.0
"""How long a connection attempt may run past its timeouts to clean up."""


async def connect_within(
    tasks: asyncio.TaskGroup | None,
    bike: str,
    device: BLEDevice,
    *,
    timeout_s: float,
    max_attempts: int,
    step_timeout_s: float,
) -> Link:
    """:meth:`Link.connect`, ended within its timeouts and ``CLEANUP_GRACE_S`` whatever bleak does.

    bleak, when its connect is cancelled, asks BlueZ to ``Disconnect`` and awaits the answer with
    no timeout of its own, and bluetoothd answers only once the link is down (for a lock that
    went quiet, after the supervision timeout). The caller holds the adapter's one connection
    attempt all that while, so every other connect would wait with it. The attempt runs as a
    task of ``tasks`` instead; past the bound it is cancelled once more and left to end there,
    its link closed if one ever comes.
    """
    if tasks is None:
        return await Link.connect(
            bike,
            device,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            step_timeout_s=step_timeout_s,
        )
    abandoned = asyncio.Event()
    attempt = tasks.create_task(
        _attempt(
            bike,
            device,
            abandoned,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            step_timeout_s=step_timeout_s,
        ),
        name=f"connect-{bike}",
    )
    bound = timeout_s + step_timeout_s + CLEANUP_GRACE_S
    try:
        done, _ = await asyncio.wait({attempt}, timeout=bound)
    except asyncio.CancelledError:
        attempt.cancel()
        abandoned.set()
        raise
    if attempt not in done:
        attempt.cancel()
        abandoned.set()
        log.warning("connection attempt outlived its timeout: left to end alone", bike=bike)
        raise OperationError(
            Outcome.TIMED_OUT, f"the connection attempt did not end within {bound:g} s"
        )
    result = attempt.result()
    if isinstance(result, OperationError):
        raise result
    return result


async def _attempt(
    bike: str,
    device: BLEDevice,
    abandoned: asyncio.Event,
    *,
    timeout_s: float,
    max_attempts: int,
    step_timeout_s: float,
) -> Link | OperationError:
    """One attempt in the driver's task group: its failure is returned, never raised (a task
    that raises would end the whole group)."""
    try:
        link = await Link.connect(
            bike,
            device,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            step_timeout_s=step_timeout_s,
        )
    except OperationError as err:
        return err
    if abandoned.is_set():  # its caller gave up on it: nobody will use the link
        await link.close(step_timeout_s)
    return link


async def next_chunk(queue: asyncio.Queue[Chunk], *events: asyncio.Event) -> Chunk | None:
    """The next chunk, or None as soon as one of ``events`` is set."""
    if not queue.empty():
        return queue.get_nowait()
    if any(e.is_set() for e in events):
        return None
    getter = asyncio.ensure_future(queue.get())
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait({getter, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (getter, *waiters):
            if not task.done():
                task.cancel()
        await asyncio.gather(getter, *waiters, return_exceptions=True)
    if getter.done() and not getter.cancelled():
        return getter.result()
    return None
