"""What the driver sees between commands, mirrored as events and lock documents."""

from __future__ import annotations

from datetime import UTC, datetime

from lockgate.model import Cause, CommandState, HardwareState, Health, LockState
from lockgate.radio import HealthObserved, Reading, ReadingObserved, StateObserved
from tests.engine.harness import SHAREE_JSON, Harness

BIKE = "FR1540"


def at() -> datetime:
    return datetime.now(UTC)


async def test_a_rider_closing_the_lock_by_hand_is_an_event_and_a_document(
    harness: Harness,
) -> None:
    await harness.run(command="unlock", bike=BIKE, user_id="U", credentials=SHAREE_JSON)
    await harness.engine.observe(StateObserved(BIKE, LockState.LOCKING, Cause.MANUAL, at()))
    await harness.engine.observe(StateObserved(BIKE, LockState.LOCKED, Cause.MANUAL, at()))
    await harness.engine.observe(StateObserved(BIKE, LockState.LOCKED, Cause.SYNC, at()))
    events = (await harness.events("lock_state"))[-2:]
    assert [(e["previous"], e["lock_state"], e["cause"]) for e in events] == [
        ("unlocked", "locking", "manual"),
        ("locking", "locked", "manual"),
    ]
    assert all(e["command_id"] is None for e in events)
    assert all((e["latitude"], e["longitude"]) == ("47.976634", "7.825490") for e in events)
    document = await harness.lock_document(BIKE)
    assert document["lock_state"] == "locked"
    assert document["state"]["value"] == "BOOKED"  # the rental holds the closed lock (a pause)
    assert document["booking"]["state"] == "occupied"


async def test_health_changes_are_events_and_heartbeats_update_the_document(
    harness: Harness,
) -> None:
    seen = at()
    before = len(await harness.events("health"))
    await harness.engine.observe(
        HealthObserved(BIKE, Health.HEALTHY, HardwareState.NORMAL, seen, None, seen)
    )
    await harness.engine.observe(
        HealthObserved(BIKE, Health.HEALTHY, HardwareState.NORMAL, seen, None, seen)
    )
    await harness.engine.observe(
        HealthObserved(BIKE, Health.DEAD, HardwareState.NOT_RESPONDING, seen, at(), at())
    )
    health = (await harness.events("health"))[before:]
    assert [(e["health"], e["hardware_state"]) for e in health] == [
        ("HEALTHY", "NORMAL"),
        ("DEAD", "NOT_RESPONDING"),
    ]
    document = await harness.lock_document(BIKE)
    assert document["heartbeat_v2"]["health"] == "DEAD"
    assert document["heartbeat_v2"]["dead_since"] is not None
    assert document["hardware_state"] == "NOT_RESPONDING"


async def test_readings_update_battery_firmware_and_alarm(harness: Harness) -> None:
    await harness.engine.observe(
        ReadingObserved(BIKE, Reading(battery=80, firmware="2.19", rssi=-70, alarm=True), at())
    )
    await harness.engine.observe(ReadingObserved(BIKE, Reading(battery=80), at()))
    assert [e["battery"] for e in await harness.events("battery")] == [80]
    assert [e["alarm"] for e in await harness.events("alarm")] == [True]
    document = await harness.lock_document(BIKE)
    assert (document["battery"], document["firmware"], document["rssi"]) == (80, "2.19", -70)


async def test_an_observation_of_an_unknown_bike_changes_nothing(harness: Harness) -> None:
    before = await harness.messages()
    await harness.engine.observe(StateObserved("FR0000", LockState.UNLOCKED, Cause.MANUAL, at()))
    assert await harness.messages() == before


async def test_sync_device_reads_state_battery_and_firmware(harness: Harness) -> None:
    lock = harness.radio.locks[BIKE]
    lock.battery, lock.firmware = 55, "3.01"
    record = await harness.run(
        command="sync-device", bike=BIKE, credentials=SHAREE_JSON, power_cycle=True
    )
    assert record.state is CommandState.SUCCESS
    assert harness.radio.motions == []
    document = await harness.lock_document(BIKE)
    assert (document["battery"], document["firmware"]) == (55, "3.01")
    names = [event.name for event in record.events]
    assert "RESPONSE_SYNC_DEVICE" in names
    assert "RESPONSE_POWER_CYCLE" in names
    assert [e["battery"] for e in await harness.events("battery")][-1] == 55


async def test_a_heartbeat_alone_is_written_at_most_every_hour(harness: Harness) -> None:
    """A read that found nothing new but last_seen and RSSI writes nothing for an hour after
    the lock's record was last written; the next change writes it all (docs/store.md, writes)."""
    first = at()
    await harness.engine.observe(
        HealthObserved(BIKE, Health.HEALTHY, HardwareState.NORMAL, first, None, first)
    )
    written = await harness.lock_document(BIKE)
    later = at()
    await harness.engine.observe(
        HealthObserved(BIKE, Health.HEALTHY, HardwareState.NORMAL, later, None, later)
    )
    await harness.engine.observe(ReadingObserved(BIKE, Reading(rssi=-70), later))
    assert await harness.lock_document(BIKE) == written  # nothing written
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.last_seen == later  # kept in memory
    await harness.engine.observe(ReadingObserved(BIKE, Reading(battery=41), at()))
    document = await harness.lock_document(BIKE)
    assert document["battery"] == 41
    assert document["rssi"] == -70
    assert document["heartbeat_v2"]["last_seen"] != written["heartbeat_v2"]["last_seen"]
