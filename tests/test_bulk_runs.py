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


def test_a_big_batch_reads_back_and_leaves_the_connection_as_it_was(registry):
    """Big batches take the column-at-a-time paths (flat JSON, UTC datetimes, sorted uids, a
    larger SQLite page cache for the insert only): the same values as row by row."""
    t = ln.Transform(key="bulk-big", kind="pipeline").save()
    start = dt.datetime(2024, 3, 4, 21, 6, 0, 37000, tzinfo=UTC)
    berlin = dt.timezone(dt.timedelta(hours=1))
    n = 6_000
    rows = [{"transform_id": t.id, "name": f"task {i}", "status": ("completed", "errored", "started")[i % 3],
             "started_at": start + dt.timedelta(seconds=i) if i % 7 else None,
             "finished_at": (start + dt.timedelta(seconds=i + 1)).astimezone(berlin) if i % 3 == 0 else None,
             "params": {"i": i, "pcpu": i / 10, "ok": i % 2 == 0, "none": None, "text": "späť"},
             "_aux": {"exit": 1} if i % 3 == 1 else None}
            for i in range(n)]
    rows[7]["_aux"] = {"text": "a backslash, then u0000: \\u0000"}  # not a NUL: stored as given
    if registry.dialect == "sqlite":
        with registry.read() as conn:
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    ids = insert_runs(rows)
    assert len(ids) == n and ids == sorted(ids)
    runs = {r.id: r for r in ln.Run.filter(id__in=ids)}
    uids = [runs[i].uid for i in ids]
    assert len(set(uids)) == n and all(len(u) == 16 for u in uids)
    for i in (0, 1, 2, 7, 5_999):
        run, row = runs[ids[i]], rows[i]
        assert run.name == row["name"] and run.status == row["status"] and run.params == row["params"]
        assert run._aux == row["_aux"]
        assert run.started_at == (row["started_at"] or run.created_at)
        if row["status"] == "completed":
            assert run.finished_at == row["finished_at"]
        elif row["status"] == "errored":
            assert run.finished_at == run.created_at  # a final status without an end time ends now
        else:
            assert run.finished_at is None
    assert ln.Run.filter(params__i__in=[3, 4]).count() == 2
    if registry.dialect == "sqlite":
        with registry.read() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == cache


@pytest.mark.parametrize("bad", [{"params": {"x": float("inf")}}, {"params": {"x": "a\x00b"}},
                                 {"params": {"x": [1]}, "status": "done"}, {"name": None, "status": 3}])
def test_a_bad_value_at_the_end_of_a_big_batch_writes_nothing(registry, bad):
    t = ln.Transform(key="bulk-big-bad", kind="pipeline").save()
    before = ln.Run.filter().count()
    rows = [{"transform_id": t.id, "name": f"task {i}", "status": "completed", "params": {"i": i}} for i in range(6_000)]
    rows[-1].update(bad)
    with pytest.raises(ValidationError):
        insert_runs(rows)
    assert ln.Run.filter().count() == before


def test_values_shared_by_every_row_are_stored_as_given(registry):
    """On SQLite a value every row shares is written into the INSERT once: quotes and all."""
    t = ln.Transform(key="bulk-shared", kind="pipeline").save()
    odd = "O'Brien's run'); DROP TABLE run; --"
    ids = insert_runs([{"transform_id": t.id, "name": odd, "reference": "it''s", "reference_type": "x'y",
                        "host": "h" * 255, "pid": 0, "params": {"a": "'"}} for _ in range(3)])
    for run in ln.Run.filter(id__in=ids):
        assert (run.name, run.reference, run.reference_type, run.host, run.pid) == (odd, "it''s", "x'y", "h" * 255, 0)
        assert run.params == {"a": "'"} and run.status == "scheduled" and not run.is_locked
    assert ln.Run.filter(name=odd).count() == 3


