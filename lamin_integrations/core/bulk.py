"""Saving many records at once: one transaction and one multi-row INSERT per registry.

Runs in a batch may point at parents earlier in the same batch; they are inserted in
waves so each parent has its id before its children are written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ..errors import ValidationError
from .record import SQLRecord


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
    for r in new:
        r._prepare(instance)
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
            # Unordered RETURNING lets SQLAlchemy batch many rows per statement (asking for
            # parameter order makes it fall back to one statement per row on SQLite).
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
