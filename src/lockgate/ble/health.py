"""A lock's heartbeat_v2 health and hardware_state, worked out from the history of attempts.

Pure: the driver reports every attempt to reach a lock and asks again as time passes; the tracker
says what the lock document should show (mqtt-contract.md, "Lock document"). Time comes in as
arguments.

- HEALTHY: reached at the last attempt.
- UNHEALTHY: the last attempt failed, and the lock was reached within ``dead_after``.
- DEAD: not reached for ``dead_after``; LONG_DEAD: for ``long_dead_after`` (their defaults are
  the driver's settings, :mod:`lockgate.ble.settings`).

A lock not yet tried counts as not reached, from ``last_seen`` (kept in the store) or else from
the tracker's creation: the start-up read settles it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lockgate.model import HardwareState, Health


@dataclass(frozen=True, slots=True)
class HealthView:
    """What the lock document's ``heartbeat_v2`` and ``hardware_state`` show."""

    health: Health
    hardware_state: HardwareState
    last_seen: datetime | None
    dead_since: datetime | None


class HealthTracker:
    """The reachability history of one lock."""

    def __init__(
        self,
        created: datetime,
        *,
        dead_after: timedelta,
        long_dead_after: timedelta,
        last_seen: datetime | None = None,
    ) -> None:
        if long_dead_after < dead_after:
            raise ValueError("long_dead_after must not be shorter than dead_after")
        self._created = created
        self._dead_after = dead_after
        self._long_dead_after = long_dead_after
        self._last_seen = last_seen
        self._last_attempt_ok: bool | None = None
        self._hardware = HardwareState.NORMAL

    @property
    def known(self) -> bool:
        """Something is known of the lock: an attempt was made, or it was seen before."""
        return self._last_attempt_ok is not None or self._last_seen is not None

    def reached(self, at: datetime, hardware_state: HardwareState | None = None) -> None:
        """The lock answered. ``hardware_state`` is what it reported, if anything."""
        self._last_seen = at
        self._last_attempt_ok = True
        if hardware_state is not None:
            self._hardware = hardware_state
        elif self._hardware is HardwareState.NOT_RESPONDING:
            self._hardware = HardwareState.NORMAL

    def missed(self, at: datetime) -> None:
        """An attempt to reach the lock failed (not found, no connection, link lost)."""
        self._last_attempt_ok = False
        del at  # the time of a miss does not matter: health counts from the last success

    def view(self, now: datetime) -> HealthView:
        """Health as of ``now``."""
        since = self._last_seen or self._created
        silent = now - since
        if self._last_attempt_ok:
            health = Health.HEALTHY
        elif silent >= self._long_dead_after:
            health = Health.LONG_DEAD
        elif silent >= self._dead_after:
            health = Health.DEAD
        else:
            health = Health.UNHEALTHY
        hardware = self._hardware
        if health is not Health.HEALTHY:
            hardware = HardwareState.NOT_RESPONDING
        dead_since = since + self._dead_after if health in (Health.DEAD, Health.LONG_DEAD) else None
        return HealthView(health, hardware, self._last_seen, dead_since)

    def next_change(self, now: datetime) -> datetime | None:
        """When :meth:`view` will next change by time alone (to DEAD or LONG_DEAD), if ever."""
        if self._last_attempt_ok:
            return None
        since = self._last_seen or self._created
        for threshold in (self._dead_after, self._long_dead_after):
            if since + threshold > now:
                return since + threshold
        return None
