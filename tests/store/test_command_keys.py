"""The keys of signed and sealed commands on disk: made 0600, guarded like the store key, the
wrong kind of key named clearly, and no private byte in any message."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from joserfc.jwk import OKPKey

from lockgate.store.command_keys import (
    CommandKeyError,
    create_backend_keypair,
    create_station_jwk,
    load_backend_keys,
    load_signing_key,
    load_station_jwk,
    station_public_jwk,
    thumbprint,
)


def test_the_station_key_is_made_0600_on_first_start_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "station.jwk"
    first = load_station_jwk(key_file, environ={})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (first.curve_name, first.is_private) == ("X25519", True)
    again = load_station_jwk(key_file, environ={})
    assert again.thumbprint() == first.thumbprint()
    assert json.loads(key_file.read_text())["kid"] == first.thumbprint()


def test_systemd_credentials_win_over_the_key_file(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    made = create_station_jwk(credentials / "station.jwk")
    key = load_station_jwk(
        tmp_path / "unused.jwk", environ={"CREDENTIALS_DIRECTORY": str(credentials)}
    )
    assert key.thumbprint() == made.thumbprint()
    assert not (tmp_path / "unused.jwk").exists()


def test_a_station_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "station.jwk"
    create_station_jwk(key_file)
    os.chmod(key_file, 0o640)
    with pytest.raises(CommandKeyError, match="chmod 600"):
        load_station_jwk(key_file, environ={})


def test_a_station_key_of_the_wrong_kind_is_named(tmp_path: Path) -> None:
    signing = OKPKey.generate_key("Ed25519")
    key_file = tmp_path / "station.jwk"
    key_file.write_text(json.dumps(signing.as_dict(private=True)))
    os.chmod(key_file, 0o600)
    with pytest.raises(CommandKeyError, match="not an X25519 private key") as raised:
        load_station_jwk(key_file, environ={})
    assert str(signing.as_dict(private=True)["d"]) not in str(raised.value)
    key_file.write_text('{"kty": "OKP", "crv": "X25519", "d": "secret-ish", "x": "!"}')
    with pytest.raises(CommandKeyError, match="not a readable JWK or PEM key") as raised:
        load_station_jwk(key_file, environ={})
    assert "secret-ish" not in str(raised.value)


def test_the_public_jwk_holds_nothing_private(tmp_path: Path) -> None:
    key = create_station_jwk(tmp_path / "station.jwk")
    public = station_public_jwk(key)
    assert set(public) == {"kty", "crv", "x", "kid"}
    assert public["kid"] == key.thumbprint() == thumbprint(tmp_path / "station.jwk")


@pytest.mark.parametrize("suffix", [".jwk", ".pem"])
def test_backend_keypairs_load_as_jwk_or_pem(tmp_path: Path, suffix: str) -> None:
    private, public = tmp_path / f"backend{suffix}", tmp_path / f"backend.pub{suffix}"
    made = create_backend_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    keys = load_backend_keys([public])
    assert list(keys.by_kid) == [made.thumbprint()]
    assert load_signing_key(private).thumbprint() == made.thumbprint()
    assert thumbprint(public) == thumbprint(private) == made.thumbprint()
    assert "PRIVATE" not in public.read_text()
    assert '"d"' not in public.read_text()


def test_two_backend_keys_at_once(tmp_path: Path) -> None:
    first = create_backend_keypair(tmp_path / "a.jwk", tmp_path / "a.pub.jwk")
    second = create_backend_keypair(tmp_path / "b.pem", tmp_path / "b.pub.pem")
    keys = load_backend_keys([tmp_path / "a.pub.jwk", tmp_path / "b.pub.pem"])
    assert set(keys.by_kid) == {first.thumbprint(), second.thumbprint()}


def test_wrong_backend_keys_are_named(tmp_path: Path) -> None:
    create_backend_keypair(tmp_path / "b.jwk", tmp_path / "b.pub.jwk")
    with pytest.raises(CommandKeyError, match="holds a private key"):
        load_backend_keys([tmp_path / "b.jwk"])
    station = create_station_jwk(tmp_path / "station.jwk")
    x25519 = tmp_path / "x.jwk"
    x25519.write_text(json.dumps(station.as_dict(private=False)))
    with pytest.raises(CommandKeyError, match="must be an Ed25519 public key"):
        load_backend_keys([x25519])
    rsa = tmp_path / "rsa.jwk"
    rsa.write_text('{"kty": "RSA", "n": "AQAB", "e": "AQAB"}')
    with pytest.raises(CommandKeyError, match="not an OKP key"):
        load_backend_keys([rsa])
    with pytest.raises(CommandKeyError, match="cannot be read"):
        load_backend_keys([tmp_path / "missing.jwk"])
    with pytest.raises(CommandKeyError, match="two backend keys"):
        load_backend_keys([tmp_path / "b.pub.jwk", tmp_path / "b.pub.jwk"])


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    create_station_jwk(tmp_path / "station.jwk")
    with pytest.raises(FileExistsError):
        create_station_jwk(tmp_path / "station.jwk")
    create_backend_keypair(tmp_path / "b.jwk", tmp_path / "b.pub.jwk")
    with pytest.raises(FileExistsError):
        create_backend_keypair(tmp_path / "b.jwk", tmp_path / "other.pub.jwk")
