"""Feature-indexed values on runs and artifacts: `run.features.set_values({...})`,
`Run.filter(experiment=...)`, `Artifact.filter(temperature > 21)`.

Unlike free-form `params`, a feature is declared once with a dtype in the Feature registry;
values are validated against it and stored once (JsonValue, unique per feature and value)
and linked to every run and artifact that has them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import ValidationError
from . import schema
from .hashing import hash_string
from .jsonutil import check_json

if TYPE_CHECKING:
    from .models import Feature

DTYPES = ("str", "int", "float", "num", "bool", "date", "datetime", "dict", "list[str]",
          "list[int]", "list[float]", "list", "cat", "url", "path")
_PY_TYPES = {str: "str", int: "int", float: "float", bool: "bool", dict: "dict", list: "list",
             dt.date: "date", dt.datetime: "datetime"}


def normalize_dtype(dtype: Any, name: str) -> str:
    if dtype in _PY_TYPES:
        return _PY_TYPES[dtype]
    args = getattr(dtype, "__args__", None)  # `list[str]` as a Python type, as lamindb takes it
    if getattr(dtype, "__origin__", None) is list and args and len(args) == 1 and args[0] in (str, int, float):
        return f"list[{_PY_TYPES[args[0]]}]"
    if isinstance(dtype, type) and hasattr(dtype, "__table__"):  # a registry: `dtype=ln.Record`
        return f"cat[{dtype.__name__}]"
    if isinstance(dtype, str) and (dtype in DTYPES or dtype.startswith("cat[")):
        return dtype
    raise ValidationError(
        f"Feature {name!r} needs a dtype: one of {', '.join(DTYPES)} (or str, int, float, bool, dict, list); got {dtype!r}"
    )


def check_value(feature: Feature, value: Any) -> Any:
    """The value as stored (dates as ISO strings), or a ValidationError naming the feature."""
    dtype = feature.dtype
    where = f"feature {feature.name!r} (dtype {dtype})"

    def fail() -> ValidationError:
        return ValidationError(f"{where} cannot take {type(value).__name__} {value!r}")

    if dtype in ("str", "cat", "url", "path") or dtype.startswith("cat["):
        if dtype.startswith("cat") and hasattr(value, "__table__") and isinstance(getattr(value, "name", None), str):
            value = value.name  # a label record (`ln.Record(name="E1")`): stored by its name
        if not isinstance(value, str):
            raise fail()
    elif dtype == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
    elif dtype in ("float", "num"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
    elif dtype == "bool":
        if not isinstance(value, bool):
            raise fail()
    elif dtype in ("date", "datetime"):
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        if not isinstance(value, str):
            raise fail()
        try:
            (dt.date if dtype == "date" else dt.datetime).fromisoformat(value)
        except ValueError:
            raise fail() from None
    elif dtype == "dict":
        if not isinstance(value, dict):
            raise fail()
    elif dtype.startswith("list"):
        if not isinstance(value, (list, tuple)):
            raise fail()
        inner = dtype[5:-1] if dtype != "list" else None
        kinds = {"str": (str,), "int": (int,), "float": (int, float)}.get(inner or "")
        if kinds and any(isinstance(v, bool) or not isinstance(v, kinds) for v in value):
            raise fail()
        value = list(value)
    check_json(value, where)
    return value


def value_hash(value: Any) -> str:
    return hash_string(json.dumps(value, sort_keys=True, separators=(",", ":")))


def features_named(names: list[str], instance: Any) -> dict[str, Feature]:
    """The saved features by name; a name no feature has is an error naming it."""
    from .models import Feature

    features = {f.name: f for f in Feature.connect(instance).filter(name__in=names)} if names else {}
    unknown = [name for name in names if name not in features]
    if unknown:
        raise ValidationError(
            f"unknown feature(s) {', '.join(map(repr, unknown))}: create them first, e.g. "
            f"ln.Feature(name={unknown[0]!r}, dtype='str').save()"
        )
    return features


def resolve_values(values: dict[str, Any], instance: Any) -> list[tuple[Feature, Any]]:
    """(feature, value as stored) pairs. An unknown feature or a value of the wrong type is an
    error before anything is written: `ln.track(features=...)` checks before it starts a run."""

    if not isinstance(values, dict):
        raise ValidationError(f"feature values are a dict of name -> value, got {values!r}")
    values = {_feature_name(key): value for key, value in values.items()}
    features = features_named(list(values), instance)
    pairs: list[tuple[Feature, Any]] = []
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple, set)) and not features[name].dtype.startswith(("list", "dict")) else [value]
        pairs.extend((features[name], check_value(features[name], v)) for v in items)
    return pairs


def _feature_name(key: Any) -> str:
    """lamindb takes a feature's name or the saved Feature itself as the key."""
    from .models import Feature

    if isinstance(key, Feature):
        if key.id is None:
            raise ValidationError(f"save the feature {key.name!r} before using it as a key: ln.Feature(...).save()")
        return key.name
    if not isinstance(key, str):
        raise ValidationError(f"feature keys are names or saved ln.Feature records, got {key!r}")
    return key


