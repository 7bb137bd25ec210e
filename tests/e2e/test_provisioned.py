"""A lock whose credentials are provisioned is read at once (its state needs a session, which the
station can have now), not at the next sync: its document shows where the bolt is a connect and a
session later. At time scale 1, with syncs an hour apart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.backend import command
from tests.e2e.station import bike_of, keys_of, nobond, sharee, world
from tests.e2e.test_daemon import site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_LIMIT_S = 10.0
"""A wait limit, not a timing assertion: the read takes one connect and one session (about a
second here); without it the document would wait for the next sync, an hour away."""


@pytest.mark.parametrize("make", [sharee, nobond], ids=["sharee", "nobond"])
async def test_a_provisioned_lock_is_read_at_once(tmp_path: Path, make: object) -> None:
    assert callable(make)
    lock = make(4)
    async with site(tmp_path, world(lock), time_scale=1.0) as station:
        sim, peer, daemon, notify = station.sim, station.backend, station.daemon, station.notify
        await daemon.start()
        try:
            await notify.wait_for("READY=1")
            topic = f"locks/{bike_of(lock)}"
            # The first read, without credentials: battery and firmware, the state unknown.
            first = await peer.wait_for(lambda: (d := peer.latest(topic)) and d["battery"] and d)
            assert first["lock_state"] == "unknown"
            provision = command(bike_of(lock), "provision", credentials=keys_of(lock))
            assert (await peer.run(provision))["state"]["value"] == "SUCCESS"
            provisioned = time.monotonic()
            document = await peer.wait_for(
                lambda: (d := peer.latest(topic)) and d["lock_state"] != "unknown" and d,
                timeout_s=WAIT_LIMIT_S,
            )
            print(f"locked in the document {time.monotonic() - provisioned:.2f} s after SUCCESS")
            assert document["lock_state"] == "locked"
            assert (await sim.control.lock(lock.name)).motor_opened == 0  # read, never moved
        finally:
            await daemon.close()
