"""Saving many records at once: one transaction and one multi-row INSERT per registry.

Runs in a batch may point at parents earlier in the same batch; they are inserted in
waves so each parent has its id before its children are written.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from ..errors import ValidationError
from .record import SQLRecord
from .schema import is_json


def save(records: Iterable[SQLRecord]) -> list[SQLRecord]:
    """Save records in bulk; returns them (with ids). Existing records are updated one by one."""
    records = list(records)
    for r in records:
        if not isinstance(r, SQLRecord):
            raise ValidationError(f"ln.save() takes records, got {r!r}")
    by_type: dict[type, list[SQLRecord]] = {}
    for r in records:
        by_type.setdefault(type(r), []).append(r)
    for model, group in by_type.items():
        bulk = getattr(model, "_bulk_save", None)
        if bulk is not None:
            bulk(group)
        elif model.__name__ == "Run":
            _save_runs(group)
        else:
            for r in group:
                r.save()
    return records


def update_all(records: list[Any]) -> None:
    """Save changes to many existing records in one transaction (adapters closing job runs)."""
    from . import plugins

    if not records:
        return
    instance = records[0]._db
    for r in records:
        r._prepare(instance)
    states = [dict(r.__dict__) for r in records]

    def attempt(conn: sa.Connection) -> list:
        events: list = []
        for r, state in zip(records, states, strict=True):
            r.__dict__.clear()
            r.__dict__.update(state)
            r._update(conn, events)
        return events

    events = instance.write(attempt)
    for r in records:
        r._snapshot()
    plugins.fire_all(events)


def _without_empty_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop columns that are NULL in every row: fewer parameters to bind, same result."""
    keep = [k for k in rows[0] if any(row[k] is not None for row in rows)]
    return [{k: row[k] for k in keep} for row in rows]


def _save_runs(runs: list[Any]) -> None:
    from . import plugins, schema

    new = [r for r in runs if r.id is None]
    update_all([r for r in runs if r.id is not None])
    if not new:
        return
    instance = new[0]._db
    now = schema.now()
    fresh = iter(_uids(sum(1 for r in new if not r.__dict__.get("uid")), new[0]._uid_len))
    for r in new:
        r._prepare(instance)
        d = r.__dict__
        if not d.get("uid"):
            d["uid"] = next(fresh)  # one batch of sorted uids instead of one random call per run
        for name in ("created_at", "updated_at"):  # one time for the batch, as insert_run_columns does
            if d.get(name) is None:
                d[name] = now
    table = schema.run
    states = [dict(r.__dict__) for r in new]

    def insert_all(conn: sa.Connection) -> list:
        for r, state in zip(new, states, strict=True):
            r.__dict__.clear()
            r.__dict__.update(state)
        events: list = []
        pending = list(new)
        while pending:
            ready = [r for r in pending if r.__dict__.get("initiated_by_run_id") is not None
                     or r.__dict__.get("_related", {}).get("initiated_by_run") is None
                     or r.__dict__["_related"]["initiated_by_run"].id is not None]
            if not ready:
                raise ValidationError("runs in ln.save() point at parents that are neither saved nor in the batch")
            for r in ready:
                parent = r.__dict__.get("_related", {}).get("initiated_by_run")
                if parent is not None and r.__dict__.get("initiated_by_run_id") is None:
                    r.__dict__["initiated_by_run_id"] = parent.id
            rows = _without_empty_columns([r._insert_values(conn) for r in ready])
            if conn.dialect.name == "sqlite":
                for r, new_id, root in zip(ready, *_sqlite_insert_rows(conn, rows), strict=True):
                    r.__dict__["id"], r.__dict__["root_run_id"] = new_id, root
                    r._status_events(None, events)
            else:
                # Unordered RETURNING lets SQLAlchemy batch many rows per statement.
                ids = dict((uid, id_) for id_, uid in conn.execute(sa.insert(table).returning(table.c.id, table.c.uid), rows))
                roots = []
                for r in ready:
                    new_id = r.__dict__["id"] = ids[r.__dict__["uid"]]
                    if r.__dict__.get("root_run_id") is None:
                        r.__dict__["root_run_id"] = new_id
                        roots.append(new_id)
                    r._status_events(None, events)
                if roots:
                    conn.execute(sa.update(table).where(table.c.id.in_(roots)).values(root_run_id=table.c.id))
            from .models import _link_current_project

            _link_current_project(conn, "run", [r.__dict__["id"] for r in ready])
            pending = [r for r in pending if r.id is None]
        return events

    events = instance.write(insert_all)
    for r in new:
        r._snapshot()
    plugins.fire_all(events)


