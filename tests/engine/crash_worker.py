"""The engine as a separate process, to be killed with SIGKILL: a zygote that forks workers.

Run as ``python crash_worker.py CONFIG``: a zygote (tests/fault/zygote.py) that forks warm
workers, so a test can kill the engine at many instants in a few seconds.

A worker is the daemon's engine as the service runs it: it opens the store, enters the engine,
recovers, then (as a backend that re-sends until it sees a receipt) submits every request of the
stream again, and waits. Its radio is :class:`SocketRadio`: the locks themselves live in the test
process, so what a lock did survives the worker's death, as a real lock's bolt does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[2]))  # the checkout: tests.engine.* importable

import structlog

from lockgate.contract.station import Station
from lockgate.engine import Engine
from lockgate.model import HardwareState, LockState
from lockgate.protocol.credentials import Credentials
from lockgate.radio import (
    Operation,
    Outcome,
    ProgressSink,
    Reading,
    Result,
    StateSeen,
    Step,
    StepReached,
)
from lockgate.store import Store
from tests.engine.harness import STATION, STATION_KEY
from tests.fault.zygote import serve


class SocketRadio:
    """``LockRadio`` over a Unix socket to the locks modelled in the test process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def set_standing_credentials(self, bike: str, credentials: Credentials | None) -> None:
        return None  # the modelled locks check only whether credentials were given

    def keep_ready(self, bike: str, *, booked: bool) -> None:
        return None  # the modelled locks keep no links

    async def perform(
        self,
        bike: str,
        operation: Operation,
        credentials: Credentials | None,
        *,
        timeout_s: float,
        progress: ProgressSink,
    ) -> Result:
        request = {
            "bike": bike,
            "operation": operation.value,
            "credentials": credentials is not None,
            "timeout_s": timeout_s,
            "command_id": structlog.contextvars.get_contextvars().get("command_id"),
        }
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_unix_connection(self.path)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    async for line in reader:
                        message = json.loads(line)
                        at = datetime.now(UTC)
                        if "step" in message:
                            step = Step(message["step"])
                            await progress(StepReached(step, at))
                            if step is Step.AUTHORISED:  # past the engine's gate: the lock may move
                                writer.write(b'{"go": true}\n')
                                await writer.drain()
                        elif "state" in message:
                            await progress(StateSeen(LockState(message["state"]), at))
                        else:
                            return _result(message)
                finally:
                    writer.close()
        except TimeoutError:
            return Result(Outcome.TIMED_OUT, "no answer in time")
        except OSError as err:
            return Result(Outcome.UNREACHABLE, f"no link: {err}")
        return Result(Outcome.LINK_LOST, "the link dropped")


def _result(message: dict[str, Any]) -> Result:
    state = message.get("lock_state")
    hardware = message.get("hardware_state")
    return Result(
        Outcome(message["outcome"]),
        message["reason"],
        Reading(
            lock_state=LockState(state) if state else None,
            battery=message.get("battery"),
            firmware=message.get("firmware"),
        ),
        HardwareState(hardware) if hardware else None,
    )


async def work(config: dict[str, Any], *, final: bool) -> None:
    station = Station(
        STATION.id, STATION.latitude, STATION.longitude, STATION.locks, uuid.uuid4().hex
    )
    store = Store(Path(config["db"]), station=station, key=STATION_KEY, max_outbox=1_000_000)
    async with store:
        engine = Engine(store=store, radio=SocketRadio(config["socket"]), station=station)
        async with engine:
            await engine.recover()
            for request in config["requests"]:
                await engine.submit(request.encode())
            await engine.wait_idle(60)
            if not final:
                await asyncio.sleep(3600)  # idle, as a daemon is, until killed


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    serve(config, lambda config, final: work(config, final=final))


if __name__ == "__main__":
    main()
