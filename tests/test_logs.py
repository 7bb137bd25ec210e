"""Log lines: JSON with the bound fields, and secret-named fields never written."""

from __future__ import annotations

import io
import json

import structlog

from lockgate.logs import configure
from lockgate.protocol.credentials import ShareeCredentials


def test_json_lines_carry_bound_fields_and_no_secret() -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    try:
        credentials = ShareeCredentials(bytes(range(16)), bytes(range(100, 124)))
        log = structlog.get_logger("t").bind(station="FR101", bike="FR1540")
        log.info("unlock", command_id="c1", k_u=credentials.k_u.hex(), password="hunter2")
        log.info("with credentials", credentials=credentials, session=repr(credentials))
    finally:
        structlog.reset_defaults()
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
