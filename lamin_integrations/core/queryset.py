"""Chainable, lazy query sets over one registry, as in lamindb (and Django)."""

from __future__ import annotations

import keyword
import re
from collections import namedtuple
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import FieldError, ValidationError
from .instance import Instance, current
from .query import Q, negate

if TYPE_CHECKING:
    import pandas as pd

    from .record import ManyToMany, SQLRecord

# Looking a record up by these names finds it even in the trash, as lamindb does.
_SEES_TRASH = {"id", "uid", "hash", "branch_id", "branch"}
# ... and finds lamindb's hidden artifacts (`__lamindb_run__`: run reports and environments),
# which other queries leave out.
_SEES_HIDDEN = {"id", "uid", "hash", "kind"}
HIDDEN_KIND_PREFIX = "__lamindb"


class QuerySet:
    def __init__(self, model: type[SQLRecord], instance: Instance | None = None):
        self.model = model
        self._instance = instance
        self._clauses: list[sa.ColumnElement[bool]] = []
        self._order: list[Any] = []
        self._limit: int | None = None
        self._offset: int | None = None
        self._show_trash = False
        self._show_hidden = False
        self._cache: list[SQLRecord] | None = None

    @property
    def instance(self) -> Instance:
        if self._instance is None:
            self._instance = current()
        return self._instance

    def _clone(self) -> QuerySet:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._clauses = list(self._clauses)
        new._order = list(self._order)
        new._cache = None
        return new

    def _where(self, clause: sa.ColumnElement[bool]) -> QuerySet:
        new = self._clone()
        new._clauses.append(clause)
        return new

    # -- building ------------------------------------------------------------------------

    def filter(self, *queries: Q, **expressions: Any) -> QuerySet:
        """Narrow by Q objects and Django-style lookups (all conditions must hold)."""
        q = self._q(queries, expressions)
        new = self._where(q.compile(self.model, self.instance.dialect))
        names = [name.split("__")[0] for name in q.names()]
        if any(name in _SEES_TRASH for name in names):
            new._show_trash = True
        if any(name in _SEES_HIDDEN for name in names):
            new._show_hidden = True
        return new

    def exclude(self, *queries: Q, **expressions: Any) -> QuerySet:
        return self._where(negate(self._q(queries, expressions).compile(self.model, self.instance.dialect)))

    @staticmethod
    def _q(queries: tuple[Any, ...], expressions: dict[str, Any]) -> Q:
        for query in queries:
            if not isinstance(query, Q):
                raise ValidationError(f"filter() takes Q objects and keyword lookups, got {query!r}")
        return Q(*queries, **expressions)

    def order_by(self, *fields: str) -> QuerySet:
        new = self._clone()
        new._order = [self._order_column(f) for f in fields]
        return new

    def _order_column(self, spec: Any) -> Any:
        if not isinstance(spec, str):
            return spec  # an SQL expression (used by search ranking)
        desc = spec.startswith("-")
        name = spec.lstrip("-")
        meta = self.model._meta
        name = meta.aliases.get(name, name)
        if name == "status" and "_status_code" in meta.columns:
            name = "_status_code"
        if name in meta.relations and not meta.relations[name].many:
            name = meta.relations[name].column  # type: ignore[attr-defined]
        head, _, path = name.partition("__")
        if path and head in meta.json_columns:  # `order_by("-params__lr")`: by a value inside a JSON field
            from .query import json_sort_key

            key = json_sort_key(self.model.__table__.c[head], path.split("__"), self.instance.dialect, spec)
            return key.desc() if desc else key.asc()
        if name not in meta.columns:
            raise FieldError(
                f"cannot order {self.model.__name__} by {spec!r}. Valid fields: "
                f"{', '.join(n for n in self.model._meta.columns if not n.startswith('_'))}"
            )
        column = self.model.__table__.c[name]
        return column.desc() if desc else column.asc()

    def distinct(self, *fields: str) -> QuerySet:
        return self  # relation lookups are subqueries: rows are never duplicated

    def all(self) -> QuerySet:
        return self._clone()

    def none(self) -> QuerySet:
        return self._where(sa.false())

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            if item.step is not None or (item.start or 0) < 0 or (item.stop is not None and item.stop < 0):
                raise ValidationError("query sets support [start:stop] slices with non-negative bounds")
            new = self._clone()
            start = item.start or 0
            stop = item.stop
            if self._limit is not None:  # a slice of a slice stays inside the outer one
                stop = self._limit if stop is None else min(stop, self._limit)
            new._offset = (self._offset or 0) + start
            new._limit = None if stop is None else max(stop - start, 0)
            return new
        if item < 0:
            return self._fetch()[item]
        rows = self[item : item + 1]._fetch()
        if not rows:
            raise IndexError("query set index out of range")
        return rows[0]

    # -- SQL -----------------------------------------------------------------------------

    def _conditions(self) -> list[sa.ColumnElement[bool]]:
        conds = list(self._clauses)
        columns = self.model._meta.columns
        if not self._show_trash and "branch_id" in columns:
            conds.append(self.model.__table__.c.branch_id != -1)
        if "_storage_ongoing" in columns:
            # Rows whose bytes are still being copied are not visible until complete.
            conds.append(self.model.__table__.c._storage_ongoing.is_(False))
        if self.model.__table__.name == "artifact" and not self._show_hidden:
            kind = self.model.__table__.c.kind
            conds.append(sa.or_(kind.is_(None), sa.not_(kind.startswith(HIDDEN_KIND_PREFIX, autoescape=True))))
        return conds

    def _select(self, *columns: Any) -> sa.Select:
        table = self.model.__table__
        stmt = sa.select(*(columns or (table,))).where(*self._conditions())
        order = self._order or [table.c.id.asc()]
        stmt = stmt.order_by(*order)
        if self._limit is not None:
            stmt = stmt.limit(self._limit)
        if self._offset:
            stmt = stmt.offset(self._offset)
        return stmt

    def _fetch(self) -> list[Any]:
        if self._cache is None:
            with self.instance.read() as conn:
                rows = conn.execute(self._select()).mappings().all()
            self._cache = [self.model._from_row(r, self.instance) for r in rows]
        return self._cache

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fetch())

    def __len__(self) -> int:
        return len(self._fetch())

    def __bool__(self) -> bool:
        return self.exists()

    def __repr__(self) -> str:
        rows = self[:21]._fetch() if self._limit is None else self._fetch()
        more = ", ..." if len(rows) > 20 else ""
        return f"<QuerySet [{', '.join(repr(r) for r in rows[:20])}{more}]>"

    # -- evaluation ------------------------------------------------------------------------

    def to_list(self, field: str | None = None) -> list[Any]:
        if field is None:
            return list(self._fetch())
        return [row[0] for row in self._rows([field])]

    def values_list(self, *fields: str, flat: bool = False) -> list[Any]:
        """Django's `values_list`: a tuple of these fields per record (every field when none are
        named), or with `flat=True` the values of one field (`filter(id__in=qs.values_list("id", flat=True))`)."""
        if flat and len(fields) != 1:
            raise ValidationError("values_list(flat=True) takes exactly one field")
        rows = self._rows(list(fields) or list(self.model._meta.columns))
        return [row[0] for row in rows] if flat else [tuple(row) for row in rows]

    def values(self, *fields: str) -> list[dict[str, Any]]:
        """Django's `values`: a dict of these fields (every field when none are named) per record."""
        names = list(fields) or list(self.model._meta.columns)
        return [dict(zip(names, row, strict=True)) for row in self._rows(names)]

    def _rows(self, fields: list[str]) -> list[Any]:
        """The values of these fields (columns, a foreign key by its relation name, or a run's
        status), one row per record, in the query's order."""
        from .record import ForeignKey

        meta, table = self.model._meta, self.model.__table__
        columns: list[Any] = []
        statuses: list[int] = []
        for field in fields:
            name = meta.aliases.get(field, field) if isinstance(field, str) else field
            relation = meta.relations.get(name)
            if isinstance(relation, ForeignKey):
                name = relation.column
            if name == "status" and "_status_code" in meta.columns:
                name = "_status_code"
                statuses.append(len(columns))
            if not isinstance(name, str) or name not in meta.columns:
                raise FieldError(f"{self.model.__name__} has no field {field!r}. Valid fields: {', '.join(self.model._field_names())}")
            columns.append(table.c[name])
        with self.instance.read() as conn:
            rows: list[Any] = [list(row) for row in conn.execute(self._select(*columns))]
        if statuses:
            from .models import STATUS_NAMES

            for row in rows:
                for i in statuses:
                    row[i] = STATUS_NAMES.get(row[i])
        return rows

    def count(self) -> int:
        table = self.model.__table__
        inner = self._select(table.c.id).order_by(None)
        with self.instance.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(inner.subquery())).scalar_one()

    def exists(self) -> bool:
        if self._limit == 0:
            return False
        stmt = self._select(self.model.__table__.c.id)
        if self._limit is None:
            stmt = stmt.limit(1)
        with self.instance.read() as conn:
            return conn.execute(stmt).first() is not None

    def first(self) -> Any:
        rows = self[:1]._fetch() if self._cache is None else self._cache[:1]
        return rows[0] if rows else None

    def last(self) -> Any:
        if self._limit is not None or self._offset:
            rows = self._fetch()  # a slice: its last row, not the query's
            return rows[-1] if rows else None
        order = self._order or [self.model.__table__.c.id.asc()]
        reversed_order = [o.element.desc() if getattr(o, "modifier", None) is sa.sql.operators.asc_op else o.element.asc() for o in order]
        new = self._clone()
        new._order = reversed_order
        return new.first()

    def one(self) -> Any:
        rows = self[:2]._fetch()
        if not rows:
            raise self.model.DoesNotExist(f"no {self.model.__name__} matches this query")
        if len(rows) > 1:
            raise self.model.MultipleObjectsReturned(f"more than one {self.model.__name__} matches this query; add lookups to narrow it")
        return rows[0]

    def one_or_none(self) -> Any:
        rows = self[:2]._fetch()
        if len(rows) > 1:
            raise self.model.MultipleObjectsReturned(f"more than one {self.model.__name__} matches this query; add lookups to narrow it")
        return rows[0] if rows else None

    def get(self, idlike: int | str | None = None, **expressions: Any) -> Any:
        model = self.model
        what = ", ".join(([repr(idlike)] if idlike is not None else []) + [f"{k}={v!r}" for k, v in expressions.items()])
        if idlike is not None:
            if isinstance(idlike, bool) or not isinstance(idlike, (int, str)) or idlike == "":
                raise ValidationError(f"{model.__name__}.get() takes an int id or a non-empty uid string, got {idlike!r}")
            if isinstance(idlike, int):
                qs = self.filter(id=idlike, **expressions)
            else:
                qs = self.filter(uid__startswith=idlike, **expressions)
                stem = model._meta.stem_len
                if stem and len(idlike) <= stem:
                    # A family stem: the latest version, as lamindb does.
                    rows = qs.order_by("-is_latest", "-created_at", "-id")[:1]._fetch()
                    if rows:
                        return rows[0]
                    raise model.DoesNotExist(f"no {model.__name__} with uid starting {idlike!r}")
        else:
            if not expressions:
                raise ValidationError(f"{model.__name__}.get() needs an id, a uid or lookups")
            qs = self.filter(**expressions)
        rows = qs[:2]._fetch()
        stem = model._meta.stem_len
        if len(rows) > 1 and stem and idlike is None and "is_latest" not in expressions:
            # versions of one family: the latest, as lamindb does; records of several: ambiguous
            family = rows[0].uid[:stem]
            if not qs.exclude(uid__startswith=family).exists():
                latest = qs.filter(is_latest=True)[:1]._fetch()
                rows = latest or qs.order_by("-created_at", "-id")[:1]._fetch()
        if not rows:
            raise model.DoesNotExist(f"no {model.__name__} matches {what}")
        if len(rows) > 1:
            raise model.MultipleObjectsReturned(f"more than one {model.__name__} matches {what}; use a longer uid or more lookups")
        return rows[0]

    def _ids_subquery(self) -> sa.Select:
        """The ids this query set denotes, slicing included (bulk writes honour `qs[:n]`)."""
        table = self.model.__table__
        if self._limit is None and not self._offset:
            return sa.select(table.c.id).where(*self._conditions())
        # A derived table: LIMIT directly inside IN (...) is refused by some databases.
        return sa.select(self._select(table.c.id).subquery().c.id)

    def delete(self, permanent: bool | None = None) -> int:
        """Trash every matching record (or remove them with permanent=True); returns the count."""
        from .models import IsVersioned

        if issubclass(self.model, IsVersioned):
            return self._delete_each(bool(permanent))
        table = self.model.__table__
        ids = self._ids_subquery()
        if permanent:
            stmt: Any = sa.delete(table).where(table.c.id.in_(ids))
        else:
            stmt = sa.update(table).where(table.c.id.in_(ids)).values(branch_id=-1)

        def write(conn: sa.Connection) -> int:
            if permanent and self.model.__name__ == "Run":
                from .models import _protect_outputs

                _protect_outputs(conn, sa.select(table.c.id).where(table.c.id.in_(ids)))
            return int(conn.execute(stmt).rowcount)

        return self.instance.write(write)

    def _delete_each(self, permanent: bool) -> int:
        """Versioned records (artifacts, transforms) are deleted as `record.delete()` deletes
        them, all in one transaction: the newest remaining version of a family becomes its latest,
        and an artifact's copy in storage is removed once the deletion is committed."""
        records = list(self._clone())
        ids = {r.id for r in records}
        copies = [c for r in records if (c := getattr(r, "_stored_copy", lambda _: None)(ids))] if permanent else []

        def write(conn: sa.Connection) -> int:
            for record in records:
                (record._remove if permanent else record._trash)(conn)
            return len(records)

        count = self.instance.write(write)
        for record in records:
            if permanent:
                record.__dict__["id"] = None
            else:
                record.__dict__["branch_id"] = -1
                record._snapshot()
        if copies:
            from .storage import remove

            for location, is_dir in copies:
                remove(location, is_dir)
        return int(count)

    def update(self, **values: Any) -> int:
        """Set fields on every matching record in one statement; returns the count."""
        meta = self.model._meta
        checked = {}
        for key, value in values.items():
            name = meta.aliases.get(key, key)
            if name not in meta.columns or name == "id":
                raise FieldError(f"cannot update {self.model.__name__}.{key}")
            checked[name] = self.model._check_value(name, value)
        if "updated_at" in meta.columns:
            from .schema import now

            checked["updated_at"] = now()
        table = self.model.__table__
        stmt = sa.update(table).where(table.c.id.in_(self._ids_subquery())).values(checked)
        return self.instance.write(lambda conn: conn.execute(stmt).rowcount)

    # -- dataframes, search, lookup ----------------------------------------------------------

    def to_dataframe(self, include: str | list[str] | None = None, features: bool | list[str] = False, limit: int | None = 100, order_by: str | None = "-id") -> pd.DataFrame:
        from .frames import to_dataframe

        return to_dataframe(self, include=include, features=features, limit=limit, order_by=order_by)

    df = to_dataframe

    def search(self, string: str, *, field: str | list[str] | None = None, limit: int | None = 20, case_sensitive: bool = False) -> QuerySet:
        """Rank matches in SQL: exact > prefix > word > contains, over string fields."""
        if not isinstance(string, str) or not string:
            raise ValidationError("search() needs a non-empty string")
        from .jsonutil import check_text
        from .query import check_pattern_length

        check_text("search()", string)
        check_pattern_length("search()", string)
        meta = self.model._meta
        fields = [field] if isinstance(field, str) else list(field or meta.string_fields)
        table = self.model.__table__
        for f in fields:
            if f not in meta.columns:
                raise FieldError(f"{self.model.__name__} has no field {f!r} to search. Valid fields: {', '.join(meta.string_fields)}")
        rank: Any = sa.literal(0)
        matches = []
        needle = string if case_sensitive else string.lower()
        for f in fields:
            col: Any = sa.func.coalesce(table.c[f], "")
            if not case_sensitive:
                col = sa.func.lower(col)
            rank = rank + sa.case((col == needle, 200), else_=0)
            rank = rank + sa.case((col.startswith(needle, autoescape=True), 8), else_=0)
            rank = rank + sa.case((col.contains(" " + needle, autoescape=True), 2), else_=0)
            rank = rank + sa.case((col.contains(needle, autoescape=True), 1), else_=0)
            matches.append(col.contains(needle, autoescape=True))
        new = self._where(sa.or_(*matches))
        new._order = [rank.desc(), table.c.id.asc()]
        if limit is not None:
            new._limit = limit
        return new

    def lookup(self, field: str | None = None, return_field: str | None = None) -> Any:
        """An auto-complete object: one attribute per value of `field` (default: first string field)."""
        meta = self.model._meta
        default = next((f for f in ("name", "key", "handle", "root") if f in meta.columns), "uid")
        field = field or default
        if field not in meta.columns:
            raise FieldError(f"{self.model.__name__} has no field {field!r}")
        if return_field is not None and return_field not in meta.columns:
            raise FieldError(f"{self.model.__name__} has no field {return_field!r}")
        values: dict[str, Any] = {}
        for record in self:
            key = getattr(record, field)
            if key is None:
                continue
            values.setdefault(str(key), getattr(record, return_field) if return_field else record)
        attrs: dict[str, Any] = {}
        for key, value in values.items():
            name = re.sub(r"\W+", "_", key).strip("_").lower() or "value"
            if name[0].isdigit():
                name = "v_" + name
            if keyword.iskeyword(name):
                name += "_"
            attrs.setdefault(name, value)  # namedtuple fields: identifiers, no keywords, no leading _
        Lookup = namedtuple(f"Lookup{self.model.__name__}", list(attrs))  # type: ignore[misc]
        lookup = Lookup(**attrs) if attrs else Lookup()
        lookup.__class__.dict = lambda self_: dict(values)  # type: ignore[attr-defined]
        return lookup


