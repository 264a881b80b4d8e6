"""The registry's tables, as SQLAlchemy Core metadata.

This module is the current shape of the schema; Alembic migrations in `migrations/versions`
are frozen steps that lead to it (a test compares the two). Column names follow lamindb so
that records read the same; private columns start with `_` as in lamindb.

Core tables rather than ORM mappings: records are plain objects and every write is one
short transaction, which keeps threads, forks and bulk inserts simple.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class JSONType(sa.TypeDecorator):
    """JSON on SQLite, JSONB on PostgreSQL.

    Chosen per dialect when a connection is made, so importing the registry does not import
    SQLAlchemy's PostgreSQL dialect (and asyncpg's module) for an embedded SQLite registry:
    that import was a third of the time `ln.track()` adds to a script.
    """

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


def is_json(type_: sa.types.TypeEngine) -> bool:
    return isinstance(type_, (sa.JSON, JSONType))


class UTCDateTime(sa.TypeDecorator):
    """Timestamps stored in UTC and always returned timezone-aware.

    SQLite has no timezone type and hands back naive values; normalising here means callers
    never compare naive with aware datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _id() -> sa.Column:
    return sa.Column("id", IdType, primary_key=True, autoincrement=True)


def _created_at() -> sa.Column:
    return sa.Column("created_at", UTCDateTime, nullable=False, default=now)


def _updated_at() -> sa.Column:
    return sa.Column("updated_at", UTCDateTime, nullable=False, default=now)


def _created_by(index: bool = True) -> sa.Column:
    return sa.Column("created_by_id", IdType, sa.ForeignKey("user.id"), index=index)


def _branch(index: bool = True) -> sa.Column:
    # 1 main, 0 archive, -1 trash (lamindb's branch ids); no Branch table needed for that.
    return sa.Column("branch_id", sa.SmallInteger, nullable=False, default=1, index=index)


# Columns of a big table indexed only where they differ from their usual value (a partial
# index): nearly every run is completed and on the main branch, so a full index of these
# columns would be as large as the table, kept up to date on every insert, and never worth
# reading for the usual value. A lookup that excludes the usual value says so in its SQL
# (`sparse_term`), which is what lets SQLite choose the partial index.
SPARSE: dict[str, dict[str, int]] = {"run": {"_status_code": 0, "branch_id": 1}}


def sparse_term(column: sa.Column, values: list[Any]) -> sa.ColumnElement[bool] | None:
    """`column != usual` (as literal SQL, like the index's WHERE) when `values` leave out the usual value."""
    usual = SPARSE.get(column.table.name, {}).get(column.name)  # type: ignore[attr-defined]
    if usual is None or usual in values:
        return None
    return column != sa.literal_column(str(usual))


def _sparse_index(table: str, column: str) -> sa.Index:
    where = sa.text(f"{column} != {SPARSE[table][column]}")
    return sa.Index(f"ix_{table}_{column}", column, sqlite_where=where, postgresql_where=where)


def _is_locked() -> sa.Column:
    return sa.Column("is_locked", sa.Boolean, nullable=False, default=False)


def _aux() -> sa.Column:
    return sa.Column("_aux", JSONType)


user = sa.Table(
    "user",
    metadata,
    _id(),
    sa.Column("uid", sa.String(8), nullable=False, unique=True),
    sa.Column("handle", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(150)),
    _created_at(),
    _updated_at(),
)

storage = sa.Table(
    "storage",
    metadata,
    _id(),
    sa.Column("uid", sa.String(12), nullable=False, unique=True),
    sa.Column("root", sa.String(1024), nullable=False, unique=True),
    sa.Column("type", sa.String(30), nullable=False),
    sa.Column("region", sa.String(255)),
    sa.Column("description", sa.Text),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)

transform = sa.Table(
    "transform",
    metadata,
    _id(),
    sa.Column("uid", sa.String(16), nullable=False, unique=True),
    sa.Column("key", sa.String(1024), nullable=False, index=True),
    sa.Column("version", sa.String(64)),
    sa.Column("kind", sa.String(20), nullable=False, default="pipeline"),
    sa.Column("description", sa.Text),
    sa.Column("source_code", sa.Text),
    sa.Column("hash", sa.String(64), index=True),
    sa.Column("reference", sa.String(255)),
    sa.Column("reference_type", sa.String(25)),
    sa.Column("is_latest", sa.Boolean, nullable=False, default=True),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
    # Two processes creating the same (key, version) or the same source at one key must
    # end with one row: these constraints plus insert-or-ignore make that race-free.
    sa.UniqueConstraint("key", "version"),
    sa.UniqueConstraint("key", "hash"),
)

