"""The registries, with lamindb's names and fields so the seed examples run unchanged."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from ..errors import FieldError, NotFoundOnDisk, RegistryUnavailable, ValidationError
from . import schema
from .lineage import InputArtifacts
from .query import _compile
from .queryset import QuerySet
from .record import ForeignKey, ManyToMany, Relation, Reverse, SQLRecord, link
from .status import FINAL_STATUSES, STATUS_CODES, STATUS_NAMES, Status
from .uids import base62, is_base62, next_version_uid

logger = logging.getLogger("lamin_integrations")


def _insert_ignore(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new id, or None if a row won."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(table).values(values).on_conflict_do_nothing().returning(table.c.id)
    return conn.execute(stmt).scalar_one_or_none()


def _load_into(record: SQLRecord, row: Any) -> None:
    record.__dict__.update(dict(row))


def _link_current_project(conn: sa.Connection, kind: str, record_id: int | list[int] | None) -> None:
    """`ln.track(project=...)` labels every record created during the run with the project."""
    from .context import context

    project = context.project
    ids = record_id if isinstance(record_id, list) else [record_id] if record_id is not None else []
    if project is not None and project.id is not None and ids:
        link(conn, getattr(schema, f"project_{kind}"), [{"project_id": project.id, f"{kind}_id": i} for i in ids])


class User(SQLRecord):
    """A person (or service account) that creates records; the OS user by default."""

    uid: str
    handle: str
    name: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    __table__ = schema.user
    _uid_len = 8
    _relations: ClassVar[dict[str, Relation]] = {
        "created_runs": Reverse("Run", fk_column="created_by_id"),
        "created_transforms": Reverse("Transform", fk_column="created_by_id"),
        "created_artifacts": Reverse("Artifact", fk_column="created_by_id"),
    }

    @classmethod
    def _current(cls, instance: Any) -> User:
        from .settings import user_handle

        handle = user_handle()
        name = handle
        try:
            import pwd

            gecos = pwd.getpwnam(handle).pw_gecos.split(",")[0].strip()
            name = gecos or handle
        except Exception:
            pass
        table = cls.__table__

        def get_or_create(conn: sa.Connection) -> Any:
            now = schema.now()
            _insert_ignore(conn, table, {"uid": base62(8), "handle": handle[:64], "name": name[:150],
                                         "created_at": now, "updated_at": now})
            return conn.execute(sa.select(table).where(table.c.handle == handle[:64])).mappings().one()

        return cls._from_row(instance.write(get_or_create), instance)

    def _insert_values(self, conn: sa.Connection) -> dict[str, Any]:
        if not self.__dict__.get("handle"):
            raise ValidationError("User needs a handle")
        return super()._insert_values(conn)


class Storage(SQLRecord):
    """A storage root (local folder or object-store prefix) whose files the registry knows."""

    uid: str
    root: str
    type: str
    region: str | None
    description: str | None
    created_at: dt.datetime
    created_by: User

    __table__ = schema.storage
    _uid_len = 12
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "artifacts": Reverse("Artifact", fk_column="storage_id"),
    }

    def __init__(self, root: str | None = None, *, host: str | None = None, **kwargs: Any):
        """lamindb's way to mount a location: `ln.Storage(root="s3://bucket/folder").save()`; the
        type follows the root (s3, gs, ... or local, made absolute) and a local root's `host` is
        kept as its region, as lamindb keeps it."""
        super().__init__()
        if not root or not isinstance(root, str):
            raise ValidationError("Storage() needs a root, e.g. Storage(root='s3://bucket/folder') or a local folder")
        if "://" not in root:
            root = str(Path(root).expanduser().resolve())
        kind = root.split("://", 1)[0] if "://" in root else "local"
        fields = {"root": root.rstrip("/") or root, "type": kind, **kwargs}
        if host is not None:
            fields["region"] = host
        self._set_fields(fields)

    @classmethod
    def _default(cls, instance: Any) -> Storage:
        return cls._get_or_create(instance, instance.storage_root)

    @classmethod
    def _get_or_create(cls, instance: Any, root: str) -> Storage:
        kind = root.split("://", 1)[0] if "://" in root else "local"
        table = cls.__table__
        user_id = instance.user.id

        def get_or_create(conn: sa.Connection) -> Any:
            now = schema.now()
            _insert_ignore(conn, table, {
                "uid": base62(12), "root": root, "type": kind,
                "region": socket.gethostname() if kind == "local" else None,
                "created_at": now, "updated_at": now, "created_by_id": user_id,
                "branch_id": 1, "is_locked": False,
            })
            return conn.execute(sa.select(table).where(table.c.root == root)).mappings().one()

        row = instance.write(get_or_create)
        from .artifacts import storage_registered

        storage_registered()
        return cls._from_row(row, instance)

    def _insert(self, conn: sa.Connection, events: list) -> None:
        super()._insert(conn, events)
        from .artifacts import storage_registered

        storage_registered()


class IsVersioned:
    """Version families: records sharing a uid stem, one of them `is_latest`."""

    _stem_len: ClassVar[int]
    uid: str

    @property
    def stem_uid(self) -> str:
        return self.uid[: self._stem_len]

    @property
    def versions(self) -> QuerySet:
        """Every version in this record's family, newest first (lamindb's order: `.first()` is the latest saved)."""
        return type(self).filter(uid__startswith=self.stem_uid).order_by("-id")  # type: ignore[attr-defined]

    # Deleting the latest version promotes the newest remaining one in the same transaction,
    # so the family (and the next version saved under its key) carries on, as in lamindb.

    def _trash(self, conn: sa.Connection) -> None:
        super()._trash(conn)  # type: ignore[misc]
        self._promote_next(conn)

    def _remove(self, conn: sa.Connection) -> None:
        super()._remove(conn)  # type: ignore[misc]
        self._promote_next(conn)

    def _promote_next(self, conn: sa.Connection) -> None:
        d = self.__dict__
        if not d.get("is_latest"):
            return
        t = self.__table__  # type: ignore[attr-defined]
        family = t.c.uid.startswith(self.stem_uid, autoescape=True)
        newest = conn.execute(sa.select(t.c.id).where(family, t.c.id != d["id"], t.c.branch_id != -1)
                              .order_by(t.c.id.desc()).limit(1)).scalar()
        if newest is None:
            return  # the last of its family: restored, it is the latest again
        conn.execute(sa.update(t).where(t.c.id == newest).values(is_latest=True))
        conn.execute(sa.update(t).where(t.c.id == d["id"]).values(is_latest=False))
        d["is_latest"] = False


def _demote_family(conn: sa.Connection, table: sa.Table, stem: str, keep_id: int) -> None:
    conn.execute(
        sa.update(table)
        .where(table.c.uid.startswith(stem, autoescape=True), table.c.id != keep_id, table.c.is_latest.is_(True))
        .values(is_latest=False)
    )


def _family_uids(conn: sa.Connection, table: sa.Table, stem: str) -> list[str]:
    return list(conn.execute(sa.select(table.c.uid).where(table.c.uid.startswith(stem, autoescape=True))).scalars())


def _insert_next_version(record: SQLRecord, conn: sa.Connection, stem: str | None) -> int:
    """Insert `record` as the latest version of the family `stem` (a new family if None); its id."""
    t = record.__table__
    values = record._insert_values(conn)
    stem = stem or base62(record._stem_len)
    values["uid"] = next_version_uid(stem, _family_uids(conn, t, stem))
    new_id = conn.execute(sa.insert(t).values(values).returning(t.c.id)).scalar_one()
    record.__dict__.update(values, id=new_id)
    _demote_family(conn, t, stem, new_id)
    return new_id


class Transform(IsVersioned, SQLRecord):
    """A piece of code or a pipeline step; each execution of it is a Run."""

    uid: str
    key: str
    version: str | None
    kind: str
    description: str | None
    source_code: str | None
    hash: str | None
    reference: str | None
    reference_type: str | None
    is_latest: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: User
    runs: QuerySet
    projects: Any

    __table__ = schema.transform
    _uid_len = 16
    _stem_len = 12
    _aliases: ClassVar[dict[str, str]] = {"name": "key", "type": "kind", "version_tag": "version"}
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "runs": Reverse("Run", fk_column="transform_id"),
        "projects": ManyToMany("Project", table=schema.project_transform, self_column="transform_id", other_column="project_id"),
    }

    def __init__(
        self,
        key: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        description: str | None = None,
        reference: str | None = None,
        reference_type: str | None = None,
        source_code: str | None = None,
        revises: Transform | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        fields = {"key": key, "version": version, "kind": kind or kwargs.pop("type", None) or "pipeline",
                  "description": description, "reference": reference,
                  "reference_type": reference_type, "source_code": source_code}
        if "name" in kwargs:  # the older spelling of key (lamindb < 1.0)
            name = kwargs.pop("name")
            if key is not None and name != key:
                raise ValidationError("Transform() got both key and name; pass key only")
            fields["key"] = name
        if "version_tag" in kwargs:
            fields["version"] = kwargs.pop("version_tag")
        fields.update(kwargs)
        if not fields.get("key"):
            raise ValidationError("Transform() needs a key, e.g. Transform(key='my-pipeline', kind='pipeline')")
        if isinstance(fields.get("version"), (int, float)) and not isinstance(fields["version"], bool):
            fields["version"] = str(fields["version"])
        code = fields.get("source_code")
        if isinstance(code, str):
            from .settings import redact_source

            fields["source_code"] = redact_source(code)
        self._set_fields({k: v for k, v in fields.items() if v is not None or k == "version"})
        if self.source_code is not None and self.hash is None:
            from .hashing import hash_string

            self.hash = hash_string(self.source_code)
        uid = self.__dict__.get("uid")
        if uid is not None and (not is_base62(uid) or len(uid) not in (12, 16)):
            raise ValidationError(f"a Transform uid is 12 (family stem) or 16 base62 characters, got {uid!r}")
        if revises is not None:
            if not isinstance(revises, Transform) or revises.uid is None:
                raise ValidationError("revises expects a saved Transform")
            self.__dict__["uid"] = revises.uid[:12]

    def _identity(self) -> sa.ColumnElement[bool]:
        t = self.__table__
        key_match = t.c.key == self.key
        if self.version is not None:
            return sa.and_(key_match, t.c.version == self.version)
        if self.hash is not None:
            return sa.and_(key_match, t.c.hash == self.hash)
        return sa.and_(key_match, t.c.version.is_(None), t.c.hash.is_(None), t.c.is_latest.is_(True), t.c.branch_id != -1)

    def _insert(self, conn: sa.Connection, events: list) -> None:
        """Get-or-create on (key, version) / (key, source hash), race-free, joining the key's family."""
        t = self.__table__
        existing = conn.execute(sa.select(t).where(self._identity()).order_by(t.c.id.desc()).limit(1)).mappings().first()
        if existing is not None:
            _load_into(self, existing)
            if existing["branch_id"] == -1:  # creating it again brings it back from the trash
                conn.execute(sa.update(t).where(t.c.id == existing["id"]).values(branch_id=1))
                self.__dict__["branch_id"] = 1
            return
        given = self.__dict__.get("uid")
        values = self._insert_values(conn)
        for _ in range(20):
            if given and len(given) == 16:
                uid = given
            else:
                stem = given
                if stem is None:
                    latest = conn.execute(
                        sa.select(t.c.uid).where(t.c.key == self.key, t.c.is_latest.is_(True), t.c.branch_id != -1)
                        .order_by(t.c.id.desc()).limit(1)
                    ).scalar()
                    stem = latest[:12] if latest else base62(12)
                uid = next_version_uid(stem, _family_uids(conn, t, stem))
            values["uid"] = uid
            new_id = _insert_ignore(conn, t, values)
            if new_id is not None:
                self.__dict__.update(values, id=new_id)
                _demote_family(conn, t, uid[:12], new_id)
                _link_current_project(conn, "transform", new_id)
                return
            won = conn.execute(sa.select(t).where(sa.or_(self._identity(), t.c.uid == uid) if given else self._identity())).mappings().first()
            if won is None and self.version is not None and self.hash is not None:
                # The same code at this key under another version label (Prefect's default
                # version hashes the whole file, so an edit elsewhere in it changes the label):
                # (key, hash) is unique, so this code's transform is that row.
                won = conn.execute(sa.select(t).where(t.c.key == self.key, t.c.hash == self.hash)).mappings().first()
            if won is not None:  # another process created the same transform first
                _load_into(self, won)
                return
        raise ValidationError(f"could not allocate a version uid for Transform key {self.key!r}")

    @property
    def latest_run(self) -> Run | None:
        return self.runs.order_by("-started_at", "-id").first()


