"""Backpressure on the link's socket: requests beyond a few wait at the broker, not in memory.

Part of the MQTT link (:mod:`lockgate.mqtt.link`). aiomqtt reads the socket whenever it is readable
and puts every PUBLISH it decodes on an unbounded queue; the link's intake takes them one at a time
and answers each durably, a few hundred a second. A backend (or anyone) publishing faster on
``commands`` would fill that queue without limit (about 9 KB per waiting request), and aiomqtt's own
bound (``max_queued_incoming_messages``) drops messages, which QoS 1 requests must never be.

So the link reads the socket itself: :class:`ReadGate` replaces aiomqtt's reader callback on the
event loop (:func:`~lockgate.mqtt.internals.take_over_reading`) with one that does the same (paho's
``loop_read``), and stops reading (removes the reader) once ``limit`` received messages wait for the
intake; it reads again when the intake has taken them down to half. Unread bytes stay in the
kernel's buffer, TCP's window closes, and the broker keeps the rest (and may queue them for the
station as it does through an outage). A read takes up to one packet per message in flight (paho's
own rule), so at most ``limit`` + the window + 1 messages wait at once.

Keepalive goes on: pings still go out while reading stops (paho's timer writes them), and their
answer is read when reading resumes; a pause never lasts longer than half the keepalive, after which
the gate reads again whatever waits, so a slow intake cannot make paho think the broker is gone.
"""

from __future__ import annotations

import asyncio
import sys

import aiomqtt
import structlog

from lockgate.mqtt.internals import fail_connection, paho_of, take_over_reading

_log = structlog.get_logger(__name__)


class ReadGate:
    """Reads one connection's socket only while fewer than ``limit`` received messages wait.

    :meth:`install` once connected; :meth:`taken` after the intake took a message from
    ``client.messages``."""

    def __init__(self, client: aiomqtt.Client, *, limit: int, max_pause_s: float) -> None:
        self._client = client
        self._paho = paho_of(client)
        self._limit = limit
        self._resume_below = max(1, limit // 2)
        self._max_pause_s = max_pause_s
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._paused = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self.peak = 0
        """The most received messages that waited for the intake at once."""

    @property
    def waiting(self) -> int:
        """Received messages waiting for the intake."""
        return len(self._client.messages)

    def install(self) -> None:
        """Takes over reading the socket from aiomqtt (whose reader was added at connect)."""
        self._fd = take_over_reading(self._loop, self._client, self._read)

    def taken(self) -> None:
        """The intake took one: read again once few wait."""
        if self._paused and self.waiting < self._resume_below:
            self._resume()

    def release(self) -> None:
        """No intake any more (the link is stopping): read freely, so that PUBACKs still come."""
        self._limit = sys.maxsize
        if self._paused:
            self._resume()

    def close(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None

    def _read(self) -> None:
        # As aiomqtt's own reader: paho reads and decodes; a TLS socket may hold decrypted bytes
        # the selector cannot see, so it is read until it holds none, unless the gate closes.
        if self._paused:
            return  # a read scheduled at a resume, after which the gate closed again
        try:
            while True:
                self._paho.loop_read()
                waiting = self.waiting
                self.peak = max(self.peak, waiting)
                if waiting >= self._limit:
                    self._pause()
                    return
                sock = self._paho.socket()
                pending = getattr(sock, "pending", None)
                if pending is None or pending() <= 0:
                    return
        except Exception as error:  # noqa: BLE001 - as aiomqtt: a broken socket ends the connection
            fail_connection(self._client, error)

    def _pause(self) -> None:
        if self._paused or not self._current():
            return
        self._loop.remove_reader(self._fd)
        self._paused = True
        self._pause_timer = self._loop.call_later(self._max_pause_s, self._overdue)

    def _overdue(self) -> None:
        self._pause_timer = None
        if self._paused:
            _log.warning(
                "the intake is slow: reading requests again to keep the connection alive",
                waiting=self.waiting,
                paused_s=self._max_pause_s,
            )
            self._resume()

    def _resume(self) -> None:
        self.close()
        self._paused = False
        if not self._current():
            return
        self._loop.add_reader(self._fd, self._read)
        # What a TLS socket decrypted before the pause is not seen by the selector: read it now.
        self._loop.call_soon(self._read)

    def _current(self) -> bool:
        """The socket the gate was installed on is still the connection's (not closed)."""
        sock = self._paho.socket()
        return sock is not None and sock.fileno() == self._fd
