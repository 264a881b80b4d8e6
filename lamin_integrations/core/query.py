"""Django-style lookups (`run__transform__key__startswith="x"`) compiled to SQLAlchemy.

Every relation hop becomes `column IN (SELECT ...)` rather than a join, so results never
contain duplicates, `Q(a) | Q(b)` composes without surprises and each value is a bound
parameter. Names and value types are checked before any SQL is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import FieldError, ValidationError
from .jsonutil import check_text
from .schema import is_json

if TYPE_CHECKING:
    from .record import SQLRecord

OPERATORS = {
    "exact", "iexact", "in", "contains", "icontains", "startswith", "istartswith",
    "endswith", "iendswith", "gt", "gte", "lt", "lte", "isnull", "range",
}


class Q:
    """A combinable filter condition: `Q(a=1) | Q(b=2)`, `~Q(a=1)`, `Q(a=1) & Q(b=2)`."""

    def __init__(self, *children: Q, _connector: str = "AND", _negated: bool = False, **lookups: Any):
        self.children: list[Q | tuple[str, Any]] = [*children, *lookups.items()]
        self.connector = _connector
        self.negated = _negated

    def _combine(self, other: Q, connector: str) -> Q:
        if not isinstance(other, Q):
            raise TypeError(f"cannot combine Q with {type(other).__name__}")
        return Q(self, other, _connector=connector)

    def __or__(self, other: Q) -> Q:
        return self._combine(other, "OR")

    def __and__(self, other: Q) -> Q:
        return self._combine(other, "AND")

    def __invert__(self) -> Q:
        return Q(self, _negated=True)

    def __repr__(self) -> str:
        inner = f" {self.connector} ".join(repr(c) for c in self.children)
        return f"{'NOT ' if self.negated else ''}({inner})"

    def names(self) -> Iterable[str]:
        for child in self.children:
            if isinstance(child, Q):
                yield from child.names()
            else:
                yield child[0]

    def compile(self, model: type[SQLRecord], dialect: str) -> sa.ColumnElement[bool]:
        parts = [
            c.compile(model, dialect) if isinstance(c, Q) else lookup(model, c[0], c[1], dialect)
            for c in self.children
        ]
        if not parts:
            clause: sa.ColumnElement[bool] = sa.true()
        elif len(parts) == 1:
            clause = parts[0]
        else:
            clause = sa.or_(*parts) if self.connector == "OR" else sa.and_(*parts)
        return negate(clause) if self.negated else clause


class Predicate(Q):
    """A condition made by comparing a field object with a value (`temperature > 21` for a
    Feature): it goes into `filter()`, never into an `if` (lamindb refuses that too)."""

    def __bool__(self) -> bool:
        raise TypeError("a feature comparison such as `temperature > 21` is a query: pass it to .filter(...)")

    def __invert__(self) -> Q:
        return Predicate(self, _negated=True)


def negate(clause: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """NOT that treats "unknown" as false first, as Django does: exclude(name="x") keeps NULL names."""
    return sa.not_(sa.func.coalesce(clause, sa.false()))


def lookup(model: type[SQLRecord], expression: str, value: Any, dialect: str) -> sa.ColumnElement[bool]:
    """Compile one `field__path__op=value` on `model` into a SQL condition."""
    if not isinstance(expression, str) or not expression:
        raise FieldError(f"a filter name must be a non-empty string, got {expression!r}")
    tokens = expression.split("__")
    return _compile(model, tokens, value, dialect, expression)


def _compile(
    model: type[SQLRecord], tokens: list[str], value: Any, dialect: str, expression: str
) -> sa.ColumnElement[bool]:
    meta = model._meta
    name = meta.aliases.get(tokens[0], tokens[0])
    rest = tokens[1:]
    special = meta.special_lookups.get(name)
    if special is not None:
        return special(rest, value, dialect)
    if name in meta.columns:
        column = model.__table__.c[name]
        if is_json(column.type):
            return _json_lookup(column, rest, value, dialect, expression)
        if rest and rest[0] in DATE_PARTS and _python_type(column.type) is dt.datetime:
            return _date_part(column, rest, value, dialect, expression)
        if len(rest) > 1 or (rest and rest[0] not in OPERATORS):
            raise FieldError(
                f"{model.__name__}.{name} has no field or lookup {'__'.join(rest)!r} "
                f"(in {expression!r}); lookups are: {', '.join(sorted(OPERATORS))}"
            )
        op = rest[0] if rest else "exact"
        coerced = _coerce(model, name, column, op, value)
        condition = _apply(column, op, coerced, expression)
        if op in ("exact", "in") and coerced is not None:
            from .schema import sparse_term

            term = sparse_term(column, coerced if op == "in" else [coerced])
            if term is not None:  # the partial index's own condition: SQLite uses the index only then
                condition = sa.and_(condition, term)
        return condition
    relation = meta.relations.get(name)
    if relation is not None:
        return relation.compile(model, rest, value, dialect, expression)
    feature_lookup = meta.feature_lookup
    if feature_lookup is not None:
        clause = feature_lookup(model, name, rest, value, dialect)
        if clause is not None:
            return clause
    raise FieldError(
        f"{model.__name__} has no field {name!r} (in {expression!r}). "
        f"Valid fields: {', '.join(model._field_names())}"
    )


def _apply(column: Any, op: str, value: Any, expression: str) -> sa.ColumnElement[bool]:
    if op == "exact":
        return column.is_(None) if value is None else column == value
    if op == "iexact":
        return sa.func.lower(column) == value.lower()
    if op == "in":
        return column.in_(value)
    if op == "isnull":
        return column.is_(None) if value else column.is_not(None)
    if op == "range":
        return column.between(value[0], value[1])
    if op in ("gt", "gte", "lt", "lte"):
        return {"gt": column > value, "gte": column >= value, "lt": column < value,
                "lte": column <= value}[op]
    # LIKE-based operators: autoescape makes % and _ in the value literal characters.
    method = {"contains": "contains", "icontains": "icontains", "startswith": "startswith",
              "istartswith": "istartswith", "endswith": "endswith", "iendswith": "iendswith"}[op]
    return getattr(column, method)(value, autoescape=True)


DATE_PARTS = ("date", "year", "month", "day", "hour")


def _date_part(column: Any, rest: list[str], value: Any, dialect: str, expression: str) -> sa.ColumnElement[bool]:
    """Django's `started_at__date=...`, `started_at__year__gte=2024`: a part of a UTC timestamp."""
    part, ops = rest[0], rest[1:]
    op = ops[0] if ops else "exact"
    if len(ops) > 1 or op not in ("exact", "gt", "gte", "lt", "lte", "in", "range"):
        raise FieldError(f"{expression!r}: a date part compares with exact, gt, gte, lt, lte, in or range")
    values = value if op in ("in", "range") else [value]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError(f"{expression} expects a list of values, got {value!r}")
    checked: list[Any] = []
    for v in values:
        if part == "date":
            if isinstance(v, str):
                try:
                    v = dt.date.fromisoformat(v)
                except ValueError:
                    raise ValidationError(f"{expression} expects a date such as '2024-03-04', got {v!r}") from None
            if isinstance(v, dt.datetime):
                v = v.date()
            if not isinstance(v, dt.date):
                raise ValidationError(f"{expression} expects a date, got {v!r}")
            checked.append(v.isoformat() if dialect == "sqlite" else v)
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValidationError(f"{expression} expects a whole number, got {v!r}")
            checked.append(v)
    if dialect == "sqlite":  # the stored text is UTC 'YYYY-MM-DD HH:MM:SS...'
        key: Any = sa.func.date(column) if part == "date" else sa.cast(
            sa.func.strftime({"year": "%Y", "month": "%m", "day": "%d", "hour": "%H"}[part], column), sa.Integer)
    else:
        utc = sa.func.timezone("UTC", column)
        key = sa.cast(utc, sa.Date) if part == "date" else sa.cast(sa.extract(part, utc), sa.Integer)
    if op == "range" and len(checked) != 2:
        raise ValidationError(f"{expression} expects a (low, high) pair, got {value!r}")
    return _apply(key, op, checked if op in ("in", "range") else checked[0], expression)


