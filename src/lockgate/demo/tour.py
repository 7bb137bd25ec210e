"""The demo's scripted tour: what a station does in a day, step by step, each checked.

Every :class:`Step` has a caption (what the viewer is about to see), an action on the running
:class:`~lockgate.demo.session.Demo`, and the outcome it should have, judged only from what the
backend received over MQTT and from where the simulated bolts really are, as a backend integrator
or a field engineer would judge it. :func:`run_tour` runs the steps in order and reports each
one's :class:`Outcome` as it ends; the headless runner prints them, the view shows them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lockgate.contract import CommandDocument, LockStateEvent, RadioEvent
from lockgate.demo.backend import StationPicture
from lockgate.demo.session import DEMO_USER, Demo
from lockgate.model import (
    BookingState,
    Cause,
    CommandState,
    ErrorCode,
    HardwareState,
    LockState,
    RadioState,
    StationState,
)

# Generous: two cores shared by everything, and a lock's motor takes its time.
STEP_TIMEOUT_S = 60.0
FINAL = (CommandState.SUCCESS, CommandState.ERROR)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a step ended: ``ok`` when it had the outcome it should; ``detail`` says what was seen."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Step:
    caption: str
    run: Callable[[Demo], Awaitable[Outcome]]


# --- what the backend sees ---------------------------------------------------------------------


async def _until(
    demo: Demo, predicate: Callable[[StationPicture], bool], timeout_s: float = STEP_TIMEOUT_S
) -> bool:
    """Wait until the backend's picture satisfies ``predicate``; False after ``timeout_s``, or at
    once when the station's process has exited (nothing more will come)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await demo.backend.wait_for(predicate, min(1.0, deadline - loop.time())):
            return True
        if not demo.station.running:
            return predicate(demo.backend.picture)
    return False


def _document(picture: StationPicture, command_id: str) -> CommandDocument | None:
    return picture.commands.get(command_id)


async def _ended(demo: Demo, command_id: str) -> CommandDocument | None:
    """The command's final document, or None if it did not end in time."""
    ended = await _until(
        demo,
        lambda p: (d := _document(p, command_id)) is not None and d.state.value in FINAL,
        STEP_TIMEOUT_S,
    )
    return demo.backend.picture.commands[command_id] if ended else None


def _said(document: CommandDocument | None) -> str:
    if document is None:
        return "no final command document"
    if document.error_code is None:
        return f"{document.name} {document.state.value}"
    return f"{document.name} {document.state.value} {document.error_code}: {document.state.reason}"


async def _lock_shows(demo: Demo, bike: str, state: LockState) -> bool:
    return await _until(
        demo,
        lambda p: (lock := p.locks.get(bike)) is not None and lock.lock_state is state,
        STEP_TIMEOUT_S,
    )


async def _succeeds(demo: Demo, command_id: str) -> tuple[bool, str]:
    document = await _ended(demo, command_id)
    return document is not None and document.state.value is CommandState.SUCCESS, _said(document)


