"""Where records live: the registry chosen by `settings.resolve()`, and the engine that reaches it.

Resolution order (settings.py): `ln.connect(...)` -> `LAMIN_INTEGRATIONS_DB` /
`LAMIN_INTEGRATIONS_STORAGE` -> the config file -> an embedded SQLite file and storage folder
under the user's data directory, created on first use without any command or network.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

from ..errors import InstanceError, RegistryUnavailable
from .settings import ENV_DB as ENV_DB
from .settings import ENV_HOME as ENV_HOME
from .settings import ENV_STORAGE as ENV_STORAGE
from .settings import SQLITE_BUSY_TIMEOUT_MS
from .settings import config_file as config_file
from .settings import data_dir as data_dir
from .settings import mask_text as mask_text
from .settings import resolve as resolve

if TYPE_CHECKING:
    from .models import Storage, User

logger = logging.getLogger("lamin_integrations")
T = TypeVar("T")

def mask_url(url: str | sa.URL) -> str:
    """The URL with any password replaced by ***, safe for logs, reprs and errors."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def parse_url(db: str) -> sa.URL:
    try:
        return sa.make_url(db)
    except Exception:
        raise InstanceError(
            f"{ENV_DB} / connect() expects a SQLAlchemy URL such as "
            "sqlite:////path/lineage.db or postgresql+psycopg://user@host/db; "
            f"got {mask_text(db)!r}"
        ) from None