_TEXT_OPS = {"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "iexact"}


def _coerce(model: type[SQLRecord], name: str, column: Any, op: str, value: Any) -> Any:
    """Check the value's type against the column before SQL sees it."""
    where = f"{model.__name__}.{name}__{op}"
    if op == "isnull":
        if not isinstance(value, bool):
            raise ValidationError(f"{where} expects True or False, got {value!r}")
        return value
    if op == "in":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValidationError(f"{where} expects a list of values, got {value!r}")
        return [_coerce_scalar(where, column, v) for v in value]
    if op == "range":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValidationError(f"{where} expects a (low, high) pair, got {value!r}")
        return [_coerce_scalar(where, column, v) for v in value]
    if op in _TEXT_OPS:
        if not isinstance(value, str):
            raise ValidationError(f"{where} expects a string, got {value!r}")
        check_text(where, value)
        check_pattern_length(where, value)
        return value
    if value is None:
        if op != "exact":
            raise ValidationError(f"{where} cannot compare with None; use __isnull=True")
        return None
    return _coerce_scalar(where, column, value)


MAX_PATTERN_BYTES = 50_000  # SQLite refuses longer LIKE patterns; the same limit everywhere


def check_pattern_length(where: str, value: str) -> None:
    if len(value.encode()) > MAX_PATTERN_BYTES - 100:
        raise ValidationError(f"{where}: search patterns are limited to {MAX_PATTERN_BYTES - 100:,} bytes, got {len(value.encode()):,}")


INT64 = (-(2**63), 2**63 - 1)


def check_int64(where: str, value: int) -> None:
    """Both databases store 64-bit integers; a larger value would fail inside the driver."""
    if not INT64[0] <= value <= INT64[1]:
        raise ValidationError(f"{where} expects a 64-bit integer, got {value}")


def check_datetime(where: str, value: dt.datetime) -> None:
    """Timestamps are stored in UTC; one that leaves the datetime range there cannot be stored."""
    if value.tzinfo is not None:
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError(f"{where}: {value.isoformat()} is out of range in UTC") from None


def check_scalar(where: str, python_type: type | None, value: Any) -> None:
    """The type check shared by lookups and writes: bools are not ints, strings have no NUL."""
    if python_type is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{where} expects True or False, got {value!r}")
    elif python_type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where} expects an integer, got {value!r}")
        check_int64(where, value)
    elif python_type is str:
        if not isinstance(value, str):
            raise ValidationError(f"{where} expects a string, got {type(value).__name__}: {value!r}")
        check_text(where, value)


