"""The simulated world as a TOML file describes it (docs/simulator.md, "The world file").

The edge of hw-sim: pydantic checks the file once, with every problem named, and builds the
firmware models from it. Keys are parsed by the protocol core's credential parsers, so a world
accepts exactly the key forms the daemon accepts (COPRI's ``"[122, -30, …]"`` strings, hex).
"""

from __future__ import annotations

import os
import random
import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate.model import Profile
from lockgate.protocol.credentials import Credentials, NobondCredentials, ShareeCredentials
from lockgate.protocol.errors import CredentialsError
from lockgate.protocol.identity import NAME_PATTERNS, IdentityError, normalise_address
from lockgate_sim.firmware import Bolt, Lock, RandomBytes
from lockgate_sim.linklayer import LinkSettings

ADAPTER_NAME = re.compile(r"^hci\d+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RadioConfig(_Strict):
    """One Bluetooth adapter of the station: an ``[[adapters]]`` entry (each adapter after the
    first), and the first one's keys but ``time_scale``."""

    address: str = "00:1A:7D:DA:71:13"
    name: str = "hci0"
    connection_slots: Annotated[int, Field(ge=1, le=20)] = 5

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_address(value)
        except IdentityError as err:
            raise ValueError(str(err)) from err


ConnectionIntervalMs = Annotated[float, Field(ge=0, le=4000)]
"""0 (an instant radio, as the simulator always was) or BLE's 7.5..4000 ms."""
AdvIntervalMs = Annotated[float, Field(ge=0, le=10240)]
"""0 (a connect meets the lock at once) or BLE's 20..10240 ms."""
PacketLoss = Annotated[float, Field(ge=0, le=0.9)]
SupervisionTimeoutMs = Annotated[float, Field(ge=0, le=32000)]


def _check_intervals(connection_ms: float | None, adv_ms: float | None) -> None:
    if connection_ms is not None and 0 < connection_ms < 7.5:
        raise ValueError("connection_interval_ms is 0 (instant) or 7.5..4000")
    if adv_ms is not None and 0 < adv_ms < 20:
        raise ValueError("adv_interval_ms is 0 (none) or 20..10240")


class AdapterConfig(RadioConfig):
    """The station's first Bluetooth adapter, ``[adapter]``, which carries the world's clock
    and the link layer's defaults for every lock (docs/simulator.md, "The link layer")."""

    time_scale: Annotated[float, Field(gt=0, le=100)] = 1.0
    connection_interval_ms: ConnectionIntervalMs = 0.0
    adv_interval_ms: AdvIntervalMs = 0.0
    packet_loss: PacketLoss = 0.0
    supervision_timeout_ms: SupervisionTimeoutMs | None = None
    """``None``: Linux's 420 ms where the link layer is on, else 0 (a lost link seen at once)."""
    link_seed: int = 0
    """Seeds each lock's packet losses (with its name): the same world loses the same packets."""

    @model_validator(mode="after")
    def _intervals(self) -> AdapterConfig:
        _check_intervals(self.connection_interval_ms, self.adv_interval_ms)
        return self


class LockConfig(_Strict):
    """One lock: identity, credentials, and how it starts."""

    name: str
    address: str
    profile: Profile
    k_seed: str | None = None
    k_u: str | None = None
    auth_id: Annotated[int, Field(ge=0, le=255)] | None = None
    phone_id: str | None = None
    ltk: str | None = None
    state: Bolt = Bolt.CLOSED
    battery: Annotated[int, Field(ge=0, le=100)] = 100
    firmware: str = "2.18"
    rssi: Annotated[int, Field(ge=-127, le=20)] = -60
    motor_ms: Annotated[int, Field(ge=0, le=15000)] = 1000
    connect_ms: Annotated[int, Field(ge=0, le=60000)] = 250
    disconnect_ms: Annotated[int, Field(ge=0, le=60000)] = 0
    """How long bluetoothd takes to answer ``Disconnect``: it answers once the link is down, which
    a lock that went quiet makes wait for the supervision timeout (seconds)."""
    in_range: bool = True
    rssi_by_adapter: dict[str, Annotated[int, Field(ge=-127, le=20)]] = {}
    """The RSSI each named adapter hears the lock at, where it differs from ``rssi``."""
    out_of_range_of: list[str] = []
    """Adapters that do not hear the lock (the others do, if ``in_range``)."""
    connection_interval_ms: ConnectionIntervalMs | None = None
    """The link layer (docs/simulator.md): ``None`` takes ``[adapter]``'s."""
    adv_interval_ms: AdvIntervalMs | None = None
    packet_loss: PacketLoss | None = None
    supervision_timeout_ms: SupervisionTimeoutMs | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_address(value)
        except IdentityError as err:
            raise ValueError(str(err)) from err

    @model_validator(mode="after")
    def _identity(self) -> LockConfig:
        _check_intervals(self.connection_interval_ms, self.adv_interval_ms)
        if not NAME_PATTERNS[self.profile].match(self.name):
            prefix = "ISHAREIT-" if self.profile is Profile.SHAREE else "ILOCKIT-"
            raise ValueError(f"a {self.profile} lock's name must look like {prefix}<digits>")
        try:
            self.credentials()
        except CredentialsError as err:
            raise ValueError(str(err)) from err
        return self

    def credentials(self) -> Credentials:
        """The lock's credentials from the keys of its profile (both profiles' keys never mix)."""
        if self.profile is Profile.SHAREE:
            if self.k_seed is None or self.k_u is None:
                raise CredentialsError("a sharee lock needs k_seed and k_u")
            if self.auth_id is not None or self.phone_id is not None or self.ltk is not None:
                raise CredentialsError("a sharee lock takes k_seed and k_u, not nobond keys")
            return ShareeCredentials.parse(self.k_seed, self.k_u)
        if self.auth_id is None or self.phone_id is None or self.ltk is None:
            raise CredentialsError("a nobond lock needs auth_id, phone_id and ltk")
        if self.k_seed is not None or self.k_u is not None:
            raise CredentialsError("a nobond lock takes auth_id, phone_id and ltk, not sharee keys")
        return NobondCredentials.parse(self.auth_id, self.phone_id, self.ltk)

    def build(self, random_bytes: RandomBytes = os.urandom) -> Lock:
        return Lock(
            name=self.name,
            address=self.address,
            credentials=self.credentials(),
            random_bytes=random_bytes,
            bolt=self.state,
            battery=self.battery,
            firmware=self.firmware,
            rssi=self.rssi,
            motor_ms=self.motor_ms,
            connect_ms=self.connect_ms,
            disconnect_ms=self.disconnect_ms,
            in_range=self.in_range,
        )


class WorldConfig(_Strict):
    """A whole simulated station: its adapters (``[adapter]``, then any ``[[adapters]]``) and
    its locks."""

    adapter: AdapterConfig = AdapterConfig()
    adapters: list[RadioConfig] = []
    """Further adapters, each with its own name, address and connection slots."""
    locks: Annotated[list[LockConfig], Field(alias="lock")] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def all_adapters(self) -> tuple[RadioConfig, ...]:
        """Every adapter of the world, ``[adapter]`` first."""
        return (self.adapter, *self.adapters)

    @model_validator(mode="after")
    def _unique(self) -> WorldConfig:
        for key in ("name", "address"):
            seen: set[str] = set()
            for lock in self.locks:
                value = getattr(lock, key)
                if value in seen:
                    raise ValueError(f"two locks share the {key} {value}")
                seen.add(value)
            seen = set()
            for adapter in self.all_adapters:
                value = getattr(adapter, key)
                if value in seen:
                    raise ValueError(f"two adapters share the {key} {value}")
                seen.add(value)
        for adapter in self.adapters:
            if not ADAPTER_NAME.match(adapter.name):
                raise ValueError(f"an adapter's name looks like hci<digits>, not {adapter.name!r}")
        names = {adapter.name for adapter in self.all_adapters}
        for lock in self.locks:
            for name in (*lock.rssi_by_adapter, *lock.out_of_range_of):
                if name not in names:
                    raise ValueError(f"lock {lock.name} names adapter {name!r}, not in the world")
        return self

    @classmethod
    def load(cls, path: Path | str) -> WorldConfig:
        """A world from its TOML file (or from JSON, as the test harness hands one over)."""
        path = Path(path)
        if path.suffix == ".json":
            return cls.model_validate_json(path.read_text())
        with path.open("rb") as file:
            return cls.model_validate(tomllib.load(file))

    def to_json(self) -> str:
        """The world as a child simulator reads it back (``time_scale`` is ``[adapter]``'s only,
        so the further adapters' are left out)."""
        return self.model_dump_json(
            by_alias=True, exclude_none=True, exclude={"adapters": {"__all__": {"time_scale"}}}
        )

    def link_settings(self, lock: LockConfig) -> LinkSettings:
        """The lock's link-layer parameters: its own keys, else ``[adapter]``'s."""
        adapter = self.adapter

        def pick(own: float | None, default: float) -> float:
            return default if own is None else own

        supervision = lock.supervision_timeout_ms
        interval = pick(lock.connection_interval_ms, adapter.connection_interval_ms)
        return LinkSettings(
            connection_interval_ms=interval,
            adv_interval_ms=pick(lock.adv_interval_ms, adapter.adv_interval_ms),
            packet_loss=pick(lock.packet_loss, adapter.packet_loss),
            supervision_timeout_ms=adapter.supervision_timeout_ms
            if supervision is None
            else supervision,
            # Not for secrets: a seeded stream, so that a world loses the same packets each run.
            random=random.Random(f"{adapter.link_seed}:{lock.name}"),  # noqa: S311
        )

    def with_time_scale(self, time_scale: float) -> WorldConfig:
        adapter = self.adapter.model_copy(update={"time_scale": time_scale})
        return self.model_copy(update={"adapter": adapter})
