"""The simulator's link layer charges what docs/simulator.md says it charges.

The model's own arithmetic first (pure: lock seconds in, lock seconds out), then the same over
the bus with bleak: a write with response costs one connection interval, discovery is paid at
the first connect only, a lock gone out of range is noticed after the supervision timeout.
Times are read on the simulator's own clock and only bounded from below (a timer never ends
early): the model's definition, not anyone's speed.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from bleak.exc import BleakError
from pydantic import ValidationError

from lockgate.protocol import Channel, Session
from lockgate_sim.bluez.gatt_service import DISCOVERY, attribute_table
from lockgate_sim.control import INVALID_VALUE
from lockgate_sim.linklayer import (
    DEFAULT_SUPERVISION_TIMEOUT_MS,
    AirLink,
    Exchange,
    LinkSettings,
    RadioCounts,
    discovery_cost,
)
from lockgate_sim.remote import SimulatorError
from lockgate_sim.testing import run_simulator
from lockgate_sim.world import WorldConfig
from tests.sim.simkit import SHAREE_NAME, Link, sharee_credentials, world

INTERVAL_MS = 30.0
I = INTERVAL_MS / 1000  # noqa: E741 - the interval, as the docs write it


def _link(*, loss: float = 0.0, seed: int = 7, anchor: float = 0.0) -> AirLink:
    settings = LinkSettings(
        connection_interval_ms=INTERVAL_MS, packet_loss=loss, random=random.Random(seed)
    )
    return AirLink(settings, anchor, RadioCounts())


# --- the model ------------------------------------------------------------------------------


def test_a_write_with_response_takes_one_interval_from_the_next_connection_event() -> None:
    air = _link(anchor=1.0)
    # Asked between two events, it goes out in the next one and is answered in the one after.
    assert air.request(1.01, Exchange.WRITE) == pytest.approx(1.0 + 2 * I)
    # The next one, asked as the answer came (on an event boundary), takes one interval more.
    assert air.request(1.0 + 2 * I, Exchange.WRITE) == pytest.approx(1.0 + 3 * I)
    # A request while another is outstanding waits for it: one at a time.
    assert air.request(1.0 + 2 * I, Exchange.READ) == pytest.approx(1.0 + 4 * I)
    counts = air.counts.link
    assert (counts.writes, counts.reads, counts.intervals) == (2, 1, 3)
    assert air.counts.total == counts


def test_indications_go_one_per_interval_each_after_the_last_ones_confirmation() -> None:
    air = _link()
    delivered = [air.indicate(0.0) for _ in range(3)]
    assert delivered == pytest.approx([0.0, I, 2 * I])
    # The central's requests are a queue of their own: a write in the same event as well.
    assert air.request(0.0, Exchange.WRITE) == pytest.approx(I)
    assert (air.counts.link.indications, air.counts.link.intervals) == (3, 4)
    air.end(0.1)
    assert air.counts.link.connection_events == 4  # events at 0, 30, 60 and 90 ms


def test_an_indication_a_write_causes_goes_in_the_event_after_the_writes_answer() -> None:
    """One ATT packet each way per event: the event of the write's answer carries no
    indication, wherever in it the lock is given the write (the event loop's lateness)."""
    for lateness in (0.0, 0.001, I / 2):
        air = _link()
        answered = air.request(0.01, Exchange.WRITE)
        assert answered == pytest.approx(2 * I)
        assert air.indicate(answered + lateness) == pytest.approx(3 * I)
        # The indication's confirmation and the next request share an event: queues of their own.
        assert air.request(3 * I + 0.001, Exchange.WRITE) == pytest.approx(5 * I)
    # An indication with no answer in its way goes in the next event, as before.
    assert _link().indicate(0.001) == pytest.approx(I)


def test_a_lost_packet_costs_an_interval_more_and_the_seed_repeats_the_losses() -> None:
    def run(seed: int) -> tuple[float, RadioCounts]:
        air = _link(loss=0.5, seed=seed)
        done = air.request(0.0, Exchange.WRITE, 40)
        return done, air.counts

    done, counts = run(3)
    lost = counts.link.lost_packets
    assert lost > 0
    assert counts.link.intervals == counts.link.round_trips + lost
    assert done == pytest.approx((40 + lost) * I)
    assert run(3) == (done, counts)


def test_an_instant_radio_counts_but_charges_nothing() -> None:
    air = AirLink(LinkSettings(), 5.0, RadioCounts())
    assert air.request(5.0, Exchange.WRITE) == 5.0
    assert air.indicate(5.0) == 5.0
    assert (air.counts.link.round_trips, air.counts.link.intervals) == (2, 0)


def test_a_connect_waits_for_the_locks_next_advertisement() -> None:
    settings = LinkSettings(adv_interval_ms=100)
    first = settings.next_advertisement("ISHAREIT-2200540", 3.0)
    assert 3.0 <= first < 3.1
    assert settings.next_advertisement("ISHAREIT-2200540", first) == pytest.approx(first)
    assert settings.next_advertisement("ISHAREIT-2200540", first + 1e-3) == pytest.approx(
        first + 0.1
    )
    assert LinkSettings().next_advertisement("ISHAREIT-2200540", 3.0) == 3.0


def test_the_supervision_timeout_is_linuxs_where_the_link_layer_is_on() -> None:
    assert LinkSettings().supervision_timeout_s == 0.0
    assert LinkSettings(connection_interval_ms=30).supervision_timeout_s == pytest.approx(
        DEFAULT_SUPERVISION_TIMEOUT_MS / 1000
    )
    assert LinkSettings(supervision_timeout_ms=4000).supervision_timeout_s == 4.0


def test_discovering_the_locks_table_takes_25_round_trips_at_mtu_23() -> None:
    """docs/simulator.md: GAP, GATT, Battery, Device Information (16-bit UUIDs) and the lock
    service (128-bit): primary services 3 + 1 + 1 responses and Attribute Not Found; secondary
    services, Attribute Not Found; included services, one per service; characteristics 2 per
    service of 16-bit ones, 3 for the lock service's two 128-bit ones; one Find Information per
    CCCD (Service Changed, Battery Level, GDIO, USDIO)."""
    cost = discovery_cost(attribute_table())
    assert (cost.primary, cost.secondary, cost.included) == (4, 1, 5)
    assert (cost.characteristics, cost.descriptors) == (11, 4)
    assert cost.total == DISCOVERY.total == 25
    # A larger MTU puts more in a response: fewer round trips.
    assert discovery_cost(attribute_table(), mtu=247).total < cost.total


def test_world_keys_take_the_adapters_defaults_and_refuse_intervals_ble_has_not() -> None:
    config = world(**{SHAREE_NAME: {"connection_interval_ms": 50, "packet_loss": 0.1}})
    config = WorldConfig.model_validate(
        {
            **config.model_dump(by_alias=True, exclude_none=True),
            "adapter": {"connection_interval_ms": 30, "adv_interval_ms": 100},
        }
    )
    own, other = config.link_settings(config.locks[0]), config.link_settings(config.locks[2])
    assert (own.connection_interval_ms, own.adv_interval_ms, own.packet_loss) == (50, 100, 0.1)
    assert (other.connection_interval_ms, other.packet_loss) == (30, 0.0)
    with pytest.raises(ValidationError, match=r"7\.5"):
        world(**{SHAREE_NAME: {"connection_interval_ms": 5}})
    with pytest.raises(ValidationError, match=r"20\.\.10240"):
        WorldConfig.model_validate({"adapter": {"adv_interval_ms": 10}})


# --- over the bus ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_over_bleak_a_write_costs_one_interval_and_discovery_is_paid_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = world(**{SHAREE_NAME: {"connection_interval_ms": 50, "connect_ms": 100}})
    async with run_simulator(config, time_scale=0.2) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        clock = sim.station.clock
        link = await Link.open(SHAREE_NAME)
        try:
            counts = await sim.control.radio_counts(SHAREE_NAME)
            assert counts.links == 1
            assert (counts.link.mtu_exchanges, counts.link.discovery) == (1, DISCOVERY.total)
            assert counts.link.cccd_writes == 2
            times = await sim.control.times(SHAREE_NAME)
            assert times.last_connect_s is not None
            assert times.last_connect_s >= 0.1 + (1 + DISCOVERY.total) * 0.05

            session = Session(sharee_credentials())
            before = clock.now()
            await link.send(session.start())  # "request IV": one chunk, one write
            after = clock.now()
            assert after - before >= 0.05 - 1e-6
            channel, _ = await link.next()
            assert channel is Channel.GDIO  # the IV, indicated
            counts_after = await sim.control.radio_counts(SHAREE_NAME)
            assert counts_after.link.writes == counts.link.writes + 1
            assert counts_after.link.indications == counts.link.indications + 1
            assert counts_after.link.intervals == counts.link.intervals + 2
            assert counts_after.link.connection_events > counts.link.connection_events
        finally:
            await link.close()

        again = await Link.open(SHAREE_NAME)
        try:
            counts = await sim.control.radio_counts(SHAREE_NAME)
            assert counts.links == 2
            assert (counts.link.mtu_exchanges, counts.link.discovery) == (1, 0)  # the cache
            assert counts.total.discovery == DISCOVERY.total
        finally:
            await again.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_lock_gone_out_of_range_is_noticed_after_the_supervision_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = world(**{SHAREE_NAME: {"connection_interval_ms": 30, "supervision_timeout_ms": 2000}})
    async with run_simulator(config, time_scale=0.1) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        clock = sim.station.clock
        link = await Link.open(SHAREE_NAME)
        try:
            gone = clock.now()
            await sim.control.out_of_range(SHAREE_NAME)
            device = sim.station.first.device(sim.station.find(SHAREE_NAME).lock)
            assert device.connected, "not noticed yet"
            # A write meanwhile gets no answer: it fails once the link is seen gone.
            write = asyncio.create_task(link.send(Session(sharee_credentials()).start()))
            async with asyncio.timeout(10):
                await link.disconnected.wait()
            assert clock.now() - gone >= 2.0 - 1e-6
            with pytest.raises(BleakError):
                await write
            assert not device.exported
            assert (await sim.control.lock(SHAREE_NAME)).links == 0
            counts = await sim.control.radio_counts(SHAREE_NAME)
            assert counts.link.indications == 0, "nothing crossed the silent link"
        finally:
            await link.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_ctl_sets_a_locks_link_layer_for_its_next_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with run_simulator(world(), time_scale=0.1) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        with pytest.raises(SimulatorError) as refused:
            await sim.control.set_link(SHAREE_NAME, connection_interval_ms=5)
        assert refused.value.name == INVALID_VALUE
        await sim.control.set_link(
            SHAREE_NAME, connection_interval_ms=40, adv_interval_ms=100, packet_loss_percent=0
        )
        link = await Link.open(SHAREE_NAME)
        try:
            air = sim.station.first.device(sim.station.find(SHAREE_NAME).lock).air
            assert air is not None
            assert air.interval == pytest.approx(0.04)
            counts = await sim.control.radio_counts(SHAREE_NAME)
            assert counts.link.intervals == counts.link.round_trips
        finally:
            await link.close()
