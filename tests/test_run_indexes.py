"""Migration 0004: run status and branch have partial indexes, which lookups must be able to use."""

from __future__ import annotations

import lamin_integrations as ln
from lamin_integrations.core import schema


def _runs():
    t = ln.Transform(key="indexes", kind="pipeline").save()
    runs = {}
    for status in ("scheduled", "started", "restarted", "completed", "errored", "aborted"):
        run = ln.Run(t, name=status)
        run.status = status
        runs[status] = run.save()
    gone = ln.Run(t, name="trashed").save()
    gone.status = "completed"
    gone.save()
    gone.delete()
    return runs


def _names(qs) -> set[str]:
    return {r.name for r in qs}


def test_status_and_branch_lookups_read_the_same_rows(registry):
    _runs()
    assert _names(ln.Run.filter(status__in=["started", "restarted"])) == {"started", "restarted"}
    assert _names(ln.Run.filter(status="errored")) == {"errored"}
    assert _names(ln.Run.filter(status="completed")) == {"completed"}
    assert _names(ln.Run.filter(status__in=["completed", "aborted"])) == {"completed", "aborted"}
    assert _names(ln.Run.exclude(status="started").filter(name__in=["started", "errored"])) == {"errored"}
    assert _names(ln.Run.filter(branch_id=-1)) == {"trashed"}
    assert _names(ln.Run.filter(branch_id__in=[0, -1])) == {"trashed"}
    assert "trashed" not in _names(ln.Run.filter(branch_id=1))
    assert ln.Run.filter(status__in=[]).count() == 0


def _plan(instance, qs) -> str:
    stmt = qs._select(ln.Run.__table__.c.id)
    sql = str(stmt.compile(instance.engine, compile_kwargs={"literal_binds": True}))
    with instance.read() as conn:
        return " ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def test_sqlite_uses_the_partial_indexes(sqlite_registry):
    _runs()
    for qs in (ln.Run.filter(status__in=["started", "restarted"]), ln.Run.filter(status="errored"),
               ln.Run.filter(_status_code=-1)):
        assert "ix_run__status_code" in _plan(sqlite_registry, qs)
    for qs in (ln.Run.filter(branch_id=-1), ln.Run.filter(branch_id__in=[0, -1])):
        assert "ix_run_branch_id" in _plan(sqlite_registry, qs)
    assert "ix_run__status_code" not in _plan(sqlite_registry, ln.Run.filter(status="completed"))


def test_the_run_table_has_no_full_index_of_a_low_cardinality_column(sqlite_registry):
    with sqlite_registry.read() as conn:
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'run'").all()
    indexes = {name: sql for name, sql in rows}
    assert "ix_run_created_by_id" not in indexes
    assert indexes["ix_run__status_code"].endswith("WHERE _status_code != 0")
    assert indexes["ix_run_branch_id"].endswith("WHERE branch_id != 1")
    assert schema.SPARSE["run"] == {"_status_code": 0, "branch_id": 1}
