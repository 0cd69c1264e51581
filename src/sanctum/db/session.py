"""Engines and sessions with the same transaction semantics on SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on. Writing transactions start with ``BEGIN IMMEDIATE``:
a deferred transaction that reads first and writes later fails at once under concurrency
(``SQLITE_BUSY_SNAPSHOT``) instead of waiting, so writers take the lock up front and queue.

Commits are durable (SQLite ``synchronous=FULL``: the WAL is fsynced before COMMIT returns), except
in sessions opened with ``durable=False``, which do not wait for that flush: SQLite commits them
with ``synchronous=NORMAL``, PostgreSQL with ``SET LOCAL synchronous_commit = off``; ~1-4 ms less
per commit here. Such a commit survives a crash of the application, but may be lost, never
half-applied, if the machine (or, for PostgreSQL, the database server) goes down before the WAL
reaches the disk: at the next durable commit or checkpoint (SQLite), within ~3 x wal_writer_delay
(PostgreSQL). The WAL is one ordered log, so a loss can only take a suffix of commits: a durable
commit is never lost, and flushing it flushes everything committed before it. Only high-rate,
unaudited experiment-tracking writes ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_WRITE = "sanctum_write"
_RELAXED = "sanctum_relaxed_durability"
_SYNC = "sanctum_synchronous"  # the PRAGMA synchronous a pooled SQLite connection has now


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; everything else passes through."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        record.info[_SYNC] = "FULL"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        # Set outside the transaction, and only when it changes: so only a transaction that asked
        # for it runs relaxed, whatever the pooled connection did before.
        want = "NORMAL" if options.get(_RELAXED) else "FULL"
        info = conn.connection.info
        if info.get(_SYNC) != want:
            conn.exec_driver_sql(f"PRAGMA synchronous={want}")
            info[_SYNC] = want
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_RELAXED):
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


def finish(session: Session, exc: BaseException) -> None:
    """End a failed unit of work: keep what records the failure (``persist``), drop the rest."""
    if getattr(exc, "persist", False):
        session.commit()
    else:
        session.rollback()


class Database:
    """One catalog: an engine and the two kinds of session the services use."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = normalise_url(url)
        # Sized for the server's thread pool (40 threads), each holding at most two connections.
        kwargs: dict[str, Any] = {
            # A local SQLite file cannot go stale; a PostgreSQL connection can (server restart).
            "pool_pre_ping": not self.url.startswith("sqlite"),
            "pool_size": pool_size,
            "max_overflow": 3 * pool_size,
        }
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        self.engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        elif self.dialect == "postgresql":
            _configure_postgresql(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        self._relaxed = sessionmaker(
            self.engine.execution_options(**{_WRITE: True, _RELAXED: True}), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def new_session(self, *, write: bool, durable: bool = True) -> Session:
        """``durable=False`` (writing sessions only) trades the last commits before a power loss
        for no WAL flush per commit: see the module docstring for when that is acceptable."""
        maker = (self._write if durable else self._relaxed) if write else self._read
        session = maker()
        session.info["write"] = write
        session.info["durable"] = durable or not write
        return session

    @contextmanager
    def session(self, *, write: bool = True, durable: bool = True) -> Iterator[Session]:
        """A unit of work: commits when the block ends cleanly, rolls back on any exception."""
        session = self.new_session(write=write, durable=durable)
        try:
            yield session
            session.commit()
        except BaseException as exc:
            finish(session, exc)
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