def value_links(table_name: str) -> tuple[sa.Table, str]:
    """The table that links feature values to records of this registry, and its record column."""
    if table_name == "artifact":
        return schema.artifact_json_value, "artifact_id"
    return schema.run_json_value, "run_id"


class FeatureManager:
    """`run.features` / `artifact.features`: add, set, get and remove one record's feature values."""

    def __init__(self, record: Any):
        self._record = record
        self._links, self._column = value_links(record.__table__.name)

    def _resolve(self, values: dict[str, Any]) -> list[tuple[Feature, Any]]:
        if self._record.id is None:
            raise ValidationError(f"save the {type(self._record).__name__.lower()} before annotating it with features")
        return resolve_values(values, self._record._db)

    def add_values(self, values: dict[str, Any]) -> None:
        pairs = self._resolve(values)
        self._record._db.write(lambda conn: self._link(conn, pairs))

    def set_values(self, values: dict[str, Any]) -> None:
        """Replace the record's feature values with these."""
        pairs = self._resolve(values)

        def replace(conn: sa.Connection) -> None:
            conn.execute(sa.delete(self._links).where(self._links.c[self._column] == self._record.id))
            self._link(conn, pairs)

        self._record._db.write(replace)

    def update_values(self, values: dict[str, Any]) -> None:
        """Replace the values of these features and keep the others (a list replaces the whole
        list; None, [] or {} removes the feature's values), as lamindb does."""
        def removes(value: Any) -> bool:
            return value is None or (isinstance(value, (list, tuple, dict, set)) and not value)

        removed = [_feature_name(name) for name, value in values.items() if removes(value)]
        kept = {name: value for name, value in values.items() if not removes(value)}
        pairs = self._resolve(kept) if kept else []
        features_named(removed, self._record._db)  # a typo is an error, not a no-op
        names = [_feature_name(name) for name in values]

        def replace(conn: sa.Connection) -> None:
            conn.execute(self._delete_of(names))
            self._link(conn, pairs)

        self._record._db.write(replace)

    def remove_values(self, *names: Any) -> None:
        flat = [n for name in names for n in (name if isinstance(name, (list, tuple)) else [name])]
        stmt = self._delete_of([_feature_name(name) for name in flat])
        self._record._db.write(lambda conn: conn.execute(stmt))

    def _delete_of(self, names: list[str]) -> sa.Delete:
        jv, link, feature = schema.json_value, self._links, schema.feature
        ids = sa.select(jv.c.id).join(feature, feature.c.id == jv.c.feature_id).where(feature.c.name.in_(names))
        return sa.delete(link).where(link.c[self._column] == self._record.id, link.c.json_value_id.in_(ids))

    def _link(self, conn: sa.Connection, pairs: list[tuple[Feature, Any]]) -> None:
        from .models import _insert_ignore
        from .record import link

        jv = schema.json_value
        ids = []
        for feature, value in pairs:
            h = value_hash(value)
            new_id = _insert_ignore(conn, jv, {"feature_id": feature.id, "value": value, "hash": h, "created_at": schema.now()})
            if new_id is None:
                new_id = conn.execute(sa.select(jv.c.id).where(jv.c.feature_id == feature.id, jv.c.hash == h)).scalar_one()
            ids.append(new_id)
        link(conn, self._links, [{self._column: self._record.id, "json_value_id": i} for i in ids])

    def get_values(self) -> dict[str, Any]:
        jv, link, feature = schema.json_value, self._links, schema.feature
        stmt = (
            sa.select(feature.c.name, jv.c.value)
            .select_from(link.join(jv, jv.c.id == link.c.json_value_id).join(feature, feature.c.id == jv.c.feature_id))
            .where(link.c[self._column] == self._record.id)
            .order_by(feature.c.name, jv.c.id)
        )
        out: dict[str, list[Any]] = {}
        with self._record._db.read() as conn:
            for name, value in conn.execute(stmt):
                out.setdefault(name, []).append(value)
        return {k: v[0] if len(v) == 1 else v for k, v in out.items()}

    def __getitem__(self, name: Any) -> Any:
        return self.get_values()[_feature_name(name)]

    def describe(self, return_str: bool = False) -> str | None:
        """The record's feature values, one per line (lamindb's `artifact.features.describe()`)."""
        values = self.get_values()
        kind = type(self._record).__name__
        lines = [f"{kind} {self._record.uid}: {'features' if values else 'no feature values'}"]
        lines += [f"  {name}: {json.dumps(value, ensure_ascii=False, default=str)}" for name, value in values.items()]
        text = "\n".join(lines) + "\n"
        if return_str:
            return text
        print(text, end="")
        return None

    def __repr__(self) -> str:
        return f"FeatureManager({self.get_values()!r})"


