"""Log lines: JSON with the journal's conventions and the bound fields; secrets never written."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from lockgate.logs import bound, configure, under_journal
from lockgate.protocol.credentials import ShareeCredentials


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_json_lines_carry_bound_fields_and_no_secret() -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    credentials = ShareeCredentials(bytes(range(16)), bytes(range(100, 124)))
    log = structlog.get_logger("t").bind(station="FR101", bike="FR1540")
    log.info("unlock", command_id="c1", k_u=credentials.k_u.hex(), password="hunter2")
    log.info("with credentials", credentials=credentials, session=repr(credentials))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "unlock"
    assert (lines[0]["station"], lines[0]["bike"], lines[0]["command_id"]) == (
        "FR101",
        "FR1540",
        "c1",
    )
    assert lines[0]["k_u"] == "<redacted>"
    assert lines[0]["password"] == "<redacted>"
    text = out.getvalue()
    for secret in (credentials.k_u.hex(), credentials.k_seed.hex(), "hunter2", "0, 1, 2, 3"):
        assert secret not in text


def test_priority_beside_level_and_context_bound_per_task() -> None:
    out = io.StringIO()
    configure(json=True, level="DEBUG", stream=out)
    log = structlog.get_logger("t")
    with bound(station="FR101", bike="FR1540", command_id="c7"):
        log.error("motor_jammed")
        log.warning("slow")
    log.info("idle")
    log.debug("tick")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["level"], line["PRIORITY"]) for line in lines] == [
        ("error", 3),
        ("warning", 4),
        ("info", 6),
        ("debug", 7),
    ]
    assert (lines[0]["station"], lines[0]["bike"], lines[0]["command_id"]) == (
        "FR101",
        "FR1540",
        "c7",
    )
    assert "bike" not in lines[2]  # the binding ended with its block


def test_secrets_are_redacted_by_name_and_at_any_depth() -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    jwk = {"kty": "OKP", "crv": "X25519", "x": "public-part", "d": "private-part"}
    structlog.get_logger("t").info(
        "keys",
        station_jwk=jwk,
        mqtt_password="pw1",
        station_private_key="pk1",
        request={"bike": "B1", "credentials": {"k_seed": "ks1"}, "items": [{"ltk": "l1"}]},
        d="d1",
        kid="thumbprint",
    )
    line = json.loads(out.getvalue())
    assert line["station_jwk"] == {**jwk, "d": "<redacted>"}
    assert (line["mqtt_password"], line["station_private_key"], line["d"]) == ("<redacted>",) * 3
    assert line["request"] == {
        "bike": "B1",
        "credentials": "<redacted>",
        "items": [{"ltk": "<redacted>"}],
    }
    assert line["kid"] == "thumbprint"
    for secret in ("private-part", "pw1", "pk1", "ks1", "l1", "d1"):
        assert secret not in out.getvalue()


def test_the_journal_gets_a_priority_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # journald hands the service a stream and names it in JOURNAL_STREAM (device:inode); a file
    # stands in for that stream here, named the same way.
    with (tmp_path / "journal").open("w+") as stream:
        info = Path(stream.name).stat()
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert under_journal(stream)
        configure(stream=stream)
        structlog.get_logger("t").warning("broker_unreachable", station="FR101")
        structlog.get_logger("t").info("ready")
        stream.seek(0)
        lines = stream.read().splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<6>"]
    first = json.loads(lines[0][3:])
    assert (first["event"], first["level"], first["PRIORITY"]) == (
        "broker_unreachable",
        "warning",
        4,
    )
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    assert not under_journal(io.StringIO())
    with (tmp_path / "other").open("w") as other:
        assert not under_journal(other)  # another stream than the journal's: no prefix


def test_a_terminal_gets_readable_lines() -> None:
    out = io.StringIO()
    configure(json=False, stream=out)
    structlog.get_logger("t").info("ready", station="FR101", password="hunter2")
    text = out.getvalue()
    assert "ready" in text
    assert "station=FR101" in text
    assert "hunter2" not in text
    assert not text.startswith("{")
