"""What signed and sealed commands cost the station, per command, against the gateway's goal.

Goal: the gateway's own share of a command (everything but the radio and the broker) stays under
5 ms. Measured here: ``open_request`` for each form of request, from raw MQTT payload to the plain
request, and for comparison the parsing that follows in every form (``read_envelope`` and
``validate``). Single-threaded, in-process, after a warm-up; each figure is one call.

    .venv/bin/python bench/jose_cost.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from joserfc.jwk import OKPKey

from lockgate.contract.envelope import BackendKeys, Opened, open_request, public_jwk
from lockgate.contract.request import Envelope, read_envelope, validate
from lockgate.contract.signing import seal_credentials, sign_request
from lockgate.contract.station import RegisteredLock, Station
from lockgate.model import Profile

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
BACKEND = OKPKey.generate_key("Ed25519")
STATION_KEY = OKPKey.generate_key("X25519")
# Two trusted keys, as during a rotation: the lookup by kid makes the count irrelevant.
KEYS = BackendKeys.of([BACKEND, OKPKey.generate_key("Ed25519")])
CREDENTIALS = {"K_seed": list(range(100, 116)), "K_u": list(range(200, 224))}
REQUEST: dict[str, Any] = {
    "id": "3f0c6b1e",
    "command": "unlock",
    "bike": "FR1540",
    "user_id": "u-6103",
    "timeout_at": "2026-11-22T10:16:00.000Z",
}
FINGERPRINT_KEY = b"f" * 32


def _open(payload: bytes) -> Opened:
    opened = open_request(
        payload,
        station="FR101",
        backend_keys=KEYS,
        station_key=STATION_KEY,
        require_signed=False,
        now=NOW,
    )
    assert isinstance(opened, Opened), opened
    return opened


def _parse(payload: bytes) -> None:
    envelope = read_envelope(payload, fingerprint_key=FINGERPRINT_KEY)
    assert isinstance(envelope, Envelope)
    validate(envelope, station=STATION, now=NOW)


def _measure(call: Callable[[], object], calls: int) -> tuple[float, float, float]:
    for _ in range(min(200, calls)):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1], samples[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    calls = parser.parse_args().calls

    plain = json.dumps({**REQUEST, "credentials": CREDENTIALS}).encode()
    sealed = {**REQUEST, "credentials": seal_credentials(CREDENTIALS, public_jwk(STATION_KEY))}
    signed = sign_request(
        {**REQUEST, "credentials": CREDENTIALS}, key=BACKEND, station="FR101", now=NOW
    )
    both = sign_request(sealed, key=BACKEND, station="FR101", now=NOW)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("open: plain (passed through)", lambda: _open(plain)),
        ("open: plain, sealed credentials", lambda: _open(json.dumps(sealed).encode())),
        ("open: signed", lambda: _open(signed)),
        ("open: signed, sealed credentials", lambda: _open(both)),
        ("then read_envelope + validate", lambda: _parse(plain)),
        (
            "backend: sign + seal",
            lambda: sign_request(
                {
                    **REQUEST,
                    "credentials": seal_credentials(CREDENTIALS, public_jwk(STATION_KEY)),
                },
                key=BACKEND,
                station="FR101",
                now=NOW,
            ),
        ),
    ]
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"payload bytes: plain {len(plain)}, signed {len(signed)}, signed+sealed {len(both)}")
    print(f"{'case':36} {'median':>9} {'p99':>9} {'max':>9}   (µs, n={calls})")
    for name, call in cases:
        median, p99, worst = _measure(call, calls)
        print(f"{name:36} {median:9.1f} {p99:9.1f} {worst:9.1f}")


if __name__ == "__main__":
    main()
