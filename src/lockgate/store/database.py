"""The store's database thread: one SQLite connection, owned by one worker thread.

The lowest of the store's three parts (this thread, the SQL of :mod:`lockgate.store.sql`, the async
API of :mod:`lockgate.store.store`). Every call is a short job run on a single-thread executor and
awaited with a timeout, so the event loop never blocks on the disk and there is exactly one
writer. A transaction is a handful of rows; an fsync on a Pi's SD card is a few milliseconds,
which the loop does not feel. The file runs in WAL mode with ``synchronous=FULL``: a committed
transaction survives a power cut.

Opening is where a station would otherwise forget: a database that vanished or shrank to nothing
would open as a new, empty one (credentials gone, old command ids unknown, so a re-sent unlock
would open the bike again). A marker file beside the database (``<name>.created``), written once
the database has been created, tells "vanished" from "first start"; a file that fails SQLite's
``quick_check`` is refused too. Both are refused unless the operator asks to start afresh
(``fresh=True``), which sets the old files aside rather than deleting them. The database, its WAL
and the marker are created readable by their owner only (0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import structlog

from lockgate.store.errors import StoreError
from lockgate.store.schema import migrate

_T = TypeVar("_T")
_log = structlog.get_logger(__name__)

FILE_MODE = 0o600
# SQLite's primary result codes that mean the file is not a usable database.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# After a checkpoint the WAL is cut back to this, so a burst of writes does not leave it large.
_JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
PAGE_SIZE = 512
"""Bytes per database page, SQLite's smallest: every page a transaction changes is written whole to
the WAL (and later once to the database), and the rows here are small, so small pages write least
(measured: 4096 → 1024 → 512 bytes took a command from 219 to 74 to 59 KiB; docs/store.md,
"Writes a card survives"). A store made with other pages is rewritten once at open."""
WAL_AUTOCHECKPOINT = 4096
"""Pages in the WAL before SQLite copies them into the database: a page changed many times between
two checkpoints is copied once (2 MiB of pages, within ``journal_size_limit``)."""


class StoreUnusableError(StoreError):
    """At open: the file cannot be this station's memory. ``path`` names it. The daemon exits
    with ``IO_ERROR`` (74) unless told to start afresh (``Store(..., fresh=True)``)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class StoreMissingError(StoreUnusableError):
    """The database vanished or shrank to nothing, though this station had created it."""


class StoreCorruptError(StoreUnusableError):
    """The file is not a database, fails its integrity check, or holds a row that cannot be read."""


class BadRow(StoreError):  # noqa: N818 - a row, named as what it is; raised only inside the store
    """A stored row that cannot be turned back into a record (raised by the SQL layer)."""


def marker_path(path: Path) -> Path:
    """The file beside the database that says this station has created it."""
    return path.with_name(path.name + ".created")


