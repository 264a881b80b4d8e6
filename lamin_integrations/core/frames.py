"""`to_dataframe()`: records as a pandas DataFrame, with related fields via `include`.

Related values are fetched one query per relation hop for the whole page of records
(never one query per record), then joined in Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import FieldError

if TYPE_CHECKING:
    import pandas as pd

    from .queryset import QuerySet
    from .record import SQLRecord

_CHUNK = 10_000


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)] or [[]]


def to_dataframe(qs: QuerySet, include: str | list[str] | None = None, features: bool | str | list[str] = False,
                 limit: int | None = 100, order_by: str | None = "-id") -> pd.DataFrame:
    import pandas as pd

    model = qs.model
    if not qs._order and order_by:
        try:
            qs = qs.order_by(order_by)
        except FieldError:
            pass  # documented: an order_by field the registry lacks is ignored
    if limit is not None:
        qs = qs[:limit]
    includes = [include] if isinstance(include, str) else list(include or [])
    if "features" in includes:
        includes.remove("features")
        features = features or True
    table = model.__table__
    columns = [c for c in table.columns if not c.name.startswith("_")]
    with qs.instance.read() as conn:
        rows = conn.execute(qs._select(*columns)).mappings().all()
    df = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in columns])
    if "_status_code" in table.c:
        with qs.instance.read() as conn:
            codes = {row[0]: row[1] for row in conn.execute(qs._select(table.c.id, table.c._status_code))}
        from .models import STATUS_NAMES

        df.insert(1, "status", [STATUS_NAMES.get(codes[i]) for i in df["id"]])
    ids = [int(i) for i in df["id"]]
    for path in includes:
        values = resolve_path(model, ids, path, qs.instance)
        df[path] = [values.get(i) for i in ids]
    if features:
        if model._meta.feature_lookup is not None:
            _add_features(df, ids, features, qs.instance, table.name)
        elif isinstance(features, (list, str)) and features != "queryset":
            # Only runs and artifacts carry feature values: a named feature is a column without values.
            for name in [features] if isinstance(features, str) else features:
                df[name] = None
    return df.set_index("id")


def _hop(rel: Any, src_ids: list[int], instance: Any) -> dict[int, list[int]]:
    from .record import ForeignKey, ManyToMany

    out: dict[int, list[int]] = {}
    with instance.read() as conn:
        for chunk in _chunks(src_ids):
            if isinstance(rel, ForeignKey):
                owner = rel.owner.__table__
                stmt = sa.select(owner.c.id, owner.c[rel.column]).where(owner.c.id.in_(chunk))
            elif isinstance(rel, ManyToMany):
                link = rel.table
                stmt = sa.select(link.c[rel.self_column], link.c[rel.other_column]).where(link.c[rel.self_column].in_(chunk))
            else:
                target = rel.target.__table__
                stmt = sa.select(target.c[rel.fk_column], target.c.id).where(target.c[rel.fk_column].in_(chunk))
            for src, dst in conn.execute(stmt):
                if dst is not None:
                    out.setdefault(src, []).append(dst)
    return out


def resolve_path(model: type[SQLRecord], ids: list[int], path: str, instance: Any) -> dict[int, Any]:
    """Map each record id to the value(s) at `path` (e.g. "created_by__name").

    A path through a to-many relation gives lists; a path ending on a relation gives uids.
    """
    tokens = path.split("__")
    current: dict[int, list[int]] = {i: [i] for i in ids}
    m, many = model, False
    for i, token in enumerate(tokens):
        name = m._meta.aliases.get(token, token)
        if i == len(tokens) - 1 and name in m._meta.columns:
            return _column_values(m, current, name, many, instance)
        rel = m._meta.relations.get(name)
        if rel is None:
            raise FieldError(f"cannot include {path!r}: {m.__name__} has no field {token!r}. "
                             f"Valid fields: {', '.join(m._field_names())}")
        mapping = _hop(rel, sorted({d for lst in current.values() for d in lst}), instance)
        current = {root: [d for s in lst for d in mapping.get(s, [])] for root, lst in current.items()}
        many = many or rel.many
        m = rel.target
    return _column_values(m, current, "uid", many, instance)


def _column_values(m: Any, current: dict[int, list[int]], name: str, many: bool, instance: Any) -> dict[int, Any]:
    table = m.__table__
    wanted = sorted({d for lst in current.values() for d in lst})
    values: dict[int, Any] = {}
    with instance.read() as conn:
        for chunk in _chunks(wanted):
            values.update(conn.execute(sa.select(table.c.id, table.c[name]).where(table.c.id.in_(chunk))).all())
    out = {root: [values.get(d) for d in lst] for root, lst in current.items()}
    return {root: (vals if many else (vals[0] if vals else None)) for root, vals in out.items()}


def _add_features(df: Any, ids: list[int], features: Any, instance: Any, table_name: str) -> None:
    from . import schema
    from .features import value_links

    jv, feature = schema.json_value, schema.feature
    link, column = value_links(table_name)
    stmt = (sa.select(link.c[column], feature.c.name, jv.c.value)
            .select_from(link.join(jv, jv.c.id == link.c.json_value_id).join(feature, feature.c.id == jv.c.feature_id))
            .where(link.c[column].in_(ids)))
    if isinstance(features, str) and features not in ("queryset",):
        features = [features]
    if isinstance(features, list):
        stmt = stmt.where(feature.c.name.in_(features))
    values: dict[str, dict[int, list[Any]]] = {}
    with instance.read() as conn:
        for run_id, name, value in conn.execute(stmt):
            values.setdefault(name, {}).setdefault(run_id, []).append(value)
    names = features if isinstance(features, list) else sorted(values)
    for name in names:
        col = values.get(name, {})
        df[name] = [(v[0] if len(v) == 1 else v) if (v := col.get(i)) else None for i in ids]