def test_flat_json_texts_are_what_json_dumps_writes():
    import json

    from lamin_integrations.core.bulk import _flat_json_texts

    values = [{"a": 1, "b": 'ü"\\\n\t', "c": 1.5e300, "d": None, "e": True, "f": -0.0, "g": 10**30, "h": "😀"},
              None, {}, {"x": 0.1, "y": ""}]
    assert _flat_json_texts(values) == [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    for refused in ({"x": float("nan")}, {"x": "\x00"}, {1: "x"}, {"x": [1]}, {"x": {"y": 1}}, "text"):
        assert _flat_json_texts([{"ok": 1}, refused]) is None  # checked value by value instead


def test_columns_insert_like_rows_and_refuse_ragged_columns(registry):
    from lamin_integrations.core.bulk import insert_run_columns

    t = ln.Transform(key="bulk-columns", kind="pipeline").save()
    start = dt.datetime(2024, 3, 4, 21, 6, 0, 37000, tzinfo=UTC)
    names = ["a", "b", "c"]
    statuses = ["completed", "errored", None]
    ends = [start, None, None]
    ids = insert_run_columns({"transform_id": [t.id] * 3, "name": names, "status": statuses, "finished_at": ends,
                              "params": [{"i": 0}, None, {"s": "x"}]})
    assert ends == [start, None, None]  # the caller's lists are left as given
    a, b, c = (ln.Run.get(id=i) for i in ids)
    assert (a.name, a.status, a.finished_at, a.params) == ("a", "completed", start, {"i": 0})
    assert b.status == "errored" and b.finished_at is not None and b.params is None
    assert c.status == "scheduled" and c.params == {"s": "x"}
    assert insert_run_columns({}) == [] and insert_run_columns({"transform_id": []}) == []
    with pytest.raises(ValidationError, match="different lengths"):
        insert_run_columns({"transform_id": [t.id] * 2, "name": ["only one"]})


def test_runs_by_reference_exact_and_hex_prefixes(registry):
    from lamin_integrations.core.references import runs_by_reference

    t = ln.Transform(key="bulk-references", kind="pipeline").save()
    pipeline = ln.Run(t, name="pipeline").save()
    full = "3c6ef362" + "0" * 24
    ids = insert_runs([
        {"transform_id": t.id, "name": "short", "reference": "3c/6ef362", "reference_type": "task"},
        {"transform_id": t.id, "name": "full", "reference": full, "reference_type": "task"},
        {"transform_id": t.id, "name": "other type", "reference": "3c/6ef362", "reference_type": "job"},
        {"transform_id": t.id, "name": "other digits", "reference": "3c6ef363" + "0" * 24, "reference_type": "task"},
        {"transform_id": t.id, "name": "own", "reference": "3c/6ef362", "reference_type": "task",
         "initiated_by_run_id": pipeline.id},
        {"transform_id": t.id, "name": "trashed", "reference": "3c/6ef362", "reference_type": "task"},
    ])
    ln.Run.get(id=ids[-1]).delete()
    found = runs_by_reference("task", ["3c/6ef362"], ["3c6ef362"], not_initiated_by=pipeline.id)
    assert [r.name for r in found] == ["short", "full"]
    assert [r.name for r in runs_by_reference("task", ["3c/6ef362"])] == ["short", "own"]
    assert [r.name for r in runs_by_reference("task", hex_prefixes=["3c6ef36"])] == ["full", "other digits"]
    assert runs_by_reference("task") == [] and runs_by_reference("task", ["nope"], ["ffff"]) == []
    many = [f"{i:02x}/{i:06x}" for i in range(5_000)]  # one bound array, whatever the count
    assert [r.name for r in runs_by_reference("task", [*many, "3c/6ef362"], [m.replace("/", "") for m in many])] \
        == ["short", "own"]


def _stored(run: ln.Run) -> dict:
    """A run's row as read back, without what differs between two saves of equal runs."""
    row = {k: v for k, v in ln.Run.get(id=run.id).__dict__.items() if not k.startswith("_") or k in ("_aux", "_status_code")}
    for name in ("id", "uid", "root_run_id", "initiated_by_run_id", "started_at", "finished_at", "created_at", "updated_at"):
        row.pop(name, None)
    return row


def test_ln_save_of_runs_with_parents_in_the_batch_reads_back_like_run_save(registry):
    """ln.save() inserts in waves (parents first) through its own bulk path: rows as .save() writes them."""
    t = ln.Transform(key="bulk-save", kind="pipeline").save()
    recorder = Recorder()
    plugins.manager().register(recorder)
    try:
        top = ln.Run(t, name="top", params={"level": 0, "tags": ["a", "b"]}, status="started")
        mid = ln.Run(t, name="mid", initiated_by_run=top, reference="r1", reference_type="custom", status="completed")
        leaf = ln.Run(t, name="leaf", initiated_by_run=mid, params={"x": 1.5}, status="errored")
        leaf._aux = {"exit": 2}
        given = ln.Run(t, name="given-uid", uid="GivenUid00000001")
        saved = ln.save([leaf, given, mid, top])  # children before their parents
        assert [r.id is not None for r in saved] == [True] * 4
        assert top.root_run_id == mid.root_run_id == leaf.root_run_id == top.id and given.root_run_id == given.id
        assert leaf.initiated_by_run_id == mid.id and mid.initiated_by_run_id == top.id
        assert given.uid == "GivenUid00000001" and len({r.uid for r in saved}) == 4
        assert sorted(recorder.started) == ["top"] and sorted(recorder.finished) == [("leaf", "errored"), ("mid", "completed")]
        one_by_one = [ln.Run(t, name="top", params={"level": 0, "tags": ["a", "b"]}, status="started").save()]
        one_by_one.append(ln.Run(t, name="mid", initiated_by_run=one_by_one[0], reference="r1", reference_type="custom",
                                 status="completed").save())
        third = ln.Run(t, name="leaf", initiated_by_run=one_by_one[1], params={"x": 1.5}, status="errored")
        third._aux = {"exit": 2}
        one_by_one.append(third.save())
        for bulk, single in zip([top, mid, leaf], one_by_one, strict=True):
            assert _stored(bulk) == _stored(single)
        back = ln.Run.get(id=leaf.id)
        assert back.finished_at is not None and back.started_at <= back.finished_at and back.initiated_by_run == mid
        top.name = "renamed"
        ln.save([top])  # existing runs are updated
        assert ln.Run.get(id=top.id).name == "renamed"
    finally:
        plugins.manager().unregister(recorder)


def test_ln_save_of_runs_with_a_bad_value_writes_nothing(registry):
    t = ln.Transform(key="bulk-save-bad", kind="pipeline").save()
    before = ln.Run.filter().count()
    runs = [ln.Run(t, name=f"ok {i}") for i in range(5)]
    runs[3].pid = "not a number"
    with pytest.raises(ValidationError):
        ln.save(runs)
    assert ln.Run.filter().count() == before and all(r.id is None for r in runs)
