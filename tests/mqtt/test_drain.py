"""The outbox drained through a connection that is cut in the middle of it, or whose broker stops
answering: the window of publishes in flight loses nothing and reorders nothing across
reconnects."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockgate.contract.documents import LockStateEvent
from lockgate.model import LockState
from lockgate.store import Change
from tests.brokers import Cable, running_mosquitto
from tests.mqtt.backend import backend
from tests.mqtt.station import Gateway, running_station
from tests.mqtt.test_outage import first_seen

pytestmark = pytest.mark.integration

EVENTS = 5_000


async def queue_events(station: Gateway, count: int) -> None:
    """Events as the engine would write them (1000 per transaction, to be quick)."""
    bike = station.bike(0)
    states = [LockState.UNLOCKING, LockState.UNLOCKED, LockState.LOCKING, LockState.LOCKED]
    for start in range(0, count, 1000):
        events = tuple(
            LockStateEvent(
                event_id=str(uuid.uuid4()),
                station=station.station.id,
                boot_id=station.station.boot_id,
                seq=0,
                bike=bike,
                at=datetime.now(UTC),
                latitude=station.station.latitude,
                longitude=station.station.longitude,
                lock_state=states[n % 4],
                previous=states[(n - 1) % 4],
            )
            for n in range(start, min(count, start + 1000))
        )
        await station.store.apply(Change(events=events), at=datetime.now(UTC))


async def test_a_drain_cut_twice_loses_and_reorders_nothing(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        Cable(broker.port) as cable,
        backend(broker) as seen,
        running_station(tmp_path, cable.url, backoff_max_s=1.0) as station,
    ):
        await station.link.wait_connected(30)
        cable.unplug()
        await seen.wait_for(lambda: not station.link.state.connected)
        await queue_events(station, EVENTS)
        last = await station.store.seq()
        await seen.wait_for(lambda: station.link.state.backlog >= EVENTS)

        cable.plug()
        for cut_at in (EVENTS // 4, EVENTS // 2):
            await seen.wait_for(lambda cut_at=cut_at: len(seen.on("events")) >= cut_at, 60)
            cable.cut()  # with a window of publishes in flight
            await seen.wait_for(lambda: not station.link.state.connected)
            await station.link.wait_connected(30)
        await seen.wait_for(
            lambda: {e["seq"] for e in seen.events()} >= set(range(last - EVENTS + 1, last + 1)),
            120,
        )
        events = [e for e in first_seen(seen.events()) if e["seq"] > last - EVENTS]
        assert [e["seq"] for e in events] == list(range(last - EVENTS + 1, last + 1))
        assert all(e["replayed"] for e in events)
        await seen.wait_for(lambda: station.link.state.backlog == 0)
        print(f"{len(seen.events())} copies for {EVENTS} events")


async def test_a_broker_that_stops_answering_is_left_and_the_events_go_later(
    tmp_path: Path,
) -> None:
    """The broker frozen (SIGSTOP: its socket open, nothing answered): a publish without its
    PUBACK for publish_timeout_s ends the connection, and everything goes once it answers again."""
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker) as seen,
        running_station(
            tmp_path, broker.url, publish_timeout_s=1.0, keepalive_s=60, backoff_max_s=1.0
        ) as station,
    ):
        await station.link.wait_connected(30)
        assert broker.process is not None
        first = await station.store.seq()
        broker.process.send_signal(signal.SIGSTOP)
        try:
            await queue_events(station, 10)
            await seen.wait_for(lambda: not station.link.state.connected, 30)
            assert "no PUBACK within 1.0 s" in (station.link.state.last_error or "")
        finally:
            broker.process.send_signal(signal.SIGCONT)
        await station.link.wait_connected(30)
        await seen.wait_for(
            lambda: {e["seq"] for e in seen.events()} >= set(range(first + 1, first + 11)), 60
        )
