"""Shared test configuration: hypothesis profiles and the path of the protocol vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

# CI runs the property tests derandomised, so that a red run can be replayed exactly; locally they
# explore fresh examples each time. No deadline: the suite runs in parallel (pytest-xdist) on a
# shared machine, and how long an example takes is the benchmarks' business, never the tests'.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The byte-exact session frames of docs/protocol.md (copied from shared/vectors)."""
    with (DATA / "ilockit-sessions.json").open() as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded
