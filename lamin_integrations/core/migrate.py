"""Creating and upgrading the schema with Alembic, safely when many processes start at once.

The fast path reads one row (`alembic_version`) and imports nothing else. Only when the
database is behind do we import Alembic, take a cross-process lock (an advisory lock on
PostgreSQL, a lock file beside a SQLite database), re-check, and upgrade. Eight processes
racing on a fresh database therefore run the migrations exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from ..errors import InstanceError, RegistryUnavailable
from .settings import SCHEMA_HEAD as HEAD

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6C616D696E  # "lamin": any constant shared by all our processes


def current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def alembic_config(conn: sa.Connection | None = None):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def ensure_schema(engine: sa.Engine) -> None:
    from .instance import mask_url

    try:
        with engine.connect() as conn:
            rev = current_revision(conn)
    except sa.exc.OperationalError as e:
        text = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        if not (engine.dialect.name == "sqlite" and "locked" in text):
            raise RegistryUnavailable(f"cannot reach the registry at {mask_url(engine.url)}: {text}") from None
        # A fresh SQLite file that another process is creating (its switch to WAL and the DDL
        # can refuse a reader without waiting): wait for that process under the migration
        # lock below, where upgrade() reads the revision again.
        rev = None
    if rev == HEAD:
        return
    with _migration_lock(engine) as conn:
        upgrade(conn)


def upgrade(conn: sa.Connection, revision: str = "head") -> None:
    rev = current_revision(conn)
    if rev == HEAD and revision == "head":
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config(conn)
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    if rev is not None and rev not in known:
        raise InstanceError(
            f"the registry's schema is at revision {rev}, which this version of "
            "lamin-integrations does not know: upgrade the package (pip install -U lamin-integrations)"
        )
    command.upgrade(cfg, revision)
    if conn.in_transaction():
        conn.commit()


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_LOCK_KEY})")
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_LOCK_KEY})")
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.connect() as conn:
            yield conn
        return
    import fcntl

    lock_path = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
