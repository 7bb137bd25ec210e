"""A process to kill at many instants, cheaply: a zygote that forks warm workers.

The zygote imports everything once, then obeys lines on stdin: ``run`` (or ``run final``) forks a
worker and prints ``pid N``; ``wait N`` reaps it and prints ``exit CODE``. A fork of a warm process
starts in milliseconds, so a crash test can kill its worker at many instants in seconds. The test
side talks to it through :class:`Zygote`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

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

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, line: str, timeout_s: float = 10) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(timeout_s):
            answer = (await self.process.stdout.readline()).decode().split()
        assert len(answer) == 2, f"the zygote answered {answer!r} to {line!r}"
        return int(answer[1])
