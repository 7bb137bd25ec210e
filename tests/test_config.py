"""The configuration: the example file is valid, the environment overrides, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config import ConfigError, load
from lockgate.model import Profile

EXAMPLE = Path(__file__).parent.parent / "config" / "station.toml"


def test_the_example_is_valid() -> None:
    config = load(EXAMPLE)
    assert config.station.id == "FR101"
    assert config.mqtt.tls
    assert config.mqtt.port == 8883
    assert [lock.address for lock in config.locks] == ["FC:3C:00:2A:2A:DD", "D4:12:99:00:45:03"]
    assert config.locks[1].profile is Profile.NOBOND


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_BLE__CONNECTION_SLOTS", "2")
    monkeypatch.setenv("LOCKGATE_MQTT__URL", "mqtt://127.0.0.1:1884")
    config = load(EXAMPLE)
    assert config.ble.connection_slots == 2
    assert config.ble.adapter == "hci0"
    assert (config.mqtt.tls, config.mqtt.port) == (False, 1884)


def test_password_comes_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    text = EXAMPLE.read_text().replace("/etc/lockgate/mqtt.password", str(secret))
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load(path).mqtt.password() == "s3cret"


def test_every_problem_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[station]
id = "FR 101"
[mqtt]
url = "mqtts://broker"
cert_file = "/x.pem"
[ble]
connection_slots = 0
colour = "blue"
[[locks]]
bike = "B1"
name = "ILOCKIT-1"
guid = "00000000-0000-0000-0000-fc3c002a2add"
profile = "sharee"
[[locks]]
bike = "B1"
name = "ISHAREIT-2"
guid = "not-a-guid"
profile = "sharee"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "station.id",
        "mqtt: cert_file and key_file go together",
        "ble.connection_slots",
        "ble.colour",
        "locks.0: name 'ILOCKIT-1' is a nobond lock, but profile is sharee",
        "locks.1.guid",
    ):
        assert expected in problems, expected
    assert len(caught.value.problems) == 6
    path.write_text('[station]\nid = "S"\n[mqtt]\nurl = "http://broker"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.url: must be mqtt://"):
        load(path)


def test_duplicate_locks_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    lock = '[[locks]]\nbike = "B1"\nname = "ISHAREIT-1"\nguid = "{}"\nprofile = "sharee"\n'
    path.write_text(
        '[station]\nid = "S"\n'
        + lock.format("00000000-0000-0000-0000-000000000001")
        + lock.format("00000000-0000-0000-0000-000000000002")
    )
    with pytest.raises(ConfigError, match="bike 'B1' appears twice"):
        load(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[station\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path / "broken.toml")