class Instance:
    """One registry: a database URL plus a storage root. Engines are created lazily."""

    def __init__(self, db: str, storage: str):
        self._url = parse_url(db)
        self.storage_root = storage
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()
        self._user: User | None = None
        self._hash_mode: str | None = None
        self._storage: Storage | None = None
        self._held = threading.local()  # the connection of an open `transaction()` in this thread

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self._url)

    @property
    def dialect(self) -> str:
        return self._url.get_backend_name()

    def __repr__(self) -> str:
        return f"Instance(db={self.url!r}, storage={self.storage_root!r})"

    # -- engine ------------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._create_engine()
                    from .migrate import ensure_schema

                    with _translate_errors(self):
                        ensure_schema(engine)
                    self._engine = engine
        return self._engine

    def _create_engine(self) -> sa.Engine:
        url = self._url
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if url.database and url.database != ":memory:":
                folder = Path(url.database).expanduser().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as e:  # a file in the way, no permission, a read-only or unmounted disk
                    raise RegistryUnavailable(f"cannot use database {self.url}: its folder {folder} cannot be "
                                              f"created ({e.strerror or e})") from None
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            # Keys stored unescaped, so a JSON path like $."température" finds them.
            kwargs["json_serializer"] = _json_dumps
        elif self.dialect == "postgresql":
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 10}
            if url.get_driver_name() in ("psycopg", "psycopg2"):  # libpq: notice a peer gone silent in ~1 min
                kwargs["connect_args"].update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as e:
            raise InstanceError(f"cannot use database {self.url}: {e}") from None
        if self.dialect == "sqlite":
            _configure_sqlite(engine, network_fs=_on_network_fs(url.database))
        return engine

    # -- settings stored in the registry (shared by every process that uses it) -------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        from .schema import setting

        with self.read() as conn:
            value = conn.execute(sa.select(setting.c.value).where(setting.c.key == key)).scalar()
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        from .schema import setting

        def upsert(conn: sa.Connection) -> None:
            conn.execute(sa.delete(setting).where(setting.c.key == key))
            conn.execute(sa.insert(setting).values(key=key, value=value))

        self.write(upsert)

    @property
    def hash_mode(self) -> str:
        """"blake3" (default) or "lamindb"; fixed per registry so every writer hashes alike."""
        if self._hash_mode is None:
            self._hash_mode = self.get_setting("hash_mode") or "blake3"
        return self._hash_mode

    def set_hash_mode(self, mode: str) -> None:
        from .hashing import MODES

        if mode not in MODES:
            raise InstanceError(f"hash mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == self.hash_mode:
            return
        with self.read() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM artifact WHERE hash IS NOT NULL").scalar()
        if n:
            raise InstanceError(
                f"this registry already holds {n} hashed artifacts in {self.hash_mode} mode; "
                "changing the mode would break deduplication, so it can only be chosen for an empty registry"
            )
        self.set_setting("hash_mode", mode)
        self._hash_mode = mode

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        held = getattr(self._held, "conn", None)
        if held is not None:  # inside transaction(): see its uncommitted rows
            yield held
            return
        with _translate_errors(self), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """Make every read and write of this thread inside the block one transaction.

        Everything is committed at the end of the block, or nothing if it raises (an
        adapter ingesting a whole file records all of it or none). Each `write()` inside
        runs in a savepoint, so a write that fails and is handled leaves no trace; hooks
        fire after the commit and not at all on rollback. Nested blocks join the outer one.
        Unlike `write()`, the block is not retried when the database is busy (SQLite
        writers wait up to the busy timeout for the lock, taken when the block starts).
        Storage is rolled back too: bytes that artifact saves in the block copied into
        storage for their new rows are removed (best-effort; a failure is logged).
        """
        from . import plugins

        if getattr(self._held, "conn", None) is not None:
            yield self._held.conn
            return
        self.user, self.storage  # noqa: B018  (cached records must not come from a rolled-back block)
        copied: list[tuple[str, bool]] = []
        try:
            with _translate_errors(self), self.engine.connect() as conn:
                conn = conn.execution_options(lamin_write=True)
                with plugins.deferred() as pending, conn.begin():
                    self._held.conn, self._held.copied = conn, copied
                    try:
                        yield conn
                    finally:
                        self._held.conn = self._held.copied = None
        except BaseException:
            _discard(copied)  # the rows are gone: so are the bytes copied for them
            raise
        plugins.fire_all(pending)

    def _copied_into_storage(self, locations: list[tuple[str, bool]]) -> None:
        """Note (location, is_dir) of bytes just copied into storage for rows inserted in the
        open transaction, to remove them if it rolls back. Outside a transaction: nothing."""
        copied = getattr(self._held, "copied", None)
        if copied is not None:
            copied.extend(locations)

    @property
    def _in_transaction(self) -> bool:
        return getattr(self._held, "conn", None) is not None

    def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run `fn(conn)` in one write transaction, retrying when the database is busy.

        SQLite writers take the lock up front (BEGIN IMMEDIATE) so two writers never
        deadlock on a lock upgrade; PostgreSQL serialisation failures and deadlocks are
        retried the same way. `fn` must therefore be safe to run again from the start.
        """
        held = getattr(self._held, "conn", None)
        if held is not None:
            copied = self._held.copied
            mark = len(copied)
            try:
                with held.begin_nested():
                    return fn(held)
            except BaseException:
                _discard(copied[mark:])  # the savepoint took back the rows these bytes were for
                del copied[mark:]
                raise
        delay = 0.05
        budget = _write_budget.get()
        end = time.monotonic() + budget if budget is not None else None
        for attempt in range(8):
            try:
                with _translate_errors(self), self.engine.connect() as conn:
                    if end is not None and self.dialect == "sqlite":
                        _busy_timeout(conn, end - time.monotonic())
                    try:
                        conn = conn.execution_options(lamin_write=True)
                        with conn.begin():
                            return fn(conn)
                    finally:
                        if end is not None and self.dialect == "sqlite":
                            _busy_timeout(conn, None)
            except sa.exc.DBAPIError as e:
                if attempt == 7 or not _is_transient(e):
                    raise
                if end is not None and time.monotonic() + delay >= end:
                    raise RegistryUnavailable(f"the registry at {self.url} stayed busy (locked by another writer) "
                                              f"for {budget:g} s") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    # -- default records -------------------------------------------------------------------

    @property
    def user(self) -> User:
        if self._user is None:
            from .models import User

            self._user = User._current(self)
        return self._user

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            from .models import Storage

            self._storage = Storage._default(self)
        return self._storage


def _discard(copied: list[tuple[str, bool]]) -> None:
    """Remove bytes copied into storage for rows that were rolled back, never raising (the
    error that rolled them back is the one to report)."""
    if not copied:
        return
    try:
        from .storage import discard

        discard(copied)
    except Exception as e:  # discard logs each location's failure; this is anything else
        logger.warning("lamin-integrations: could not remove %d file(s) copied into storage by a rolled-back "
                       "transaction: %s", len(copied), e)


def _json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


_write_budget: contextvars.ContextVar[float | None] = contextvars.ContextVar("lamin_write_budget", default=None)


@contextlib.contextmanager
def write_budget(seconds: float) -> Iterator[None]:
    """Writes in this context give up after about `seconds` of a busy (locked) SQLite
    registry, raising RegistryUnavailable, instead of waiting out the busy timeout eight
    times: for adapters writing from inside the user's pipeline, which must not stall."""
    token = _write_budget.set(seconds)
    try:
        yield
    finally:
        _write_budget.reset(token)


def _busy_timeout(conn: sa.Connection, seconds: float | None) -> None:
    """Set SQLite's busy timeout on the connection's own DB-API connection (no transaction
    begun): the budget's remainder, or the registry's default again."""
    ms = SQLITE_BUSY_TIMEOUT_MS if seconds is None else max(1, min(SQLITE_BUSY_TIMEOUT_MS, int(seconds * 1000)))
    try:
        conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {ms}")  # type: ignore[union-attr]
    except Exception as e:  # a closed or invalidated connection: the pool makes a new one
        logger.debug("could not set the busy timeout: %s", e)


def _is_transient(e: sa.exc.DBAPIError) -> bool:
    text = str(e.orig).lower() if e.orig is not None else str(e).lower()
    return any(
        s in text
        for s in ("database is locked", "database table is locked", "deadlock detected",
                  "could not serialize", "busy")
    )


@contextlib.contextmanager
def _translate_errors(instance: Instance) -> Iterator[None]:
    """Turn "cannot connect" into one readable InstanceError without the password."""
    try:
        yield
    except sa.exc.OperationalError as e:
        if _is_transient(e):
            raise
        text = str(e.orig) if e.orig is not None else str(e)
        if any(s in text.lower() for s in ("connect", "unable to open", "no such host",
                                           "does not exist", "refused", "timeout")):
            raise RegistryUnavailable(
                f"cannot reach the registry at {instance.url}: {text.strip().splitlines()[0]}"
            ) from None
        raise
    except sa.exc.DatabaseError as e:
        text = str(e.orig) if e.orig is not None else str(e)
        if any(s in text.lower() for s in ("file is not a database", "malformed", "not a database")):
            raise RegistryUnavailable(f"the registry at {instance.url} is not a usable SQLite database ({text.strip()}): "
                                "restore it from a backup, or point --db / LAMIN_INTEGRATIONS_DB elsewhere") from None
        raise


def _on_network_fs(database: str | None) -> bool:
    """WAL needs shared memory, which network file systems do not provide."""
    if not database or database == ":memory:" or not sys.platform.startswith("linux"):
        return False
    try:
        path = str(Path(database).expanduser().resolve().parent)
        best, fstype = "", ""
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and path.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fstype = parts[1], parts[2]
        return fstype in {"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "fuse.sshfs", "beegfs"}
    except OSError:
        return False


def _configure_sqlite(engine: sa.Engine, network_fs: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below) instead of pysqlite's implicit transactions.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = " + ("DELETE" if network_fs else "WAL"))
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # Django/PostgreSQL semantics: `contains` is case-sensitive, `icontains` is not.
        cur.execute("PRAGMA case_sensitive_like = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("lamin_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


# -- the current instance ---------------------------------------------------------------------

_current: Instance | None = None
_current_lock = threading.Lock()


def current() -> Instance:
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Instance(*resolve())
    return _current


def connect(db: str | None = None, storage: str | None = None, *, hash_mode: str | None = None) -> Instance:
    """Switch this process to another registry (and storage root); returns the instance.

    Connecting checks the database right away, so a wrong URL fails here with a clear
    message rather than at the first save. `hash_mode="lamindb"` makes a new registry hash
    like lamindb (md5 / sha1-fl); the choice is stored in the registry for every process.
    """
    global _current
    instance = Instance(*resolve(db, storage))
    instance.engine  # noqa: B018  (fail fast: reach the database and apply migrations)
    if hash_mode is not None:
        instance.set_hash_mode(hash_mode)
    with _current_lock:
        old, _current = _current, instance
    if old is not None and old is not instance:
        old.dispose()
    return instance


def _reset_after_fork() -> None:
    # A forked child must not reuse the parent's pooled connections (SQLite and libpq
    # connections are not fork-safe); it opens its own on first use.
    inst = _current
    if inst is not None and inst._engine is not None:
        inst._engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
