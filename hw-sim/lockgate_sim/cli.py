"""The ``lockgate-sim`` command: run a simulated world, or act on a running one.

- ``lockgate-sim --config FILE [--bus ADDRESS] [--scenario FILE] [--time-scale X]`` serves the world
  (on a private dbus-daemon of its own unless ``--bus`` names one), prints
  ``DBUS_SYSTEM_BUS_ADDRESS=<address>`` once serving, and runs until SIGINT or SIGTERM.
- ``lockgate-sim ctl --bus ADDRESS [--adapter NAME] ACTION [TARGET…]`` performs one control
  action (:class:`~lockgate_sim.control.Action`) and exits 0, or 1 if the simulator refused it:
  ``ACTION LOCK [VALUE]``, ``adapter-power ADAPTER 0|1``, ``adapter-remove ADAPTER``,
  ``adapter-add ADAPTER [NEW_NAME]``, ``bluez-hang SECONDS``, ``bluez-restart [SECONDS]``.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lockgate_sim.bluez import StationView, UnknownLockError
from lockgate_sim.bus import BusError, PrivateBus
from lockgate_sim.control import Action
from lockgate_sim.remote import SimulatorControl, SimulatorError
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
    parser.add_argument(
        "--adapter",
        default="",
        help="rssi, out-of-range, in-range, slots: act on this adapter only (hci1)",
    )
    parser.add_argument("action", choices=[a.value for a in Action], metavar="ACTION")
    parser.add_argument(
        "target",
        nargs="*",
        metavar="LOCK [VALUE] | ADAPTER [VALUE|NAME] | SECONDS",
        help="a lock and a value; adapter-power ADAPTER 0|1, adapter-remove ADAPTER, "
        "adapter-add ADAPTER [NEW_NAME]; bluez-hang SECONDS, bluez-restart [SECONDS]",
    )
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


class _UsageError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Request:
    """One ``ctl`` action and what it is given."""

    action: Action
    lock: str = ""
    adapter: str = ""
    value: int | None = None
    seconds: float | None = None
    as_name: str = ""


def _request(options: argparse.Namespace) -> _Request:
    """The action and its arguments from the command line, or :class:`_UsageError` when one is
    missing or not a number (the simulator checks the rest: out of range is its refusal)."""
    action = Action(options.action)
    target: list[str] = list(options.target)
    lock = target.pop(0) if action.takes_lock and target else ""
    if action.takes_lock and not lock:
        raise _UsageError(f"{action} needs a LOCK (name or address)")
    adapter: str = options.adapter
    if action.takes_adapter:
        if not target:
            raise _UsageError(f"{action} needs an ADAPTER (hci0)")
        adapter = target.pop(0)
    seconds: float | None = None
    if action.takes_seconds and target:
        try:
            seconds = float(target.pop(0))
        except ValueError as err:
            raise _UsageError("SECONDS must be a number") from err
    as_name = target.pop(0) if action is Action.ADAPTER_ADD and target else ""
    value: int | None = None
    if target:
        try:
            value = int(target.pop(0))
        except ValueError as err:
            raise _UsageError("VALUE must be a whole number") from err
    if target:
        raise _UsageError(f"unexpected {' '.join(target)}")
    return _Request(action, lock, adapter, value, seconds, as_name)


def _ctl(options: argparse.Namespace) -> int:
    try:
        request = _request(options)
    except _UsageError as err:
        _err(f"lockgate-sim ctl: {err}")
        return EXIT_USAGE
    try:
        return asyncio.run(_act(options.bus, request))
    except SimulatorError as err:
        _err(f"lockgate-sim ctl: {err.text}")
        return EXIT_REFUSED
    except (OSError, TimeoutError) as err:
        _err(f"lockgate-sim ctl: cannot reach the simulator: {err}")
        return EXIT_REFUSED


async def _act(bus_address: str, request: _Request) -> int:
    async with SimulatorControl.connect(bus_address) as control:
        if request.action is Action.SHOW:
            for line in _table(await control.show()):
                _out(line)
            return EXIT_OK
        await control.act(
            request.action,
            request.lock,
            request.value,
            adapter=request.adapter or None,
            seconds=request.seconds,
            as_name=request.as_name or None,
        )
        parts = (
            request.action,
            request.lock,
            request.adapter,
            "" if request.value is None else request.value,
            "" if request.seconds is None else f"{request.seconds:g}",
            request.as_name,
        )
        _out(" ".join(str(part) for part in parts if part != ""))
    return EXIT_OK


def _table(view: StationView) -> list[str]:
    """``ctl show``: bluetoothd, each adapter, then one row per lock with what is unusual."""
    bluez = f"bluetoothd {view.bluez}, {view.bluez_restarts} restarts, time_scale={view.time_scale}"
    adapters = [
        f"adapter {a.name} {a.address}: "
        + (
            "unplugged"
            if not a.present
            else f"{'powered' if a.powered else 'off'}, {a.links}/{a.connection_slots} links, "
            f"discovering={a.discovering}, {len(a.devices)} devices"
        )
        for a in view.adapters
    ]
    header = (
        f"{'lock':<18} {'address':<17} {'profile':<7} {'bolt':<9} {'moving':<9} "
        f"{'batt':>4} {'rssi':>4} {'range':<5} {'links':>5}  notes"
    )
    lines = [bluez, *adapters, header]
    for lock in view.locks:
        notes = [
            *([f"via {lock.connected_via}"] if lock.connected_via else []),
            *(f"rssi {name} {rssi}" for name, rssi in sorted(lock.rssi_by_adapter.items())),
            *(
                [f"out of range of {', '.join(lock.out_of_range_of)}"]
                if lock.out_of_range_of
                else []
            ),
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
