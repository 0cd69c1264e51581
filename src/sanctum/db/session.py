"""Engines and sessions with the same transaction semantics on SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on. Writing transactions start with ``BEGIN IMMEDIATE``:
a deferred transaction that reads first and writes later fails at once under concurrency
(``SQLITE_BUSY_SNAPSHOT``) instead of waiting, so writers take the lock up front and queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_WRITE = "sanctum_write"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; everything else passes through."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


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
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def new_session(self, *, write: bool) -> Session:
        session = (self._write if write else self._read)()
        session.info["write"] = write
        return session

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A unit of work: commits when the block ends cleanly, rolls back on any exception."""
        session = self.new_session(write=write)
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
