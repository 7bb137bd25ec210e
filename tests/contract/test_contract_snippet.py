"""The backend snippet of docs/mqtt-contract.md, run as written against the station's code, and the
documented example token opened by it."""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc.jwk import OKPKey

from lockgate.contract import (
    CommandRequest,
    Envelope,
    RegisteredLock,
    Station,
    read_envelope,
    validate,
)
from lockgate.contract.envelope import BackendKeys, Opened, Refused, open_request, public_jwk
from lockgate.model import ErrorCode, Profile
from lockgate.protocol.credentials import ShareeCredentials

DOC = Path(__file__).parent.parent.parent / "docs" / "mqtt-contract.md"
NOW = datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)
STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    (
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
    ),
)


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    return text[start : text.index("\n#", start + len(title))]


def test_the_documented_backend_snippet_makes_a_request_the_station_opens() -> None:
    code = re.search(r"```python\n(.*?)```", section("### A backend, in Python"), re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)
    signing_key = OKPKey.generate_key("Ed25519")
    station_key = OKPKey.generate_key("X25519")
    k_seed, k_u = bytes(range(100, 116)), bytes(range(200, 224))
    request = {
        "id": "3f0c6b1e",
        "command": "unlock",
        "bike": "FR1540",
        "timeout_at": "2026-11-22T10:16:00.000Z",
        "credentials": {"K_seed": list(k_seed), "K_u": list(k_u)},
    }
    payload = namespace["signed_command"](
        request,
        station="FR101",
        signing_key=signing_key,
        sealing_key=public_jwk(station_key),
    )
    assert k_u.hex() not in payload.decode()
    opened = open_request(
        payload,
        station="FR101",
        backend_keys=BackendKeys.of([signing_key]),
        station_key=station_key,
        require_signed=True,
        now=NOW,
    )
    assert isinstance(opened, Opened)
    envelope = read_envelope(opened.request, fingerprint_key=b"f" * 32)
    assert isinstance(envelope, Envelope)
    verdict = validate(envelope, station=STATION, now=NOW)
    assert isinstance(verdict, CommandRequest)
    assert verdict.credentials == ShareeCredentials(k_seed, k_u)


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_the_documented_example_is_the_token_its_decoded_blocks_show() -> None:
    example = section("### An example")
    found = re.search(r"```text\n(\S+)\n```", example)
    assert found is not None
    token = found.group(1)
    header_segment, payload_segment, _ = token.split(".")
    header, payload, sealed_header = (
        json.loads(block) for block in re.findall(r"```json\n(.*?)```", example, re.S)
    )
    assert header == json.loads(unb64(header_segment))
    assert payload == json.loads(unb64(payload_segment))
    assert sealed_header == json.loads(unb64(payload["credentials"].split(".")[0]))
    status = json.loads(
        re.findall(r"```json\n(.*?)```", section("### Sealed credentials"), re.S)[0]
    )
    assert sealed_header["kid"] == status["sealing_key"]["kid"]  # sealed to the published key
    # Without the backend's key the station knows the token only by its kid.
    result = open_request(
        token.encode(),
        station="FR101",
        backend_keys=BackendKeys(),
        station_key=None,
        require_signed=True,
        now=NOW,
    )
    assert isinstance(result, Refused)
    assert result.error_code is ErrorCode.UNKNOWN_KEY
    assert header["kid"] in result.reason
    assert result.correlation_id == payload["id"]
    assert (payload["aud"], payload["jti"]) == ("FR101", payload["id"])
    timeout_at = datetime.fromisoformat(payload["timeout_at"].replace("Z", "+00:00"))
    assert payload["exp"] == math.ceil(timeout_at.timestamp())
