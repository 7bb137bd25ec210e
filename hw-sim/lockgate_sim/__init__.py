"""lockgate_sim: the hardware simulator, a fake BlueZ on D-Bus serving simulated Ilockit locks.

The layers, lowest first: :mod:`~lockgate_sim.firmware` (the lock, pure), :mod:`~lockgate_sim.world`
(the TOML world), :mod:`~lockgate_sim.bluez` (the D-Bus objects bleak talks to),
:mod:`~lockgate_sim.control` and :mod:`~lockgate_sim.scenario` (the levers),
:mod:`~lockgate_sim.bus` (a private dbus-daemon), :mod:`~lockgate_sim.simulator` (one running
simulator), and on top :mod:`~lockgate_sim.cli` (``lockgate-sim``) and :mod:`~lockgate_sim.testing`
(``run_simulator`` for tests). See docs/simulator.md.
"""

from lockgate_sim.control import Action
from lockgate_sim.remote import SimulatorControl, SimulatorError
from lockgate_sim.scenario import Scenario, Step
from lockgate_sim.testing import RunningSimulator, SimulatorStartError, run_simulator
from lockgate_sim.world import AdapterConfig, LockConfig, RadioConfig, WorldConfig

__all__ = [
    "Action",
    "AdapterConfig",
    "LockConfig",
    "RadioConfig",
    "RunningSimulator",
    "Scenario",
    "SimulatorControl",
    "SimulatorError",
    "SimulatorStartError",
    "Step",
    "WorldConfig",
    "run_simulator",
]
