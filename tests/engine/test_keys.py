"""Keys never rest in clear: not in the database, its WAL or its shared memory, not in a log line,
not in a published message; provisioned credentials are sealed and survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from lockgate.model import CommandState, ErrorCode
from lockgate.protocol.credentials import ShareeCredentials, signed_byte_string
from lockgate.store import StationKey, Store, StoreKeyError
from tests.engine.harness import (
    K_SEED,
    K_U,
    LTK,
    NOBOND_JSON,
    PHONE_ID,
    SHAREE,
    SHAREE_JSON,
    STATION,
    Harness,
    model_locks,
)
from tests.engine.radio_model import ModelRadio
from tests.keyforms import forms

# The command's own key pair for FR1541: different from the provisioned ones.
CMD_SEED = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
CMD_U = bytes.fromhex("a0b1c2d3e4f5061728394a5b6c7d8e9f1122334455667788")
CMD = ShareeCredentials(CMD_SEED, CMD_U)
CMD_JSON = {"K_seed": list(CMD_SEED), "K_u": signed_byte_string(CMD_U)}
SECRETS = {
    "K_seed": K_SEED,
    "K_u": K_U[:20],  # its last four bytes are zeros, which any file holds
    "phone_id": PHONE_ID,
    "ltk": LTK,
    "command K_seed": CMD_SEED,
    "command K_u": CMD_U,
}


def leaks(blob: bytes) -> list[str]:
    return [name for name, secret in SECRETS.items() for form in forms(secret) if form in blob]


def files(path: Path) -> dict[str, bytes]:
    found = {}
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            found[candidate.name] = candidate.read_bytes()
    return found


async def exercise(h: Harness) -> None:
    h.radio.locks["FR1541"].credentials = CMD
    assert (await h.run(command="provision", bike="FR1540", credentials=SHAREE_JSON)).state is (
        CommandState.SUCCESS
    )
    assert (await h.run(command="provision", bike="FR1542", credentials=NOBOND_JSON)).state is (
        CommandState.SUCCESS
    )
    fields = {"id": "k1", "command": "unlock", "bike": "FR1541", "credentials": CMD_JSON}
    assert (await h.run(**fields)).state is CommandState.SUCCESS
    await h.send(**fields)  # repeated
    await h.send(**{**fields, "user_id": "other"})  # conflict
    await h.run(command="unlock", bike="FR9999", credentials=CMD_JSON)  # rejected: not found
    await h.run(command="lock", bike="FR1541", credentials={"K_seed": CMD_JSON["K_seed"]})
    await h.run(command="lock", bike="FR1540")  # with the provisioned credentials


async def test_no_key_byte_in_the_database_files_logs_or_messages(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    radio = ModelRadio(*model_locks())
    with capture_logs() as logs:
        station = await Harness(path, radio).start()
        try:
            await exercise(station)
            messages = b"\n".join(
                row.payload for row in await station.store.queued(after=0, limit=100_000)
            ) + b"\n".join(row.payload for row in await station.store.unacknowledged_retained())
            open_files = files(path)
        finally:
            await station.close()
    assert len(open_files["lockgate.db-wal"]) > 0  # the WAL was searched while it held writes
    for name, blob in {
        **open_files,
        **{f"{k} (closed)": v for k, v in files(path).items()},
    }.items():
        assert leaks(blob) == [], f"key material in clear in {name}"
    assert leaks(messages) == []
    assert leaks(repr(logs).encode()) == []
    assert logs  # the logs were captured, so the search above looked at something


async def test_provisioned_credentials_survive_a_restart_and_can_be_removed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lockgate.db"
    radio = ModelRadio(*model_locks())
    station = await Harness(path, radio).start()
    try:
        await station.run(command="provision", bike="FR1540", credentials=SHAREE_JSON)
    finally:
        await station.close()
    radio.standing.clear()
    station = await Harness(path, radio).start()
    try:
        assert radio.standing["FR1540"] == SHAREE
        assert radio.standing["FR1541"] is None
        record = await station.run(command="unlock", bike="FR1540")  # no key in the command
        assert record.state is CommandState.SUCCESS
        removed = await station.run(command="provision", bike="FR1540", credentials={})
        assert removed.reason == "credentials removed"
        assert radio.standing["FR1540"] is None
        record = await station.run(command="lock", bike="FR1540")
        assert record.error_code is ErrorCode.MISSING_CREDENTIALS
        assert await station.store.credentials() == {}
    finally:
        await station.close()


async def test_sealed_credentials_do_not_open_with_another_station_key(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    station = await Harness(path, ModelRadio(*model_locks())).start()
    try:
        await station.run(command="provision", bike="FR1540", credentials=SHAREE_JSON)
    finally:
        await station.close()
    other = StationKey.from_bytes(bytes(32))
    async with Store(path, station=STATION, key=other) as store:
        with pytest.raises(StoreKeyError, match="FR1540"):
            await store.credentials()