def _coerce_scalar(where: str, column: Any, value: Any) -> Any:
    from .record import SQLRecord

    if isinstance(value, SQLRecord):
        if value.id is None:
            raise ValidationError(f"{where}: {value!r} is not saved yet")
        value = value.id
    python_type = _python_type(column.type)
    check_scalar(where, python_type, value)
    if python_type is dt.datetime:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValidationError(f"{where} expects a datetime or ISO 8601 string, got {value!r}") from None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        if not isinstance(value, dt.datetime):
            raise ValidationError(f"{where} expects a datetime, got {value!r}")
        check_datetime(where, value)
    return value


def _python_type(type_: Any) -> type | None:
    from .schema import UTCDateTime

    if isinstance(type_, UTCDateTime):
        return dt.datetime
    if isinstance(type_, sa.Boolean):
        return bool
    if isinstance(type_, sa.Integer):
        return int
    if isinstance(type_, (sa.String, sa.Text)):
        return str
    return None


# -- JSON paths -------------------------------------------------------------------------------


def _json_lookup(
    column: Any, rest: list[str], value: Any, dialect: str, expression: str
) -> sa.ColumnElement[bool]:
    """`params__a__b__gt=1`: compare a value inside a JSON column, type-guarded.

    The guard (JSON type of the value) keeps a string "abc" from comparing greater than
    every number on SQLite, and keeps PostgreSQL from failing a cast on mixed rows.
    """
    if rest and rest[-1] in _KEY_OPS:
        return _json_has_keys(column, rest[:-1], rest[-1], value, dialect, expression)
    op = "exact"
    if rest and rest[-1] in OPERATORS:
        op = rest[-1]
        rest = rest[:-1]
    if not rest:
        if op == "exact" and value is None:
            op, value = "isnull", True
        if op == "isnull":
            if not isinstance(value, bool):
                raise ValidationError(f"{expression} expects True or False, got {value!r}")
            # A JSON null and a SQL NULL both mean "no value".
            cond = sa.or_(column.is_(None), _json_type(column, [], dialect) == "null")
            return cond if value else sa.not_(cond)
        raise FieldError(
            f"{expression!r}: give a key inside the JSON field, e.g. params__learning_rate__gt=0.1"
        )
    for key in rest:
        check_text(expression, key)
    if op == "isnull":
        if not isinstance(value, bool):
            raise ValidationError(f"{expression} expects True or False, got {value!r}")
        typ = _json_type(column, rest, dialect)
        null_types = ("null",)
        cond = sa.or_(typ.is_(None), typ.in_(null_types))
        return cond if value else sa.not_(cond)
    if op == "in":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValidationError(f"{expression} expects a list of values, got {value!r}")
        values = list(value)
        if values and all(type(v) is str for v in values):
            # one type guard and one IN list: what the OR of `exact` comparisons below means for strings
            for v in values:
                check_text(expression, v)
            text_type = ["text"] if dialect == "sqlite" else ["string"]
            return sa.and_(_json_type(column, rest, dialect).in_(text_type),
                           _json_scalar(column, rest, "string", dialect).in_(values))
        return sa.or_(*[_json_compare(column, rest, "exact", v, dialect, expression) for v in values]) if values else sa.false()
    if op == "range":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValidationError(f"{expression} expects a (low, high) pair, got {value!r}")
        return sa.and_(_json_compare(column, rest, "gte", value[0], dialect, expression),
                       _json_compare(column, rest, "lte", value[1], dialect, expression))
    return _json_compare(column, rest, op, value, dialect, expression)


