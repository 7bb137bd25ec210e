"""The broker stopped while locks move, and started again: nothing lost, nothing reordered,
nothing run twice.

The backend keeps a persistent session on a broker that keeps sessions across its restart, as a
production backend would, so that what the station publishes before the backend is back is
queued for it. A command the backend sends during the outage is re-sent, with the same id, until
its receipt is seen: it runs once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lockgate.contract.times import parse_time
from lockgate.model import LockState
from tests.brokers import running_mosquitto
from tests.mqtt.backend import Backend, backend
from tests.mqtt.station import Gateway, running_station
from tests.mqtt.test_contract import soon

pytestmark = pytest.mark.integration


def first_seen(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At least once: the first copy of each event, in the order the backend saw them."""
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    return list(unique.values())


async def unlock(station: Gateway, seen: Backend, index: int) -> str:
    lock = station.sim.world.locks[index]
    keys = (
        {"K_seed": lock.k_seed, "K_u": lock.k_u}
        if lock.k_seed
        else {"auth_id": lock.auth_id, "phone_id": lock.phone_id, "ltk": lock.ltk}
    )
    return seen.send_command(
        {
            "command": "unlock",
            "bike": station.bike(index),
            "timeout_at": soon(),
            "credentials": keys,
        }
    )


def ended(seen: Backend, command_id: str) -> bool:
    return any(d["state"]["value"] in ("SUCCESS", "ERROR") for d in seen.documents(command_id))


async def test_events_and_commands_through_a_broker_restart(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker", persistence=True) as broker,
        backend(broker, persistent=True) as seen,
    ):
        async with running_station(tmp_path, broker.url, locks=4) as station:
            await station.link.wait_connected(30)
            opened = [await unlock(station, seen, i) for i in range(3)]
            await seen.wait_for(lambda: all(ended(seen, c) for c in opened), 60)
            for i in range(3):
                await seen.wait_for(lambda i=i: station.bike(i) in station.driver.watched())

            # an unlock on its way when the broker goes
            moving = await unlock(station, seen, 3)
            await seen.wait_for(lambda: bool(seen.documents(moving)))
            before = max(e["seq"] for e in seen.events())
            await broker.stop()
            await seen.wait_for(lambda: not station.link.state.connected)

            # riders close three locks by hand while the broker is away
            for i in range(3):
                await station.sim.control.close_by_hand(station.sim.world.locks[i].name)
            for i in range(3):
                await seen.wait_for(
                    lambda i=i: (
                        station.engine.lock_record(station.bike(i)).lock_state  # type: ignore[union-attr]
                        is LockState.LOCKED
                    )
                )
            record = await station.store.command(moving)
            assert record is not None
            await station.engine.wait_idle(30)

            # the backend sends a command meanwhile and re-sends it until its receipt comes
            lock = station.sim.world.locks[3]
            request = {
                "id": "during-outage",
                "command": "lock",
                "bike": station.bike(3),
                "timeout_at": soon(120),
                "credentials": {
                    "auth_id": lock.auth_id,
                    "phone_id": lock.phone_id,
                    "ltk": lock.ltk,
                }
                if not lock.k_seed
                else {"K_seed": lock.k_seed, "K_u": lock.k_u},
            }
            made_before_restart = datetime.now(UTC)

            copies_sent = 0
            copies_while_away = asyncio.Event()

            async def resend_until_receipt() -> None:
                nonlocal copies_sent
                while not seen.documents("during-outage"):
                    seen.send(json.dumps(request).encode())
                    copies_sent += 1
                    if copies_sent == 3:
                        copies_while_away.set()
                    await asyncio.sleep(0.5)

            async with asyncio.TaskGroup() as group:
                group.create_task(resend_until_receipt())
                # a few copies go out while the broker is away
                await asyncio.wait_for(copies_while_away.wait(), 30)
                await broker.start()
            await station.link.wait_connected(30)
            await seen.wait_for(lambda: ended(seen, "during-outage"), 60)
            await station.engine.wait_idle(30)
            last = await station.store.seq()
            await seen.wait_for(
                lambda: (
                    max(e["seq"] for e in seen.events()) >= last and station.link.state.backlog == 0
                ),
                60,
            )
            view = await station.sim.control.lock(lock.name)
            assert view.commanded_close == 1, "the re-sent command ran more than once"

        events = first_seen(seen.events())
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "missing or reordered"
        during = [
            e for e in events if e["seq"] > before and parse_time(e["at"]) < made_before_restart
        ]
        closed_by_hand = [e for e in during if e["cause"] == "manual"]
        assert len(closed_by_hand) >= 6  # locking and locked, three locks
        assert all(e["replayed"] for e in during)
        assert walk_of(seen, moving)[-1] == "SUCCESS"
        documents = seen.documents("during-outage")
        assert [d["version"] for d in documents if d["state"]["value"] == "NOT_SENT"][:1] == [1]
        assert walk_of(seen, "during-outage")[-1] == "SUCCESS"
        assert station.link.state.last_error is not None


def walk_of(seen: Backend, command_id: str) -> list[str]:
    states = [d["state"]["value"] for d in seen.documents(command_id)]
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
