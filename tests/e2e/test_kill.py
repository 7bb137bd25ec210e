"""The whole station killed (SIGKILL) at random instants while a backend keeps sending commands.

``lockgate run`` is killed as a power cut would end it, again and again, while a backend sends a
stream of commands per lock and re-sends each until it sees the receipt, as the contract asks.
After every kill the broker publishes the will (status offline, the dead run's boot_id); after
every restart the status is online with a new boot_id. At the end:

- every command has exactly one final state (repeats of the stored document agree with it), and
  its document versions run 1..n without a gap;
- no lock accepted more open or close commands than were sent for it (the simulator's counters);
- event ``seq`` runs without a gap and never repeats, across all restarts.

``LOCKGATE_E2E_KILLS`` (default 30) sets the number of kills; ``LOCKGATE_E2E_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.backend import FINAL, Backend, command
from tests.e2e.station import bike_of, keys_of, nobond, sharee, world
from tests.e2e.test_daemon import Site, site

KILLS = int(os.environ.get("LOCKGATE_E2E_KILLS", "30"))
SEED = int(os.environ.get("LOCKGATE_E2E_SEED", str(random.randrange(1 << 32))))
QUIET_S = 2.0  # far beyond the time from a request's delivery to its stored receipt

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(300 + 12 * KILLS),
]


async def online(backend: Backend, *, not_boot: str | None, timeout_s: float = 60) -> str:
    """The boot_id of the first online status that is not ``not_boot``'s."""

    def seen() -> str | None:
        status = backend.latest("status")
        if status and status["state"] == "online" and status["boot_id"] != not_boot:
            return str(status["boot_id"])
        return None

    return await backend.wait_for(seen, timeout_s)


async def sender(
    backend: Backend, bike: str, keys: dict[str, object], sent: list[dict[str, Any]]
) -> None:
    """Unlock, lock, unlock, …: each re-sent until its receipt, then the next one."""
    name = "unlock"
    while True:
        body = command(bike, name, credentials=keys)
        sent.append(body)
        await backend.send(body, resend_s=1.0, timeout_s=120)
        await asyncio.sleep(0.2)
        name = "lock" if name == "unlock" else "unlock"


async def test_sigkill_at_random_instants(tmp_path: Path) -> None:
    print(f"LOCKGATE_E2E_SEED={SEED}")
    chance = random.Random(SEED)
    locks = [sharee(10), sharee(11), nobond(12)]
    async with site(tmp_path, world(*locks)) as s:
        await s.daemon.start()
        boot = await online(s.backend, not_boot=None)
        # Standing credentials, so that commands recovered after a kill can still be settled.
        for lock in locks:
            provisioned = await s.backend.run(
                command(bike_of(lock), "provision", credentials=keys_of(lock))
            )
            assert provisioned["state"]["value"] == "SUCCESS", provisioned

        sent: list[dict[str, Any]] = []
        senders = [
            asyncio.create_task(sender(s.backend, bike_of(lock), keys_of(lock), sent))
            for lock in locks
        ]
        wills: list[str] = []
        boots = [boot]
        try:
            for _ in range(KILLS):
                await asyncio.sleep(chance.uniform(0.2, 2.5))
                await s.daemon.kill()
                dead = boots[-1]
                will = await s.backend.wait_for(
                    lambda dead=dead: any(  # type: ignore[misc]
                        d["state"] == "offline" and d["boot_id"] == dead
                        for d in s.backend.documents("status")
                    )
                )
                assert will
                wills.append(dead)
                await s.daemon.start()
                boots.append(await online(s.backend, not_boot=dead))
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)

        received = await taken(s, sent)
        assert await s.daemon.terminate() == 0
        await check(s, locks, received, wills, boots)


async def taken(s: Site, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every command the station took, each come to its end. A request the broker delivered at
    the last restart may be in the station's hands with its receipt not yet at the backend: the
    set is taken again after a quiet while, until it no longer grows."""
    received: list[dict[str, Any]] | None = None
    while True:
        now = [body for body in sent if s.backend.messages(f"commands/{body['id']}")]
        for body in now:
            await s.backend.final(body["id"], timeout_s=120)
        if received is not None and len(now) == len(received):
            return now
        received = now
        await asyncio.sleep(QUIET_S)


async def check(
    s: Site,
    locks: list[Any],
    received: list[dict[str, Any]],
    wills: list[str],
    boots: list[str],
) -> None:
    assert len(wills) == KILLS
    assert len(set(boots)) == KILLS + 1  # a new boot_id at every start

    for body in received:
        documents = s.backend.documents(f"commands/{body['id']}")
        finals = {
            (d["state"]["value"], d["version"], d["error_code"])
            for d in documents
            if d["state"]["value"] in FINAL
        }
        assert len(finals) == 1, (body["id"], finals)
        versions = sorted({d["version"] for d in documents})
        assert versions == list(range(1, versions[-1] + 1)), (body["id"], versions)

    asked: dict[str, Counter[str]] = defaultdict(Counter)
    for body in received:
        asked[body["bike"]][body["command"]] += 1
    for lock in locks:
        view = await s.sim.control.lock(lock.name)
        assert view.commanded_open <= asked[bike_of(lock)]["unlock"], view
        assert view.motor_closed <= asked[bike_of(lock)]["lock"], view

    events: dict[str, int] = {}
    for event in s.backend.documents("events"):
        assert events.setdefault(event["event_id"], event["seq"]) == event["seq"]
    seqs = sorted(events.values())
    assert len(seqs) == len(set(seqs)), "a seq was given to two events"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in seq"
    ends = Counter(
        next(
            d["state"]["value"]
            for d in s.backend.documents(f"commands/{body['id']}")
            if d["state"]["value"] in FINAL
        )
        for body in received
    )
    print(f"kills {KILLS}, commands {len(received)}, ends {dict(ends)}, events {len(seqs)}")
