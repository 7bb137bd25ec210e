"""Health from the history of attempts: HEALTHY, UNHEALTHY, DEAD, LONG_DEAD, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.ble.health import HealthTracker
from lockgate.model import HardwareState, Health

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def tracker() -> HealthTracker:
    return HealthTracker(T0, dead_after=900 * S, long_dead_after=86400 * S)


def test_not_yet_reached_counts_from_creation() -> None:
    t = tracker()
    assert t.view(T0).health is Health.UNHEALTHY
    assert t.view(T0 + 900 * S).health is Health.DEAD
    assert t.next_change(T0) == T0 + 900 * S


def test_walks_down_and_back() -> None:
    t = tracker()
    t.reached(T0)
    view = t.view(T0 + 10 * S)
    assert (view.health, view.hardware_state, view.last_seen) == (
        Health.HEALTHY,
        HardwareState.NORMAL,
        T0,
    )
    t.missed(T0 + 60 * S)
    assert t.view(T0 + 60 * S).health is Health.UNHEALTHY
    assert t.view(T0 + 60 * S).hardware_state is HardwareState.NOT_RESPONDING
    assert t.next_change(T0 + 60 * S) == T0 + 900 * S
    dead = t.view(T0 + 900 * S)
    assert (dead.health, dead.dead_since) == (Health.DEAD, T0 + 900 * S)
    assert t.next_change(T0 + 900 * S) == T0 + 86400 * S
    assert t.view(T0 + 86400 * S).health is Health.LONG_DEAD
    assert t.next_change(T0 + 86400 * S) is None
    t.reached(T0 + 90000 * S)
    back = t.view(T0 + 90000 * S)
    assert (back.health, back.hardware_state, back.dead_since) == (
        Health.HEALTHY,
        HardwareState.NORMAL,
        None,
    )


def test_hardware_error_sticks_until_the_lock_says_otherwise() -> None:
    t = tracker()
    t.reached(T0, HardwareState.ERROR)
    t.reached(T0 + S)
    assert t.view(T0 + S).hardware_state is HardwareState.ERROR
    t.reached(T0 + 2 * S, HardwareState.NORMAL)
    assert t.view(T0 + 2 * S).hardware_state is HardwareState.NORMAL


def test_long_dead_must_not_come_before_dead() -> None:
    with pytest.raises(ValueError, match="long_dead_after"):
        HealthTracker(T0, dead_after=10 * S, long_dead_after=5 * S)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 100_000)), max_size=30))
def test_health_only_depends_on_last_attempt_and_last_success(
    attempts: list[tuple[bool, int]],
) -> None:
    t = tracker()
    clock = T0
    last_ok: datetime | None = None
    last = None
    for ok, step in attempts:
        clock += step * S
        if ok:
            t.reached(clock)
            last_ok = clock
        else:
            t.missed(clock)
        last = ok
    view = t.view(clock)
    if last:
        assert view.health is Health.HEALTHY
    else:
        silent = clock - (last_ok or T0)
        expected = (
            Health.LONG_DEAD
            if silent >= 86400 * S
            else Health.DEAD
            if silent >= 900 * S
            else Health.UNHEALTHY
        )
        assert view.health is expected
