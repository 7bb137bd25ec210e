"""The demo's world: the simulated locks, and the station registration that matches them.

Three locks, both profiles, as config/sim-demo.toml has them: two sharee locks (one closed, one
open) and one nobond lock. Their keys are made up for the simulator, never a real lock's, so the
demo's backend may hold them and send them in its commands as COPRI would. :data:`BIKES` ties each
simulated lock to the bike id the station registers it under.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.model import Profile
from lockgate_sim.firmware import Bolt
from lockgate_sim.world import LockConfig, WorldConfig

STATION = "DEMO1"
LATITUDE = "47.976634"
LONGITUDE = "7.825490"


@dataclass(frozen=True, slots=True)
class DemoBike:
    """One bike of the demo station: its id, and the simulated lock on it."""

    bike: str
    lock: LockConfig

    @property
    def name(self) -> str:
        return self.lock.name

    @property
    def profile(self) -> Profile:
        return self.lock.profile

    @property
    def guid(self) -> str:
        """COPRI's Ilockit_GUID: the Bluetooth address in the last twelve hex digits."""
        return "00000000-0000-0000-0000-" + self.lock.address.replace(":", "").lower()

    def credentials(self) -> dict[str, object]:
        """The lock's keys in the contract's request form, as the backend sends them."""
        if self.lock.profile is Profile.SHAREE:
            return {"K_seed": self.lock.k_seed, "K_u": self.lock.k_u}
        return {"auth_id": self.lock.auth_id, "phone_id": self.lock.phone_id, "ltk": self.lock.ltk}


BIKES: tuple[DemoBike, ...] = (
    DemoBike(
        "FR1540",
        LockConfig(
            name="ISHAREIT-2200540",
            address="FC:3C:00:2A:2A:DD",
            profile=Profile.SHAREE,
            k_seed="[-91, 77, -54, 24, 37, 48, -69, 29, 109, 19, 44, -34, -42, 35, 123, 46]",
            k_u="[-39, 30, 63, 114, 31, -53, 25, 113, 23, 68, -108, -42, 73, 60, -99, 92, 52, "
            "96, -66, 49, 0, 0, 0, 0]",
            state=Bolt.CLOSED,
            battery=87,
            firmware="2.18",
            rssi=-61,
            motor_ms=1200,
            connect_ms=250,
        ),
    ),
    DemoBike(
        "FR1541",
        LockConfig(
            name="ISHAREIT-2200541",
            address="FC:3C:00:2A:2B:01",
            profile=Profile.SHAREE,
            k_seed="[32, 30, 105, -2, -38, -96, -18, -24, -71, -103, 127, 92, 124, 41, -103, -3]",
            k_u="[-81, -27, -109, 37, 60, -42, 84, -81, 77, -6, -41, 20, 39, -96, -82, -77, -2, "
            "-23, 35, 47, 0, 0, 0, 0]",
            state=Bolt.OPEN,
            battery=92,
            firmware="2.18",
            rssi=-58,
            motor_ms=1200,
            connect_ms=250,
        ),
    ),
    DemoBike(
        "FR1542",
        LockConfig(
            name="ILOCKIT-4500329",
            address="D4:12:99:00:45:03",
            profile=Profile.NOBOND,
            auth_id=3,
            phone_id="8af2211f9ee491c5",
            ltk="b10becb5563bfc1e6f93427ecbc8fe2955e5cd8e46dc8ed4b7c2764d2a5a4d76",
            state=Bolt.CLOSED,
            battery=73,
            firmware="3.04",
            rssi=-68,
            motor_ms=1000,
            connect_ms=300,
        ),
    ),
)


def demo_world(time_scale: float) -> WorldConfig:
    """The simulated world of :data:`BIKES`, every delay multiplied by ``time_scale``."""
    return WorldConfig.model_validate(
        {
            "adapter": {"connection_slots": 5, "time_scale": time_scale},
            "lock": [bike.lock.model_dump() for bike in BIKES],
        }
    )


def bike(bike_id: str) -> DemoBike:
    """The demo bike ``bike_id``; KeyError for any other."""
    for candidate in BIKES:
        if candidate.bike == bike_id:
            return candidate
    raise KeyError(bike_id)