artifact = sa.Table(
    "artifact",
    metadata,
    _id(),
    sa.Column("uid", sa.String(20), nullable=False, unique=True),
    sa.Column("key", sa.String(1024), index=True),
    sa.Column("description", sa.Text),
    sa.Column("storage_id", IdType, sa.ForeignKey("storage.id"), index=True),
    sa.Column("suffix", sa.String(30), nullable=False, default=""),
    sa.Column("kind", sa.String(30)),
    sa.Column("otype", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("hash", sa.String(64), index=True),
    sa.Column("_hash_type", sa.String(30)),
    sa.Column("n_files", sa.BigInteger),
    sa.Column("n_observations", sa.BigInteger),
    sa.Column("run_id", IdType, sa.ForeignKey("run.id", ondelete="SET NULL"), index=True),
    sa.Column("version", sa.String(64)),
    sa.Column("is_latest", sa.Boolean, nullable=False, default=True),
    sa.Column("_key_is_virtual", sa.Boolean, nullable=False, default=True),
    sa.Column("_storage_ongoing", sa.Boolean, nullable=False, default=False),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
    # One artifact per content at a location: concurrent saves of the same file end with
    # one row (insert-or-ignore). Trash does not count, as in lamindb.
    sa.Index(
        "uq_artifact_storage_key_hash", "storage_id", "key", "hash", unique=True,
        sqlite_where=sa.text("key IS NOT NULL AND hash IS NOT NULL AND branch_id != -1"),
        postgresql_where=sa.text("key IS NOT NULL AND hash IS NOT NULL AND branch_id != -1"),
    ),
    sa.Index(
        "uq_artifact_storage_hash_nokey", "storage_id", "hash", unique=True,
        sqlite_where=sa.text("key IS NULL AND hash IS NOT NULL AND branch_id != -1"),
        postgresql_where=sa.text("key IS NULL AND hash IS NOT NULL AND branch_id != -1"),
    ),
)

run = sa.Table(
    "run",
    metadata,
    _id(),
    sa.Column("uid", sa.String(20), nullable=False, unique=True),
    sa.Column("name", sa.String(150)),
    sa.Column("description", sa.Text),
    sa.Column("entrypoint", sa.String(255)),
    sa.Column(
        "transform_id",
        IdType,
        sa.ForeignKey("transform.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("started_at", UTCDateTime, index=True),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("params", JSONType),
    sa.Column("reference", sa.String(255)),
    sa.Column("reference_type", sa.String(25)),
    sa.Column("cli_args", sa.Text),
    sa.Column("report_id", IdType, sa.ForeignKey("artifact.id", use_alter=True)),
    sa.Column("environment_id", IdType, sa.ForeignKey("artifact.id", use_alter=True)),
    sa.Column("plan_id", IdType, sa.ForeignKey("artifact.id", use_alter=True)),
    sa.Column(
        "initiated_by_run_id", IdType, sa.ForeignKey("run.id", ondelete="CASCADE"), index=True
    ),
    # The top of the chain, so "every run under this pipeline run" is one indexed lookup.
    sa.Column("root_run_id", IdType, sa.ForeignKey("run.id", ondelete="CASCADE"), index=True),
    sa.Column("_status_code", sa.SmallInteger, nullable=False, default=-3),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("_is_consecutive", sa.Boolean),
    _created_at(),
    _updated_at(),
    # Not indexed (migration 0004): a registry has few users, and a user's runs are found
    # by their transform, time or pipeline run much more selectively.
    _created_by(index=False),
    _branch(index=False),  # a partial index below
    _is_locked(),
    _aux(),
    sa.Index("ix_run_reference_type_reference", "reference_type", "reference"),
    # Only the runs that are not completed (scheduled, started, errored, aborted: what
    # `runs reap` and status lookups look for) and only the runs in the archive or trash.
    _sparse_index("run", "_status_code"),
    _sparse_index("run", "branch_id"),
)

project = sa.Table(
    "project",
    metadata,
    _id(),
    sa.Column("uid", sa.String(12), nullable=False, unique=True),
    sa.Column("name", sa.String(150), nullable=False, index=True),
    sa.Column("description", sa.Text),
    sa.Column("abbr", sa.String(32)),
    sa.Column("url", sa.String(255)),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)

feature = sa.Table(
    "feature",
    metadata,
    _id(),
    sa.Column("uid", sa.String(12), nullable=False, unique=True),
    sa.Column("name", sa.String(150), nullable=False, unique=True),
    sa.Column("dtype", sa.String(64), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("unit", sa.String(30)),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)

json_value = sa.Table(
    "json_value",
    metadata,
    _id(),
    sa.Column(
        "feature_id", IdType, sa.ForeignKey("feature.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("value", JSONType),
    sa.Column("hash", sa.String(64), nullable=False),
    _created_at(),
    sa.UniqueConstraint("feature_id", "hash"),
)

record = sa.Table(
    "record",
    metadata,
    _id(),
    sa.Column("uid", sa.String(16), nullable=False, unique=True),
    sa.Column("name", sa.String(150), index=True),
    sa.Column("description", sa.Text),
    sa.Column("is_type", sa.Boolean, nullable=False, default=False),
    sa.Column("type_id", IdType, sa.ForeignKey("record.id"), index=True),
    sa.Column("run_id", IdType, sa.ForeignKey("run.id", ondelete="SET NULL"), index=True),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)

# lamindb's collections: an ordered set of artifacts saved together, versioned by key
collection = sa.Table(
    "collection",
    metadata,
    _id(),
    sa.Column("uid", sa.String(20), nullable=False, unique=True),
    sa.Column("key", sa.String(1024), index=True),
    sa.Column("description", sa.Text),
    sa.Column("hash", sa.String(64), index=True),
    sa.Column("reference", sa.String(255)),
    sa.Column("reference_type", sa.String(25)),
    sa.Column("run_id", IdType, sa.ForeignKey("run.id", ondelete="SET NULL"), index=True),
    sa.Column("version", sa.String(64)),
    sa.Column("is_latest", sa.Boolean, nullable=False, default=True),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)

# lamindb's universal labels (its older tutorials; `record` is their successor)
ulabel = sa.Table(
    "ulabel",
    metadata,
    _id(),
    sa.Column("uid", sa.String(8), nullable=False, unique=True),
    sa.Column("name", sa.String(150), nullable=False, index=True),
    sa.Column("description", sa.Text),
    sa.Column("is_type", sa.Boolean, nullable=False, default=False),
    sa.Column("type_id", IdType, sa.ForeignKey("ulabel.id"), index=True),
    sa.Column("reference", sa.String(255)),
    sa.Column("reference_type", sa.String(25)),
    sa.Column("run_id", IdType, sa.ForeignKey("run.id", ondelete="SET NULL"), index=True),
    _created_at(),
    _updated_at(),
    _created_by(),
    _branch(),
    _is_locked(),
    _aux(),
)


setting = sa.Table(
    "setting",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _link(name: str, left: str, right: str) -> sa.Table:
    """A many-to-many table; the unique pair makes inserts idempotent (insert-or-ignore)."""
    return sa.Table(
        name,
        metadata,
        _id(),
        sa.Column(f"{left}_id", IdType, sa.ForeignKey(f"{left}.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            f"{right}_id",
            IdType,
            sa.ForeignKey(f"{right}.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", UTCDateTime, nullable=False, default=now),
        sa.UniqueConstraint(f"{left}_id", f"{right}_id"),
    )


run_input_artifact = _link("run_input_artifact", "run", "artifact")
run_recreated_artifact = _link("run_recreated_artifact", "run", "artifact")
run_json_value = _link("run_json_value", "run", "json_value")
project_run = _link("project_run", "project", "run")
project_transform = _link("project_transform", "project", "transform")
project_artifact = _link("project_artifact", "project", "artifact")
project_record = _link("project_record", "project", "record")
# labels annotating runs and artifacts (`run.ulabels`, `artifact.records`)
run_ulabel = _link("run_ulabel", "run", "ulabel")
artifact_ulabel = _link("artifact_ulabel", "artifact", "ulabel")
run_record = _link("run_record", "run", "record")
artifact_record = _link("artifact_record", "artifact", "record")
artifact_json_value = _link("artifact_json_value", "artifact", "json_value")  # `artifact.features`
# a collection's artifacts, in the order given (the link id); runs reading or recreating collections or reading records
collection_artifact = _link("collection_artifact", "collection", "artifact")
run_input_collection = _link("run_input_collection", "run", "collection")
run_recreated_collection = _link("run_recreated_collection", "run", "collection")
run_input_record = _link("run_input_record", "run", "record")
# lamindb's run annotations: artifacts annotated by a run (`run.artifacts` / `artifact.runs`),
# artifacts a run links as values (`run.linked_artifacts`), records linking a run as a value
artifact_run = _link("artifact_run", "artifact", "run")
run_artifact = _link("run_artifact", "run", "artifact")
record_run = _link("record_run", "record", "run")

# lamindb's notes attached to a run (`run.ablocks`): markdown, versioned
run_block = sa.Table(
    "run_block",
    metadata,
    _id(),
    sa.Column("uid", sa.String(20), nullable=False, unique=True),
    sa.Column("run_id", IdType, sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("kind", sa.String(22), nullable=False, default="readme"),
    sa.Column("hash", sa.String(22)),
    sa.Column("version", sa.String(64)),
    sa.Column("is_latest", sa.Boolean, nullable=False, default=True),
    _created_at(),
    _created_by(index=False),
    _branch(index=False),
)
