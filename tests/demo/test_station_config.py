"""The configuration the demo writes for its daemon is one the daemon's own loader accepts, and it
points the daemon at the demo's broker, bus and directory only."""

from __future__ import annotations

from pathlib import Path

from lockgate.config import load
from lockgate.demo.station import write_station_config
from lockgate.demo.world import BIKES, STATION, demo_world


def test_the_daemon_s_loader_accepts_it(tmp_path: Path) -> None:
    bus = "unix:path=/tmp/lockgate-sim-x/bus,guid=0123"
    path = write_station_config(tmp_path, "mqtt://127.0.0.1:18830", bus)
    config = load(path)
    assert config.station.id == STATION
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("127.0.0.1", 18830, False)
    assert config.ble.dbus_address == bus
    assert not config.commands.require_signed
    for file in (config.store.path, config.store.key_file, config.commands.station_key_file):
        assert file.parent == tmp_path
    assert [(lock.bike, lock.name, lock.address) for lock in config.locks] == [
        (bike.bike, bike.name, bike.lock.address) for bike in BIKES
    ]


def test_the_world_has_both_profiles_and_the_time_scale() -> None:
    world = demo_world(0.1)
    assert world.adapter.time_scale == 0.1
    assert {lock.profile for lock in world.locks} == {bike.profile for bike in BIKES}
    assert len({lock.profile for lock in world.locks}) == 2
    for bike in BIKES:
        assert bike.lock.credentials() is not None
