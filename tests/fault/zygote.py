"""A process to kill at many instants, cheaply: a zygote that forks warm workers.

The zygote imports everything once, then obeys lines on stdin: ``run`` (or ``run final``) forks a
worker and prints ``pid N``; ``wait N`` reaps it and prints ``exit CODE``. A fork of a warm process
starts in milliseconds, so a crash test can kill its worker at many instants in seconds. The test
side talks to it through :class:`Zygote`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from lockgate.model import CommandState
from lockgate.store import CommandRecord

Work = Callable[[dict[str, Any], bool], Coroutine[Any, Any, None]]
"""Builds a worker's coroutine from the config and whether this is the final run."""


def serve(config: dict[str, Any], work: Work) -> None:
    """The zygote's loop; a worker's exit code is 0, or 1 with its traceback in the log."""
    log = Path(config["log"]).open("a")  # noqa: SIM115 - open for the process's life
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log))
    for line in sys.stdin:
        word, *rest = line.split()
        if word == "run":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    asyncio.run(work(config, rest == ["final"]))
                except BaseException:
                    traceback.print_exc(file=log)
                    code = 1
                log.flush()
                os._exit(code)
            print(f"pid {pid}", flush=True)
        elif word == "wait":
            _, status = os.waitpid(int(rest[0]), 0)
            print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


class Zygote:
    """The test's end of a zygote process."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, worker: Path, config: Path, log: Path) -> AsyncIterator[Zygote]:
        """Start ``worker`` (a script that calls :func:`serve`) as a zygote; stop it after."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(worker),
            str(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            yield cls(process, log)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def run_and_kill(self, after_s: float) -> None:
        """Start a worker, SIGKILL it ``after_s`` later; it must not have ended by itself."""
        pid = await self.ask("run")
        await asyncio.sleep(after_s)
        os.kill(pid, signal.SIGKILL)
        code = await self.ask(f"wait {pid}")
        assert code == -signal.SIGKILL, f"the worker ended by itself ({code}): see {self.log}"

    async def run_to_the_end(self, timeout_s: float) -> None:
        """Start the final worker and wait for it to finish cleanly."""
        pid = await self.ask("run final")
        assert await self.ask(f"wait {pid}", timeout_s=timeout_s) == 0, f"see {self.log}"

    async def ask(self, line: str, timeout_s: float = 10) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(timeout_s):
            answer = (await self.process.stdout.readline()).decode().split()
        assert len(answer) == 2, f"the zygote answered {answer!r} to {line!r}"
        return int(answer[1])


def check_each_command_ended_once(
    records: Mapping[str, CommandRecord | None], documents: Iterable[dict[str, Any]]
) -> None:
    """Every command is final in the store, and its published documents (a message may come
    twice, at least once) are versions 1..n without a gap with exactly one final document."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        by_id[document["id"]].append(document)
    for command_id, record in records.items():
        assert record is not None, command_id
        assert record.state.final, (command_id, record.state)
        versions = sorted({document["version"] for document in by_id[command_id]})
        assert versions == list(range(1, record.version + 1)), (command_id, versions)
        finals = {
            json.dumps(document, sort_keys=True)
            for document in by_id[command_id]
            if CommandState(document["state"]["value"]).final
        }
        assert len(finals) == 1, (command_id, finals)
