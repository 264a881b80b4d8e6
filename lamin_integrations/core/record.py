"""The record base class: lamindb's `SQLRecord` behaviour on SQLAlchemy Core tables.

A record is a plain object whose attributes are its columns. Relations are descriptors:
a foreign key loads its target on first access; reverse and many-to-many relations return
query sets (the latter with `add`, `remove`, `set`, `clear`). `save()` is one transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa

from ..errors import FieldError, ValidationError
from . import query as q
from .instance import Instance, current
from .schema import is_json

if TYPE_CHECKING:
    from .queryset import QuerySet

logger = logging.getLogger("lamin_integrations")
R = TypeVar("R", bound="SQLRecord")
_MISSING = object()
REGISTRIES: dict[str, type[SQLRecord]] = {}


# -- relations ------------------------------------------------------------------------------


def _ids_of(target: type[SQLRecord], where: str, value: Any) -> list[int]:
    values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    ids = []
    for v in values:
        if isinstance(v, SQLRecord):
            if not isinstance(v, target):
                raise ValidationError(f"{where} expects a {target.__name__} record, got {type(v).__name__}")
            if v.id is None:
                raise ValidationError(f"{where}: {v!r} is not saved yet; call .save() first")
            ids.append(v.id)
        elif isinstance(v, int) and not isinstance(v, bool):
            q.check_int64(where, v)
            ids.append(v)
        else:
            raise ValidationError(f"{where} expects a {target.__name__} record or id, got {v!r}")
    return ids


@dataclass
class Relation:
    target_name: str
    name: str = ""
    owner: Any = None  # the registry class that declares the relation
    many: ClassVar[bool] = True

    @property
    def target(self) -> type[SQLRecord]:
        return REGISTRIES[self.target_name]

    def compile(self, model: type[SQLRecord], rest: list[str], value: Any, dialect: str, expression: str) -> sa.ColumnElement[bool]:
        op = rest[0] if len(rest) == 1 and rest[0] in ("exact", "in", "isnull") else None
        if not rest or op is not None:
            op = op or "exact"
            where = f"{model.__name__}.{expression}"
            if op == "isnull":
                if not isinstance(value, bool):
                    raise ValidationError(f"{where} expects True or False, got {value!r}")
                return self._isnull(model, value)
            if value is None:
                return self._isnull(model, True)
            from .queryset import QuerySet

            if isinstance(value, QuerySet):  # Django-style: a query set as a subquery of ids
                if value.model is not self.target:
                    raise ValidationError(f"{where} expects {self.target.__name__} records, got a {value.model.__name__} query set")
                return self._in_ids(model, value._ids_subquery())  # type: ignore[arg-type]
            if op == "in" and not isinstance(value, (list, tuple, set, frozenset)):
                raise ValidationError(f"{where} expects a list, got {value!r}")
            return self._in_ids(model, _ids_of(self.target, where, value))
        return self._in_subquery(model, q._compile(self.target, rest, value, dialect, expression))

    def _isnull(self, model: type[SQLRecord], is_null: bool) -> sa.ColumnElement[bool]:
        raise NotImplementedError

    def _in_ids(self, model: type[SQLRecord], ids: list[int]) -> sa.ColumnElement[bool]:
        raise NotImplementedError

    def _in_subquery(self, model: type[SQLRecord], clause: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        raise NotImplementedError


@dataclass
class ForeignKey(Relation):
    """To-one: `run.transform`; the column is `<name>_id`."""

    column: str = ""
    many: ClassVar[bool] = False

    def _isnull(self, model, is_null):
        col = model.__table__.c[self.column]
        return col.is_(None) if is_null else col.is_not(None)

    def _in_ids(self, model, ids):
        return model.__table__.c[self.column].in_(ids)

    def _in_subquery(self, model, clause):
        target = self.target.__table__
        return model.__table__.c[self.column].in_(sa.select(target.c.id).where(clause))

    def __get__(self, obj: SQLRecord | None, owner: type) -> Any:
        if obj is None:
            return self
        cache = obj.__dict__.setdefault("_related", {})
        fk = obj.__dict__.get(self.column)
        cached = cache.get(self.name)
        if cached is not None and cached.id == fk:
            return cached
        if fk is None:
            return cached if cached is not None and cached.id is None else None
        loaded = self.target._get_by_id(fk, obj._instance)
        cache[self.name] = loaded
        return loaded

    def __set__(self, obj: SQLRecord, value: Any) -> None:
        if value is not None and not isinstance(value, self.target):
            raise ValidationError(
                f"{type(obj).__name__}.{self.name} expects a {self.target.__name__} record or None, got {value!r}"
            )
        obj.__dict__.setdefault("_related", {})[self.name] = value
        obj.__dict__[self.column] = fk = value.id if value is not None else None
        obj.__dict__.setdefault("_checked", {})[self.column] = fk


@dataclass
class Reverse(Relation):
    """To-many through the target's foreign key: `run.output_artifacts`."""

    fk_column: str = ""

    def _isnull(self, model, is_null):
        t = self.target.__table__
        sub = sa.select(t.c[self.fk_column]).where(t.c[self.fk_column].is_not(None))
        return model.__table__.c.id.not_in(sub) if is_null else model.__table__.c.id.in_(sub)

    def _in_ids(self, model, ids):
        t = self.target.__table__
        return model.__table__.c.id.in_(sa.select(t.c[self.fk_column]).where(t.c.id.in_(ids)))

    def _in_subquery(self, model, clause):
        t = self.target.__table__
        return model.__table__.c.id.in_(sa.select(t.c[self.fk_column]).where(clause))

    def __get__(self, obj: SQLRecord | None, owner: type) -> Any:
        if obj is None:
            return self
        from .queryset import QuerySet

        if obj.id is None:
            return QuerySet(self.target, obj._instance).none()
        return QuerySet(self.target, obj._instance)._where(self.target.__table__.c[self.fk_column] == obj.id)


