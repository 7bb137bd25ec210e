"""``lockgate keys``: its files sign and open real requests; it prints no private byte."""

from __future__ import annotations

import argparse
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockgate.cli.keys import add_parser
from lockgate.contract.envelope import Opened, open_request
from lockgate.contract.signing import seal_credentials, sign_request
from lockgate.store.command_keys import (
    load_backend_keys,
    load_signing_key,
    load_station_jwk,
)

NOW = datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)


def keys(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="lockgate")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", *arguments])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_keys_it_makes_sign_seal_and_open_a_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station_file = tmp_path / "station.jwk"
    code, out, _ = keys(capsys, "station", "--out", str(station_file))
    assert code == 0
    station_public = json.loads(out)
    assert set(station_public) == {"kty", "crv", "x", "kid"}
    assert stat.S_IMODE(station_file.stat().st_mode) == 0o600
    private_d = json.loads(station_file.read_text())["d"]
    assert private_d not in out

    private, public = tmp_path / "backend.pem", tmp_path / "backend.pub.jwk"
    code, out, _ = keys(capsys, "backend", "--out", str(private), "--public", str(public))
    assert code == 0
    backend_public = json.loads(out)
    assert "d" not in backend_public

    code, out, _ = keys(capsys, "thumbprint", str(station_file))
    assert (code, out.strip()) == (0, station_public["kid"])
    code, out, _ = keys(capsys, "thumbprint", str(public))
    assert (code, out.strip()) == (0, backend_public["kid"])

    request = {
        "id": "c1",
        "command": "unlock",
        "bike": "FR1540",
        "timeout_at": "2026-11-22T10:16:00.000Z",
        "credentials": seal_credentials({"K_seed": [1] * 16, "K_u": [2] * 24}, station_public),
    }
    token = sign_request(request, key=load_signing_key(private), station="FR101", now=NOW)
    opened = open_request(
        token,
        station="FR101",
        backend_keys=load_backend_keys([public]),
        station_key=load_station_jwk(station_file, environ={}),
        require_signed=True,
        now=NOW,
    )
    assert isinstance(opened, Opened)
    assert (opened.signed, opened.sealed, opened.key_id) == (True, True, backend_public["kid"])


def test_a_key_file_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station_file = tmp_path / "station.jwk"
    assert keys(capsys, "station", "--out", str(station_file))[0] == 0
    before = station_file.read_bytes()
    code, out, err = keys(capsys, "station", "--out", str(station_file))
    assert (code, out) == (1, "")
    assert "never overwritten" in err
    assert station_file.read_bytes() == before


def test_an_unreadable_key_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = keys(capsys, "thumbprint", str(tmp_path / "missing.jwk"))
    assert code == 1
    assert "missing.jwk: cannot be read" in err