def _status_lookup(rest: list[str], value: Any, dialect: str) -> sa.ColumnElement[bool]:
    op = rest[0] if rest else "exact"
    column = schema.run.c._status_code
    if op not in ("exact", "in") or len(rest) > 1:
        raise FieldError(f"status supports exact and __in lookups, got status__{'__'.join(rest)}")
    values = value if op == "in" else [value]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError("status__in expects a list of status names")
    codes = []
    for v in values:
        if not isinstance(v, str) or v not in STATUS_CODES:
            raise ValidationError(f"unknown run status {v!r}; valid: {', '.join(STATUS_CODES)}")
        codes.append(STATUS_CODES[v])
    term = schema.sparse_term(column, codes)  # not completed: the partial index of these statuses
    return column.in_(codes) if term is None else sa.and_(column.in_(codes), term)


class Run(SQLRecord):
    """One execution of a Transform, chained to the run that started it."""

    uid: str
    name: str | None
    description: str | None
    entrypoint: str | None
    transform_id: int
    transform: Transform
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    params: dict | None
    reference: str | None
    reference_type: str | None
    cli_args: str | None
    host: str | None
    pid: int | None
    heartbeat_at: dt.datetime | None
    _aux: dict | None
    initiated_by_run_id: int | None
    initiated_by_run: Run | None
    root_run_id: int | None
    root_run: Run | None
    report: Artifact | None
    environment: Artifact | None
    plan: Artifact | None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: User
    initiated_runs: QuerySet
    output_artifacts: QuerySet
    input_artifacts: Any
    recreated_artifacts: Any
    projects: Any
    ulabels: Any
    records: Any
    output_collections: QuerySet
    input_collections: Any
    recreated_collections: Any
    output_records: QuerySet
    input_records: Any
    artifacts: Any
    linked_artifacts: Any
    linked_in_records: Any
    ablocks: QuerySet

    __table__ = schema.run
    _uid_len = 16
    _aliases: ClassVar[dict[str, str]] = {
        "json": "params",
        "is_consecutive": "_is_consecutive",
        "replicated_output_artifacts": "recreated_artifacts",
        "inputs": "input_artifacts",
        "outputs": "output_artifacts",
    }
    _relations: ClassVar[dict[str, Relation]] = {
        "transform": ForeignKey("Transform", column="transform_id"),
        "initiated_by_run": ForeignKey("Run", column="initiated_by_run_id"),
        "root_run": ForeignKey("Run", column="root_run_id"),
        "report": ForeignKey("Artifact", column="report_id"),
        "environment": ForeignKey("Artifact", column="environment_id"),
        "plan": ForeignKey("Artifact", column="plan_id"),
        "created_by": ForeignKey("User", column="created_by_id"),
        "initiated_runs": Reverse("Run", fk_column="initiated_by_run_id"),
        "output_artifacts": Reverse("Artifact", fk_column="run_id"),
        "input_artifacts": InputArtifacts("Artifact", table=schema.run_input_artifact, self_column="run_id", other_column="artifact_id"),
        "recreated_artifacts": ManyToMany("Artifact", table=schema.run_recreated_artifact, self_column="run_id", other_column="artifact_id"),
        "projects": ManyToMany("Project", table=schema.project_run, self_column="run_id", other_column="project_id"),
        "ulabels": ManyToMany("ULabel", table=schema.run_ulabel, self_column="run_id", other_column="ulabel_id"),
        "records": ManyToMany("Record", table=schema.run_record, self_column="run_id", other_column="record_id"),
        "json_values": ManyToMany("JsonValue", table=schema.run_json_value, self_column="run_id", other_column="json_value_id"),
        "output_collections": Reverse("Collection", fk_column="run_id"),
        "input_collections": ManyToMany("Collection", table=schema.run_input_collection, self_column="run_id", other_column="collection_id"),
        "recreated_collections": ManyToMany("Collection", table=schema.run_recreated_collection, self_column="run_id", other_column="collection_id"),
        "output_records": Reverse("Record", fk_column="run_id"),
        "input_records": ManyToMany("Record", table=schema.run_input_record, self_column="run_id", other_column="record_id"),
        "artifacts": ManyToMany("Artifact", table=schema.artifact_run, self_column="run_id", other_column="artifact_id"),
        "linked_artifacts": ManyToMany("Artifact", table=schema.run_artifact, self_column="run_id", other_column="artifact_id"),
        "linked_in_records": ManyToMany("Record", table=schema.record_run, self_column="run_id", other_column="record_id"),
        "ablocks": Reverse("RunBlock", fk_column="run_id"),
    }

    def __init__(
        self,
        transform: Transform | None = None,
        name: str | None = None,
        description: str | None = None,
        entrypoint: str | None = None,
        params: dict | None = None,
        reference: str | None = None,
        reference_type: str | None = None,
        initiated_by_run: Run | None = None,
        plan: Any = None,
        status: Status | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        if transform is None:
            raise ValidationError("Run() needs a transform: Run(transform, ...)")
        if not isinstance(transform, Transform):
            raise ValidationError(f"Run() expects a Transform record as its first argument, got {transform!r}")
        fields = {"transform": transform, "name": name, "description": description, "entrypoint": entrypoint,
                  "params": params, "reference": reference, "reference_type": reference_type,
                  "initiated_by_run": initiated_by_run, "plan": plan, **kwargs}
        self._set_fields({k: v for k, v in fields.items() if v is not None})
        if status is not None:
            self.status = status

    # -- status ----------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return STATUS_NAMES.get(self.__dict__.get("_status_code", -3), "scheduled")  # type: ignore[return-value]

    @status.setter
    def status(self, value: Status) -> None:
        if not isinstance(value, str) or value not in STATUS_CODES:
            raise ValidationError(f"unknown run status {value!r}; valid: {', '.join(STATUS_CODES)}")
        self.__dict__["_status_code"] = code = STATUS_CODES[value]
        self.__dict__.setdefault("_checked", {})["_status_code"] = code
        if value in FINAL_STATUSES and self.__dict__.get("finished_at") is None:
            self.__dict__["finished_at"] = schema.now()

    # -- saving ----------------------------------------------------------------------------

    def _insert_values(self, conn: sa.Connection) -> dict[str, Any]:
        d = self.__dict__
        if d.get("transform_id") is None:
            transform = d.get("_related", {}).get("transform")
            if transform is not None and transform.id is None:
                raise ValidationError("save the Run's transform first: transform.save()")
            raise ValidationError("Run needs a saved transform")
        parent = d.get("initiated_by_run_id")
        if parent is None and d.get("_related", {}).get("initiated_by_run") is not None:
            raise ValidationError("save the parent run (initiated_by_run) first")
        if parent is not None:
            parent_obj = d.get("_related", {}).get("initiated_by_run")
            root = parent_obj.__dict__.get("root_run_id") if parent_obj is not None and parent_obj.id == parent else None
            if root is None:
                root = conn.execute(sa.select(schema.run.c.root_run_id).where(schema.run.c.id == parent)).scalar()
            d["root_run_id"] = root or parent
        if d.get("started_at") is None:  # a run made with a final status ended when it was made
            d["started_at"] = d.get("finished_at") or schema.now()
        return super()._insert_values(conn)

    def _insert(self, conn: sa.Connection, events: list) -> None:
        super()._insert(conn, events)
        if self.__dict__.get("root_run_id") is None:
            self.__dict__["root_run_id"] = self.id
            t = self.__table__
            conn.execute(sa.update(t).where(t.c.id == self.id).values(root_run_id=self.id))
        self._status_events(None, events)
        _link_current_project(conn, "run", self.id)

    def _remove(self, conn: sa.Connection) -> None:
        _protect_outputs(conn, sa.select(sa.literal(self.id)))
        super()._remove(conn)

    def _update(self, conn: sa.Connection, events: list) -> None:
        before = self.__dict__.get("_orig", {}).get("_status_code")
        reparented = self.__dict__.get("initiated_by_run_id") != self.__dict__.get("_orig", {}).get("initiated_by_run_id")
        if reparented:
            t = self.__table__
            parent = self.__dict__.get("initiated_by_run_id")
            below = _subtree(self.id)
            if parent == self.id or (parent and conn.execute(sa.select(below.c.id).where(below.c.id == parent)).first()):
                raise ValidationError(f"run {self.uid} cannot be initiated by itself or by a run it initiated")
            root = conn.execute(sa.select(t.c.root_run_id).where(t.c.id == parent)).scalar() if parent else None
            self.__dict__["root_run_id"] = (root or parent) if parent else self.id
        super()._update(conn, events)
        if reparented:  # the whole subtree moves to the new root
            conn.execute(sa.update(t).where(t.c.id.in_(sa.select(below.c.id))).values(root_run_id=self.root_run_id))
        self._status_events(before, events)

    def _status_events(self, before: int | None, events: list) -> None:
        code = self.__dict__.get("_status_code", -3)
        if code == before:
            return
        name = STATUS_NAMES.get(code)
        if name in ("started", "restarted"):
            events.append(("run_started", {"run": self}))
        elif name in FINAL_STATUSES:
            events.append(("run_finished", {"run": self, "status": name}))

    def _after_link(self, relation: str, ids: list[int]) -> None:
        if relation == "input_artifacts" and ids:
            from . import plugins

            if plugins.has_impls("run_inputs_linked"):
                plugins.fire("run_inputs_linked", run=self, artifacts=list(Artifact.filter(id__in=ids)))

    # -- queries ---------------------------------------------------------------------------

    def query_output_artifacts(self, include_recreated: bool = True) -> QuerySet:
        """Artifacts this run created, plus (by default) those it recreated."""
        from .query import Q

        if not include_recreated:
            return Artifact.filter(run=self)
        return Artifact.filter(Q(run=self) | Q(recreating_runs=self))

    @property
    def features(self) -> Any:
        from .features import FeatureManager

        return FeatureManager(self)

    @property
    def labels(self) -> Any:
        """ULabels, Records and Projects on this run (`run.labels.add(label)`)."""
        from .features import LabelManager

        return LabelManager(self)

    def view_lineage(self, direction: str | None = None, depth: int | None = None, *, with_children: bool = True,
                     return_graph: bool = False) -> Any:
        """The lineage graph around this run: a tree in a terminal, a picture in Jupyter."""
        return _view_lineage(self, direction, depth, with_children)

    @property
    def descendants(self) -> QuerySet:
        """Every run under this one in its chain (one indexed query on the root)."""
        if self.root_run_id == self.id:
            return Run.filter(root_run=self).exclude(id=self.id)
        tree = _subtree(self.id)
        return Run._qs(self._db)._where(self.__table__.c.id.in_(sa.select(tree.c.id)))



def _view_lineage(record: Any, direction: str | None, depth: int | None, with_children: bool) -> Any:
    """lamindb's `view_lineage(with_children=False)` is the upstream half; the graph object it
    returns with `return_graph=True` is what is returned here anyway (shown when displayed)."""
    from ..lineage import graph_of

    return graph_of(record, direction or ("both" if with_children else "upstream"), depth)


def _protect_outputs(conn: sa.Connection, run_ids: Any) -> None:
    """Refuse to remove runs (and the runs they initiated, which go with them) that created
    artifacts: the artifacts would lose the run they came from, as lamindb's PROTECT says."""
    t, a = schema.run, schema.artifact
    ids = [row[0] for row in conn.execute(run_ids)]
    if not ids:
        return
    below = sa.select(t.c.id).where(t.c.root_run_id.in_(
        sa.select(t.c.root_run_id).where(t.c.id.in_(ids))))  # candidates; the exact subtree below
    tree = set(ids)
    frontier = set(ids)
    while frontier:
        frontier = {row[0] for row in conn.execute(sa.select(t.c.id).where(t.c.initiated_by_run_id.in_(frontier),
                                                                           t.c.id.in_(below)))} - tree
        tree |= frontier
    made = conn.execute(sa.select(a.c.key, a.c.uid).where(a.c.run_id.in_(tree)).limit(3)).all()
    if made:
        from ..errors import IntegrityError

        n = conn.execute(sa.select(sa.func.count()).select_from(a).where(a.c.run_id.in_(tree))).scalar() or 0
        examples = ", ".join(key or uid for key, uid in made)
        raise IntegrityError(f"cannot delete: the run(s) created {n} artifact(s) ({examples}{', ...' if n > 3 else ''}) "
                             "that would lose where they came from; delete those first, or trash the run "
                             "(delete() without permanent=True)")


def _subtree(run_id: int | None) -> Any:
    """Recursive CTE of every run below `run_id` (UNION drops repeats: cyclic data terminates)."""
    t = schema.run
    tree = sa.select(t.c.id).where(t.c.initiated_by_run_id == run_id).cte("tree", recursive=True)
    return tree.union(sa.select(t.c.id).where(t.c.initiated_by_run_id == tree.c.id))


def _transform_alias(rest: list[str], value: Any, dialect: str) -> sa.ColumnElement[bool]:
    return _compile(Artifact, ["run", "transform", *rest], value, dialect, "transform__" + "__".join(rest))


_NO_DATA: Any = object()  # Artifact(key=...): a metadata-only record, for files that are not kept


class Artifact(IsVersioned, SQLRecord):
    """A file, folder or object, with the run that made it and the runs that read it."""

    uid: str
    key: str | None
    description: str | None
    suffix: str
    _hash_type: str | None
    kind: str | None
    otype: str | None
    size: int | None
    hash: str | None
    n_files: int | None
    _aux: dict | None
    n_observations: int | None
    version: str | None
    is_latest: bool
    run_id: int | None
    run: Run | None
    storage_id: int | None
    storage: Storage
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: User
    input_of_runs: Any
    recreating_runs: Any
    projects: Any
    ulabels: Any
    records: Any

    __table__ = schema.artifact
    _uid_len = 20
    _stem_len = 16
    _aliases: ClassVar[dict[str, str]] = {"hash_type": "_hash_type", "version_tag": "version"}
    _relations: ClassVar[dict[str, Relation]] = {
        "run": ForeignKey("Run", column="run_id"),
        "storage": ForeignKey("Storage", column="storage_id"),
        "created_by": ForeignKey("User", column="created_by_id"),
        "input_of_runs": InputArtifacts("Run", table=schema.run_input_artifact, self_column="artifact_id", other_column="run_id"),
        "recreating_runs": ManyToMany("Run", table=schema.run_recreated_artifact, self_column="artifact_id", other_column="run_id"),
        "projects": ManyToMany("Project", table=schema.project_artifact, self_column="artifact_id", other_column="project_id"),
        "ulabels": ManyToMany("ULabel", table=schema.artifact_ulabel, self_column="artifact_id", other_column="ulabel_id"),
        "records": ManyToMany("Record", table=schema.artifact_record, self_column="artifact_id", other_column="record_id"),
        "json_values": ManyToMany("JsonValue", table=schema.artifact_json_value, self_column="artifact_id", other_column="json_value_id"),
        "collections": ManyToMany("Collection", table=schema.collection_artifact, self_column="artifact_id", other_column="collection_id"),
        "runs": ManyToMany("Run", table=schema.artifact_run, self_column="artifact_id", other_column="run_id"),
        "linked_by_runs": ManyToMany("Run", table=schema.run_artifact, self_column="artifact_id", other_column="run_id"),
    }

    def __init__(
        self,
        data: Any = _NO_DATA,
        key: str | None = None,
        description: str | None = None,
        kind: str | None = None,
        run: Run | None = None,
        revises: Artifact | None = None,
        **kwargs: Any,
    ):
        """A file, folder, fsspec URL or pandas DataFrame; `.save()` stores and registers it.

        Without `data` the record holds metadata only (for files that are not kept). `None`
        given as the data is a mistake (a path variable left unset), refused as lamindb does.
        """
        super().__init__()
        from . import artifacts

        if data is None:
            raise ValidationError("Artifact() needs data: a path, URL or DataFrame, got None")
        if data is _NO_DATA:
            data = None

        artifacts.check_revises(revises)
        if "path" in kwargs:
            data = kwargs.pop("path") if data is None else data
        if kwargs.get("features") is not None:  # lamindb's `Artifact(..., features={...})`: linked when saved
            self.__dict__["_features"] = kwargs.pop("features")
        kwargs.pop("features", None)
        fields: dict[str, Any] = {"description": description, "kind": kind, **kwargs}
        if run is not None:
            fields["run"] = run
        self._set_fields({k: v for k, v in fields.items() if v is not None})
        if revises is not None:
            self.__dict__["_revises"] = revises
            key = key or revises.key
        if data is None:
            if key is not None:
                from .storage import check_key

                self.key = check_key(key)
            return
        if _is_dataframe(data) or _is_anndata(data):
            from .instance import data_dir

            otype = "DataFrame" if _is_dataframe(data) else "AnnData"
            self.__dict__["n_observations"] = len(data) if otype == "DataFrame" else data.n_obs
            if otype == "DataFrame":
                data = artifacts.dataframe_to_file(data, data_dir() / "cache" / "dataframes")
            else:
                data = artifacts.anndata_to_file(data, data_dir() / "cache" / "anndata")
            self._as_dataset(otype)
        elif not isinstance(data, (str, os.PathLike)):
            raise ValidationError(f"Artifact() takes a path, URL, DataFrame or AnnData, got {type(data).__name__}")
        artifacts.describe_source(self, data, key)

    @classmethod
    def get(cls, idlike: int | str | None = None, *, path: Any = None, is_run_input: bool | None = None,  # type: ignore[override]
            **expressions: Any) -> Artifact:
        """As `SQLRecord.get`, and by where the bytes are (`path=`, a local path or URL in a
        registered storage), as lamindb does; `is_run_input=True` links it as an input of the
        current run."""
        if path is not None:
            from .artifacts import lookups_for_path
            from .instance import current

            found = lookups_for_path(path, current())
            if found is None:
                raise cls.DoesNotExist(f"no registered storage holds {path}, so no artifact is stored there")
            try:
                artifact = super().get(idlike, **expressions, **found)
            except cls.DoesNotExist:
                raise cls.DoesNotExist(f"no artifact is stored at {path}") from None
        else:
            artifact = super().get(idlike, **expressions)
        if is_run_input:
            artifact._track_input(True)
        return artifact

    @classmethod
    def from_dataframe(cls, df: Any, key: str | None = None, description: str | None = None, **kwargs: Any) -> Artifact:
        """A DataFrame (stored as .parquet) or the path of a table file, marked as a dataset of
        otype DataFrame either way (lamindb's `filter(otype="DataFrame")` finds both)."""
        return cls(df, key=key, description=description, **kwargs)._as_dataset("DataFrame")

    from_df = from_dataframe  # lamindb's earlier name, still common in examples

    @classmethod
    def from_anndata(cls, adata: Any, key: str | None = None, description: str | None = None, **kwargs: Any) -> Artifact:
        """An AnnData (stored as .h5ad) or a path to an .h5ad file, as lamindb takes them."""
        if not _is_anndata(adata) and not (isinstance(adata, (str, os.PathLike)) and os.fspath(adata).endswith((".h5ad", ".zarr"))):
            raise ValidationError(f"from_anndata() takes an AnnData or the path of an .h5ad file, got {adata!r}")
        return cls(adata, key=key, description=description, **kwargs)._as_dataset("AnnData")

    def _as_dataset(self, otype: str) -> Artifact:
        d = self.__dict__
        d["otype"], d["kind"] = d.get("otype") or otype, d.get("kind") or "dataset"
        return self

    @classmethod
    def from_dir(cls, path: str | os.PathLike, key: str | None = None, *, run: Run | None = None) -> Any:
        """One artifact per file below `path` (keys `key/<relative path>`); save them with `.save()`."""
        from .hashing import list_files
        from .record import RecordList
        from .storage import check_key

        folder = Path(os.fspath(path)).expanduser()
        if not folder.is_dir():
            raise NotFoundOnDisk(f"no such folder: {folder}")
        prefix = check_key(key).rstrip("/") + "/" if key else folder.name + "/"
        return RecordList(cls(p, key=prefix + rel, run=run) for rel, p, _ in list_files(folder))

    def save(self, *args: Any, **kwargs: Any) -> Artifact:  # type: ignore[override]
        self._bulk_save([self])
        return self

    @classmethod
    def _bulk_save(cls, artifacts: list[Artifact]) -> None:
        from .artifacts import save_artifacts
        from .features import resolve_values

        annotated = [a for a in artifacts if a.__dict__.get("_features") is not None]
        for a in annotated:  # an unknown feature or a wrong value: an error before anything is saved
            resolve_values(a.__dict__["_features"], a._db)
        save_artifacts(artifacts)
        for a in annotated:
            a.features.add_values(a.__dict__.pop("_features"))

    @property
    def features(self) -> Any:
        """Feature values annotating this artifact (`artifact.features.set_values({...})`)."""
        from .features import FeatureManager

        return FeatureManager(self)

    @property
    def labels(self) -> Any:
        """ULabels, Records and Projects on this artifact (`artifact.labels.add(label)`)."""
        from .features import LabelManager

        return LabelManager(self)

    def _save_metadata(self) -> None:
        if self.__dict__.get("_replacement") is not None:
            from .artifacts import save_replacement

            save_replacement(self)
        else:
            SQLRecord.save(self)

    def replace(self, data: Any, run: Run | bool | None = None, format: str | None = None) -> None:
        """lamindb's `replace`: new content for this artifact in storage, without a new version
        (same uid and key; the key's suffix follows the new data's). `.save()` stores it; `run`
        is the run that made the new content (None: the current run; False: none)."""
        from .artifacts import prepare_replacement

        if format is not None:
            raise ValidationError("replace(format=...) is not supported: the format follows the data (a DataFrame is stored as parquet)")
        prepare_replacement(self, data, run)

    @classmethod
    def _check_value(cls, name: str, value: Any) -> Any:
        # An assigned key (`artifact.key = ...`, `update(key=...)`) must stay inside the storage
        # root too: for a file registered in place the key is its path there.
        if name == "key" and value is not None:
            from .storage import check_key

            check_key(value, reserved_ok=True)
        return super()._check_value(name, value)

    def _prepare(self, instance: Any) -> None:
        if self.__dict__.get("_pending"):
            from .artifacts import compute_stats, hash_mode

            compute_stats(self, hash_mode(instance))
        super()._prepare(instance)
        d = self.__dict__
        if d.get("storage_id") is None:
            d["storage_id"] = instance.storage.id
        if d.get("run_id") is None and "run" not in d.get("_related", {}) and not d.get("_no_lineage"):
            from .context import get_current_run

            current_run = get_current_run()
            if current_run is not None and current_run.id is not None:
                d["run_id"] = current_run.id
                if isinstance(current_run, Run):  # `artifact.run` is the tracked run itself, as in lamindb
                    d.setdefault("_related", {})["run"] = current_run

    def _insert(self, conn: sa.Connection, events: list) -> None:
        super()._insert(conn, events)
        _link_current_project(conn, "artifact", self.id)
        events.append(("artifact_saved", {"artifact": self, "run": self.run}))

    def _repr_fields(self) -> list[str]:
        return [n for n in super()._repr_fields() if n not in ("_storage_ongoing", "_key_is_virtual")]

    @property
    def hash_type(self) -> str | None:
        return self._hash_type

    @property
    def transform(self) -> Transform | None:
        run = self.run
        return run.transform if run is not None else None

    def view_lineage(self, direction: str | None = None, depth: int | None = None, *, with_children: bool = True,
                     return_graph: bool = False) -> Any:
        """The lineage graph around this artifact: a tree in a terminal, a picture in Jupyter."""
        return _view_lineage(self, direction, depth, with_children)

    # -- reading ---------------------------------------------------------------------------

    def delete(self, permanent: bool | None = None, **kwargs: Any) -> tuple[int, dict[str, int]] | None:
        """Move to the trash; `permanent=True` removes the row and the copy of the bytes this
        registry made in its storage (files registered in place are the user's: they stay)."""
        copy = self._stored_copy({self.id}) if permanent and self.id is not None else None
        result = super().delete(permanent, **kwargs)
        if copy is not None:
            from .storage import remove

            remove(*copy)  # after the commit: a failed delete keeps its bytes
        return result

    def _stored_copy(self, deleted: set[int]) -> tuple[str, bool] | None:
        """(location, is a folder) of the copy of the bytes this registry made, if deleting the
        records `deleted` leaves no other version using it (folder versions share one place)."""
        if not self.__dict__.get("_key_is_virtual") or self.hash is None or not self.storage_id:
            return None
        from .artifacts import storage_location

        if self.n_files is not None and self.versions.exclude(id__in=sorted(deleted)).exists():
            return None
        return storage_location(self, self.storage.root), self.n_files is not None

    @property
    def path(self) -> Any:
        """Where the bytes are: a pathlib.Path locally, a UPath for object stores."""
        from .artifacts import storage_location
        from .storage import is_url, storage_options

        if self.id is None or self.storage is None:
            source = self.__dict__.get("_source")
            if source is None:
                raise ValidationError("this artifact has no stored bytes (save it first, or it is metadata-only)")
            location = source.location
        else:
            if self.hash is None and self.size is None:
                raise ValidationError(f"artifact {self.uid} is metadata-only: no bytes were stored")
            location = storage_location(self, self.storage.root)
        if not is_url(location):
            return Path(location)
        from upath import UPath

        return UPath(location, **storage_options(location))

    def cache(self, is_run_input: bool | None = None) -> Path:
        """A local path to the bytes (downloaded once for object stores); tracks the run input."""
        from .storage import download, is_url

        path = self.path
        location = str(path)
        if is_url(location):
            from .instance import data_dir

            local = data_dir() / "cache" / location.split("://", 1)[1]
            if not local.exists() or (self.n_files is None and local.stat().st_size != self.size):
                download(location, local, self.n_files is not None)
            path = local
        elif not Path(location).exists():
            raise NotFoundOnDisk(f"the bytes of artifact {self.uid} are missing at {location}")
        self._track_input(is_run_input)
        return Path(path)

    def open(self, mode: str = "rb", engine: str = "pyarrow", is_run_input: bool | None = None) -> Any:
        """Read without loading, as lamindb does: a table file (.parquet, .csv, .tsv, .feather,
        .arrow, .ipc, .orc) as a `pyarrow.dataset.Dataset`, or with `engine="polars"` a context
        manager giving a polars LazyFrame; any other file as a read-only file object. Tracks the
        run input."""
        if mode not in ("r", "rb"):
            raise ValidationError("artifacts open read-only ('r' or 'rb'); save changes as a new version")
        if engine not in ("pyarrow", "polars"):
            raise ValidationError(f"open() reads tables with engine 'pyarrow' or 'polars', got {engine!r}")
        from .artifacts import open_table
        from .storage import filesystem

        fs, fs_path = filesystem(str(self.path))
        handle = open_table(fs, fs_path, self.suffix or "", engine)
        if handle is None:
            handle = fs.open(fs_path, mode)
        self._track_input(is_run_input)
        return handle

    def load(self, is_run_input: bool | None = None, **kwargs: Any) -> Any:
        """The data in memory, by suffix as lamindb loads it: a DataFrame (.csv, .tsv, .parquet),
        the data of .json / .yaml, the text of .txt / .fasta, an AnnData (.h5ad, with anndata
        installed); pictures and .html give their local path (there is nothing to display them in
        a script)."""
        import pandas as pd

        def json_file(p: Path) -> Any:
            import json

            return json.loads(Path(p).read_text(encoding="utf-8"))

        def yaml_file(p: Path) -> Any:
            try:
                import yaml
            except ImportError:
                raise ValidationError("load() of a .yaml artifact needs PyYAML: pip install pyyaml") from None
            return yaml.safe_load(Path(p).read_text(encoding="utf-8"))

        def text_file(p: Path) -> str:
            return Path(p).read_text(encoding="utf-8")

        def h5ad_file(p: Path) -> Any:
            try:
                import anndata
            except ImportError:
                raise ValidationError("load() of a .h5ad artifact needs anndata: pip install anndata") from None
            return anndata.read_h5ad(p, **kwargs)

        def local_path(p: Path) -> Path:
            return Path(p)

        suffix = (self.suffix or "").lower()
        readers = {".csv": lambda p: pd.read_csv(p, **kwargs), ".tsv": lambda p: pd.read_csv(p, sep="\t", **kwargs),
                   ".parquet": lambda p: pd.read_parquet(p, **kwargs), ".json": json_file, ".yaml": yaml_file, ".yml": yaml_file,
                   ".txt": text_file, ".fasta": text_file, ".h5ad": h5ad_file,
                   **dict.fromkeys((".html", ".png", ".jpg", ".jpeg", ".gif", ".svg"), local_path)}
        compressed = suffix.endswith(".gz") and suffix != ".gz"
        reader = readers.get(suffix.removesuffix(".gz")) if compressed else readers.get(suffix)
        if reader is None or (compressed and reader not in (readers[".csv"], readers[".tsv"])):
            raise ValidationError(
                f"load() reads .csv, .tsv, .parquet, .json, .yaml, .txt, .fasta and .h5ad; this artifact is "
                f"{suffix or 'without suffix'}: use .cache() for a local path or .open() for a file object"
            )
        result = reader(self.cache(is_run_input=False))
        self._track_input(is_run_input)
        return result

    def _track_input(self, is_run_input: bool | None) -> None:
        from .artifacts import track_input

        track_input(self, is_run_input)


class _LazyStat:
    """Artifact fields that need the content (hash, size of a folder) are computed on first read.

    This lets `ln.save([...])` hash many new artifacts in a thread pool instead of one by one
    in their constructors, while `artifact.hash` still works before saving.
    """

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        d = obj.__dict__
        if d.get("_pending"):
            from .artifacts import compute_stats, hash_mode

            compute_stats(obj, hash_mode(obj._db))
        return d.get(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


for _name in ("hash", "_hash_type", "size", "n_files"):
    setattr(Artifact, _name, _LazyStat(_name))


def _is_dataframe(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas")


def _is_anndata(data: Any) -> bool:
    return type(data).__name__ == "AnnData" and type(data).__module__.startswith("anndata")


Artifact._meta.special_lookups["transform"] = _transform_alias
Run._meta.special_lookups["status"] = _status_lookup


def _adopt_same_name(record: SQLRecord, kwargs: dict[str, Any]) -> bool:
    """Become the saved record of this name (within the type, when one is given), as lamindb's
    constructors do: a script run twice must not make its labels twice, or `get(name=...)`
    would fail from then on. Other fields given are applied, so `save()` updates them."""
    name = kwargs.get("name")
    if not isinstance(name, str):
        return False
    query = type(record).filter(name=name)
    if "type" in kwargs:
        query = query.filter(type__isnull=True) if kwargs["type"] is None else query.filter(type=kwargs["type"])
    try:
        existing = query.order_by("id").first()
    except RegistryUnavailable:  # made offline: saved (or journaled) as a new record later
        return False
    if existing is None:
        return False
    logger.info("returning %s with same name: %r", type(record).__name__.lower(), name)
    record.__dict__.update(existing.__dict__)
    record._set_fields({k: v for k, v in kwargs.items() if k != "name"})
    return True


class _Named:
    """Records made by name (Project, ULabel), which lamindb refuses to make without one."""

    _example_name: ClassVar[str]

    def __init__(self, name: str | None = None, **kwargs: Any):
        SQLRecord.__init__(self)  # type: ignore[arg-type]
        kind = type(self).__name__
        if not name or not isinstance(name, str):
            raise ValidationError(f"{kind}() needs a name, e.g. {kind}(name={self._example_name!r})")
        if not _adopt_same_name(self, {"name": name, **kwargs}):  # type: ignore[arg-type]
            self._set_fields({"name": name, **kwargs})  # type: ignore[attr-defined]


class Project(_Named, SQLRecord):
    """A label that groups transforms, runs and artifacts."""

    uid: str
    name: str
    description: str | None
    runs: Any
    transforms: Any
    artifacts: Any

    __table__ = schema.project
    _uid_len = 12
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "runs": ManyToMany("Run", table=schema.project_run, self_column="project_id", other_column="run_id"),
        "transforms": ManyToMany("Transform", table=schema.project_transform, self_column="project_id", other_column="transform_id"),
        "artifacts": ManyToMany("Artifact", table=schema.project_artifact, self_column="project_id", other_column="artifact_id"),
        "records": ManyToMany("Record", table=schema.project_record, self_column="project_id", other_column="record_id"),
    }

    _example_name = "my project"


class Record(SQLRecord):
    """lamindb's generic record registry (labels, samples, anything with a name)."""

    uid: str
    name: str | None
    description: str | None
    is_type: bool

    __table__ = schema.record
    _tracks_run = True
    _uid_len = 16

    def __init__(self, **kwargs: Any):
        super().__init__()
        if not _adopt_same_name(self, kwargs):
            self._set_fields(kwargs)
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "type": ForeignKey("Record", column="type_id"),
        "run": ForeignKey("Run", column="run_id"),
        "records": Reverse("Record", fk_column="type_id"),
        "projects": ManyToMany("Project", table=schema.project_record, self_column="record_id", other_column="project_id"),
        "runs": ManyToMany("Run", table=schema.run_record, self_column="record_id", other_column="run_id"),
        "artifacts": ManyToMany("Artifact", table=schema.artifact_record, self_column="record_id", other_column="artifact_id"),
        "input_of_runs": ManyToMany("Run", table=schema.run_input_record, self_column="record_id", other_column="run_id"),
        "linked_runs": ManyToMany("Run", table=schema.record_run, self_column="record_id", other_column="run_id"),
    }

    @classmethod
    def from_values(cls, values: Any, field: str = "name", create: bool | None = None, **kwargs: Any) -> Any:
        """One record per value, reusing the ones that already exist (call `.save()` on the list).

        The missing ones are made, as the seeds' example expects (`from_values([...]).save()`, then
        `get(name=...)`); `create=False` returns only those that exist, as lamindb's default does."""
        from .record import RecordList

        if field not in cls._meta.columns:
            raise FieldError(f"{cls.__name__} has no field {field!r}")
        values = list(dict.fromkeys(values))
        existing = {getattr(r, field): r for r in cls.filter(**{f"{field}__in": values})} if values else {}
        if create is False:
            missing = [v for v in values if v not in existing]
            if missing:
                logger.warning("did not create %s for %s (pass create=True)", cls.__name__, ", ".join(map(repr, missing[:10])))
            return RecordList(existing[v] for v in values if v in existing)
        return RecordList(existing.get(v) or cls(**{field: v}, **kwargs) for v in values)


class ULabel(_Named, SQLRecord):
    """lamindb's universal label, from its older tutorials (`Record` succeeds it): a name that
    annotates runs and artifacts (`artifact.ulabels.add(label)`, `Artifact.filter(ulabels__name="x")`)."""

    uid: str
    name: str
    description: str | None
    is_type: bool
    runs: Any
    artifacts: Any

    __table__ = schema.ulabel
    _tracks_run = True
    _uid_len = 8
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "type": ForeignKey("ULabel", column="type_id"),
        "run": ForeignKey("Run", column="run_id"),
        "runs": ManyToMany("Run", table=schema.run_ulabel, self_column="ulabel_id", other_column="run_id"),
        "artifacts": ManyToMany("Artifact", table=schema.artifact_ulabel, self_column="ulabel_id", other_column="artifact_id"),
    }

    _example_name = "experiment_1"

    from_values = Record.__dict__["from_values"]


