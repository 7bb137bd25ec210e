"""What each simulated lock really spent on connects and on its motor, by the simulator's clock.

A benchmark of the gateway takes the lock's own time off a command's end-to-end time. The world
file's ``connect_ms`` and ``motor_ms`` are what the lock is meant to take; the simulator's timers
wake a millisecond or two after them, and that lateness is the simulator's, not the gateway's.
So the station measures every connect (from the ``Connect`` call received to ``ServicesResolved``
emitted) and every motor run (from the motion starting to its final status indicated) and keeps
them here per lock; the control interface shows them (``Show``, ``Times``) so that a run can
subtract the real figures. All in lock seconds (real seconds at ``time_scale`` 1).
"""

from dataclasses import dataclass


@dataclass(slots=True)
class LockTimes:
    """One lock's connects and motor runs: the last of each, and the totals since the start."""

    connects: int = 0
    """Connects that reached ServicesResolved."""
    connect_s_total: float = 0.0
    last_connect_s: float | None = None
    """From the ``Connect`` call received to ``ServicesResolved`` emitted; ``None`` before one."""
    motions: int = 0
    """Motor runs that ended (a jammed one included; a bolt moved by hand is no motor run, and
    a run cut short by a power cycle never ended)."""
    motion_s_total: float = 0.0
    last_motion_s: float | None = None
    """From the motion starting (the command taken) to its final status indicated."""

    def connected(self, seconds: float) -> None:
        self.connects += 1
        self.connect_s_total += seconds
        self.last_connect_s = seconds

    def moved(self, seconds: float) -> None:
        self.motions += 1
        self.motion_s_total += seconds
        self.last_motion_s = seconds
