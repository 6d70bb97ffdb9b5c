"""Storage URLs: opening an Optuna storage with a heartbeat, masking passwords, and the lock
that serialises claiming work from the queue across processes and machines.

SQLite serves one machine (several processes); PostgreSQL and MySQL/MariaDB serve many. A bare
``postgresql://`` or ``mysql://`` URL is given the driver that is installed (psycopg2, PyMySQL),
so users need not spell it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import IO, Any, ClassVar

import optuna
import sqlalchemy.engine
import sqlalchemy.event
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from lrsearch.exceptions import InvalidParameterError, LrsearchError

__all__ = [
    "DEFAULT_STORAGE",
    "StorageLock",
    "backend",
    "mask_url",
    "open_storage",
]

_log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///studies/lrsearch.db"

#: Seconds a SQLite connection waits for another process's write before "database is locked".
_SQLITE_BUSY_TIMEOUT = 60

#: Per connection to a SQLite file. Write-ahead logging with ``synchronous=NORMAL`` commits
#: without an fsync (the log is synced at checkpoints): a commit costs ~1.5 ms instead of
#: ~13 ms on the benchmark machine, and a search writes a few per epoch. A killed process
#: loses nothing committed and never corrupts the file (SQLite's documented guarantee for WAL);
#: only a power cut may lose the last commits. WAL needs every process on one machine, which
#: SQLite storages are for (see docs/how-it-works.md); readers no longer block the writer.
#: Only a writer sets them: the journal mode is stored in the file, and a reader (``report``,
#: ``export``, ``studies``, ``dashboard``) leaves a file as it found it.
_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or store).

    Example:
        >>> mask_url("postgresql://me:secret@db/optuna")
        'postgresql://me:***@db/optuna'
    """
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: show nothing after the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    create: bool = True,
) -> RDBStorage:
    """An Optuna RDB storage with a heartbeat, so the trials of a killed process are retried.

    A relative SQLite path is taken from the working directory; its folder is created when
    ``create`` (else a missing database is an error). ``heartbeat_interval`` and
    ``grace_period`` are seconds: a RUNNING trial whose heartbeat is older than the grace period
    is failed and enqueued again (``RetryHeartbeatStaleTrialCallback``).

    ``create`` also tells a writer from a reader. A writer (``create=True``, as ``lrsearch
    run``) switches a SQLite file to write-ahead logging (``journal_mode=WAL``,
    ``synchronous=NORMAL``); a reader (``create=False``) changes nothing of the file's, its
    journal mode included.

    Raises:
        InvalidParameterError: ``url`` is not a storage URL.
        LrsearchError: The storage cannot be opened (or, with ``create=False``, the SQLite
            file does not exist).
    """
    url = url or DEFAULT_STORAGE
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception as exc:
        raise InvalidParameterError(f"not a storage URL: {mask_url(url)!r}") from exc
    engine_kwargs: dict[str, Any] = {}
    file_sqlite = False
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT}
        if parsed.database not in (None, "", ":memory:"):
            file_sqlite = True
            path = Path(parsed.database)
            if not create and not path.is_file():
                raise LrsearchError(f"no study database at {mask_url(url)}")
            path.parent.mkdir(parents=True, exist_ok=True)
    target = _with_driver(parsed, url)
    try:
        init = sqlalchemy.create_engine(target, poolclass=sqlalchemy.pool.NullPool)
    except Exception as exc:  # no such driver, a malformed URL
        raise LrsearchError(f"cannot open storage {mask_url(url)}: {exc}") from exc
    # Workers opening a fresh database together race to create Optuna's tables (MySQL: "table
    # already exists"; PostgreSQL: "duplicate key ... pg_type"): they create them one at a time.
    creating = StorageLock(init, "create-tables") if create else contextlib.nullcontext()
    try:
        with creating, warnings.catch_warnings():
            # The heartbeat and its stale-trial retry are "experimental" in Optuna; lrsearch
            # relies on them on purpose, and the notice says nothing a user can act on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            store = RDBStorage(
                target,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        if file_sqlite and create:
            sqlalchemy.event.listen(store.engine, "connect", _sqlite_pragmas)
            store.engine.dispose()  # connections opened before the listener reopen with it
        return store
    except LrsearchError:
        raise
    except Exception as exc:
        raise LrsearchError(f"cannot open storage {mask_url(url)}: {exc}") from exc
    finally:
        init.dispose()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _with_driver(parsed: sqlalchemy.engine.URL, url: str) -> str:
    """``url`` with an installed driver: SQLAlchemy reads a bare ``postgresql://`` as psycopg
    and a bare ``mysql://`` as mysqlclient; use psycopg2 / PyMySQL where those are the ones
    installed instead of failing to import."""
    replacement = {
        "postgresql": ("psycopg", "psycopg2", "postgresql+psycopg2"),
        "mysql": ("MySQLdb", "pymysql", "mysql+pymysql"),
        "mariadb": ("MySQLdb", "pymysql", "mariadb+pymysql"),
    }.get(parsed.drivername)
    if replacement is not None:
        default, alternative, drivername = replacement
        if not _importable(default) and _importable(alternative):
            return parsed.set(drivername=drivername).render_as_string(hide_password=False)
    return url


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:
        return False