@dataclass
class ManyToMany(Relation):
    """To-many through a link table: `run.input_artifacts`, `artifact.input_of_runs`."""

    table: sa.Table = None  # type: ignore[assignment]
    self_column: str = ""
    other_column: str = ""

    def _isnull(self, model, is_null):
        sub = sa.select(self.table.c[self.self_column])
        return model.__table__.c.id.not_in(sub) if is_null else model.__table__.c.id.in_(sub)

    def _in_ids(self, model, ids):
        link = self.table
        return model.__table__.c.id.in_(sa.select(link.c[self.self_column]).where(link.c[self.other_column].in_(ids)))

    def _in_subquery(self, model, clause):
        link, target = self.table, self.target.__table__
        inner = sa.select(target.c.id).where(clause)
        return model.__table__.c.id.in_(sa.select(link.c[self.self_column]).where(link.c[self.other_column].in_(inner)))

    def __get__(self, obj: SQLRecord | None, owner: type) -> Any:
        if obj is None:
            return self
        from .queryset import RelatedManager

        return RelatedManager(self, obj)


# -- registry metadata ----------------------------------------------------------------------


@dataclass
class Meta:
    columns: dict[str, sa.Column] = field(default_factory=dict)
    relations: dict[str, Relation] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    special_lookups: dict[str, Callable[..., sa.ColumnElement[bool]]] = field(default_factory=dict)
    feature_lookup: Callable[..., sa.ColumnElement[bool] | None] | None = None
    uid_len: int = 0
    stem_len: int = 0  # versioned registries only
    string_fields: list[str] = field(default_factory=list)
    json_columns: frozenset[str] = frozenset()
    callable_defaults: list[tuple[str, Callable[[Any], Any]]] = field(default_factory=list)  # (name, default)


