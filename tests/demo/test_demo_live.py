"""The demo with everything behind it: the README's command completes its tour headless; the view,
driven by its keys, unlocks a bike through the real daemon; Ctrl-C leaves nothing behind.

These start the real daemon (``python -m lockgate run``) against the demo's amqtt broker and the
simulator, as ``lockgate demo`` does.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lockgate.demo.app import DemoApp
from lockgate.demo.session import Demo, DemoOptions, running_demo
from lockgate.demo.tour import TOUR
from lockgate.model import LockState

ROOT = Path(__file__).resolve().parents[2]
TIME_SCALE = "0.1"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def bus_directory(address: str) -> Path:
    match = re.search(r"path=([^,]+)", address)
    assert match is not None, address
    return Path(match.group(1)).parent


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - a screen signals nothing: poll it
            await asyncio.sleep(0.1)


def test_the_readme_demo_command_completes_its_tour_headless() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo"), "--headless", "--time-scale", TIME_SCALE],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in TOUR:
        assert step.caption in out
    assert out.count("        ok   ") == len(TOUR), out
    assert "FAIL" not in out
    assert "tour complete" in out


def test_interrupted_headless_it_stops_everything_it_started(tmp_path: Path) -> None:
    """SIGINT, as Ctrl-C on a terminal sends to the demo, mid-tour."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "demo", "--headless", "--time-scale", TIME_SCALE],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("[ 3/"):  # the station runs and the tour is under way
                break
        started = children_of(process.pid)
        assert started, "the demo runs its daemon and its bus as child processes"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert not [pid for pid in started if alive(pid)]
    assert list(tmp_path.iterdir()) == []  # no directory, no socket left in TMPDIR


def test_ctrl_c_on_a_terminal_stops_the_view_and_everything_behind_it(tmp_path: Path) -> None:
    """The real command in a real terminal (a pty): the view takes Ctrl-C as a key and quits."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "TERM": "xterm-256color"}
    command = [str(ROOT / ".venv" / "bin" / "lockgate"), "demo", "--no-tour", "--time-scale", "0.1"]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: become the demo, or end at once
        try:
            os.execve(command[0], command, env)
        finally:
            os._exit(127)
    screen = b""

    def read_for(seconds: float) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.1)
            if ready:
                try:
                    screen += os.read(terminal, 65536)
                except OSError:
                    return

    try:
        deadline = time.monotonic() + 60
        while b"station pid" not in screen and time.monotonic() < deadline:
            read_for(0.5)
        assert b"station pid" in screen, "the view shows the running station"
        started = children_of(pid)
        assert len(started) >= 2, "the daemon and the simulator's bus run as children"
        os.write(terminal, b"\x03")  # Ctrl-C, as the keyboard sends it
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            read_for(0.2)
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not [child for child in started if alive(child)]
    assert list(tmp_path.iterdir()) == []


async def test_the_view_unlocks_a_bike_by_its_keys_and_ctrl_c_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile  # noqa: PLC0415

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    before = children_of(os.getpid())
    captured: dict[str, object] = {}

    async with running_demo(DemoOptions(time_scale=float(TIME_SCALE))) as demo:
        captured.update(
            port=demo.broker.port,
            directory=demo.directory,
            bus=bus_directory(demo.sim.bus_address),
            station_pid=demo.station.pid,
        )
        app = DemoApp(demo, tour=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: lock_state(demo, "FR1540") is not None)
            # Keys: FR1540 is the first row; u unlocks it as the backend would.
            await pilot.press("u")
            await until(lambda: lock_state(demo, "FR1540") is LockState.UNLOCKED)
            await until(lambda: row_text(app, "FR1540").count("unlocked") == 1)
            assert await demo.bolt("FR1540") == "unlocked"
            captured["children"] = children_of(os.getpid()) - before
            await pilot.press("ctrl+c")
        assert not app.is_running

    assert captured["children"], "the daemon and the bus ran as children"
    assert left_behind(captured, before, tmp_path) == []


def left_behind(captured: dict[str, object], before: set[int], tmp: Path) -> list[str]:
    """Whatever of the demo is still there: processes, the broker's port, directories, sockets."""
    left = [f"process {pid}" for pid in children_of(os.getpid()) - before]
    if alive(int(str(captured["station_pid"]))):
        left.append("the daemon")
    if listening(int(str(captured["port"]))):
        left.append("the broker's port")
    left += [
        f"directory {d}" for d in (captured["directory"], captured["bus"]) if Path(str(d)).exists()
    ]
    left += [f"{entry} in TMPDIR" for entry in tmp.iterdir()]
    return left


def lock_state(demo: Demo, bike: str) -> LockState | None:
    document = demo.backend.picture.locks.get(bike)
    return None if document is None else document.lock_state


def row_text(app: DemoApp, bike: str) -> str:
    return next((line for line in app.screen_text().splitlines() if bike in line), "")
