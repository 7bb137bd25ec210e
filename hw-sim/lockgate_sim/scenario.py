"""Scenario files: a timed sequence of control actions, for demonstrations and fault replays.

A scenario is TOML, one ``[[step]]`` per action, each at a time in lock seconds after the simulator
started (so ``time_scale`` speeds a scenario up with everything else)::

    [[step]]
    at_s = 5.0
    action = "close-by-hand"
    lock = "ISHAREIT-2200540"

    [[step]]
    at_s = 12.5
    action = "battery"
    lock = "ILOCKIT-4500329"
    value = 9

    [[step]]
    at_s = 20.0
    action = "bluez-hang"
    seconds = 3.0

    [[step]]
    at_s = 30.0
    action = "adapter-remove"
    adapter = "hci1"

The actions and their arguments are those of :class:`~lockgate_sim.control.Action`; a file is
checked against the world before the simulator serves, so a typo stops it at start, not halfway.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lockgate_sim.bluez import Station, UnknownAdapterError, UnknownLockError
from lockgate_sim.control import Action, ActionError, apply_action, check_arguments
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")


class Step(BaseModel):
    """One action at one time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: Annotated[float, Field(ge=0)]
    action: Action
    lock: str = ""
    adapter: str = ""
    """The adapter, by its name at that time: ``adapter-*`` need one; ``rssi``,
    ``out-of-range``, ``in-range`` and ``slots`` take one to act on that adapter only."""
    value: int | None = None
    seconds: float | None = None
    """``bluez-hang``: how long (lock seconds); ``bluez-restart``: how long ``org.bluez`` stays
    unowned (default 0)."""
    as_name: str = ""
    """``adapter-add``: the name the adapter comes back under (default its own)."""

    @model_validator(mode="after")
    def _complete(self) -> Step:
        try:
            check_arguments(
                self.action,
                lock=self.lock,
                adapter=self.adapter,
                value=self.value,
                seconds=self.seconds,
                as_name=self.as_name,
            )
        except ActionError as err:
            raise ValueError(str(err)) from err
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    steps: Annotated[list[Step], Field(alias="step")] = []

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        """A scenario from its TOML file (or JSON, as the test harness hands one over)."""
        path = Path(path)
        if path.suffix == ".json":
            return cls.model_validate_json(path.read_text())
        with path.open("rb") as file:
            return cls.model_validate(tomllib.load(file))

    def check_against(self, world: WorldConfig) -> None:
        """Every lock a step names is in ``world`` (by name or address), and every adapter it
        names is one of the world's or one an earlier step plugged back under a new name."""
        known = {lock.name.upper() for lock in world.locks} | {
            lock.address.upper() for lock in world.locks
        }
        adapters = {adapter.name for adapter in world.all_adapters}
        for step in sorted(self.steps, key=lambda s: s.at_s):
            if step.action.takes_lock and step.lock.upper() not in known:
                raise UnknownLockError(f"scenario step at {step.at_s} s: no lock {step.lock!r}")
            if step.adapter and step.adapter not in adapters:
                raise UnknownAdapterError(
                    f"scenario step at {step.at_s} s: no adapter {step.adapter!r}"
                )
            if step.as_name:
                adapters.add(step.as_name)


async def run_scenario(station: Station, scenario: Scenario) -> None:
    """Perform the steps in time order, each when its time comes on the station's clock."""
    for step in sorted(scenario.steps, key=lambda s: s.at_s):
        wait = step.at_s - station.clock.now()
        if wait > 0:
            await station.clock.sleep(wait)
        log.info("scenario: %s %s at %.1f s", step.action, step.lock or step.adapter, step.at_s)
        try:
            apply_action(
                station,
                step.action,
                step.lock,
                step.value,
                adapter=step.adapter,
                seconds=step.seconds,
                as_name=step.as_name,
            )
        except (LookupError, ValueError) as err:
            # The world as it is then refuses the step (an adapter unplugged twice): say so and
            # go on, as a field engineer's script would.
            log.warning("scenario step at %.1f s refused: %s", step.at_s, err)
    log.info("scenario: done")