class Feature(SQLRecord):
    """A named, typed dimension for annotating runs (`run.features.set_values`)."""

    uid: str
    name: str
    dtype: str
    description: str | None
    unit: str | None

    __table__ = schema.feature
    _uid_len = 12
    _relations: ClassVar[dict[str, Relation]] = {
        "created_by": ForeignKey("User", column="created_by_id"),
        "values": Reverse("JsonValue", fk_column="feature_id"),
    }

    def __init__(self, name: str | None = None, dtype: Any = None, **kwargs: Any):
        super().__init__()
        from .features import normalize_dtype

        if not name or not isinstance(name, str):
            raise ValidationError("Feature() needs a name")
        self._set_fields({"name": name, "dtype": normalize_dtype(dtype, name), **kwargs})

    # lamindb's feature predicates: `temperature = ln.Feature.get(name="temperature")`, then
    # `ln.Run.filter(temperature > 21)`. Compared with a record, a Feature is a record.
    def _predicate(self, op: str, value: Any) -> Any:
        from .query import Predicate

        return Predicate(**{f"{self.name}{op}": value})

    def __eq__(self, other: object) -> Any:
        if isinstance(other, SQLRecord):
            return super().__eq__(other)
        return self._predicate("__isnull", True) if other is None else self._predicate("", other)

    def __ne__(self, other: object) -> Any:
        if isinstance(other, SQLRecord):
            same = super().__eq__(other)
            return same if same is NotImplemented else not same
        return self._predicate("__isnull", False) if other is None else ~self._predicate("", other)

    def __gt__(self, value: Any) -> Any:
        return self._predicate("__gt", value)

    def __ge__(self, value: Any) -> Any:
        return self._predicate("__gte", value)

    def __lt__(self, value: Any) -> Any:
        return self._predicate("__lt", value)

    def __le__(self, value: Any) -> Any:
        return self._predicate("__lte", value)

    __hash__ = SQLRecord.__hash__

    def is_null(self, value: bool = True) -> Any:
        """Runs without a value of this feature (`is_null(False)`: runs with one)."""
        if not isinstance(value, bool):
            raise ValidationError("Feature.is_null() takes True or False")
        return self._predicate("__isnull", value)

    def _insert(self, conn: sa.Connection, events: list) -> None:
        t = self.__table__
        values = self._insert_values(conn)
        new_id = _insert_ignore(conn, t, values)
        if new_id is not None:
            self.__dict__["id"] = new_id
            return
        row = conn.execute(sa.select(t).where(t.c.name == self.name)).mappings().one()
        if row["dtype"] != self.dtype:
            raise ValidationError(
                f"feature {self.name!r} already exists with dtype {row['dtype']!r}, not {self.dtype!r}"
            )
        _load_into(self, row)


