"""`core.bulk.insert_runs`: many new runs from plain values, read back as `Run(...).save()` writes them."""

from __future__ import annotations

import datetime as dt

import pytest

import lamin_integrations as ln
from lamin_integrations.core import plugins
from lamin_integrations.core.bulk import insert_runs
from lamin_integrations.core.hookspecs import hookimpl
from lamin_integrations.errors import FieldError, ValidationError

UTC = dt.UTC


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []

    @hookimpl
    def run_started(self, run):
        self.started.append(run.name)

    @hookimpl
    def run_finished(self, run, status):
        assert run.id is not None and run.uid
        self.finished.append((run.name, status))


def test_rows_read_back_like_saved_runs(registry):
    t = ln.Transform(key="bulk-pipeline", kind="pipeline").save()
    parent = ln.Run(t, name="parent", status="started").save()
    start = dt.datetime(2024, 3, 4, 21, 6, 0, 37000, tzinfo=UTC)
    berlin = dt.timezone(dt.timedelta(hours=1))
    ids = insert_runs([
        {"transform_id": t.id, "name": "done", "initiated_by_run_id": parent.id, "status": "completed",
         "started_at": start, "finished_at": start + dt.timedelta(seconds=5), "params": {"a": 1, "b": "x", "c": None},
         "reference": "ab/cdef12", "reference_type": "nextflow_task", "host": "node1"},
        {"transform_id": t.id, "name": "failed", "initiated_by_run_id": parent.id, "status": "errored",
         "started_at": dt.datetime(2024, 3, 4, 22, 0, tzinfo=berlin), "_aux": {"exit": 1}, "params": {"nested": [1, {"x": 2.5}]}},
        {"transform_id": t.id, "name": "top"},
    ])
    assert len(ids) == 3 and ids == sorted(ids)
    done, failed, top = (ln.Run.get(id=i) for i in ids)
    assert (done.status, done.started_at, done.finished_at) == ("completed", start, start + dt.timedelta(seconds=5))
    assert done.params == {"a": 1, "b": "x", "c": None} and done.host == "node1" and done.reference == "ab/cdef12"
    assert done.initiated_by_run == parent and done.root_run_id == parent.root_run_id == parent.id
    assert failed.status == "errored" and failed.finished_at is not None and failed._aux == {"exit": 1}
    assert failed.started_at == dt.datetime(2024, 3, 4, 21, 0, tzinfo=UTC) and failed.params["nested"][1]["x"] == 2.5
    assert top.status == "scheduled" and top.root_run_id == top.id and top.started_at is not None
    assert top.created_by == registry.user and len(top.uid) == 16 and top.branch_id == 1
    assert {r.name for r in parent.initiated_runs} == {"done", "failed"}
    assert {r.name for r in ln.Run.filter(params__b__in=["x", "y"])} == {"done"}
    grandchild = insert_runs([{"transform_id": t.id, "name": "grandchild", "initiated_by_run_id": done.id}], records=True)[0]
    assert grandchild.id is not None and grandchild.root_run_id == parent.id and grandchild.name == "grandchild"
    assert ln.Run.get(id=grandchild.id).root_run == parent


@pytest.mark.parametrize("row, error", [
    ({"name": "x" * 151}, ValidationError),
    ({"name": "a\x00b"}, ValidationError),
    ({"params": {"x": float("nan")}}, ValidationError),
    ({"params": {"x": "a\x00b"}}, ValidationError),
    ({"params": {1: "int key"}}, ValidationError),
    ({"params": {"x": object()}}, ValidationError),
    ({"started_at": "2024-01-01"}, ValidationError),
    ({"status": "finished"}, ValidationError),
    ({"pid": True}, ValidationError),
    ({"colour": "red"}, FieldError),
])
def test_a_bad_value_writes_nothing(registry, row, error):
    t = ln.Transform(key="bulk-bad", kind="pipeline").save()
    before = ln.Run.filter().count()
    with pytest.raises(error):
        insert_runs([{"transform_id": t.id, "name": "fine"}, {"transform_id": t.id, **row}])
    assert ln.Run.filter().count() == before
    with pytest.raises(ValidationError):
        insert_runs([{"name": "no transform"}])


def test_hooks_fire_after_the_transaction_and_the_project_is_linked(registry):
    recorder = Recorder()
    plugins.manager().register(recorder, name="test-bulk-recorder")
    try:
        t = ln.Transform(key="bulk-hooks", kind="pipeline").save()
        project = ln.Project(name="bulk project").save()
        from lamin_integrations.core.context import context

        previous = context.project
        context.use_project(project)
        try:
            with registry.transaction():
                insert_runs([{"transform_id": t.id, "name": "a", "status": "started"},
                             {"transform_id": t.id, "name": "b", "status": "completed"},
                             {"transform_id": t.id, "name": "c"}])
                assert recorder.started == [] and recorder.finished == []
        finally:
            context.use_project(previous)
        assert recorder.started == ["a"] and recorder.finished == [("b", "completed")]
        assert {r.name for r in project.runs.all()} == {"a", "b", "c"}
        with pytest.raises(RuntimeError), registry.transaction():
            insert_runs([{"transform_id": t.id, "name": "rolled back", "status": "completed"}])
            raise RuntimeError
        assert not ln.Run.filter(name="rolled back").exists() and recorder.finished == [("b", "completed")]
    finally:
        plugins.manager().unregister(name="test-bulk-recorder")