class SQLRecord:
    """Base of every registry (Run, Transform, Artifact, ...)."""

    __table__: ClassVar[sa.Table]
    _meta: ClassVar[Meta]
    _relations: ClassVar[dict[str, Relation]] = {}
    _aliases: ClassVar[dict[str, str]] = {}
    _uid_len: ClassVar[int] = 0
    _stem_len: ClassVar[int] = 0
    _search_fields: ClassVar[tuple[str, ...]] = ()
    _tracks_run: ClassVar[bool] = False  # run_id is the current run when the record is made

    id: int | None
    uid: str
    _instance: Instance | None
    DoesNotExist: ClassVar[type[Exception]]
    MultipleObjectsReturned: ClassVar[type[Exception]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if table is None:
            return
        from ..errors import MultipleResultsFound, ObjectDoesNotExist

        # Django's per-model exceptions (`except ln.Artifact.DoesNotExist:`), under the package's own
        cls.DoesNotExist = type("DoesNotExist", (ObjectDoesNotExist,), {"__module__": cls.__module__,
                                                                         "__qualname__": f"{cls.__name__}.DoesNotExist"})
        cls.MultipleObjectsReturned = type("MultipleObjectsReturned", (MultipleResultsFound,), {
            "__module__": cls.__module__, "__qualname__": f"{cls.__name__}.MultipleObjectsReturned"})
        meta = Meta(uid_len=cls._uid_len, stem_len=cls._stem_len)
        meta.columns = {c.name: c for c in table.columns}
        for name, rel in cls._relations.items():
            rel.name, rel.owner = name, cls
            meta.relations[name] = rel
            setattr(cls, name, rel)
        meta.aliases = dict(cls._aliases)
        for alias, target in meta.aliases.items():
            if not hasattr(cls, alias):  # `run.inputs`, `transform.name`: older lamindb spellings
                setattr(cls, alias, _Alias(target))
        meta.json_columns = frozenset(c.name for c in table.columns if is_json(c.type))
        meta.callable_defaults = [(c.name, c.default.arg) for c in table.columns  # type: ignore[attr-defined]
                                  if c.default is not None and c.default.is_callable]
        for name in meta.json_columns:
            setattr(cls, name, _JSONField(name))
        meta.string_fields = [
            c.name for c in table.columns
            if isinstance(c.type, (sa.String, sa.Text)) and not c.name.startswith("_")
            and c.name not in ("source_code",)
        ]
        cls._meta = meta
        REGISTRIES[cls.__name__] = cls

    # -- construction -------------------------------------------------------------------

    def __init__(self, **kwargs: Any):
        self._init_defaults()
        self._set_fields(kwargs)

    def _init_defaults(self) -> None:
        d = self.__dict__
        d["_instance"] = None
        d["_orig"] = {}
        d["_checked"] = checked = {}
        for name, column in self._meta.columns.items():
            value = None
            default = column.default
            if default is not None and default.is_scalar:
                value = checked[name] = default.arg  # type: ignore[attr-defined]
            d[name] = value

    def _set_fields(self, kwargs: Mapping[str, Any]) -> None:
        meta = self._meta
        for key, value in kwargs.items():
            name = meta.aliases.get(key, key)
            if name in meta.relations and not meta.relations[name].many:
                setattr(self, name, value)
            elif name in meta.columns and name != "id":
                setattr(self, name, self._check_value(name, value))
                self.__dict__.setdefault("_checked", {})[name] = value
            else:
                raise FieldError(
                    f"{type(self).__name__}() got an unexpected field {key!r}. "
                    f"Valid fields: {', '.join(self._field_names(writable=True))}"
                )

    @classmethod
    def _check_value(cls, name: str, value: Any) -> Any:
        """Reject wrong types and over-long strings before they reach the database."""
        if value is None:
            return None
        column = cls._meta.columns[name]
        where = f"{cls.__name__}.{name}"
        python_type = q._python_type(column.type)
        q.check_scalar(where, python_type, value)
        length = getattr(column.type, "length", None)
        if python_type is str and length and len(value) > length:
            raise ValidationError(f"{where} is at most {length} characters, got {len(value)}: {value[:40]!r}...")
        if is_json(column.type):
            from .jsonutil import check_json

            check_json(value, where)
        elif python_type is datetime and not isinstance(value, datetime):
            raise ValidationError(f"{where} expects a datetime, got {value!r}")
        elif python_type is datetime:
            q.check_datetime(where, value)
        return value

    @classmethod
    def _from_row(cls: type[R], row: Any, instance: Instance) -> R:
        obj = cls.__new__(cls)
        d = obj.__dict__
        d.update(row)
        d["_instance"] = instance
        obj._snapshot()
        return obj

    def _snapshot(self) -> None:
        d = self.__dict__
        json_columns = self._meta.json_columns
        d["_orig"] = {name: d.get(name) for name in self._meta.columns if name not in json_columns}
        d["_json_seen"] = {}  # JSON values are snapshotted when first read (see _JSONField)

    def _changed(self) -> dict[str, Any]:
        d, orig = self.__dict__, self.__dict__.get("_orig", {})
        seen = d.get("_json_seen", {})
        json_columns = self._meta.json_columns
        changed = {}
        for n in self._meta.columns:
            if n == "id":
                continue
            if n in json_columns:
                # A JSON value never read through its attribute cannot have been mutated.
                if n in seen and _json_text(d.get(n)) != seen[n]:
                    changed[n] = d.get(n)
            elif d.get(n) != orig.get(n):
                changed[n] = d.get(n)
        return changed

    @classmethod
    def _field_names(cls, writable: bool = False) -> list[str]:
        names = [n for n in cls._meta.columns if not n.startswith("_")]
        names += [n for n, r in cls._meta.relations.items() if not (writable and r.many)]
        if not writable:
            names += list(cls._meta.special_lookups)
        names += list(cls._meta.aliases)
        if writable:
            names = [n for n in names if n not in ("id", "created_at", "updated_at")]
        return sorted(set(names))

    # -- identity -----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SQLRecord) or type(other) is not type(self):
            return NotImplemented
        if self.id is None or other.id is None:
            return self is other
        return self.id == other.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id if self.id is not None else id(self)))

    def __repr__(self) -> str:
        fields = []
        for name in self._repr_fields():
            value = self.__dict__.get(name)
            if value is None or name.startswith("_"):
                continue
            if isinstance(value, str) and len(value) > 60:
                value = value[:57] + "..."
            if hasattr(value, "isoformat"):
                value = value.isoformat(sep=" ", timespec="seconds")
            fields.append(f"{name}={value!r}")
            if name == "uid" and "_status_code" in self._meta.columns:
                fields.append(f"status={self.status!r}")  # type: ignore[attr-defined]
        return f"{type(self).__name__}({', '.join(fields)})"

    def _repr_fields(self) -> list[str]:
        skip = {"id", "source_code", "updated_at", "is_locked", "branch_id"}
        return [n for n in self._meta.columns if n not in skip]

    # -- persistence ----------------------------------------------------------------------

    @property
    def _db(self) -> Instance:
        inst = self.__dict__.get("_instance")
        if inst is None:
            inst = current()
            self.__dict__["_instance"] = inst
        return inst

    def save(self: R, *args: Any, **kwargs: Any) -> R:
        """Insert or update this record in one transaction; returns the record."""
        instance = self._db
        self._prepare(instance)
        state = dict(self.__dict__)

        def attempt(conn: sa.Connection) -> list[tuple[str, dict[str, Any]]]:
            # A retried transaction starts again from the record as it was.
            self.__dict__.clear()
            self.__dict__.update(state)
            events: list[tuple[str, dict[str, Any]]] = []
            self._save(conn, events)
            return events

        events = instance.write(attempt)
        self._snapshot()
        from . import plugins

        plugins.fire_all(events)
        return self

    def _prepare(self, instance: Instance) -> None:
        """Resolve defaults that need their own transaction, before the write begins.

        (A write inside a write would wait on itself: SQLite writers hold the lock.)
        """
        d = self.__dict__
        checked = d.get("_checked", {})
        json_columns = self._meta.json_columns
        candidates = (
            self._changed().items() if d.get("id") is not None
            else ((n, d[n]) for n in self._meta.columns if d.get(n) is not None)
        )
        for name, value in candidates:
            # Attributes may have been assigned directly; JSON may have been mutated in place.
            if name in json_columns or checked.get(name, _MISSING) is not value:
                self._check_value(name, value)
        if "created_by_id" in self._meta.columns and self.__dict__.get("created_by_id") is None:
            self.__dict__["created_by_id"] = instance.user.id
        if self._tracks_run and d.get("id") is None and d.get("run_id") is None:
            from .context import get_current_run

            run = get_current_run()  # as lamindb's TracksRun: the run that made the record
            if run is not None and run.id is not None and run._db is instance:
                self.__dict__["run_id"] = run.id

    def _save(self, conn: sa.Connection, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self.id is None:
            self._insert(conn, events)
        else:
            self._update(conn, events)

    def _insert_values(self, conn: sa.Connection) -> dict[str, Any]:
        """Fill uid, creator and defaults; registries extend this."""
        d = self.__dict__
        if self._uid_len and not d.get("uid"):
            from .uids import VERSION_LEN, base62

            # Versioned registries start a family at counter 0000, as lamindb does.
            d["uid"] = base62(self._stem_len) + "0" * VERSION_LEN if self._stem_len else base62(self._uid_len)
        for name, default in self._meta.callable_defaults:
            if d.get(name) is None:
                d[name] = default(None)
        return {n: d.get(n) for n in self._meta.columns if n != "id"}

    def _insert(self, conn: sa.Connection, events: list[tuple[str, dict[str, Any]]]) -> None:
        values = self._insert_values(conn)
        table = self.__table__
        self.__dict__["id"] = conn.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one()

    def _update(self, conn: sa.Connection, events: list[tuple[str, dict[str, Any]]]) -> None:
        changed = self._changed()
        if not changed:
            return
        if "updated_at" in self._meta.columns:
            from .schema import now

            changed["updated_at"] = self.__dict__["updated_at"] = now()
        table = self.__table__
        conn.execute(sa.update(table).where(table.c.id == self.id).values(changed))

    def _after_link(self, relation: str, ids: list[int]) -> None:
        """Called after records were linked through a many-to-many relation."""

    def refresh_from_db(self, using: Any = None, fields: Any = None, from_queryset: Any = None) -> None:
        """Reload every field from the database."""
        fresh = type(self)._get_by_id(self.id, self._db) if self.id is not None else None
        if fresh is None:
            from ..errors import ObjectDoesNotExist

            raise ObjectDoesNotExist(f"{type(self).__name__} with id {self.id} no longer exists")
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_related"})
        self.__dict__.pop("_related", None)

    def delete(self, permanent: bool | None = None, **kwargs: Any) -> tuple[int, dict[str, int]] | None:
        """Move to the trash; `permanent=True` removes the row for good and returns, as lamindb
        (Django) does, `(deleted count, {"lamindb.<Registry>": count})`."""
        if self.id is None:
            raise ValidationError(f"cannot delete an unsaved {type(self).__name__}")
        if permanent:
            self._db.write(self._remove)
            self.__dict__["id"] = None
            return 1, {f"lamindb.{type(self).__name__}": 1}
        if self.__dict__.get("branch_id") == -1:
            logger.warning("%r is already in the trash; pass permanent=True to delete it for good", self)
            return None
        self._db.write(self._trash)
        self.__dict__["branch_id"] = -1
        self._snapshot()
        return None

    def _trash(self, conn: sa.Connection) -> None:
        table = self.__table__
        conn.execute(sa.update(table).where(table.c.id == self.id).values(branch_id=-1))

    def _remove(self, conn: sa.Connection) -> None:
        table = self.__table__
        conn.execute(sa.delete(table).where(table.c.id == self.id))

    def restore(self) -> None:
        """Bring a trashed record back onto the main branch."""
        table = self.__table__
        self._db.write(lambda conn: conn.execute(sa.update(table).where(table.c.id == self.id).values(branch_id=1)))
        self.__dict__["branch_id"] = 1
        self._snapshot()

    @property
    def branch(self) -> Branch | None:
        """lamindb's branch of the record: main, or archive / trash (`delete()` moves it there)."""
        branch_id = self.__dict__.get("branch_id")
        return None if "branch_id" not in self._meta.columns else Branch.of(1 if branch_id is None else branch_id)

    @property
    def created_on(self) -> Branch | None:
        """The branch the record was made on: main (this registry makes records nowhere else)."""
        return Branch.of(1) if "branch_id" in self._meta.columns else None

    @property
    def space(self) -> Space:
        """lamindb's space of the record: every record of this registry is in the one space, `all`."""
        return Space()

    def describe(self, include: Any = None, return_str: bool = False) -> str | None:
        """A tree of identity, lineage, params, inputs and outputs (rich output)."""
        from .describe import describe

        text = describe(self, include=include)
        if return_str:
            return text
        print(text)
        return None

    # -- class-level query API (delegates to QuerySet) ------------------------------------

    @classmethod
    def _qs(cls, instance: Instance | None = None) -> QuerySet:
        from .queryset import QuerySet

        return QuerySet(cls, instance)

    @classmethod
    def objects(cls) -> QuerySet:
        return cls._qs()

    @classmethod
    def all(cls) -> QuerySet:
        return cls._qs()

    @classmethod
    def filter(cls, *queries: q.Q, **expressions: Any) -> QuerySet:
        """Query records with Django-style lookups; returns a chainable QuerySet."""
        return cls._qs().filter(*queries, **expressions)

    @classmethod
    def exclude(cls, *queries: q.Q, **expressions: Any) -> QuerySet:
        return cls._qs().exclude(*queries, **expressions)

    @classmethod
    def get(cls: type[R], idlike: int | str | None = None, **expressions: Any) -> R:
        """One record by id, uid, uid prefix or lookups; raises ObjectDoesNotExist."""
        return cls._qs().get(idlike, **expressions)

    @classmethod
    def to_dataframe(cls, include: str | list[str] | None = None, features: bool | list[str] = False, limit: int | None = 100, order_by: str | None = "-id"):
        return cls._qs().to_dataframe(include=include, features=features, limit=limit, order_by=order_by)

    df = to_dataframe

    @classmethod
    def search(cls, string: str, *, field: str | list[str] | None = None, limit: int | None = 20, case_sensitive: bool = False) -> QuerySet:
        return cls._qs().search(string, field=field, limit=limit, case_sensitive=case_sensitive)

    @classmethod
    def lookup(cls, field: str | None = None, return_field: str | None = None) -> Any:
        return cls._qs().lookup(field=field, return_field=return_field)

    @classmethod
    def connect(cls, instance: str | Instance | None) -> QuerySet:
        """Query another registry (a database URL or an Instance) without switching to it."""
        from .instance import resolve

        if instance is None:
            return cls._qs()
        if not isinstance(instance, Instance):
            instance = Instance(*resolve(instance, None))
        return cls._qs(instance)

    @classmethod
    def _get_by_id(cls: type[R], id_: int, instance: Instance | None) -> R | None:
        instance = instance or current()
        table = cls.__table__
        with instance.read() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == id_)).mappings().first()
        return cls._from_row(row, instance) if row is not None else None


