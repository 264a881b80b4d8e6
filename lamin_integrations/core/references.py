"""Runs found by their external reference (a Nextflow task hash, ...), thousands at a time.

An adapter resuming a launch asks for every cached task's reference at once. The references
travel as one bound array (a JSON array on SQLite, a text[] on PostgreSQL) joined against the
(reference_type, reference) index, so the statement stays short whatever the count: an OR of
thousands of lookups built as SQLAlchemy expressions cost more to build than to run (a second
for the ~7,700 cached rows of a 100,000-row trace, on an empty registry).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

_SQLITE = """
SELECT r.id FROM run AS r
 WHERE r.reference_type = :reference_type AND r.reference IN (SELECT value FROM json_each(:exact))
UNION
SELECT r.id FROM json_each(:prefixes) AS k
  CROSS JOIN run AS r ON r.reference_type = :reference_type AND r.reference >= k.value AND r.reference < k.value || 'g'
"""

_POSTGRESQL = """
SELECT r.id FROM run AS r
 WHERE r.reference_type = :reference_type AND r.reference = ANY(CAST(:exact AS text[]))
UNION
SELECT r.id FROM unnest(CAST(:prefixes AS text[])) AS k(value)
  JOIN run AS r ON r.reference_type = :reference_type AND r.reference >= k.value AND r.reference < k.value || 'g'
"""


def runs_by_reference(reference_type: str, exact: Iterable[str] = (), hex_prefixes: Iterable[str] = (), *,
                      not_initiated_by: int | None = None, instance: Any = None) -> list[Any]:
    """Runs of `reference_type` whose reference is one of `exact` or a lowercase hex string
    starting with one of `hex_prefixes` (each prefix is one index range: hex digits sort before
    "g"), ordered by id; trash left out, and so are runs initiated by run `not_initiated_by`.
    """
    from . import schema
    from .instance import current
    from .models import Run

    exact, prefixes = sorted(set(exact)), sorted(set(hex_prefixes))
    if not exact and not prefixes:
        return []
    instance = instance or current()
    postgres = instance.dialect == "postgresql"
    ids = sa.text(_POSTGRESQL if postgres else _SQLITE).bindparams(
        reference_type=reference_type,
        exact=exact if postgres else json.dumps(exact),
        prefixes=prefixes if postgres else json.dumps(prefixes),
    ).columns(id=sa.Integer)
    r = schema.run
    where = [r.c.id.in_(ids), r.c.branch_id != -1]
    if not_initiated_by is not None:
        where.append(sa.or_(r.c.initiated_by_run_id.is_(None), r.c.initiated_by_run_id != not_initiated_by))
    with instance.read() as conn:
        result = conn.execute(sa.select(r).where(*where).order_by(r.c.id))
        keys = list(result.keys())
        rows = [dict(zip(keys, row, strict=True)) for row in result]
    return [Run._from_row(row, instance) for row in rows]