class LabelManager:
    """`artifact.labels` / `run.labels`: lamindb's one place to add labels of any registry
    (ULabel, Record, Project), each linked through its own relation; with `feature=` the
    labels' names are also that feature's values on the record."""

    _relations = {"ULabel": "ulabels", "Record": "records", "Project": "projects"}

    def __init__(self, record: Any):
        self._record = record

    def _relation(self, label: Any) -> Any:
        name = self._relations.get(type(label).__name__)
        if name is None or label.id is None:
            raise ValidationError(f"labels.add() takes saved ULabel, Record or Project records, got {label!r}")
        return getattr(self._record, name)

    def add(self, records: Any, feature: Any = None) -> None:
        labels = list(records) if isinstance(records, (list, tuple, set)) or hasattr(records, "to_list") else [records]
        relations = [self._relation(label) for label in labels]  # every label checked before any is linked
        if feature is not None:
            from .models import Feature

            if not isinstance(feature, Feature) or feature.id is None:
                raise ValidationError(f"labels.add(feature=...) takes a saved Feature, got {feature!r}")
            self._record.features.add_values({feature.name: [label.name for label in labels]})
        for relation, label in zip(relations, labels, strict=True):
            relation.add(label)

    def get(self, feature: Any) -> list[Any]:
        """The labels whose names are values of `feature` on this record."""
        value = self._record.features.get_values().get(feature.name)
        names = value if isinstance(value, list) else [] if value is None else [value]
        found = []
        for relation in self._relations.values():
            found += list(getattr(self._record, relation).filter(name__in=names)) if names else []
        return found

    def __repr__(self) -> str:
        parts = {r: [x.name for x in getattr(self._record, r)] for r in self._relations.values()}
        return f"LabelManager({ {k: v for k, v in parts.items() if v} !r})"


def feature_lookup(model: Any, name: str, rest: list[str], value: Any, dialect: str) -> sa.ColumnElement[bool] | None:
    """`Run.filter(experiment="x")` (or an Artifact query): match records by a feature value; None if no such feature."""
    from .models import Feature
    from .query import OPERATORS, _json_compare

    declared = Feature.filter(name=name).one_or_none()
    if declared is None:
        return None
    op = rest[0] if rest else "exact"
    jv, feature = schema.json_value, schema.feature
    link, column = value_links(model.__table__.name)
    if op == "isnull" and len(rest) == 1:
        if not isinstance(value, bool):
            raise ValidationError(f"{name}__isnull expects True or False, got {value!r}")
        having = sa.select(link.c[column]).select_from(link.join(jv, jv.c.id == link.c.json_value_id)).where(
            jv.c.feature_id == declared.id)
        return model.__table__.c.id.not_in(having) if value else model.__table__.c.id.in_(having)
    if len(rest) > 1 or op not in OPERATORS or op in ("isnull", "range"):
        from ..errors import FieldError

        raise FieldError(f"feature {name!r} supports comparisons like {name}__gt=..., got {name}__{'__'.join(rest)}")
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    if op == "in":
        if isinstance(value, (str, bytes)):
            raise ValidationError(f"{name}__in expects a list")
        value = [check_value(declared, v) for v in value]
        cond = sa.or_(*[_json_compare(jv.c.value, [], "exact", v, dialect, name) for v in value]) if value else sa.false()
    else:
        if op in ("contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "iexact"):
            if not isinstance(value, str):
                raise ValidationError(f"{name}__{op} expects a string, got {value!r}")
        else:
            value = check_value(declared, value)
        cond = _json_compare(jv.c.value, [], op, value, dialect, name)
    matching = (
        sa.select(link.c[column])
        .select_from(link.join(jv, jv.c.id == link.c.json_value_id).join(feature, feature.c.id == jv.c.feature_id))
        .where(feature.c.name == name, cond)
    )
    return model.__table__.c.id.in_(matching)