class JsonValue(SQLRecord):
    """One feature value, shared by every run that has it."""

    __table__ = schema.json_value
    _relations: ClassVar[dict[str, Relation]] = {
        "feature": ForeignKey("Feature", column="feature_id"),
        "runs": ManyToMany("Run", table=schema.run_json_value, self_column="json_value_id", other_column="run_id"),
        "artifacts": ManyToMany("Artifact", table=schema.artifact_json_value, self_column="json_value_id", other_column="artifact_id"),
    }


def _wire_features() -> None:
    from .features import feature_lookup

    Run._meta.feature_lookup = feature_lookup
    Artifact._meta.feature_lookup = feature_lookup


_wire_features()


class Collection(IsVersioned, SQLRecord):
    """lamindb's collection: artifacts saved together under a key (a dataset in several files,
    the shards of a training set), versioned by key as artifacts are, and read by runs as one
    input (`collection.load()`, `collection.cache()`)."""

    uid: str
    key: str | None
    description: str | None
    hash: str | None
    reference: str | None
    reference_type: str | None
    version: str | None
    is_latest: bool
    run_id: int | None
    run: Run | None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: User
    artifacts: Any
    input_of_runs: Any
    recreating_runs: Any

    __table__ = schema.collection
    _tracks_run = True
    _uid_len = 20
    _stem_len = 16
    _aliases: ClassVar[dict[str, str]] = {"name": "key", "version_tag": "version"}
    _relations: ClassVar[dict[str, Relation]] = {
        "run": ForeignKey("Run", column="run_id"),
        "created_by": ForeignKey("User", column="created_by_id"),
        "artifacts": ManyToMany("Artifact", table=schema.collection_artifact, self_column="collection_id", other_column="artifact_id"),
        "input_of_runs": ManyToMany("Run", table=schema.run_input_collection, self_column="collection_id", other_column="run_id"),
        "recreating_runs": ManyToMany("Run", table=schema.run_recreated_collection, self_column="collection_id", other_column="run_id"),
    }

    def __init__(self, artifacts: Any = None, key: str | None = None, description: str | None = None,
                 reference: str | None = None, reference_type: str | None = None, run: Run | None = None,
                 revises: Collection | None = None, version: str | None = None, **kwargs: Any):
        super().__init__()
        if "name" in kwargs:  # lamindb < 1.0 called the key name
            key = key or kwargs.pop("name")
        if kwargs:
            raise FieldError(f"Collection() got unexpected arguments {', '.join(sorted(kwargs))}")
        members = [artifacts] if isinstance(artifacts, Artifact) else list(artifacts) if artifacts is not None else []
        if not members:
            raise ValidationError("Collection() needs artifacts: a saved Artifact or a list of them")
        for a in members:
            if not isinstance(a, Artifact):
                raise ValidationError(f"Collection() takes saved Artifacts, got {a!r}")
            if a.id is None:
                raise ValidationError(f"save {a!r} before putting it in a collection")
        if len({a.id for a in members}) != len(members):
            raise ValidationError("Collection() got the same artifact twice")
        if revises is not None and (not isinstance(revises, Collection) or revises.id is None):
            raise ValidationError("revises expects a saved Collection")
        from .hashing import hash_string

        key = key or (revises.key if revises is not None else None)
        fields: dict[str, Any] = {"key": key, "description": description, "reference": reference, "reference_type": reference_type,
                  "version": str(version) if version is not None else None,
                  "hash": hash_string("\n".join(sorted(a.hash or a.uid for a in members)))}
        if run is not None:
            fields["run"] = run
        self._set_fields({k: v for k, v in fields.items() if v is not None})
        self.__dict__["_members"] = members
        if revises is not None:
            self.__dict__["_revises"] = revises

    @property
    def ordered_artifacts(self) -> QuerySet:
        """The artifacts in the order they were given."""
        link = schema.collection_artifact
        qs = self.artifacts.all()
        qs._order = [sa.select(link.c.id).where(link.c.collection_id == self.id, link.c.artifact_id == Artifact.__table__.c.id)
                     .scalar_subquery()]
        return qs

    @property
    def data_artifact(self) -> Artifact | None:
        """The artifact of a collection of one."""
        members = list(self.ordered_artifacts)
        return members[0] if len(members) == 1 else None

    def _insert(self, conn: sa.Connection, events: list) -> None:
        """An existing collection of the same artifacts is this one (recreated by this run, as
        lamindb does for artifacts); else a new version in the family of its key or `revises`."""
        t = self.__table__
        existing = conn.execute(sa.select(t).where(t.c.hash == self.hash, t.c.branch_id != -1)
                                .order_by(t.c.id.desc()).limit(1)).mappings().first()
        run_id = self.__dict__.get("run_id")
        if existing is not None:
            logger.warning("returning the existing collection with the same artifacts: %s", existing["uid"])
            self.__dict__.pop("_members", None)
            self.__dict__.pop("_revises", None)
            _load_into(self, existing)
            if run_id is not None and existing["run_id"] != run_id:
                link(conn, schema.run_recreated_collection, [{"run_id": run_id, "collection_id": existing["id"]}])
            return
        revises = self.__dict__.pop("_revises", None)
        stem = revises.uid[:16] if revises is not None else None
        if stem is None and self.key is not None:
            latest = conn.execute(sa.select(t.c.uid).where(t.c.key == self.key, t.c.is_latest.is_(True), t.c.branch_id != -1)
                                  .order_by(t.c.id.desc()).limit(1)).scalar()
            stem = latest[:16] if latest else None
        new_id = _insert_next_version(self, conn, stem)
        if revises is not None and revises.id is not None:
            revises.__dict__["is_latest"] = False
        members = self.__dict__.pop("_members", [])
        link(conn, schema.collection_artifact, [{"collection_id": new_id, "artifact_id": a.id} for a in members])

    def append(self, artifact: Artifact, run: Run | None = None) -> Collection:
        """A new version of this collection with `artifact` added at the end (save it)."""
        return Collection([*self.ordered_artifacts, artifact], key=self.key, description=self.description,
                          run=run, revises=self)

    def cache(self, is_run_input: bool | None = None) -> list[Path]:
        """Local paths of the artifacts, in order; tracks the collection as a run input."""
        paths = [a.cache(is_run_input=False) for a in self.ordered_artifacts]
        self._track_input(is_run_input)
        return paths

    def load(self, join: str = "outer", is_run_input: bool | None = None, **kwargs: Any) -> Any:
        """The artifacts' DataFrames concatenated (lamindb's `join`: "outer" keeps every column,
        "inner" the shared ones); other data as a list of what each artifact loads to."""
        loaded = [a.load(is_run_input=False, **kwargs) for a in self.ordered_artifacts]
        self._track_input(is_run_input)
        if loaded and all(_is_dataframe(x) for x in loaded):
            import pandas as pd

            if join not in ("outer", "inner"):
                raise ValidationError(f"load(join=...) takes 'outer' or 'inner', got {join!r}")
            return pd.concat(loaded, join=join, ignore_index=True)
        return loaded

    def _track_input(self, is_run_input: bool | None) -> None:
        from .artifacts import track_input

        track_input(self, is_run_input)


