"""The store's database thread: one SQLite connection, owned by one worker thread.

The lowest of the store's three parts (this thread, the SQL of :mod:`lockgate.store.sql`, the async
API of :mod:`lockgate.store.store`). Every call is a short job run on a single-thread executor and
awaited with a timeout, so the event loop never blocks on the disk and there is exactly one
writer. A transaction is a handful of rows; an fsync on a Pi's SD card is a few milliseconds,
which the loop does not feel. The file runs in WAL mode with ``synchronous=FULL``: a committed
transaction survives a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from lockgate.store.schema import migrate

_T = TypeVar("_T")


class StoreError(Exception):
    """The store could not do what was asked (disk, timeout, or a schema it does not know)."""


class Database:
    """One SQLite file behind one thread. :meth:`run` a job on it; :meth:`transaction` inside."""

    def __init__(self, path: Path, *, timeout_s: float) -> None:
        self.path = path
        self._timeout = timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> int:
        """Opens (and creates or migrates) the file; the schema version it found."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        return await self.run(self._open)

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self.run(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for jobs running on the thread only."""
        if self._connection is None:
            raise StoreError("the store is not open")
        return self._connection

    async def run(self, job: Callable[[], _T]) -> _T:
        """Runs ``job`` on the database thread; :class:`StoreError` on a timeout or SQLite error."""
        if self._executor is None:
            raise StoreError("the store is not open")
        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        try:
            # asyncio.wait never cancels the job: a write that was asked for lands or fails
            # whole, so the caller's memory of what it wrote never runs ahead of the disk.
            done, _ = await asyncio.wait({future}, timeout=self._timeout)
        except asyncio.CancelledError:
            await asyncio.wait({future}, timeout=self._timeout)
            raise
        if not done:
            raise StoreError(f"the store did not answer within {self._timeout} s")
        try:
            return future.result()
        except sqlite3.Error as err:
            raise StoreError(f"the store failed: {err}") from err

    async def write(self, job: Callable[[], _T], *, durable: bool = True) -> _T:
        """Runs ``job`` on the database thread in one transaction.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        transaction): in WAL mode the next durable commit syncs it along, and a power cut before
        that loses this transaction whole, never part of it. For writes whose loss only repeats
        work, such as removing acknowledged messages from the outbox.
        """
        return await self.run(lambda: self.transaction(job, durable=durable))

    def transaction(self, job: Callable[[], _T], *, durable: bool = True) -> _T:
        """On the thread: ``job`` in one immediate transaction, rolled back if it raises."""
        db = self.connection
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = job()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")
        return result

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transaction survives a power cut; every write here is one the
        # contract promises not to lose (a receipt, a rental start, an event).
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        self._connection = connection
        return migrate(connection)

    def _close(self) -> None:
        if self._connection is not None:
            # Fold the WAL back into the database so a clean stop leaves one file.
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._connection.close()
            self._connection = None