# -- many new runs from plain values --------------------------------------------------------------

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def insert_runs(rows: list[dict[str, Any]], *, records: bool = False, instance: Any = None) -> list[Any]:
    """Insert many new runs given as plain dicts, in one write; returns their ids in order
    (or the Run records with `records=True`).

    For adapters that record thousands of runs at once (a Nextflow trace): no Run object
    per row unless a plugin listens. Keys are Run columns (`transform_id`, `name`, `params`,
    `reference`, `initiated_by_run_id`, `started_at`, `finished_at`, `host`, `_aux`, ...)
    plus `status` (a status name). The same defaults and checks as `Run(...).save()`: uid,
    creator, creation times, `started_at` now when not given, a final status without
    `finished_at` ends now, types, lengths and JSON values checked before anything is
    written; `root_run_id` is the parent's root (or the run itself); the current project
    is linked; `run_started` / `run_finished` fire for plugins that implement them.
    Parents must be saved already (`initiated_by_run_id`).
    """
    if not rows:
        return []
    keys = set().union(*rows)
    return insert_run_columns({name: _column(rows, name) for name in sorted(keys)}, records=records, instance=instance)


def insert_run_columns(columns: dict[str, list[Any]], *, records: bool = False, instance: Any = None,
                       fill_times: bool = True) -> list[Any]:
    """`insert_runs` for values given column by column (`{"name": [...], "params": [...]}`, every
    list as long as the others): an adapter that builds its rows from a parsed file makes
    each column in one pass instead of one dict per row that is taken apart again here.

    `fill_times=False` keeps a missing start or end as NULL instead of now: a file read long
    after the fact knows when things ran, and "now" would be wrong."""
    from . import plugins, schema
    from .instance import current
    from .models import FINAL_STATUSES, STATUS_CODES, Run

    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValidationError(f"insert_run_columns() got columns of different lengths {sorted(lengths)}")
    if not lengths or 0 in lengths:
        return []
    n = lengths.pop()
    instance = instance or current()
    table = schema.run
    allowed = {c.name for c in table.columns} - {"id", "uid", "root_run_id", "_status_code"}
    now = schema.now()
    keys = set(columns)
    unknown = keys - allowed - {"status"}
    if unknown:
        from ..errors import FieldError

        raise FieldError(f"insert_runs() got unexpected fields {', '.join(sorted(unknown))}. "
                         f"Valid fields: {', '.join(sorted(allowed | {'status'}))}")
    values: dict[str, list[Any]] = {name: list(columns[name]) for name in sorted(keys & allowed)}
    if "transform_id" not in values or None in values["transform_id"]:
        raise ValidationError("Run needs a saved transform")
    # status: as Run.status = ... does (a final status without an end time ends now)
    codes = [-3] * n
    if "status" in keys:
        statuses = columns["status"]
        code_of: dict[Any, int] = {None: -3, **STATUS_CODES}
        try:
            codes = list(map(code_of.__getitem__, statuses))
        except (KeyError, TypeError):
            bad = next(s for s in statuses if s is not None and (not isinstance(s, str) or s not in STATUS_CODES))
            raise ValidationError(f"unknown run status {bad!r}; valid: {', '.join(STATUS_CODES)}") from None
        finished = values.setdefault("finished_at", [None] * n)
        if None in finished and fill_times:
            for i, end in enumerate(finished):
                if end is None and statuses[i] in FINAL_STATUSES:
                    finished[i] = now
    for name, column_values in values.items():
        _check_column(Run, name, column_values)
    started = values.setdefault("started_at", [None] * n)
    if None in started and fill_times:
        values["started_at"] = [now if v is None else v for v in started]
    values["_status_code"] = codes
    values["uid"] = _uids(n, Run._uid_len)
    values["created_by_id"] = [instance.user.id] * n
    for name in ("created_at", "updated_at"):
        values[name] = [now] * n
    for name, column in Run._meta.columns.items():
        if name not in values and name not in ("id", "root_run_id"):
            default = column.default
            if default is not None and default.is_scalar:
                values[name] = [default.arg] * n  # type: ignore[attr-defined]
    for name in [k for k, v in values.items() if not any(x is not None for x in v)]:
        del values[name]  # NULL in every row: the column's own default (NULL), fewer values to bind
    parents = values.get("initiated_by_run_id") or [None] * n
    dialect = instance.dialect
    sqlite = dialect == "sqlite"
    if sqlite:  # bound as the SQLite dialect would bind them, once per column instead of per value
        stored = {name: _sqlite_column(Run, name, column_values) for name, column_values in values.items()}
    else:
        for name in Run._meta.json_columns & set(values):
            _json_texts(Run, name, values[name])
    listening = plugins.has_impls("run_started") or plugins.has_impls("run_finished")

    def insert_all(conn: sa.Connection) -> tuple[list[int], list[Any], list]:
        roots_of = _roots(conn, {p for p in parents if p is not None})
        roots: list[int | None] = [None if p is None else (roots_of.get(p) or p) for p in parents]
        if sqlite:
            # The write holds SQLite's lock (BEGIN IMMEDIATE): the next ids are ours to give.
            first = (conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
            ids = list(range(first, first + n))
            roots = [i if r is None else r for i, r in zip(ids, roots, strict=True)]
            statement, bound = _sqlite_insert({"id": ids, "root_run_id": roots, **stored})
            with _sqlite_cache(conn, n):
                conn.exec_driver_sql(statement, list(zip(*bound, strict=True)))
        else:
            names = list(values)
            params = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
            for p, root in zip(params, roots, strict=True):
                p["root_run_id"] = root
            by_uid = dict((uid, id_) for id_, uid in conn.execute(sa.insert(table).returning(table.c.id, table.c.uid), params))
            ids = [by_uid[uid] for uid in values["uid"]]
            own = [i for i, r in zip(ids, roots, strict=True) if r is None]
            for start in range(0, len(own), 10_000):
                chunk = own[start:start + 10_000]
                conn.execute(sa.update(table).where(table.c.id.in_(chunk)).values(root_run_id=table.c.id))
            roots = [i if r is None else r for i, r in zip(ids, roots, strict=True)]
        from .models import _link_current_project

        _link_current_project(conn, "run", ids)
        events: list = []
        built = _records(values, ids, roots, instance) if listening or records else []
        if listening:
            for run in built:
                run._status_events(None, events)
        return ids, built, events

    ids, built, events = instance.write(insert_all)
    plugins.fire_all(events)
    return built if records else ids


def _sqlite_insert_rows(conn: sa.Connection, rows: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Insert Run rows (`_insert_values` dicts) through the driver as `insert_run_columns` does;
    returns (ids, roots). SQLAlchemy's executemany with RETURNING was most of `ln.save()`'s time."""
    from .models import Run

    n = len(rows)
    first = (conn.exec_driver_sql("SELECT max(id) FROM run").scalar() or 0) + 1  # ours: the write holds the lock
    ids = list(range(first, first + n))
    values = {name: _column(rows, name) for name in rows[0]}
    roots = [i if r is None else r for i, r in zip(ids, values.pop("root_run_id", [None] * n), strict=True)]
    stored = {name: _sqlite_column(Run, name, column) for name, column in values.items()}
    statement, bound = _sqlite_insert({"id": ids, "root_run_id": roots, **stored})
    with _sqlite_cache(conn, n):
        conn.exec_driver_sql(statement, list(zip(*bound, strict=True)))
    return ids, roots


def _records(values: dict[str, list[Any]], ids: list[int], roots: list[Any], instance: Any) -> list[Any]:
    from .models import Run

    names = ["id", "root_run_id", *values]
    empty = dict.fromkeys(Run._meta.columns)
    return [Run._from_row({**empty, **dict(zip(names, row, strict=True))}, instance)
            for row in zip(ids, roots, *values.values(), strict=True)]


def _roots(conn: sa.Connection, parents: set[int]) -> dict[int, int | None]:
    from . import schema

    t = schema.run
    out: dict[int, int | None] = {}
    ordered = sorted(parents)
    for start in range(0, len(ordered), 10_000):
        chunk = ordered[start:start + 10_000]
        out.update((row[0], row[1]) for row in conn.execute(sa.select(t.c.id, t.c.root_run_id).where(t.c.id.in_(chunk))))
    return out


def _sqlite_insert(columns: dict[str, list[Any]]) -> tuple[str, list[list[Any]]]:
    """The INSERT for these columns and the columns it binds: a value shared by every row (the
    creator, creation time, parent, reference type, ...) is written once into the statement as
    a literal instead of being bound once per row."""
    n = len(columns["id"])
    sql, bound = [], []
    for name, values in columns.items():
        literal = _sqlite_literal(values[0]) if name != "id" else None
        if literal is not None and values.count(values[0]) == n:
            sql.append(literal)
        else:
            sql.append("?")
            bound.append(values)
    return f"INSERT INTO run ({', '.join(columns)}) VALUES ({', '.join(sql)})", bound


def _sqlite_literal(value: Any) -> str | None:
    """`value` as an SQLite literal that stores what binding it would (None if not simple)."""
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "1" if value else "0"
    if type(value) is int:
        return str(value)
    if type(value) is str and len(value) <= 1_000 and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _column(rows: list[dict[str, Any]], name: str) -> list[Any]:
    """`row.get(name)` of every row (one C-speed pass when every row has the key)."""
    try:
        return list(map(operator.itemgetter(name), rows))
    except KeyError:
        return [row.get(name) for row in rows]


@contextlib.contextmanager
def _sqlite_cache(conn: sa.Connection, n: int) -> Iterator[None]:
    """A page cache that holds what a big insert keeps revisiting (the leaves of each index
    where new entries land, above all the random (reference_type, reference) index), for this
    insert only. SQLite's default (2 MB) makes it write index pages out to the WAL and read
    them back many times while the transaction grows. Durability settings are untouched.
    """
    wanted = min(16 * 1024, n * 2 // 3)  # KiB: ~0.7 KB per run, at most 16 MB (64 MB measured no faster)
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if n >= 5_000 else None
    if before is not None:  # negative: KiB; positive: pages
        have = -before if before < 0 else before * conn.exec_driver_sql("PRAGMA page_size").scalar() // 1024
        if have >= wanted:
            before = None
    if before is None:
        yield
        return
    conn.exec_driver_sql(f"PRAGMA cache_size = {-wanted}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


def _uids(n: int, length: int) -> list[str]:
    """n random base62 uids: random bytes mapped to base62 without bias (bytes >= 248 dropped),
    in sorted order, so that a batch inserted in this order adds its entries to the unique
    uid index left to right (neighbouring index pages) instead of at n random places.
    """
    import os

    from .uids import BASE62

    table = (BASE62 * 4).encode() + bytes(8)  # byte b -> BASE62[b % 62] for b < 248
    drop = bytes(range(248, 256))
    needed = n * length
    chars = b""
    while len(chars) < needed:
        chars += os.urandom((needed - len(chars)) * 33 // 32 + 64).translate(table, drop)
    text = chars[:needed].decode("ascii")
    return sorted(text[i:i + length] for i in range(0, needed, length))


def _check_column(model: Any, name: str, column_values: list[Any]) -> None:
    """`model._check_value` for every value of a column, with a C-speed pass for the common case
    (JSON values are checked by `_json_texts`)."""
    import datetime as dt

    column = model._meta.columns[name]
    present = [v for v in column_values if v is not None]
    if not present:
        return
    types = set(map(type, present))
    python = _python_type(column.type)
    ok = False
    if is_json(column.type):
        ok = True  # checked while serialising (_json_texts)
    elif python is str and types == {str}:
        length = getattr(column.type, "length", None)
        ok = "\x00" not in "".join(present) and (not length or max(map(len, present)) <= length)
    elif python is int:
        ok = types == {int}
    elif python is bool:
        ok = types == {bool}
    elif python is dt.datetime:
        ok = types == {dt.datetime}
    if ok:
        return
    for v in present:  # the exact message for the first bad value
        model._check_value(name, v)


def _python_type(type_: Any) -> Any:
    from .query import _python_type

    return _python_type(type_)


def _json_texts(model: Any, name: str, column_values: list[Any]) -> list[Any]:
    """The JSON text of each value (None stays NULL), after the checks of `check_json`."""
    import json

    from .instance import _json_dumps

    fast = _flat_json_texts(column_values)
    if fast is not None:
        return fast
    out: list[Any] = []
    scalars = _JSON_SCALARS
    for v in column_values:
        if v is None:
            out.append(None)
            continue
        text = None
        if type(v) is dict and set(map(type, v)) <= {str} and set(map(type, v.values())) <= scalars:
            try:
                text = json.dumps(v, ensure_ascii=False, allow_nan=False)
            except ValueError:
                text = None
            if text is not None and "\\u0000" in text:
                model._check_value(name, v)  # a NUL byte, or a backslash followed by u0000
        if text is None:
            model._check_value(name, v)
            text = _json_dumps(v)
        out.append(text)
    return out


def _sqlite_column(model: Any, name: str, column_values: list[Any]) -> list[Any]:
    """Values as SQLAlchemy binds them on SQLite: UTC text for datetimes, JSON text, 0/1."""
    import datetime as dt

    column = model._meta.columns[name]
    if is_json(column.type):
        return _json_texts(model, name, column_values)
    if _python_type(column.type) is dt.datetime:
        utc = dt.UTC
        present = [v for v in column_values if v is not None]
        if present and present[0] is present[-1] and len(set(map(id, present))) == 1:
            same = _sqlite_datetime(present[0])  # created_at / updated_at: one value for the whole batch
            return [same] * len(column_values) if len(present) == len(column_values) else \
                [None if v is None else same for v in column_values]
        if set(map(_tzinfo, present)) == {utc}:  # the text without its +00:00
            iso = dt.datetime.isoformat
            return [None if v is None else iso(v, " ", "microseconds")[:26] for v in column_values]
        out: list[Any] = []
        previous, text = None, None
        for v in column_values:
            if v is None:
                out.append(None)
                continue
            if v is not previous:
                text = _sqlite_datetime(v)
                previous = v
            out.append(text)
        return out
    return column_values


_tzinfo = operator.attrgetter("tzinfo")


def _sqlite_datetime(v: Any) -> str:
    """UTCDateTime's bound text on SQLite: naive UTC with microseconds."""
    import datetime as dt

    utc = dt.UTC
    if v.tzinfo is utc:  # most values: the text without its +00:00
        return v.isoformat(" ", "microseconds")[:26]
    aware = v if v.tzinfo is not None else v.replace(tzinfo=utc)
    return aware.astimezone(utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def _flat_encoder() -> Callable[[Any], str]:
    """`json.dumps(v, ensure_ascii=False, allow_nan=False)` for flat values (never circular):
    json's C encoder made once for a batch, so its memo of encoded keys serves every row
    (a new one per batch: the memo holds every key it has seen)."""
    import json

    plain = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False)
    if not _c_encoder_works():
        return plain.encode
    iterencode = _c_encoder(plain)
    join = "".join

    def encode(value: Any) -> str:
        return join(iterencode(value, 0))

    return encode


def _c_encoder(plain: Any) -> Any:
    from json import encoder

    return encoder.c_make_encoder(None, plain.default, encoder.encode_basestring, None,  # type: ignore[attr-defined]
                                  plain.key_separator, plain.item_separator, False, False, False)


@functools.cache
def _c_encoder_works() -> bool:
    """Does json's C encoder (not a documented API) take these arguments and write what
    json.dumps writes, refusing NaN? Else the public path is used."""
    import json
    from json import encoder

    if getattr(encoder, "c_make_encoder", None) is None:
        return False
    try:
        iterencode = _c_encoder(json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False))
        sample = {"a": 1, "b": 'ü"\\\n', "c": 1.5e300, "d": None, "e": True, "f": -0.0, "g": 10**30}
        if "".join(iterencode(sample, 0)) != json.dumps(sample, ensure_ascii=False, allow_nan=False):
            return False
        iterencode({"x": float("nan")}, 0)
    except ValueError:  # NaN refused, as allow_nan=False must
        return True
    except Exception:  # another Python's signature
        return False
    return False  # NaN accepted: not the encoder asked for


def _flat_json_texts(column_values: list[Any]) -> list[Any] | None:
    """JSON texts of a column of flat dicts (str keys, scalar values: a trace row's params) in
    a few C-speed passes, or None when any value needs `_json_texts`' per-value checks."""
    from itertools import chain

    present = [v for v in column_values if v is not None]
    if not present or set(map(type, present)) != {dict}:
        return None
    if not set(map(type, chain.from_iterable(present))) <= {str}:
        return None
    if not set(map(type, chain.from_iterable(map(dict.values, present)))) <= _JSON_SCALARS:
        return None
    encode = _flat_encoder()
    try:
        texts = [None if v is None else encode(v) for v in column_values]
    except ValueError:  # NaN or infinity: the exact message comes from check_json
        return None
    if any("\\u0000" in text for text in texts if text is not None):
        return None  # a NUL byte, or a backslash followed by u0000: checked value by value
    return texts
