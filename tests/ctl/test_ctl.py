"""``lockgate ctl`` against ``lockgate run`` and mosquitto: every exit code, and ``watch --json``.

ctl runs as a subprocess exactly as a field engineer runs it; the station is the real daemon on
the simulator. The tests' own backend (tests/e2e/backend.py) watches the broker beside it, so what
ctl claims is checked against what the station published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.brokers import running_mosquitto
from tests.ctl.harness import ctl, ctl_command, station, watching
from tests.e2e.backend import backend
from tests.e2e.station import STATION, bike_of, keys_of, nobond, sharee, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def private_file(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


@pytest.mark.slow
async def test_each_exit_code_and_watch_json(tmp_path: Path) -> None:
    opened, refused = sharee(1), nobond(2)
    async with station(tmp_path, world(opened, refused)) as s:
        async with watching(s.broker, "--json") as watch, watching(s.broker) as table:
            # The retained status comes first (the watch subscribed after the station was up).
            first = json.loads(await watch.line())
            assert first["topic"] == "status"
            assert first["retained"] is True
            assert first["payload"]["state"] == "online"

            # 0: an unlock that succeeds, its keys on the command line (with the warning).
            keys = keys_of(opened)
            bike = bike_of(opened)
            done = await ctl(
                s.broker,
                "unlock",
                bike,
                "--user-id",
                "u-6103",
                "--k-seed",
                str(keys["K_seed"]),
                "--k-u",
                str(keys["K_u"]),
            )
            assert done.code == 0, done.stderr
            final = json.loads(done.stdout)
            assert final["state"]["value"] == "SUCCESS"
            assert final["name"] == "unlock"
            assert final["bike"] == bike
            assert "process list" in done.stderr or "every user" in done.stderr
            for key in (str(keys["K_seed"]), str(keys["K_u"])):
                assert key not in done.stdout + done.stderr
            # What ctl printed is what the station published last for that id.
            assert s.backend.documents(f"commands/{final['id']}")[-1] == final
            assert (await s.sim.control.lock(opened.name)).bolt == "unlocked"

            # The watch saw the lock move, as JSON lines a parser reads.
            seen: list[dict[str, Any]] = []
            while not any(
                m["topic"] == "events"
                and m["payload"].get("type") == "lock_state"
                and m["payload"].get("lock_state") == "unlocked"
                for m in seen
            ):
                seen.append(json.loads(await watch.line()))
            topics = {m["topic"] for m in seen}
            assert f"locks/{bike}" in topics
            assert f"commands/{final['id']}" in topics
            assert "commands" not in topics  # the request itself (with its keys) is never shown
            states = [
                m["payload"]["lock_state"]
                for m in seen
                if m["topic"] == "events" and m["payload"].get("type") == "lock_state"
            ]
            assert states[-2:] == ["unlocking", "unlocked"]

            # The table (into a pipe: printed anew per message) shows the lock's new row.
            row: list[str] = []
            while row[1:3] != ["unlocked", "occupied"]:
                line = await table.line()
                row = line.split() if line.startswith(bike + " ") else []
            assert row[3:5] == ["u-6103", "HEALTHY"]
            assert any(line.startswith(f"station {STATION}: online") for line in table.lines)

            # 1: an unlock the lock refuses (wrong keys), the keys from a file.
            wrong = private_file(tmp_path / "wrong.json", dict(keys_of(refused), ltk="00" * 32))
            failed = await ctl(
                s.broker, "unlock", bike_of(refused), "--credentials-file", str(wrong)
            )
            assert failed.code == 1, failed.stderr
            document = json.loads(failed.stdout)
            assert document["state"]["value"] == "ERROR"
            assert document["error_code"] == "ERRORS.AUTH_FAILED"
            assert "warning" not in failed.stderr
            assert (await s.sim.control.lock(refused.name)).bolt == "locked"

            # Ctrl-C ends the watches with 0; every line of --json was one JSON object.
            code, stderr = await watch.interrupt()
            assert code == 0, stderr
            code, stderr = await table.interrupt()
            assert code == 0, stderr
            assert all(isinstance(json.loads(line), dict) for line in watch.lines)

        # The same command line with the same id is a repeat: the stored end, nothing runs twice.
        again = await ctl(
            s.broker,
            "unlock",
            bike_of(refused),
            "--credentials-file",
            str(wrong),
            "--id",
            document["id"],
        )
        assert again.code == 1
        assert json.loads(again.stdout) == document

        # 2: bad usage, refused before anything is sent.
        before = len(s.backend.messages())
        usage = [
            ("book", bike),  # book needs --user-id
            ("lock", bike, "--power-cycle"),  # an option of another command
            ("force-unlock", bike),  # --reason is required
            ("unlock", bike, "--id", "no spaces"),
            ("unlock", bike, "--credentials-file", str(tmp_path / "missing.json")),
            ("unlock", bike, "--credentials-file", str(wrong), "--ltk", "00" * 32),
            ("fly", bike),
        ]
        for arguments in usage:
            bad = await ctl(s.broker, *arguments)
            assert bad.code == 2, (arguments, bad.stderr)
            assert bad.stdout == ""
            assert "lockgate" in bad.stderr
        assert len(s.backend.messages()) == before  # nothing was published


async def test_no_station_is_exit_3(tmp_path: Path) -> None:
    async with running_mosquitto(tmp_path / "broker") as broker:
        silent = await ctl(broker, "book", "B2200501", "--user-id", "u-1", "--wait-s", "2")
        assert silent.code == 3
        assert silent.stdout == ""
        assert "did not answer" in silent.stderr

        # The broker goes while ctl waits for the receipt: exit 3 at once, said in one line.
        async with backend(broker.port, station=STATION) as peer:
            waiting = asyncio.create_task(
                ctl(broker, "book", "B2200501", "--user-id", "u-1", "--wait-s", "120")
            )
            await peer.wait_for(lambda: peer.messages("commands"))
        await broker.stop()
        dropped = await waiting
        assert dropped.code == 3
        assert "lost the broker" in dropped.stderr
        assert "Traceback" not in dropped.stderr
        await broker.start()
    # And with the broker gone too.
    unreachable = await ctl(broker, "book", "B2200501", "--user-id", "u-1", "--wait-s", "2")
    assert unreachable.code == 3
    assert "cannot reach the broker" in unreachable.stderr


async def test_watch_into_a_pipe_that_closes_ends_quietly(tmp_path: Path) -> None:
    """``ctl watch --json | head -n 1``: once head has its line and leaves, the watch ends with 0
    at its next message, without a traceback."""
    code_file, err_file = tmp_path / "code", tmp_path / "stderr"
    async with running_mosquitto(tmp_path / "broker") as broker:
        watch = shlex.join(ctl_command(broker, "watch", "--json"))
        pipeline = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            f"( {watch} 2>{shlex.quote(str(err_file))}; echo $? >{shlex.quote(str(code_file))} )"
            " | head -n 1",
            stdout=asyncio.subprocess.PIPE,
        )
        assert pipeline.stdout is not None
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            first = b""
            async with asyncio.timeout(60):
                while not code_file.exists() or not code_file.read_text():
                    status = {"station": STATION, "state": "online"}
                    topic = f"lockgate/v1/{STATION}/status"
                    await client.publish(topic, json.dumps(status), qos=1, retain=True)
                    if not first:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(0.5):
                                first = await pipeline.stdout.readline()
                    else:
                        await asyncio.sleep(0.2)
        await pipeline.wait()
    assert json.loads(first)["topic"] == "status"
    assert code_file.read_text().strip() == "0"
    assert "Traceback" not in err_file.read_text()