class _Alias:
    """An older lamindb name for a field (`run.inputs` is `run.input_artifacts`), read and written through."""

    def __init__(self, target: str):
        self.target = target

    def __get__(self, obj: Any, owner: type) -> Any:
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, value)


class _JSONField:
    """JSON columns can be mutated in place (`run.params["x"] = 1`), so saving must compare
    against a copy. The copy (as JSON text) is taken when the value is first read through
    the attribute, which is the only way user code can reach it: records whose JSON is never
    touched (most rows of a query) pay nothing.
    """

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        d = obj.__dict__
        value = d.get(self.name)
        seen = d.get("_json_seen")
        if seen is not None and self.name not in seen:
            seen[self.name] = _json_text(value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        self.__get__(obj, type(obj))  # remember what was stored before replacing it
        obj.__dict__[self.name] = value


def _json_text(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return object()  # not JSON: always "changed", so validation at save reports it


@dataclass(frozen=True)
class Branch:
    """lamindb's branches as this registry keeps them (a branch_id on each record, no table)."""

    id: int
    name: str

    @classmethod
    def of(cls, branch_id: int) -> Branch:
        return cls(branch_id, {1: "main", 0: "archive", -1: "trash"}.get(branch_id, str(branch_id)))


@dataclass(frozen=True)
class Space:
    """lamindb's default space: access control is the database's here, so there is one."""

    id: int = 1
    name: str = "all"


class RecordList(list):
    """A list of records that can be saved together (`SQLRecord.from_values(...).save()`)."""

    def save(self) -> RecordList:
        from .bulk import save

        save(self)
        return self


def link(conn: sa.Connection, table: sa.Table, rows: Iterable[dict[str, Any]]) -> int:
    """Insert link rows, ignoring ones that already exist (idempotent on both databases)."""
    rows = list(rows)
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    from .schema import now

    ts = now()
    for row in rows:
        row.setdefault("created_at", ts)
    return conn.execute(insert(table).on_conflict_do_nothing(), rows).rowcount
