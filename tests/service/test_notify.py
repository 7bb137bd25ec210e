"""sd_notify: what systemd would read from its notify socket, read here from a real one."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from lockgate.service.notify import Notifier, feed_watchdog, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket bound where systemd's would be (a short path: sun_path is 108 bytes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(10)
        yield sock


def _read(receiver: socket.socket) -> list[str]:
    return receiver.recv(4096).decode().split("\n")


def test_each_notification_is_one_datagram(receiver: socket.socket) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": receiver.getsockname()})
    assert notifier.ready("3 locks read\nbroker up")
    assert notifier.status("reading FR1540")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert _read(receiver) == ["READY=1", "STATUS=3 locks read broker up"]
    assert _read(receiver) == ["STATUS=reading FR1540"]
    assert _read(receiver) == ["WATCHDOG=1"]
    assert _read(receiver) == ["STOPPING=1"]


def test_an_abstract_socket() -> None:
    name = f"lockgate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(10)
        assert Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).ready()
        assert _read(sock) == ["READY=1"]


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready()


def test_a_failed_send_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        assert not notifier.ready("up")
    assert logs == [
        {
            "event": "notify_failed",
            "fields": ["READY", "STATUS"],
            "error": "[Errno 2] No such file or directory",
            "log_level": "warning",
        }
    ]


def test_odd_text_and_odd_sockets_never_raise(receiver: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": receiver.getsockname()})
    assert notifier.status("lock \udcff said ISHAREIT")
    assert _read(receiver) == ["STATUS=lock ? said ISHAREIT"]
    with capture_logs() as logs:
        assert not Notifier.from_environment({"NOTIFY_SOCKET": "/tmp/a\0b"}).watchdog()
        assert not Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path)}).watchdog()
        assert not notifier.status("x" * 1_000_000)  # larger than a datagram may be
    assert [log["event"] for log in logs] == ["notify_failed"] * 3


def test_the_watchdog_interval_is_for_this_process_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "-5"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None


async def test_the_watchdog_is_fed_from_the_loop_until_cancelled(receiver: socket.socket) -> None:
    receiver.settimeout(0)
    loop = asyncio.get_running_loop()
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": receiver.getsockname()})
    feeder = asyncio.create_task(feed_watchdog(notifier, 0.05))
    try:
        async with asyncio.timeout(30):
            for _ in range(3):
                assert await loop.sock_recv(receiver, 4096) == b"WATCHDOG=1"
    finally:
        feeder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await feeder


async def test_no_watchdog_no_feeding(receiver: socket.socket) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": receiver.getsockname()})
    async with asyncio.timeout(10):
        await feed_watchdog(notifier, None)  # returns at once: systemd asked for no watchdog
        await feed_watchdog(Notifier(None), 0.05)
    receiver.settimeout(0)
    with pytest.raises(BlockingIOError):
        receiver.recv(4096)
