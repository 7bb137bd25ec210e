"""Home Assistant discovery from ``lockgate run`` (a subprocess) through mosquitto.

A subscriber stands where Home Assistant would (``homeassistant/#``); the tests' backend watches the
station's own topics. The discovery documents come retained with the station; its availability is
the station's status, which the broker's will turns ``offline`` when the station is killed; a lock
taken out of the configuration has its documents emptied; and with commands allowed, a lock whose
credentials are provisioned becomes a lock entity whose command (filled in as Home Assistant fills
its template) opens the lock through the contract's ``commands``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from lockgate.client import StationClient
from tests.e2e.backend import Backend
from tests.e2e.station import STATION, bike_of, keys_of, nobond, sharee, world, write_config
from tests.e2e.test_daemon import Site, site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NODE = f"homeassistant/{{}}/lockgate_{STATION}/{{}}_{{}}/config"


@contextlib.asynccontextmanager
async def home_assistant(port: int) -> AsyncIterator[Backend]:
    """A subscriber to the discovery prefix, as Home Assistant is; topics kept whole."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"ha-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe("homeassistant/#", qos=1)
        peer = Backend(client, "")
        receiving = asyncio.create_task(peer._receive(), name="ha-receive")
        try:
            yield peer
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving


def configure(s: Site, locks: list[Any], home_assistant: str) -> None:
    write_config(
        s.folder,
        broker_port=s.broker.port,
        bus_address=s.sim.bus_address,
        sim=world(*locks),
        extra=f"\n[home_assistant]\n{home_assistant}\n",
    )


async def start(s: Site) -> None:
    """Start the daemon and wait for its READY (each start sends one)."""
    ready = len(s.notify.sent("READY=1"))
    await s.daemon.start()
    async with asyncio.timeout(60):
        while len(s.notify.sent("READY=1")) <= ready:
            s.notify.changed.clear()
            await s.notify.changed.wait()


def latest(ha: Backend, component: str, bike: str, what: str) -> dict[str, Any] | None:
    """The newest discovery document on that topic: None if none came, {} if it was emptied."""
    found = ha.messages(NODE.format(component, bike, what))
    if not found:
        return None
    return found[-1].json() if found[-1].payload else {}


def availability(document: dict[str, Any], status: dict[str, Any]) -> str:
    """What Home Assistant makes of the status for this entity: its availability template
    (``{{ value_json.<field> }}``) read out of the status document."""
    (entry,) = document["availability"]
    field = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", entry["value_template"])
    assert field, entry
    value = status[field.group(1)]
    assert value in (entry["payload_available"], entry["payload_not_available"])
    return "available" if value == entry["payload_available"] else "unavailable"


async def test_discovery_availability_with_the_will_and_removal(tmp_path: Path) -> None:
    kept, leaving = sharee(1), nobond(2)
    async with site(tmp_path, world(kept, leaving)) as s, home_assistant(s.broker.port) as ha:
        configure(s, [kept, leaving], "enabled = true")
        await start(s)
        for lock in (kept, leaving):
            bike = bike_of(lock)
            for what in ("lock_state", "battery", "health"):
                document = await ha.wait_for(lambda b=bike, w=what: latest(ha, "sensor", b, w))
                assert document["state_topic"] == f"lockgate/v1/{STATION}/locks/{bike}"
            # No lock entity: commands are not allowed.
            assert latest(ha, "lock", bike, "lock") in (None, {})
        state = latest(ha, "sensor", bike_of(kept), "lock_state")
        assert state is not None
        status = await s.backend.wait_for(lambda: s.backend.latest("status"))
        assert status["state"] == "online"
        assert availability(state, status) == "available"

        # Killed: the broker publishes the will, and every entity is unavailable.
        await s.daemon.kill()
        will = await s.backend.wait_for(
            lambda: (m := s.backend.latest("status")) and m["state"] == "offline" and m
        )
        assert availability(state, will) == "unavailable"

        # Started again without one of its locks: that lock's documents are emptied.
        before = len(ha.messages())
        configure(s, [kept], "enabled = true")
        await start(s)
        gone = bike_of(leaving)
        for what in ("lock_state", "battery", "health"):
            await ha.wait_for(lambda w=what: latest(ha, "sensor", gone, w) == {})
        status = await s.backend.wait_for(
            lambda: (m := s.backend.latest("status")) and m["state"] == "online" and m
        )
        assert availability(state, status) == "available"
        assert len(ha.messages()) > before


async def test_discovery_from_a_fresh_subscriber_shows_only_configured_locks(
    tmp_path: Path,
) -> None:
    kept, leaving = sharee(3), nobond(4)
    async with site(tmp_path, world(kept, leaving)) as s:
        configure(s, [kept, leaving], "enabled = true")
        await start(s)
        async with home_assistant(s.broker.port) as first:
            await first.wait_for(lambda: latest(first, "sensor", bike_of(leaving), "health"))
        await s.daemon.terminate()
        configure(s, [kept], "enabled = true")
        await start(s)
        async with home_assistant(s.broker.port) as later:
            await later.wait_for(lambda: latest(later, "sensor", bike_of(kept), "health"))
            status = await s.backend.wait_for(
                lambda: (m := s.backend.latest("status")) and m["state"] == "online" and m
            )
            assert status["locks"] == [bike_of(kept)]
            # Retained documents come at subscription, before the station's status online:
            # nothing of the removed lock is left at the broker.
            assert not [m for m in later.messages() if bike_of(leaving) in m.topic and m.payload]
            assert all(m.retain for m in later.messages())


async def test_commands_from_home_assistant_only_for_a_provisioned_lock(tmp_path: Path) -> None:
    lock = sharee(5)
    bike = bike_of(lock)
    async with site(tmp_path, world(lock)) as s, home_assistant(s.broker.port) as ha:
        configure(s, [lock], "enabled = true\ncommands = true")
        await start(s)
        # Not provisioned: read-only.
        await ha.wait_for(lambda: latest(ha, "sensor", bike, "lock_state"))
        assert latest(ha, "lock", bike, "lock") in (None, {})
        async with StationClient(s.broker.url, STATION) as client:
            provisioned = await client.provision(bike, keys_of(lock))
            assert provisioned["state"]["value"] == "SUCCESS"
            entity = await ha.wait_for(lambda: latest(ha, "lock", bike, "lock"))
            await ha.wait_for(lambda: latest(ha, "sensor", bike, "lock_state") == {})
            # Home Assistant's press on "unlock": its template filled in, published once.
            payload = entity["command_template"]
            payload = payload.replace("{{ range(100000) | random }}", "12345")
            payload = payload.replace("{{ value }}", entity["payload_unlock"])
            request = json.loads(payload)
            async with aiomqtt.Client("127.0.0.1", s.broker.port) as home:
                await home.publish(entity["command_topic"], payload, qos=1)
            final = await s.backend.final(request["id"])
            assert final["state"]["value"] == "SUCCESS"
            assert final["name"] == "unlock"
            document = await client.wait_lock(bike, lambda d: d["lock_state"] == "unlocked")
            assert document["hardware_state"] == "NORMAL"
            assert (await s.sim.control.lock(lock.name)).bolt == "unlocked"
            # Credentials removed: read-only again.
            await client.provision(bike, {})
            await ha.wait_for(lambda: latest(ha, "lock", bike, "lock") == {})
            await ha.wait_for(lambda: latest(ha, "sensor", bike, "lock_state"))
