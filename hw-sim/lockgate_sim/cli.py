"""The ``lockgate-sim`` command: run a simulated world, or act on a running one.

- ``lockgate-sim --config FILE [--bus ADDRESS] [--scenario FILE] [--time-scale X]`` serves the world
  (on a private dbus-daemon of its own unless ``--bus`` names one), prints
  ``DBUS_SYSTEM_BUS_ADDRESS=<address>`` once serving, and runs until SIGINT or SIGTERM.
- ``lockgate-sim ctl --bus ADDRESS ACTION [LOCK] [VALUE]`` performs one control action
  (:class:`~lockgate_sim.control.Action`) and exits 0, or 1 if the simulator refused it.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from lockgate_sim.bluez import StationView, UnknownLockError
from lockgate_sim.bus import BusError, PrivateBus
from lockgate_sim.control import Action, SimulatorControl, SimulatorError
from lockgate_sim.scenario import Scenario
from lockgate_sim.simulator import NameTakenError, serve
from lockgate_sim.world import WorldConfig

ADDRESS_VARIABLE = "DBUS_SYSTEM_BUS_ADDRESS"
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def _out(line: str) -> None:
    """A line of the command's output (stdout, flushed: a test or script reads it live)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockgate-sim",
        description="Simulated Ilockit locks behind a fake BlueZ on D-Bus "
        "(see 'lockgate-sim ctl --help' to act on a running one).",
    )
    parser.add_argument("--config", required=True, type=Path, help="the world's TOML file")
    parser.add_argument("--bus", help="join this bus instead of starting a private dbus-daemon")
    parser.add_argument("--scenario", type=Path, help="a TOML file of timed control actions")
    parser.add_argument("--time-scale", type=float, help="override the world's adapter.time_scale")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return parser


def _ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockgate-sim ctl",
        description="Act on a running simulator. Actions: " + ", ".join(a.value for a in Action),
    )
    parser.add_argument("--bus", required=True, help="the address lockgate-sim printed")
    parser.add_argument("action", choices=[a.value for a in Action], metavar="ACTION")
    parser.add_argument("target", nargs="*", metavar="LOCK [VALUE]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ctl":
        return _ctl(_ctl_parser().parse_args(args[1:]))
    options = _run_parser().parse_args(args)
    logging.basicConfig(
        level=options.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        world = WorldConfig.load(options.config)
        if options.time_scale is not None:
            world = world.with_time_scale(options.time_scale)
        scenario = None if options.scenario is None else Scenario.load(options.scenario)
        if scenario is not None:
            scenario.check_against(world)
    except (OSError, ValueError, ValidationError, UnknownLockError) as err:
        _err(f"lockgate-sim: {err}")
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(world, options.bus, scenario))
    except (BusError, NameTakenError, OSError, TimeoutError) as err:
        _err(f"lockgate-sim: {err or type(err).__name__}")
        return EXIT_USAGE


async def _serve(world: WorldConfig, bus_address: str | None, scenario: Scenario | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if bus_address is None:
                bus = await stack.enter_async_context(PrivateBus())
                bus_address = bus.address
            await stack.enter_async_context(serve(bus_address, world, scenario=scenario))
            _out(f"{ADDRESS_VARIABLE}={bus_address}")
            await stop.wait()
            logging.getLogger("lockgate_sim").info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


def _ctl(options: argparse.Namespace) -> int:
    action = Action(options.action)
    target: list[str] = list(options.target)
    lock = target.pop(0) if action.takes_lock and target else ""
    if action.takes_lock and not lock:
        _err(f"lockgate-sim ctl: {action} needs a LOCK (name or address)")
        return EXIT_USAGE
    value: int | None = None
    if target:
        try:
            value = int(target.pop(0))
        except ValueError:
            _err("lockgate-sim ctl: VALUE must be a whole number")
            return EXIT_USAGE
    if target:
        _err(f"lockgate-sim ctl: unexpected {' '.join(target)}")
        return EXIT_USAGE
    try:
        return asyncio.run(_act(options.bus, action, lock, value))
    except SimulatorError as err:
        _err(f"lockgate-sim ctl: {err.text}")
        return EXIT_REFUSED
    except (OSError, TimeoutError) as err:
        _err(f"lockgate-sim ctl: cannot reach the simulator: {err}")
        return EXIT_REFUSED


async def _act(bus_address: str, action: Action, lock: str, value: int | None) -> int:
    async with SimulatorControl.connect(bus_address) as control:
        if action is Action.SHOW:
            for line in _table(await control.show()):
                _out(line)
            return EXIT_OK
        await control.act(action, lock, value)
        _out(f"{action} {lock} {'' if value is None else value}".rstrip())
    return EXIT_OK


def _table(view: StationView) -> list[str]:
    """``ctl show``: the adapter, then one row per lock with what is unusual about it."""
    adapter = (
        f"adapter {view.adapter}: {view.links}/{view.connection_slots} links, "
        f"discovering={view.discovering}, time_scale={view.time_scale}"
    )
    header = (
        f"{'lock':<18} {'address':<17} {'profile':<7} {'bolt':<9} {'moving':<9} "
        f"{'batt':>4} {'rssi':>4} {'range':<5} {'links':>5}  notes"
    )
    lines = [adapter, header]
    for lock in view.locks:
        notes = [
            *([f"jam x{lock.jams_pending}"] if lock.jams_pending else []),
            *([f"refuse x{lock.refuse_connects}"] if lock.refuse_connects else []),
            *(["alarm"] if lock.alarm else []),
            *(["bike moving"] if lock.bike_moving else []),
            *(["sensor fault"] if lock.sensor_fault else []),
        ]
        row = (
            f"{lock.name:<18} {lock.address:<17} {lock.profile:<7} "
            f"{lock.bolt:<9} {lock.moving or '-':<9} {lock.battery:>4} "
            f"{lock.rssi:>4} {'yes' if lock.in_range else 'no':<5} {lock.links:>5}  "
        )
        lines.append((row + ", ".join(notes)).rstrip())
    return lines
