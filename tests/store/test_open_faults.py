"""A database that is not what this station wrote is refused at open, by name, never served.

Each fault is made the way it happens to a station: a file deleted or cut to zero bytes by a
careless hand or a broken filesystem, cut short by a disk that lost its tail, bits flipped by a
failing card, a row written by something else, a file the service's user may not write. Each
gives its documented outcome (docs/store.md, "When the file is not sound"), and ``fresh=True`` sets
the old files aside and starts anew.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from lockgate.model import Admission, ErrorCode
from lockgate.store import (
    Store,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
    StoreUnusableError,
    load_station_key,
)
from lockgate.store.database import marker_path
from tests.engine.harness import STATION, STATION_KEY, Harness, model_locks
from tests.engine.radio_model import ModelRadio


async def station_with_history(path: Path) -> None:
    """A station that has run: a provisioned lock, commands, an outbox; closed cleanly."""
    harness = await Harness(path, ModelRadio(*model_locks())).start()
    try:
        for n in range(30):
            await harness.send(id=f"c{n}", command="book", bike="FR1540", user_id=f"u{n}")
        await harness.engine.wait_idle(5)
    finally:
        await harness.close()


def store(path: Path, *, fresh: bool = False) -> Store:
    return Store(path, station=STATION, key=STATION_KEY, fresh=fresh)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_first_start_creates_owner_only_files_and_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "state" / "lockgate.db"
    async with store(path) as opened:
        await opened.set_retained("status", b"{}")  # a write, so the WAL is there
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        assert {p.name: mode(p) for p in (path, wal, marker_path(path))} == {
            path.name: 0o600,
            wal.name: 0o600,
            marker_path(path).name: 0o600,
        }
    key_file = tmp_path / "state" / "store.key"
    load_station_key(key_file, environ={})
    assert mode(key_file) == 0o600


async def test_files_left_readable_by_others_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    path.chmod(0o644)
    async with store(path):
        assert mode(path) == 0o600


async def test_a_vanished_database_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    path.unlink()
    with pytest.raises(StoreMissingError, match=str(path)) as raised:
        await store(path).open()
    assert raised.value.path == path
    assert "vanished" in str(raised.value)
    assert not path.exists(), "a refused open must not create the file"


async def test_a_database_cut_to_zero_bytes_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    path.write_bytes(b"")
    with pytest.raises(StoreMissingError, match="empty"):
        await store(path).open()
    assert path.stat().st_size == 0, "left as found, for the operator"


async def test_fresh_sets_the_old_files_aside_and_starts_anew(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    path.write_bytes(b"")
    async with store(path, fresh=True) as opened:
        assert await opened.command("c1") is None
        names = sorted(p.name.split(".unusable-")[0] for p in opened.set_aside)
        assert names == ["lockgate.db", "lockgate.db.created"]
        assert all(p.exists() for p in opened.set_aside)
    async with store(path) as again:  # the new database is this station's from now on
        assert again.schema_found > 0


async def test_a_truncated_database_is_refused_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreCorruptError, match=str(path)):
        await store(path).open()


@pytest.mark.parametrize("where", ["header", "first table page"])
async def test_flipped_bits_in_the_structure_are_refused_as_corrupt(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    data = bytearray(path.read_bytes())
    data[{"header": 20, "first table page": 4096}[where]] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=str(path)):
        await store(path).open()


async def test_a_flipped_bit_in_stored_text_is_found_when_the_row_is_read(tmp_path: Path) -> None:
    """quick_check sees structure, not values (SQLite keeps no checksums): a value made unreadable
    is reported as damage of the named file when its row is read, never as a bare error."""
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    data = bytearray(path.read_bytes())
    at = data.index(b'"user_id": "u7"')  # the command row's parameters (the outbox is acked away)
    data[at + 12] = 0xFF  # not UTF-8
    path.write_bytes(bytes(data))
    async with store(path) as opened:
        assert await opened.command("c6") is not None
        with pytest.raises(StoreCorruptError, match=str(path)):
            await opened.command("c7")


async def test_a_bad_row_is_named_not_a_bare_value_error(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE command SET state = 'SOMETHING', ended_at = NULL WHERE id = 'c3'")
        db.execute("UPDATE command SET events = 'not json' WHERE id = 'c4'")
    async with store(path) as opened:
        for command_id in ("c3", "c4"):
            with pytest.raises(StoreCorruptError, match=f"{path}.*'{command_id}'"):
                await opened.command(command_id)
        with pytest.raises(StoreCorruptError):
            await opened.unfinished_commands()


def test_a_database_the_service_may_not_write_is_refused_by_name(tmp_path: Path) -> None:
    """Opened by a user who may read but not write the file and its directory. Root writes
    anything, so as root the open runs in a forked child that has become ``nobody``."""
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "lockgate.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE x (y)")
    path.chmod(0o444)
    for directory in (tmp_path, folder):
        directory.chmod(0o555)
    try:
        kind, message = _open_in_child(path)
    finally:
        for directory in (tmp_path, folder):
            directory.chmod(0o755)
    assert (kind, message) == ("StoreError", f"{path}: cannot be opened (Permission denied)")


def _open_in_child(path: Path) -> tuple[str, str]:
    """Forks; the child (as ``nobody`` when root) opens the store and reports how it failed."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no return, only the answer down the pipe
        outcome = ["nothing", "opened"]
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            asyncio.run(store(path).open())
        except StoreError as err:
            outcome = [type(err).__name__, str(err)]
        except BaseException as err:  # reported to the parent, whose assertion then fails
            outcome = [type(err).__name__, repr(err)]
        os.write(writer, json.dumps(outcome).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        report = answer.read()
    os.waitpid(pid, 0)
    kind, message = json.loads(report)
    return str(kind), str(message)


def test_the_unusable_errors_are_store_errors() -> None:
    """The service catches StoreUnusableError at open to exit with IO_ERROR (74)."""
    assert issubclass(StoreMissingError, StoreUnusableError)
    assert issubclass(StoreCorruptError, StoreUnusableError)
    assert issubclass(StoreUnusableError, StoreError)


async def test_a_request_whose_stored_record_is_damaged_is_answered_not_raised(
    tmp_path: Path,
) -> None:
    """Raising would leave the MQTT message unacknowledged, delivered again for ever."""
    path = tmp_path / "lockgate.db"
    await station_with_history(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE command SET state = 'SOMETHING' WHERE id = 'c5'")
    harness = await Harness(path, ModelRadio(*model_locks())).start()
    try:
        submission = await harness.send(id="c5", command="book", bike="FR1540", user_id="u5")
        assert (submission.admission, submission.error_code) == (
            Admission.REJECTED,
            ErrorCode.INTERNAL,
        )
        errors = [doc for topic, doc in await harness.messages() if topic == "errors"]
        assert errors[-1]["correlation_id"] == "c5"
        assert errors[-1]["status_code"] == 500
    finally:
        await harness.close()
