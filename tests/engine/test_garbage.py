"""Bad input never raises out of submit and never changes a lock (property tests)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.contract.request import FIELDS as REQUEST_FIELDS
from lockgate.model import Admission
from tests.engine.harness import SHAREE_JSON, Harness

FIELDS = [*REQUEST_FIELDS, "extra"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
VALUES = st.sampled_from(
    [
        "unlock",
        "lock",
        "book",
        "force-unlock",
        "provision",
        "FR1540",
        "FR9999",
        "2020-01-01T00:00:00Z",
        "not a time",
        "",
        "x" * 70,
        SHAREE_JSON,
        {"K_seed": "[1, 2]", "K_u": [300]},
        {},
    ]
)
REQUESTS = st.dictionaries(st.sampled_from(FIELDS), VALUES | JSON, max_size=8)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(payload=st.binary(max_size=200))
async def test_any_bytes(harness: Harness, payload: bytes) -> None:
    before = [harness.engine.lock_record(lock.bike) for lock in harness.station.locks]
    submission = await harness.engine.submit(payload)
    assert submission.admission in set(Admission)
    assert [harness.engine.lock_record(lock.bike) for lock in harness.station.locks] == before


@SETTINGS
@given(request=REQUESTS)
async def test_any_request_shape(harness: Harness, request: dict[str, Any]) -> None:
    """Whatever the shape, submit answers; anything but a new valid command changes nothing."""
    before = [harness.engine.lock_record(lock.bike) for lock in harness.station.locks]
    calls = len(harness.radio.calls)
    submission = await harness.engine.submit(json.dumps(request).encode())
    await harness.engine.wait_idle(5)
    if submission.admission is Admission.ACCEPTED:
        return
    assert [harness.engine.lock_record(lock.bike) for lock in harness.station.locks] == before
    assert len(harness.radio.calls) == calls
