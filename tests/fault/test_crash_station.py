"""SIGKILL at random instants, against the simulator: nothing lost, nothing run twice.

The whole core of the gateway (store, engine, real BLE driver over bleak) runs in a process of its
own (tests/fault/crash_station.py) against the simulator, which runs in this process on a private
dbus-daemon and so outlives every kill, as a lock's bolt does. The station is killed with SIGKILL
at random instants during a stream of commands, started again, recovers, and is sent the whole
stream again (a backend re-sends until it sees a receipt). At the end:

- every command ended exactly once in a final state, its document versions without gaps;
- no lock was told to open more often than unlock commands were sent for it (the simulated lock
  counts the open commands it accepted, moving or not);
- no outbox message was lost on its way to the "broker" (an append-only file the worker syncs
  before it acknowledges), and event ``seq`` has no gap.

``LOCKGATE_CRASH_KILLS`` (default 50) sets the number of kills; ``LOCKGATE_CRASH_SEED`` replays a
run's instants.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate.contract.times import format_time
from lockgate.model import Profile
from lockgate.protocol.credentials import signed_byte_string
from lockgate.store import Store
from lockgate_sim.testing import run_simulator
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig
from tests.fault.crash_station import STATION_KEY, station
from tests.fault.zygote import Zygote, check_each_command_ended_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = int(os.environ.get("LOCKGATE_CRASH_KILLS", "50"))
WORKER = Path(__file__).parent / "crash_station.py"

LOCKS = [
    LockConfig(
        name="ISHAREIT-2200540",
        address="FC:3C:00:2A:2A:DD",
        profile=Profile.SHAREE,
        k_seed=signed_byte_string(bytes(range(40, 56))),
        k_u=signed_byte_string(bytes(range(60, 80)) + bytes(4)),
    ),
    LockConfig(
        name="ISHAREIT-2200541",
        address="FC:3C:00:2A:2A:DE",
        profile=Profile.SHAREE,
        k_seed=signed_byte_string(bytes(range(140, 156))),
        k_u=signed_byte_string(bytes(range(160, 180)) + bytes(4)),
    ),
    LockConfig(
        name="ILOCKIT-4500329",
        address="D4:12:99:00:45:03",
        profile=Profile.NOBOND,
        auth_id=3,
        phone_id="0011223344556677",
        ltk="a1" * 16 + "5c" * 16,
    ),
]
BIKES = ["FR1540", "FR1541", "FR1542"]
PROVISIONED = {"FR1540", "FR1542"}  # FR1541's keys come with each command, in memory only


def credentials(lock: LockConfig) -> dict[str, Any]:
    if lock.profile is Profile.SHAREE:
        return {"K_seed": lock.k_seed, "K_u": lock.k_u}
    return {"auth_id": lock.auth_id, "phone_id": lock.phone_id, "ltk": lock.ltk}


def stream(deadline: datetime) -> list[dict[str, Any]]:
    """Per bike: provisioning (two of three), then rentals and plain moves, round after round."""
    requests: list[dict[str, Any]] = []
    for bike, lock in zip(BIKES, LOCKS, strict=True):
        keys = credentials(lock)
        if bike in PROVISIONED:
            requests.append(
                {"id": f"{bike}-p", "command": "provision", "bike": bike, "credentials": keys}
            )
        for round_ in range(max(3, -(-2 * KILLS // 27))):  # about two commands a run
            user = f"u{round_}"
            for step, fields in enumerate(
                [
                    {"command": "force-cancel-booking"},
                    {"command": "book", "user_id": user},
                    {"command": "unlock", "user_id": user, "credentials": keys},
                    {"command": "lock", "user_id": user, "credentials": keys},
                    {"command": "unlock", "user_id": user, "credentials": keys},
                    {"command": "lock", "user_id": user, "end_rental": True, "credentials": keys},
                    {"command": "force-unlock", "reason": "TESTING", "credentials": keys},
                    {"command": "force-lock", "credentials": keys},
                    {"command": "sync-device"},
                ]
            ):
                request = {
                    "id": f"{bike}-{round_}-{step}",
                    "bike": bike,
                    "timeout_at": format_time(deadline),
                    **fields,
                }
                if bike in PROVISIONED:
                    request.pop("credentials", None)
                requests.append(request)
    return requests


@pytest.mark.timeout(900)
async def test_sigkill_against_the_simulator_loses_nothing_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("LOCKGATE_CRASH_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    print(f"LOCKGATE_CRASH_SEED={seed} LOCKGATE_CRASH_KILLS={KILLS}")
    world = WorldConfig.model_validate(
        {"adapter": AdapterConfig(connection_slots=5), "lock": LOCKS}
    )
    requests = stream(datetime.now(UTC) + timedelta(minutes=30))
    published = tmp_path / "published.jsonl"
    released = tmp_path / "released"
    per_run = -(-len(requests) // KILLS)
    log = tmp_path / "station.log"
    async with run_simulator(world, time_scale=0.05) as sim:
        config = tmp_path / "crash.json"
        config.write_text(
            json.dumps(
                {
                    "db": str(tmp_path / "lockgate.db"),
                    "bus": sim.bus_address,
                    "published": str(published),
                    "released": str(released),
                    "log": str(log),
                    "locks": [
                        {
                            "bike": bike,
                            "name": lock.name,
                            "address": lock.address,
                            "profile": lock.profile.value,
                        }
                        for bike, lock in zip(BIKES, LOCKS, strict=True)
                    ],
                    "requests": [json.dumps(r) for r in requests],
                }
            )
        )
        async with Zygote.started(WORKER, config, log) as zygote:
            for run in range(KILLS):
                released.write_text(str(min(len(requests), (run + 1) * per_run)))
                await zygote.run_and_kill(rng.uniform(0.05, 1.0))
            released.write_text(str(len(requests)))
            await zygote.run_to_the_end(timeout_s=300)
        bolts = {view.name: view for view in (await sim.control.show()).locks}

    config_locks = json.loads(config.read_text())
    async with Store(
        tmp_path / "lockgate.db", station=station(config_locks), key=STATION_KEY
    ) as store:
        records = {r["id"]: await store.command(r["id"]) for r in requests}
        depth = await store.outbox_depth()
        last_seq = await store.seq()
    messages: list[dict[str, Any]] = []
    torn = 0
    for line in filter(None, published.read_text().splitlines()):
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError:
            # A write a kill cut short (crash_station.Broker): the worker died before it
            # acknowledged the message, so a later run published it again, whole.
            torn += 1
    assert torn <= KILLS

    # Every command ended, once: one final document (published again after a kill, never a
    # different one), versions 1..n without gaps.
    check_each_command_ended_once(
        records, (json.loads(m["payload"]) for m in messages if m["kind"] == "command")
    )

    # No lock was told to open more often than it was asked to.
    opens = Counter(r["bike"] for r in requests if r["command"] in ("unlock", "force-unlock"))
    for bike, lock in zip(BIKES, LOCKS, strict=True):
        assert bolts[lock.name].commanded_open <= opens[bike], (bike, bolts[lock.name])

    # Nothing waits in the outbox, and every event reached the broker: seq 1..last, no gap.
    assert depth == 0
    seqs = {json.loads(m["payload"])["seq"] for m in messages if m["kind"] == "event"}
    assert seqs == set(range(1, last_seq + 1))

    outcomes = Counter(
        (record.state.value, record.error_code.value if record.error_code else "")
        for record in records.values()
        if record is not None
    )
    opened = {lock.name: bolts[lock.name].commanded_open for lock in LOCKS}
    print(f"outcomes: {dict(outcomes)}; open commands the locks accepted: {opened}")
    # The kills must have landed mid-command, else this test proved little: some commands were
    # settled by reading the lock after a restart, or lost their in-memory keys to a kill.
    restarted = sum(1 for r in records.values() if r is not None and "restart" in (r.reason or ""))
    print(f"settled after a restart: {restarted}")
    assert outcomes[("SUCCESS", "")] > 0
    assert restarted + outcomes[("ERROR", "ERRORS.MISSING_CREDENTIALS")] > 0
