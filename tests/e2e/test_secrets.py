"""No key and no password in anything the daemon prints, whatever path they took through it.

The broker demands a password (read from ``password_file``), the station key is a file, and keys
go through every path a request can take: a command with the right keys, one with wrong keys, a
provisioning, its removal, a request refused for a malformed key, a request that is not JSON with
keys in it, a conflict (the same id with other keys). The daemon runs at DEBUG, under the journal's
format and on a plain stream alike; its whole output is then searched for every key in every
form it could be written in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.protocol.credentials import NobondCredentials, ShareeCredentials
from lockgate_sim.testing import run_simulator
from tests.brokers import running_mosquitto
from tests.e2e.backend import backend, command
from tests.e2e.station import (
    STATION,
    Daemon,
    bike_of,
    keys_of,
    nobond,
    notify_socket,
    sharee,
    world,
    write_config,
)
from tests.keyforms import forms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PASSWORD = "corr3ct-h0rse-battery"


def secrets_of(lock_keys: dict[str, object]) -> dict[str, bytes]:
    if "K_seed" in lock_keys:
        sharee_keys = ShareeCredentials.parse(lock_keys["K_seed"], lock_keys["K_u"])
        return {"K_seed": sharee_keys.k_seed, "K_u": sharee_keys.k_u[:20]}
    nobond_keys = NobondCredentials.parse(
        lock_keys["auth_id"], lock_keys["phone_id"], lock_keys["ltk"]
    )
    return {"phone_id": nobond_keys.phone_id, "ltk": nobond_keys.ltk}


@pytest.mark.parametrize("journal", [False, True], ids=["plain", "journal"])
async def test_no_key_or_password_in_the_output(tmp_path: Path, journal: bool) -> None:
    locks = [sharee(21), nobond(22)]
    async with (
        running_mosquitto(tmp_path / "broker", users={STATION: PASSWORD}) as broker,
        run_simulator(world(*locks), time_scale=0.1, subprocess=True) as sim,
        notify_socket(tmp_path) as notify,
    ):
        (tmp_path / "mqtt.password").write_text(PASSWORD + "\n")
        config = write_config(
            tmp_path,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            mqtt=f'username = "{STATION}"\npassword_file = "{tmp_path / "mqtt.password"}"',
        )
        environ = {"NOTIFY_SOCKET": str(notify.path)}
        if journal:
            # JOURNAL_STREAM names stderr's device and inode: the daemon logs as for journald.
            log = tmp_path / "daemon.log"
            log.touch()
            info = log.stat()
            environ["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        daemon = Daemon(
            config, tmp_path / "daemon.log", environ=environ, arguments=("--log-level", "DEBUG")
        )
        secrets: dict[str, bytes] = {"mqtt password": PASSWORD.encode()}
        for lock in locks:
            secrets |= {f"{lock.name} {k}": v for k, v in secrets_of(keys_of(lock)).items()}
        wrong = dict(keys_of(locks[1]), ltk="5a" * 32)
        secrets["wrong ltk"] = bytes.fromhex("5a" * 32)
        async with backend(broker.port, station=STATION, password=PASSWORD) as peer:
            await daemon.start()
            try:
                await notify.wait_for("READY=1")
                secrets["station key"] = bytes.fromhex((tmp_path / "store.key").read_text().strip())
                for lock in locks:
                    unlock = command(bike_of(lock), "unlock", credentials=keys_of(lock))
                    done = await peer.run(unlock)
                    assert done["state"]["value"] == "SUCCESS", done
                refused = await peer.run(command(bike_of(locks[1]), "lock", credentials=wrong))
                assert refused["error_code"] == "ERRORS.AUTH_FAILED"
                provision = command(bike_of(locks[0]), "provision", credentials=keys_of(locks[0]))
                assert (await peer.run(provision))["state"]["value"] == "SUCCESS"
                conflict = dict(provision, credentials=keys_of(locks[1]))
                await peer.publish(json.dumps(conflict))
                short = dict(keys_of(locks[0]), K_u="[1, 2, 3]")
                malformed = await peer.run(
                    command(bike_of(locks[0]), "lock", credentials=short | {"extra": wrong["ltk"]})
                )
                assert malformed["error_code"] == "ERRORS.BAD_REQUEST"
                await peer.publish("{" + json.dumps({"credentials": keys_of(locks[1])}))
                await peer.wait_for(lambda: peer.messages("errors"))
                removal = command(bike_of(locks[0]), "provision", credentials={})
                assert (await peer.run(removal))["state"]["value"] == "SUCCESS"
                assert await daemon.terminate() == 0
            finally:
                await daemon.close()
        # What the station published (the requests on `commands` are the backend's own).
        published = b"\n".join(m.payload for m in peer.messages() if m.topic != "commands")
        assert published

    output = daemon.output().encode()
    assert b'"event": "ready"' in output
    assert b'"level": "debug"' in output  # the libraries' own debug lines are in it too
    if journal:
        assert output.lstrip().startswith(b"<")
    found = [
        name
        for name, secret in secrets.items()
        for form in forms(secret)
        if form in output or (name != "station key" and form in published)
    ]
    assert found == []
