"""The store's schema and its ordered migrations, from the first release on.

Each migration is one script applied in one transaction together with its row in
``schema_version``; a database newer than this code is refused rather than misread. Add a migration
at the end; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

from lockgate.store.errors import StoreError

MIGRATIONS: tuple[str, ...] = (
    # 1: the first release.
    """
    CREATE TABLE counter (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counter (name, value) VALUES ('seq', 0), ('dropped_total', 0);

    CREATE TABLE command (
        id               TEXT PRIMARY KEY,
        arrival          INTEGER NOT NULL UNIQUE,
        fingerprint      TEXT NOT NULL,
        name             TEXT,
        bike             TEXT,
        state            TEXT NOT NULL,
        version          INTEGER NOT NULL,
        timeout_at       TEXT,
        error_code       TEXT,
        reason           TEXT,
        events           TEXT NOT NULL,
        parameters       TEXT NOT NULL,
        correlation_data BLOB,
        response_topic   TEXT,
        received_at      TEXT NOT NULL,
        dispatched_at    TEXT,
        ended_at         TEXT
    );
    CREATE INDEX command_open ON command (state) WHERE ended_at IS NULL;
    CREATE INDEX command_ended ON command (ended_at) WHERE ended_at IS NOT NULL;

    CREATE TABLE lock (
        bike               TEXT PRIMARY KEY,
        lock_state         TEXT NOT NULL,
        state_changed_at   TEXT,
        hardware_state     TEXT NOT NULL,
        health             TEXT NOT NULL,
        last_seen          TEXT,
        dead_since         TEXT,
        booking_state      TEXT NOT NULL,
        booking_user       TEXT,
        booking_timeout_at TEXT,
        battery            INTEGER,
        firmware           TEXT,
        rssi               INTEGER,
        alarm              INTEGER
    );

    CREATE TABLE credentials (
        bike    TEXT PRIMARY KEY,
        profile TEXT NOT NULL,
        sealed  BLOB NOT NULL
    );

    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        kind             TEXT NOT NULL,
        topic            TEXT NOT NULL,
        payload          BLOB NOT NULL,
        correlation_data BLOB,
        response_topic   TEXT,
        created_at       TEXT NOT NULL
    );
    CREATE INDEX outbox_kind ON outbox (kind, id);

    CREATE TABLE retained (
        topic              TEXT PRIMARY KEY,
        payload            BLOB NOT NULL,
        generation         INTEGER NOT NULL,
        acked_generation   INTEGER NOT NULL
    );
    """,
    # 2: refused requests found quickly, to forget them within their own bound (docs/store.md).
    """
    CREATE INDEX command_refused ON command (arrival)
        WHERE version = 1 AND ended_at IS NOT NULL;
    """,
    # 3: fewer pages written per transaction (docs/store.md, writes). The open commands are found
    # by arrival, so a change of state no longer moves an index entry. (The outbox's (kind, id)
    # index stays: it is what counts the outbox's depth without reading every row.)
    """
    DROP INDEX command_open;
    CREATE INDEX command_open ON command (arrival) WHERE ended_at IS NULL;
    """,
    # 4: the outbox's ids given by the store (Store._next_outbox_id), not by AUTOINCREMENT, whose
    # sqlite_sequence row was one more page written by every transaction that queued a message
    # (docs/store.md, writes). The rows are kept, ids and order unchanged.
    """
    CREATE TABLE outbox_new (
        id               INTEGER PRIMARY KEY,
        kind             TEXT NOT NULL,
        topic            TEXT NOT NULL,
        payload          BLOB NOT NULL,
        correlation_data BLOB,
        response_topic   TEXT,
        created_at       TEXT NOT NULL
    );
    INSERT INTO outbox_new (id, kind, topic, payload, correlation_data, response_topic, created_at)
        SELECT id, kind, topic, payload, correlation_data, response_topic, created_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_kind ON outbox (kind, id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(StoreError):
    """The database's schema is not one this code can use."""


def migrate(connection: sqlite3.Connection) -> int:
    """Brings the database to :data:`SCHEMA_VERSION`; returns the version it found."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )
    found = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {found}; this lockgate knows up to {SCHEMA_VERSION}"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        # executescript() would commit on its own; running the statements one by one keeps the
        # migration and its version row in one transaction.
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    return int(found)


def _statements(script: str) -> list[str]:
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise SchemaError("a migration ends in an incomplete statement")
    return statements