def backend(engine: sqlalchemy.engine.Engine) -> str:
    """``"sqlite"``, ``"postgresql"``, ``"mysql"`` (MariaDB too) or another dialect's name."""
    name = engine.dialect.name
    return "mysql" if name == "mariadb" else name


class StorageLock:
    """A named lock shared by every process that uses the storage, on any machine.

    lrsearch holds it for the few milliseconds it takes to look at a stage's queue, enqueue a
    missing unit and pop the next waiting one, so that two workers never claim one unit and
    never enqueue one unit twice. PostgreSQL: a session advisory lock; MySQL/MariaDB:
    ``GET_LOCK``; SQLite: ``flock`` on a file in ``.NAME.db.locks/`` beside the database (one
    machine by nature); an in-memory SQLite database: a lock of this process.

    ``release()`` may be called more than once (the queue releases it from inside a trial).

    Example:
        >>> from lrsearch.store import open_storage
        >>> lock = StorageLock(open_storage("sqlite:///:memory:").engine, "demo")
        >>> with lock:
        ...     lock.held
        True
        >>> lock.held
        False
    """

    _LOCAL: ClassVar[dict[str, threading.Lock]] = {}

    def __init__(
        self, engine: sqlalchemy.engine.Engine, name: str, *, timeout: float = 600.0
    ) -> None:
        self._engine = engine
        self._name = name
        self._timeout = timeout
        self._backend = backend(engine)
        self._conn: sqlalchemy.engine.Connection | None = None
        self._file: IO[bytes] | None = None
        self._local: threading.Lock | None = None
        digest = hashlib.sha256(f"lrsearch:{name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)  # pg's bigint
        self._mysql_name = "lrsearch-" + digest.hex()[:40]  # GET_LOCK names: <= 64 chars
        self.held = False

    def acquire(self) -> None:
        """Wait for the lock (at most ``timeout`` seconds, then :class:`LrsearchError`)."""
        if self.held:
            raise RuntimeError("StorageLock is not reentrant")
        if self._backend == "postgresql":
            self._conn = self._engine.connect()
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            self._conn.commit()
        elif self._backend == "mysql":
            self._conn = self._engine.connect()
            got = self._conn.execute(
                sqlalchemy.text("SELECT GET_LOCK(:n, :t)"),
                {"n": self._mysql_name, "t": int(self._timeout)},
            ).scalar()
            if got != 1:
                self._close()
                raise LrsearchError(f"storage lock {self._name!r} not free in {self._timeout} s")
        elif (path := self._sqlite_path()) is not None:
            # One file per lock name, in a hidden folder beside the database.
            folder = path.parent / f".{path.name}.locks"
            folder.mkdir(exist_ok=True)
            self._file = open(folder / f"{self._mysql_name}.lock", "ab")  # noqa: SIM115
            fcntl.flock(self._file, fcntl.LOCK_EX)
        else:
            self._local = self._LOCAL.setdefault(self._name, threading.Lock())
            if not self._local.acquire(timeout=self._timeout):
                raise LrsearchError(f"storage lock {self._name!r} not free in {self._timeout} s")
        self.held = True

    def release(self) -> None:
        """Let the next process have the lock; a no-op when it is not held."""
        if not self.held:
            return
        self.held = False
        try:
            if self._conn is not None:
                query = (
                    "SELECT pg_advisory_unlock(:k)"
                    if self._backend == "postgresql"
                    else "SELECT RELEASE_LOCK(:n)"
                )
                self._conn.execute(sqlalchemy.text(query), {"k": self._key, "n": self._mysql_name})
                self._conn.commit()
            elif self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
            elif self._local is not None:
                self._local.release()
        finally:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._local = None

    def _sqlite_path(self) -> Path | None:
        if self._backend != "sqlite":
            return None
        database = self._engine.url.database
        if database in (None, "", ":memory:"):
            return None
        return Path(os.path.abspath(database))

    def __enter__(self) -> StorageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
