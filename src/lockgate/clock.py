"""The wall clock and the monotonic clock, in one place, and whether the wall clock can be trusted.

Every layer takes time as an argument (a ``clock`` callable) so that tests control it; these are the
ones a running gateway passes. It imports nothing of the project, so any layer may use it.

A Raspberry Pi has no real-time clock: it boots with the time it shut down at (fake-hwclock) or
1970, until NTP steps it. So the station tells durations on the monotonic clock (which no step
moves), compares the backend's absolute times with the wall clock, and keeps track of two facts
about the wall clock (docs/station.md, "Time on a station without an RTC"):

- whether it is **synchronised**, from a :class:`SyncSource`: the kernel's NTP status
  (``adjtimex`` with no change asked, :class:`KernelSync`), or systemd-timesyncd's marker file
  ``/run/systemd/timesync/synchronized`` (:class:`MarkerSync`), which timesyncd touches at each
  synchronisation. The hardened unit's system-call filter (``ProtectClock=yes``, and
  ``@system-service`` without ``@clock``) refuses ``adjtimex`` even to read, so :func:`sync_source`
  ``auto`` reads the kernel where it may and the marker where it may not.
- whether it **stepped**: :class:`StationClock` compares the wall clock with the monotonic one at
  each :meth:`~StationClock.check`; when they drift apart by more than :data:`STEP_THRESHOLD_S`,
  the wall clock stepped by that much.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

STEP_THRESHOLD_S = 2.0
"""Wall and monotonic time moving apart by more than this is a step of the wall clock."""
TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
"""Touched by systemd-timesyncd each time it synchronised the clock (systemd-timesyncd(8))."""


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def monotonic() -> float:
    """Seconds on the monotonic clock (CLOCK_MONOTONIC: no step moves it; asyncio's loop time)."""
    return time.monotonic()


class SyncSource(Protocol):
    """Whether the wall clock is synchronised: ``None`` when this source cannot tell."""

    name: str

    def synchronised(self) -> bool | None: ...


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): the fields up to ``tai``, then room for the reserved ones.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5  # adjtimex's answer while the clock is not synchronised
_STA_UNSYNC = 0x0040


class KernelSync:
    """The kernel's NTP status: ``adjtimex`` asking no change (what ``timedatectl``'s "System clock
    synchronized" and chrony's and ntpd's ``leap status`` rest on). ``None`` where the call is
    refused (a seccomp filter, as the hardened unit's) or missing."""

    name = "kernel"

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def synchronised(self) -> bool | None:
        timex = _Timex()  # modes 0: read only
        state = self._libc.adjtimex(ctypes.byref(timex))
        if state < 0:
            code = ctypes.get_errno()
            if code in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                return None
            raise OSError(code, "adjtimex")
        return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


class MarkerSync:
    """A file that is there once the clock was synchronised: systemd-timesyncd's
    ``/run/systemd/timesync/synchronized`` (on a tmpfs, so gone at each boot) by default."""

    name = "timesyncd"

    def __init__(self, path: Path = TIMESYNCD_MARKER) -> None:
        self.path = path

    def synchronised(self) -> bool | None:
        try:
            return self.path.exists()
        except OSError:
            return None


class _Auto:
    """The kernel where the call is allowed, else timesyncd's marker."""

    def __init__(self, kernel: KernelSync, marker: MarkerSync) -> None:
        self._kernel: KernelSync | None = kernel
        self._marker = marker
        self.name = "auto"

    def synchronised(self) -> bool | None:
        if self._kernel is not None:
            answer = self._kernel.synchronised()
            if answer is not None:
                self.name = "kernel"
                return answer
            self._kernel = None  # refused once, refused always: the filter does not change
        self.name = "timesyncd"
        return self._marker.synchronised()


def sync_source(kind: str, marker: Path = TIMESYNCD_MARKER) -> SyncSource:
    """``auto``, ``kernel`` or ``timesyncd`` (the marker file at ``marker``)."""
    if kind == "kernel":
        return KernelSync()
    if kind == "timesyncd":
        return MarkerSync(marker)
    if kind == "auto":
        return _Auto(KernelSync(), MarkerSync(marker))
    raise ValueError(f"unknown clock source {kind!r}")


class AlwaysSynced:
    """For tests and tools that do not care: the wall clock is taken as synchronised."""

    name = "assumed"

    def synchronised(self) -> bool | None:
        return True


@dataclass(frozen=True, slots=True)
class ClockChange:
    """What one :meth:`StationClock.check` found: a step of the wall clock (signed seconds,
    forward positive), and whether the synchronised state changed."""

    step_s: float | None = None
    synced_changed: bool = False


class StationClock:
    """The station's view of time: the wall clock, the monotonic clock, whether the wall clock is
    synchronised (and since when), and its steps. :meth:`check` is called periodically."""

    def __init__(
        self,
        source: SyncSource | None = None,
        *,
        wall: Callable[[], datetime] = utc_now,
        mono: Callable[[], float] = monotonic,
        threshold_s: float = STEP_THRESHOLD_S,
    ) -> None:
        self.source: SyncSource = source if source is not None else AlwaysSynced()
        self.wall = wall
        self.mono = mono
        self._threshold_s = threshold_s
        self._offset = self._read_offset()
        self.synced = bool(self.source.synchronised())
        self.since: datetime | None = wall() if self.synced else None

    def now(self) -> datetime:
        return self.wall()

    def is_synced(self) -> bool:
        return self.synced

    def _read_offset(self) -> float:
        return self.wall().timestamp() - self.mono()

    def check(self) -> ClockChange:
        """Looks at both clocks and the source once: a step since the last look, and a change of
        the synchronised state (``since`` is when this station first saw it synchronised)."""
        offset = self._read_offset()
        step: float | None = None
        if abs(offset - self._offset) > self._threshold_s:
            step = offset - self._offset
        self._offset = offset
        answer = self.source.synchronised()
        synced = bool(answer)
        changed = synced != self.synced
        if changed:
            self.synced = synced
            self.since = self.wall() if synced else None
        return ClockChange(step, changed)
