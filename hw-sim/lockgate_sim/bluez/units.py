"""What the simulated station's parts share without knowing the station: the locks' clock, and
each lock's own timers and figures whatever adapter hears it."""

import asyncio
from dataclasses import dataclass, field

from lockgate_sim.firmware import Lock
from lockgate_sim.linklayer import LinkSettings, RadioCounts
from lockgate_sim.timings import LockTimes


class Clock:
    """Lock seconds on the event loop's clock: ``time_scale`` 0.05 runs it all 20 times faster."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self._origin = asyncio.get_running_loop().time()

    def now(self) -> float:
        return (asyncio.get_running_loop().time() - self._origin) / self.time_scale

    def real(self, seconds: float) -> float:
        return seconds * self.time_scale

    def loop_time(self, lock_seconds: float) -> float:
        """The event loop's time at which the lock's clock reads ``lock_seconds``."""
        return self._origin + lock_seconds * self.time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real(seconds))


@dataclass(slots=True)
class LockUnit:
    """One lock and what is its own whatever adapter it is heard by: its timers, its times."""

    lock: Lock
    times: LockTimes = field(default_factory=LockTimes)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    link: LinkSettings = field(default_factory=LinkSettings)
    """Its link layer's parameters (:mod:`lockgate_sim.linklayer`)."""
    counts: RadioCounts = field(default_factory=RadioCounts)
    """Its ATT round trips and connection events, over every adapter."""