class Database:
    """One SQLite file behind one thread. :meth:`run` a job on it; :meth:`transaction` inside."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float,
        fresh: bool = False,
        max_size_bytes: int | None = None,
    ) -> None:
        if max_size_bytes is not None and max_size_bytes < 64 * 1024:
            raise ValueError("max_size_bytes must be at least 64 KiB")
        self.path = path
        self._max_size_bytes = max_size_bytes
        self._timeout = timeout_s
        self._fresh = fresh
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self.set_aside: tuple[Path, ...] = ()
        """The old files an open with ``fresh=True`` moved away (renamed, never deleted)."""

    async def open(self) -> int:
        """Opens (and creates or migrates) the file; the schema version it found."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            return await self.run(self._open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

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
            raise StoreError(f"{self.path}: the store is not open")
        return self._connection

    async def run(self, job: Callable[[], _T]) -> _T:
        """Runs ``job`` on the database thread; :class:`StoreError` on a timeout or SQLite error."""
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open")
        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        try:
            # asyncio.wait never cancels the job: a write that was asked for lands or fails
            # whole, so the caller's memory of what it wrote never runs ahead of the disk.
            done, _ = await asyncio.wait({future}, timeout=self._timeout)
        except asyncio.CancelledError:
            await asyncio.wait({future}, timeout=self._timeout)
            raise
        if not done:
            raise StoreError(f"{self.path}: the store did not answer within {self._timeout} s")
        try:
            return future.result()
        except BadRow as err:
            raise StoreCorruptError(self.path, str(err)) from err
        except sqlite3.Error as err:
            if _damaged(err):
                raise StoreCorruptError(self.path, f"the database is damaged ({err})") from err
            raise StoreError(f"{self.path}: the store failed: {err}") from err
        except OSError as err:  # opening: a directory or file this user may not use
            raise StoreError(f"{self.path}: cannot be opened ({err.strerror})") from err

    async def write(self, job: Callable[[], _T], *, durable: bool = True) -> _T:
        """Runs ``job`` on the database thread in one transaction.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        transaction): in WAL mode the next durable commit syncs it along, and a power cut before
        that loses this transaction whole, never part of it. For writes whose loss only repeats
        work, such as removing acknowledged messages from the outbox.
        """
        return await self.run(lambda: self.transaction(job, durable=durable))

    def transaction(self, job: Callable[[], _T], *, durable: bool = True) -> _T:
        """On the thread: ``job`` in one immediate transaction, rolled back if it or the commit
        fails (a full disk fails at COMMIT, and an open transaction would block every later one)."""
        db = self.connection
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = job()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")
        return result

    def sync(self) -> None:
        """On the thread: everything committed so far made durable, as a ``synchronous=FULL``
        commit would (that is an fsync of the WAL: earlier commits are in it too)."""
        descriptor = os.open(_wal(self.path), os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    # --- opening -------------------------------------------------------------------------------

    def _open(self) -> int:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = marker_path(path)
        size = path.stat().st_size if path.exists() else None
        if marker.exists() and not size:
            problem = "has vanished" if size is None else "is empty (zero bytes)"
            if not self._fresh:
                raise StoreMissingError(
                    path,
                    f"the database {problem}, but this station created it (see {marker.name}): "
                    "its commands and provisioned credentials would be forgotten; "
                    "start afresh only on purpose",
                )
            self._set_aside()
        try:
            return self._connect()
        except StoreCorruptError:
            if not self._fresh:
                raise
            self._set_aside()
            return self._connect()

    def _connect(self) -> int:
        path = self.path
        first = not path.exists()
        # Created 0600 before SQLite opens it: SQLite gives its WAL and shared-memory files the
        # database file's mode. Files left wider by an older version are tightened.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        for existing in (path, _wal(path), _shm(path)):
            with contextlib.suppress(FileNotFoundError):
                if existing.stat().st_mode & 0o077:
                    existing.chmod(FILE_MODE)
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if not first:
                self._check(connection)
            _set_page_size(connection)
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives a power cut; every write here is one the
            # contract promises not to lose (a receipt, a rental start, an event).
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=5000")
            connection.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
            connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            if self._max_size_bytes is not None:
                # A hard ceiling: past it a write fails as on a full disk (SQLITE_FULL).
                page = int(connection.execute("PRAGMA page_size").fetchone()[0])
                connection.execute(f"PRAGMA max_page_count={self._max_size_bytes // page}")
            found = migrate(connection)
        except sqlite3.Error as err:
            connection.close()
            if _damaged(err):
                raise StoreCorruptError(path, f"not a usable database ({err})") from err
            raise StoreError(f"{path}: cannot be opened for writing ({err})") from err
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._mark()
        return found

    def _check(self, connection: sqlite3.Connection) -> None:
        rows = connection.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in rows] != [("ok",)]:
            connection.close()
            first = str(rows[0][0]) if rows else "no answer"
            raise StoreCorruptError(self.path, f"fails its integrity check ({first[:200]})")

    def _mark(self) -> None:
        marker = marker_path(self.path)
        if marker.exists():
            return
        descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(
                descriptor,
                b"lockgate created the database beside this file; if the database is missing,"
                b" the station refuses to start rather than forget its commands.\n",
            )
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _set_aside(self) -> None:
        """Renames the unusable files (database, WAL, shared memory, marker) out of the way."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = []
        for old in (self.path, _wal(self.path), _shm(self.path), marker_path(self.path)):
            if old.exists():
                aside = old.with_name(f"{old.name}.unusable-{stamp}")
                old.rename(aside)
                moved.append(aside)
        self.set_aside += tuple(moved)
        _log.warning(
            "store started afresh: the old files were set aside",
            path=str(self.path),
            set_aside=[str(p) for p in moved],
        )

    def _close(self) -> None:
        if self._connection is not None:
            try:
                # Fold the WAL back into the database so a clean stop leaves one file.
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as err:  # a full disk: the WAL stays, and is read at next open
                _log.warning(
                    "store closed without a checkpoint", path=str(self.path), error=str(err)
                )
            finally:
                self._connection.close()
                self._connection = None


def _damaged(err: sqlite3.Error) -> bool:
    """SQLite's word that the file is damaged: SQLITE_CORRUPT, SQLITE_NOTADB, or stored text
    that is not the UTF-8 it was written as (the sqlite3 module's own error, without a code)."""
    if getattr(err, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
        return True
    return isinstance(err, sqlite3.OperationalError) and str(err).startswith("Could not decode")


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _shm(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def _set_page_size(connection: sqlite3.Connection) -> None:
    """:data:`PAGE_SIZE` for a new database; an older one with other pages is rewritten once
    (VACUUM, which a WAL database cannot change its page size by: it leaves WAL for the time)."""
    if int(connection.execute("PRAGMA page_size").fetchone()[0]) == PAGE_SIZE:
        return
    tables = int(connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0])
    connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
    if tables:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("VACUUM")
        _log.info("store rewritten with smaller pages", page_size=PAGE_SIZE)