async def _watched(demo: Demo, bike: str) -> bool:
    """Wait until the station holds a link to ``bike`` (it watches open locks), as the simulator
    shows it: a bolt moved by hand is seen at once only then."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while await demo.links(bike) == 0:  # noqa: ASYNC110 - the lock is across the bus
                await asyncio.sleep(0.1)
    except TimeoutError:
        return False
    return True


# --- the steps ---------------------------------------------------------------------------------


async def _online(demo: Demo) -> Outcome:
    online = await _until(
        demo,
        lambda p: p.status is not None and p.status.state is StationState.ONLINE,
        STEP_TIMEOUT_S,
    )
    status = demo.backend.picture.status
    if not online or status is None:
        return Outcome(ok=False, detail="no online status from the station")
    return Outcome(ok=True, detail=f"station {status.station} online, {len(status.locks)} locks")


async def _provision(demo: Demo) -> Outcome:
    ids = [await demo.command("provision", b.bike) for b in demo.bikes]
    results = [await _succeeds(demo, command_id) for command_id in ids]
    reads = [await demo.command("sync-device", b.bike) for b in demo.bikes]
    results += [await _succeeds(demo, command_id) for command_id in reads]
    truths = {b.bike: await demo.bolt(b.bike) for b in demo.bikes}
    agree = all([await _lock_shows(demo, bike, LockState(bolt)) for bike, bolt in truths.items()])
    ok = all(ok for ok, _ in results) and agree
    shown = ", ".join(f"{bike} {bolt}" for bike, bolt in truths.items())
    failed = "; ".join(said for ok, said in results if not ok)
    return Outcome(ok, f"read: {shown}" + (f"; failed: {failed}" if failed else ""))


async def _book(demo: Demo) -> Outcome:
    ok, said = await _succeeds(demo, await demo.command("book", "FR1540", user_id=DEMO_USER))
    booked = await _until(
        demo,
        lambda p: (
            (lock := p.locks.get("FR1540")) is not None
            and lock.booking.state is BookingState.BOOKED
        ),
        STEP_TIMEOUT_S,
    )
    return Outcome(ok and booked, f"{said}; FR1540 booking {'booked' if booked else 'unchanged'}")


async def _unlock(demo: Demo) -> Outcome:
    ok, said = await _succeeds(demo, await demo.unlock("FR1540"))
    shown = await _lock_shows(demo, "FR1540", LockState.UNLOCKED)
    bolt = await demo.bolt("FR1540")
    return Outcome(ok and shown and bolt == "unlocked", f"{said}; the bolt is {bolt}")


async def _close_by_hand(demo: Demo) -> Outcome:
    before = len(demo.backend.picture.history)
    if not await _watched(demo, "FR1540"):
        return Outcome(ok=False, detail="the station holds no link to the open FR1540")
    await demo.close_by_hand("FR1540")
    seen = await _until(
        demo,
        lambda p: any(
            isinstance(e, LockStateEvent)
            and e.bike == "FR1540"
            and e.lock_state is LockState.LOCKED
            and e.cause in (Cause.MANUAL, Cause.SYNC)
            for e in p.history[before:]
        ),
        STEP_TIMEOUT_S,
    )
    return Outcome(seen, "event: FR1540 locked by hand" if seen else "no locked event for FR1540")


async def _jam(demo: Demo) -> Outcome:
    await demo.jam("FR1542")
    document = await _ended(demo, await demo.unlock("FR1542", user_id=None))
    blocked = document is not None and document.error_code is ErrorCode.LOCK_BLOCKED
    marked = await _until(
        demo,
        lambda p: (
            (lock := p.locks.get("FR1542")) is not None
            and lock.hardware_state is HardwareState.ERROR
        ),
        STEP_TIMEOUT_S,
    )
    return Outcome(blocked and marked, f"{_said(document)}; hardware_state ERROR: {marked}")


async def _broker_away(demo: Demo) -> Outcome:
    if not await _watched(demo, "FR1541"):
        return Outcome(ok=False, detail="the station holds no link to the open FR1541")
    await demo.broker_away()
    offline = await _until(demo, lambda p: not p.connected, STEP_TIMEOUT_S)
    await demo.close_by_hand("FR1541")
    # The station sees the bolt move while nobody can hear it: its events wait in the outbox.
    await asyncio.sleep(2.0)
    bolt = await demo.bolt("FR1541")
    return Outcome(offline and bolt == "locked", f"broker stopped; FR1541's bolt is {bolt}")


async def _broker_back(demo: Demo) -> Outcome:
    await demo.broker_back()
    delivered = await _until(
        demo,
        lambda p: any(
            isinstance(e, LockStateEvent)
            and e.bike == "FR1541"
            and e.lock_state is LockState.LOCKED
            and e.replayed
            for e in p.history
        ),
        STEP_TIMEOUT_S,
    )
    status = demo.backend.picture.status
    waiting = "?" if status is None else str(status.outbox_depth)
    if not delivered:
        return Outcome(ok=False, detail="FR1541's locked event never arrived")
    return Outcome(
        ok=True,
        detail=f"FR1541's locked event delivered after the outage (replayed); "
        f"the station's status said {waiting} waiting",
    )


async def _bluez_restart(demo: Demo) -> Outcome:
    def radio(p: StationPicture, state: RadioState) -> RadioEvent | None:
        return next(
            (e for e in p.history if isinstance(e, RadioEvent) and e.radio_state is state), None
        )

    await demo.bluez_restart()
    down = await _until(demo, lambda p: radio(p, RadioState.DOWN) is not None, STEP_TIMEOUT_S)
    up = await _until(demo, lambda p: radio(p, RadioState.UP) is not None, STEP_TIMEOUT_S)
    back = radio(demo.backend.picture, RadioState.UP)
    if not (down and up and back is not None):
        return Outcome(ok=False, detail="no radio events down and up from the station")
    ok, said = await _succeeds(demo, await demo.command("sync-device", "FR1540"))
    return Outcome(ok, f"radio down and back after {back.down_s or 0:.1f} s; {said}")


async def _power_cut(demo: Demo) -> Outcome:
    boot_before = demo.backend.picture.status.boot_id if demo.backend.picture.status else ""
    command_id = await demo.unlock("FR1541", user_id=None)
    at_lock = await _until(
        demo,
        lambda p: (
            (d := _document(p, command_id)) is not None
            and d.state.value in (CommandState.RECEIVED, *FINAL)
        ),
        STEP_TIMEOUT_S,
    )
    await demo.power_cut()
    # The power comes back once the motor has stopped (a lock's motion outlives its station's
    # power): the read after the restart then finds the bolt where the motion left it.
    async with asyncio.timeout(STEP_TIMEOUT_S):
        while await demo.moving("FR1541"):  # noqa: ASYNC110 - the lock is across the bus
            await asyncio.sleep(0.1)
    await demo.power_back()
    restarted = await _until(
        demo,
        lambda p: (
            p.status is not None
            and p.status.boot_id != boot_before
            and p.status.state is StationState.ONLINE
        ),
        STEP_TIMEOUT_S,
    )
    document = await _ended(demo, command_id)
    bolt = await demo.bolt("FR1541")
    # Settled by reading the lock after the restart: SUCCESS exactly when the bolt is open.
    agrees = document is not None and (
        (document.state.value is CommandState.SUCCESS) == (bolt == "unlocked")
    )
    return Outcome(
        at_lock and restarted and agrees,
        f"killed at the lock, restarted: {_said(document)}; the bolt is {bolt}",
    )


async def _end_rental(demo: Demo) -> Outcome:
    ok, said = await _succeeds(demo, await demo.lock("FR1540", end_rental=True))
    available = await _until(
        demo,
        lambda p: (
            (lock := p.locks.get("FR1540")) is not None
            and lock.booking.state is BookingState.AVAILABLE
        ),
        STEP_TIMEOUT_S,
    )
    return Outcome(ok and available, f"{said}; FR1540 available: {available}")


TOUR: tuple[Step, ...] = (
    Step("The station starts, connects to the broker and publishes its status", _online),
    Step("The backend provisions each lock's keys; the station reads every lock", _provision),
    Step("Rider u-demo books bike FR1540", _book),
    Step("Rider u-demo unlocks FR1540: the rental starts, the bolt opens", _unlock),
    Step("The rider pushes FR1540's bolt shut by hand: the station sees it", _close_by_hand),
    Step("FR1542's motor jams on unlock: the command fails, the lock is marked", _jam),
    Step("The broker goes away; meanwhile a rider closes FR1541 by hand", _broker_away),
    Step("The broker comes back: the events held meanwhile are delivered", _broker_back),
    Step("bluetoothd restarts: the station drops its links, says so, and goes on", _bluez_restart),
    Step("Power cut while FR1541 unlocks; after the restart the command is settled", _power_cut),
    Step("Rider u-demo returns FR1540: lock and end the rental", _end_rental),
)


async def run_tour(
    demo: Demo,
    report: Callable[[int, Step, Outcome | None], None],
    steps: tuple[Step, ...] = TOUR,
) -> bool:
    """Run ``steps`` in order; ``report(index, step, None)`` as each starts and
    ``report(index, step, outcome)`` as it ends. True when every step had its outcome. The tour
    stops at the first step that did not: each step builds on the state the last one left."""
    for index, step in enumerate(steps):
        report(index, step, None)
        try:
            outcome = await step.run(demo)
        except Exception as err:  # noqa: BLE001 - a failed step is reported, not raised
            outcome = Outcome(ok=False, detail=f"{type(err).__name__}: {err}")
        if outcome.ok and not demo.station.running:
            outcome = Outcome(ok=False, detail=f"{outcome.detail}; but the station exited")
        report(index, step, outcome)
        if not outcome.ok:
            return False
    return True
