"""`Instance.transaction()`: many saves, queries and bulk writes as one all-or-nothing unit."""

from __future__ import annotations

import pytest

import lamin_integrations as ln
from lamin_integrations.core import plugins
from lamin_integrations.core.hookspecs import hookimpl


class Recorder:
    def __init__(self) -> None:
        self.finished: list[str] = []

    @hookimpl
    def run_finished(self, run, status):
        self.finished.append(run.name)


@pytest.fixture
def hooks():
    recorder = Recorder()
    plugins.manager().register(recorder, name="test-transaction-recorder")
    try:
        yield recorder
    finally:
        plugins.manager().unregister(name="test-transaction-recorder")


def test_everything_is_committed_at_the_end_and_hooks_fire_after(registry, hooks):
    with registry.transaction():
        t = ln.Transform(key="tx-pipeline", kind="pipeline").save()
        parent = ln.Run(t, name="parent", status="started").save()
        ln.save([ln.Run(t, name=f"child {i}", initiated_by_run=parent, status="completed") for i in range(3)])
        # reads inside the block see the uncommitted rows
        assert ln.Run.filter(initiated_by_run=parent).count() == 3
        assert hooks.finished == []
    assert ln.Run.filter(transform__key="tx-pipeline").count() == 4
    assert sorted(hooks.finished) == ["child 0", "child 1", "child 2"]


def test_an_error_inside_rolls_back_every_write_and_drops_the_hooks(registry, hooks):
    with pytest.raises(RuntimeError), registry.transaction():
        t = ln.Transform(key="tx-rolled-back", kind="pipeline").save()
        ln.save([ln.Run(t, name="gone", status="completed")])
        raise RuntimeError("boom")
    assert ln.Transform.filter(key="tx-rolled-back").count() == 0
    assert ln.Run.filter(name="gone").count() == 0
    assert hooks.finished == []
    ln.Transform(key="after", kind="pipeline").save()  # the instance is usable afterwards
    assert ln.Transform.filter(key="after").count() == 1


def test_a_handled_failed_write_inside_leaves_no_partial_rows(registry):
    t = ln.Transform(key="tx-handled", kind="pipeline").save()
    with registry.transaction():
        def half_then_fail(conn):
            ln.Run(t, name="half").save()
            raise ValueError("rejected")

        with pytest.raises(ValueError):
            registry.write(half_then_fail)
        ln.Run(t, name="kept").save()
    assert [r.name for r in ln.Run.filter(transform=t)] == ["kept"]
