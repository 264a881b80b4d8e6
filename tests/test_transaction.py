"""`Instance.transaction()`: many saves, queries and bulk writes as one all-or-nothing unit."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import file_and_folder

import lamin_integrations as ln
from lamin_integrations.core import plugins, schema
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


# -- storage is rolled back with the rows ---------------------------------------------------------

def stored_files(registry) -> set[str]:
    root = Path(registry.storage_root)
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()} if root.exists() else set()


def artifact_rows(registry) -> list[tuple]:
    with registry.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(schema.artifact).order_by(schema.artifact.c.id))]


def test_a_rolled_back_block_removes_the_bytes_its_artifact_saves_copied(registry, tmp_path):
    src, folder = file_and_folder(tmp_path)
    with pytest.raises(RuntimeError), registry.transaction():
        artifact = ln.Artifact(src, key="results/table.csv").save()
        ln.Artifact(folder, key="results/folder").save()
        assert artifact.path.exists()
        assert len(stored_files(registry)) == 2
        raise RuntimeError("boom")
    assert stored_files(registry) == set(), "no orphaned copy in storage"
    assert artifact_rows(registry) == []
    assert src.read_text() == "a,b\n1,2\n" and (folder / "x.txt").exists(), "the sources are untouched"
    # the same content saves normally afterwards
    again = ln.Artifact(src, key="results/table.csv").save()
    assert again.path.read_text() == "a,b\n1,2\n"


def test_a_rolled_back_block_keeps_an_artifact_it_only_reused(registry, tmp_path):
    src = tmp_path / "shared.txt"
    src.write_text("shared bytes")
    kept = ln.Artifact(src, key="shared.txt").save()  # committed before the block
    before = stored_files(registry)
    new = tmp_path / "new.txt"
    new.write_text("new bytes")
    with pytest.raises(RuntimeError), registry.transaction():
        reused = ln.Artifact(src, key="shared.txt").save()
        assert reused.id == kept.id
        ln.Artifact(tmp_path / "shared.txt", description="same bytes, no key").save()  # deduplicated too
        ln.Artifact(new, key="new.txt").save()
        raise RuntimeError("boom")
    assert stored_files(registry) == before
    assert kept.path.read_text() == "shared bytes"
    assert [a.id for a in ln.Artifact.filter()] == [kept.id]


def test_a_rolled_back_block_keeps_files_registered_in_place(registry):
    own = Path(registry.storage_root) / "raw" / "counts.csv"
    own.parent.mkdir(parents=True)
    own.write_text("gene,count\nA,1\n")
    with pytest.raises(RuntimeError), registry.transaction():
        artifact = ln.Artifact(own).save()
        assert artifact.key == "raw/counts.csv" and artifact._key_is_virtual is False
        raise RuntimeError("boom")
    assert own.read_text() == "gene,count\nA,1\n", "the user's own file stays"
    assert artifact_rows(registry) == []


def test_a_rolled_back_block_keeps_bytes_it_stored_for_another_writers_committed_row(registry, tmp_path):
    src = tmp_path / "crash.txt"
    src.write_text("bytes")
    first = ln.Artifact(src, key="crash.txt").save()
    first.path.unlink()  # another writer died after inserting its row, before copying
    with registry.engine.begin() as conn:
        conn.execute(sa.update(schema.artifact).values(_storage_ongoing=True))
    with pytest.raises(RuntimeError), registry.transaction():
        assert ln.Artifact(src, key="crash.txt").save().id == first.id  # completes that row
        raise RuntimeError("boom")
    assert first.path.read_text() == "bytes", "the committed row still points at them"


def test_a_handled_failed_write_inside_removes_the_bytes_it_copied_and_the_block_commits(registry, tmp_path):
    src = tmp_path / "half.txt"
    src.write_text("half")
    kept = tmp_path / "kept.txt"
    kept.write_text("kept")
    with registry.transaction():
        def save_then_fail(conn):
            ln.Artifact(src, key="half.txt").save()
            raise ValueError("rejected")

        with pytest.raises(ValueError):
            registry.write(save_then_fail)
        artifact = ln.Artifact(kept, key="kept.txt").save()
    assert [a.key for a in ln.Artifact.filter()] == ["kept.txt"]
    assert stored_files(registry) == {str(artifact.path.relative_to(registry.storage_root))}


def test_nested_blocks_join_the_outer_one_for_storage_too(registry, tmp_path):
    src = tmp_path / "inner.txt"
    src.write_text("inner")
    with pytest.raises(RuntimeError), registry.transaction():
        with registry.transaction():
            ln.Artifact(src, key="inner.txt").save()
        assert len(stored_files(registry)) == 1, "the inner block does not commit on its own"
        raise RuntimeError("boom")
    assert stored_files(registry) == set() and artifact_rows(registry) == []


def test_a_failed_cleanup_is_logged_and_the_original_error_is_raised(registry, tmp_path, monkeypatch, caplog):
    from lamin_integrations.core import storage

    src = tmp_path / "stuck.txt"
    src.write_text("stuck")

    unlink = storage.os.unlink

    def refuse(path, *args, **kwargs):
        if ".lamindb" in str(path):
            raise PermissionError(f"read-only: {path}")
        return unlink(path, *args, **kwargs)

    with pytest.raises(RuntimeError, match="the original error"), registry.transaction():
        artifact = ln.Artifact(src, key="stuck.txt").save()
        monkeypatch.setattr(storage.os, "unlink", refuse)
        raise RuntimeError("the original error")
    monkeypatch.undo()
    assert "could not remove" in caplog.text and artifact.uid in caplog.text
    assert artifact_rows(registry) == []


def test_a_rolled_back_new_version_of_a_folder_leaves_the_committed_versions_folder(registry, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.txt").write_text("v1")
    first = ln.Artifact(folder, key="results/folder").save()
    (folder / "x.txt").write_text("v2")
    with pytest.raises(RuntimeError), registry.transaction():
        second = ln.Artifact(folder, key="results/folder").save()
        assert second.id != first.id and second.path == first.path  # versions share the folder
        raise RuntimeError("boom")
    assert (first.path / "x.txt").exists(), "the committed version's row still points at it"
    assert [a.id for a in ln.Artifact.filter()] == [first.id]