_KEY_OPS = ("has_key", "has_keys", "has_any_keys")


def _json_has_keys(column: Any, path: list[str], op: str, value: Any, dialect: str, expression: str) -> sa.ColumnElement[bool]:
    """Django's `params__has_key="lr"` (`has_keys` / `has_any_keys` with a list): the key is there,
    whatever its value, JSON null included."""
    keys = [value] if op == "has_key" else value
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable) or not all(isinstance(k, str) for k in keys):
        wanted = "a key (a string)" if op == "has_key" else "a list of keys (strings)"
        raise ValidationError(f"{expression} expects {wanted}, got {value!r}")
    for key in [*path, *keys]:
        check_text(expression, key)
    present = [_json_type(column, [*path, key], dialect).is_not(None) for key in keys]
    if op == "has_any_keys":
        return sa.or_(*present) if present else sa.false()
    return sa.and_(*present) if present else sa.true()


def _json_compare(column: Any, path: list[str], op: str, value: Any, dialect: str, expression: str) -> sa.ColumnElement[bool]:
    typ = _json_type(column, path, dialect)
    if value is None:
        if op != "exact":
            raise ValidationError(f"{expression} cannot compare with None; use __isnull=True")
        return typ.in_(["null"])
    if isinstance(value, bool):
        kind, sql_types = "bool", (["true", "false"] if dialect == "sqlite" else ["boolean"])
    elif isinstance(value, (int, float)):
        if isinstance(value, int):
            check_int64(expression, value)
        kind, sql_types = "number", (["integer", "real"] if dialect == "sqlite" else ["number"])
    elif isinstance(value, str):
        check_text(expression, value)
        kind, sql_types = "string", (["text"] if dialect == "sqlite" else ["string"])
    else:
        raise ValidationError(
            f"{expression}: JSON lookups compare with a string, number, boolean or None; got {value!r}"
        )
    if kind == "bool" and op != "exact":
        raise ValidationError(f"{expression}: True and False compare with exact only, got {op}")
    if op in _TEXT_OPS and kind != "string":
        raise ValidationError(f"{expression} expects a string, got {value!r}")
    extracted = _json_scalar(column, path, kind, dialect)
    if kind == "bool" and dialect == "sqlite":
        value = 1 if value else 0
    return sa.and_(typ.in_(sql_types), _apply(extracted, op, value, expression))


def json_sort_key(column: Any, path: list[str], dialect: str, expression: str) -> Any:
    """The value at `path` as the database orders JSON values (numbers by value, then text)."""
    for key in path:
        check_text(expression, key)
    if dialect == "sqlite":
        return sa.func.json_extract(column, _json_path_sqlite(path))
    return column.op("#>")(sa.cast(path, sa.ARRAY(sa.Text)))


def _json_path_sqlite(path: list[str]) -> str:
    for key in path:
        if '"' in key or "\\" in key:
            raise ValidationError(f"JSON keys with quotes or backslashes cannot be looked up on SQLite: {key!r}")
    return "$" + "".join('."' + key + '"' for key in path)


def _json_type(column: Any, path: list[str], dialect: str) -> Any:
    if dialect == "sqlite":
        return sa.func.json_type(column, _json_path_sqlite(path))
    return sa.func.jsonb_typeof(column.op("#>")(sa.cast(path, sa.ARRAY(sa.Text))))


def _json_scalar(column: Any, path: list[str], kind: str, dialect: str) -> Any:
    if dialect == "sqlite":
        return sa.func.json_extract(column, _json_path_sqlite(path))
    text = column.op("#>>", return_type=sa.Text)(sa.cast(path, sa.ARRAY(sa.Text)))
    if kind == "number":
        # Only evaluated where jsonb_typeof says number, so the cast cannot fail.
        # numeric, not float8: integers above 2**53 must compare exactly.
        return sa.case((_json_type(column, path, dialect) == "number", sa.cast(text, sa.Numeric)), else_=None)
    if kind == "bool":
        return sa.case((_json_type(column, path, dialect) == "boolean", sa.cast(text, sa.Boolean)), else_=None)
    return text