class RunBlock(IsVersioned, SQLRecord):
    """lamindb's notes on a run (`run.ablocks`): markdown of kind "readme" (a new readme of a
    run is the next version of its last one) or "comment" (each its own)."""

    uid: str
    run_id: int
    run: Run
    content: str
    kind: str
    hash: str | None
    version: str | None
    is_latest: bool
    created_at: dt.datetime
    created_by: User

    __table__ = schema.run_block
    _uid_len = 20
    _stem_len = 16
    _relations: ClassVar[dict[str, Relation]] = {
        "run": ForeignKey("Run", column="run_id"),
        "created_by": ForeignKey("User", column="created_by_id"),
    }

    def __init__(self, run: Run | None = None, content: str | None = None, kind: str = "readme",
                 version: str | None = None, **kwargs: Any):
        super().__init__()
        if kwargs:
            raise FieldError(f"RunBlock() got unexpected arguments {', '.join(sorted(kwargs))}; it takes run, content, kind and version")
        if not isinstance(run, Run) or run.id is None:
            raise ValidationError("RunBlock() needs a saved run, e.g. RunBlock(run=ln.context.run, content='...')")
        if not isinstance(content, str):
            raise ValidationError(f"RunBlock() needs markdown content (a str), got {content!r}")
        if kind not in ("readme", "comment"):
            raise ValidationError(f"RunBlock kind is 'readme' or 'comment', got {kind!r}")
        from .hashing import hash_string

        self._set_fields({"run": run, "content": content, "kind": kind, "hash": hash_string(content),
                          **({"version": str(version)} if version is not None else {})})

    def _insert(self, conn: sa.Connection, events: list) -> None:
        t = self.__table__
        latest = None if self.kind == "comment" else conn.execute(
            sa.select(t.c.uid).where(t.c.run_id == self.run_id, t.c.kind == self.kind, t.c.is_latest.is_(True))
            .order_by(t.c.id.desc()).limit(1)).scalar()
        _insert_next_version(self, conn, latest[:16] if latest else None)
