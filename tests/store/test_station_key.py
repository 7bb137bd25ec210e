"""The station key: systemd's credential first, else a key file created 0600 on first start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lockgate.protocol.credentials import NobondCredentials, ShareeCredentials
from lockgate.store import StationKey, StoreKeyError, load_station_key


def test_the_key_file_is_created_0600_on_first_start_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "store.key"
    first = load_station_key(key_file, environ={})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    again = load_station_key(key_file, environ={})
    assert (first.sealing_key, first.fingerprint_key) == (again.sealing_key, again.fingerprint_key)
    assert first.sealing_key != first.fingerprint_key


def test_systemd_credentials_win_over_the_key_file(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "store.key").write_bytes(bytes(range(32)))  # raw bytes are accepted too
    key = load_station_key(
        tmp_path / "unused.key", environ={"CREDENTIALS_DIRECTORY": str(credentials)}
    )
    assert key == StationKey.from_bytes(bytes(range(32)))
    assert not (tmp_path / "unused.key").exists()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_text("00" * 32)
    os.chmod(key_file, 0o644)
    with pytest.raises(StoreKeyError, match="chmod 600"):
        load_station_key(key_file, environ={})


def test_a_key_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_text("abcd")
    os.chmod(key_file, 0o600)
    with pytest.raises(StoreKeyError, match="32 raw bytes or 64 hex digits"):
        load_station_key(key_file, environ={})


def test_sealed_credentials_open_only_for_their_own_bike() -> None:
    key = StationKey.from_bytes(bytes(range(32)))
    sharee = ShareeCredentials(bytes(range(16)), bytes(range(24)))
    nobond = NobondCredentials(7, bytes(range(8)), bytes(range(32)))
    assert key.open("FR1", sharee.profile, key.seal("FR1", sharee)) == sharee
    assert key.open("FR2", nobond.profile, key.seal("FR2", nobond)) == nobond
    with pytest.raises(StoreKeyError):
        key.open("FR2", sharee.profile, key.seal("FR1", sharee))
    assert "0001020304" not in repr(key)