class RelatedManager(QuerySet):
    """The many-to-many side of a record: a query set plus add / remove / set / clear."""

    def __init__(self, relation: ManyToMany, owner: SQLRecord):
        super().__init__(relation.target, owner._db)
        self._relation = relation
        self._owner = owner
        link = relation.table
        if owner.id is None:
            self._clauses.append(sa.false())
        else:
            self._clauses.append(
                relation.target.__table__.c.id.in_(
                    sa.select(link.c[relation.other_column]).where(link.c[relation.self_column] == owner.id)
                )
            )

    def _ids(self, records: tuple[Any, ...]) -> list[int]:
        from .record import _ids_of

        flat: list[Any] = []
        for r in records:
            flat.extend(r if isinstance(r, (list, tuple, set, QuerySet)) else [r])
        if self._owner.id is None:
            raise ValidationError(f"save the {type(self._owner).__name__} before linking records to it")
        return _ids_of(self.model, f"{type(self._owner).__name__}.{self._relation.name}", flat)

    def add(self, *records: Any) -> None:
        ids = self._ids(records)
        rel = self._relation
        from .record import link

        rows = [{rel.self_column: self._owner.id, rel.other_column: i} for i in ids]
        self.instance.write(lambda conn: link(conn, rel.table, [dict(r) for r in rows]))
        self._owner._after_link(rel.name, ids)

    def remove(self, *records: Any) -> None:
        ids = self._ids(records)
        rel = self._relation
        link = rel.table
        stmt = sa.delete(link).where(link.c[rel.self_column] == self._owner.id, link.c[rel.other_column].in_(ids))
        self.instance.write(lambda conn: conn.execute(stmt))

    def clear(self) -> None:
        rel = self._relation
        stmt = sa.delete(rel.table).where(rel.table.c[rel.self_column] == self._owner.id)
        self.instance.write(lambda conn: conn.execute(stmt))

    def set(self, records: Any) -> None:
        ids = self._ids(tuple(records) if not isinstance(records, QuerySet) else (records,))
        rel = self._relation
        link = rel.table
        from .record import link as insert_links

        def replace(conn: sa.Connection) -> None:
            conn.execute(sa.delete(link).where(link.c[rel.self_column] == self._owner.id, link.c[rel.other_column].not_in(ids)))
            insert_links(conn, link, [{rel.self_column: self._owner.id, rel.other_column: i} for i in ids])

        self.instance.write(replace)
        self._owner._after_link(rel.name, ids)
