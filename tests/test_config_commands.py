"""The ``[commands]`` section: signed requests, the backend's keys, the station's key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config import ConfigError, load
from tests.test_config import station_config


def write(tmp_path: Path, commands: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nid = "FR101"\n{commands}')
    return path


def test_the_example_requires_signed_requests(tmp_path: Path) -> None:
    commands = load(station_config(tmp_path)).commands
    assert commands.require_signed
    assert commands.backend_keys == [tmp_path / "etc" / "backend-2026.jwk"]
    assert commands.station_key_file == tmp_path / "state" / "station.jwk"


def test_without_the_section_the_station_is_open(tmp_path: Path) -> None:
    commands = load(write(tmp_path, "")).commands
    assert not commands.require_signed
    assert commands.backend_keys == []
    assert commands.station_key_file == Path("/var/lib/lockgate/station.jwk")


def test_several_backend_keys_for_a_rotation(tmp_path: Path) -> None:
    keys = [tmp_path / "a.jwk", tmp_path / "b.pem"]
    for key in keys:
        key.write_text("a public key\n")
    listed = ", ".join(f'"{key}"' for key in keys)
    path = write(tmp_path, f"[commands]\nrequire_signed = true\nbackend_keys = [{listed}]\n")
    assert load(path).commands.backend_keys == keys


def test_a_backend_key_that_is_missing_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jwk"
    with pytest.raises(ConfigError, match=r"commands\.backend_keys\.0: .*gone\.jwk cannot be read"):
        load(write(tmp_path, f'[commands]\nbackend_keys = ["{missing}"]\n'))


def test_require_signed_needs_a_backend_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="require_signed needs at least one file"):
        load(write(tmp_path, "[commands]\nrequire_signed = true\n"))


def test_a_relative_backend_key_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"commands\.backend_keys\.0: .*must be an absolute path"):
        load(write(tmp_path, '[commands]\nbackend_keys = ["backend.jwk"]\n'))


def test_home_assistant_is_off_by_default_and_read_only(tmp_path: Path) -> None:
    settings = load(write(tmp_path, "")).home_assistant
    assert not settings.enabled
    assert settings.prefix == "homeassistant"
    assert not settings.commands
    (tmp_path / "example").mkdir()
    example = load(station_config(tmp_path / "example")).home_assistant
    assert (example.enabled, example.commands) == (False, False)


def test_home_assistant_commands_need_an_open_station(tmp_path: Path) -> None:
    key = tmp_path / "backend.jwk"
    key.write_text("a public key\n")
    signed = f'[commands]\nrequire_signed = true\nbackend_keys = ["{key}"]\n'
    with pytest.raises(ConfigError, match=r"home_assistant\.commands needs"):
        load(write(tmp_path, signed + "[home_assistant]\nenabled = true\ncommands = true\n"))
    opened = load(write(tmp_path, "[home_assistant]\nenabled = true\ncommands = true\n"))
    assert opened.home_assistant.commands


def test_a_home_assistant_prefix_is_a_topic(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"home_assistant\.prefix"):
        load(write(tmp_path, '[home_assistant]\nprefix = "home/#"\n'))
