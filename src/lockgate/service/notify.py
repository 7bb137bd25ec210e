"""Telling systemd how the daemon is doing: the sd_notify protocol, without a C library.

The service (``Type=notify``) sends ``READY=1`` once the store is recovered and commands are taken,
``STATUS=…`` as it goes, ``WATCHDOG=1`` from its event loop, and ``STOPPING=1`` on SIGTERM, each
as one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace). Where that variable is unset (a terminal, a test) every call does nothing. A
failed send is logged and swallowed: systemd's view of the daemon is never a reason for it to
stop; a watchdog that goes unfed is systemd's to act on.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Notifier:
    """Where the notifications go; ``address`` None sends nothing."""

    address: str | bytes | None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The socket ``$NOTIFY_SOCKET`` names: a path, or ``@name`` (the abstract namespace)."""
        environ = os.environ if environ is None else environ
        name = environ.get("NOTIFY_SOCKET", "")
        if not name:
            return cls(None)
        if name.startswith("@"):
            return cls(b"\0" + name[1:].encode())
        return cls(name)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram; True if sent, or if there is no socket."""
        if self.address is None:
            return True
        # "replace": a status built from a device's text must not fail to encode.
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            # Never block the event loop: a full socket buffer is a failed send, logged.
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.sendto(message, self.address)
        except (OSError, ValueError) as err:  # ValueError: a NUL inside the socket's path
            log.warning(
                "notify_failed", fields=[f.split("=", 1)[0] for f in fields], error=str(err)
            )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))


def _status(status: str | None) -> tuple[str, ...]:
    # One line: a newline would start another field of the datagram.
    return () if status is None else ("STATUS=" + " ".join(status.splitlines()),)


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """The watchdog's timeout in seconds, if systemd set one for this process (else None).

    ``$WATCHDOG_USEC`` holds it; ``$WATCHDOG_PID``, when set, names the process it is meant for,
    so a child that inherited the environment does not feed its parent's watchdog.
    """
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1_000_000


async def feed_watchdog(notifier: Notifier, interval_s: float | None) -> None:
    """Send ``WATCHDOG=1`` from the event loop every half ``interval_s``, until cancelled.

    It runs as a task of the daemon's own loop, so a loop that is stuck (a blocking call, a busy
    coroutine) stops feeding it and systemd restarts the daemon. Without an interval or a socket
    it returns at once.
    """
    if interval_s is None or not notifier.enabled:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval_s / 2)
