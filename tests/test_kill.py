"""SIGKILL in the middle of writing: the registry stays consistent, the reaper closes the run.

A tracked script saves batches of artifacts (each batch under a step run) in a loop; it is
killed with SIGKILL twice: once at a random moment after its first records appear, once
exactly while a batch's rows are inserted but its bytes are still being copied (rows
flagged `_storage_ongoing`). Afterwards, on SQLite and PostgreSQL: the database is intact,
every run reads back, no artifact whose bytes are missing is visible, `runs reap` marks
both killed runs aborted, and saving the same content again completes the half-saved rows.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.core import schema
from tests.conftest import python_env

FILES, BLOCK = 8, 32 * 1024  # eight files of ~0.6 MB per batch: copying takes a while

WRITER = textwrap.dedent(f"""
    import sys
    from pathlib import Path

    import lamin_integrations as ln

    workdir, first, last = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    workdir.mkdir(parents=True, exist_ok=True)
    ln.track()
    step = ln.Transform(key="batch-writer:step", kind="step").save()
    for b in range(first, last):
        run = ln.Run(step, name=f"batch{{b}}", initiated_by_run=ln.context.run, status="started").save()
        artifacts = []
        for j in range({FILES}):
            path = workdir / f"{{b}}_{{j}}.bin"
            path.write_bytes(f"batch {{b}} file {{j}}\\n".encode() * {BLOCK})
            artifacts.append(ln.Artifact(path, key=f"batch{{b}}/{{j}}.bin", run=run))
        ln.save(artifacts)
        run.status = "completed"
        run.save()
        for a in artifacts:
            Path(a.__dict__["_source"].location).unlink()
    ln.finish()
""")


def content(key: str) -> bytes:
    batch, name = key.split("/")
    return f"batch {batch.removeprefix('batch')} file {name.split('.')[0]}\n".encode() * BLOCK


def raw_artifacts(instance) -> list[dict]:  # noqa: ANN001
    """Every batch artifact row, hidden or not, straight from the table."""
    a = schema.artifact
    with instance.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(a.c.id, a.c.key, a.c._storage_ongoing)
                                              .where(a.c.key.like("batch%"))).mappings()]


def start_writer(script: Path, workdir: Path, first: int = 0, last: int = 100_000) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(workdir), str(first), str(last)], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, delay: float = 0.0, timeout: float = 90) -> None:  # noqa: ANN001
    """SIGKILL `proc` `delay` seconds after `ready()` is true (polled as fast as the database answers).

    Without a delay the state must still hold when the kill lands: the writer is stopped
    (SIGSTOP), `ready()` asked again, and only then killed; else it resumes and we wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the writer ended before it could be killed: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the moment to kill the writer never came")
        if not ready():
            continue
        if delay:
            time.sleep(delay)
            break
        os.kill(proc.pid, signal.SIGSTOP)
        if ready():
            break
        os.kill(proc.pid, signal.SIGCONT)
    proc.kill()  # SIGKILL
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_writes_leaves_a_consistent_registry(registry, tmp_path):
    script = tmp_path / "batch_writer.py"
    script.write_text(WRITER)
    killed = []

    # 1. At a random moment after the first batch rows appear.
    proc = start_writer(script, tmp_path / "work1")
    kill_when(proc, lambda: len(raw_artifacts(registry)) > 0, delay=random.uniform(0, 0.5))
    killed.append(proc.pid)
    # 2. Exactly while rows are flagged "storage ongoing": inserted, bytes not yet copied.
    seen = max((r["id"] for r in raw_artifacts(registry)), default=0)
    proc = start_writer(script, tmp_path / "work2")
    kill_when(proc, lambda: any(r["_storage_ongoing"] and r["id"] > seen for r in raw_artifacts(registry)))
    killed.append(proc.pid)

    rows = raw_artifacts(registry)
    half_saved = {r["id"] for r in rows if r["_storage_ongoing"]}
    assert any(i > seen for i in half_saved)
    if registry.dialect == "sqlite":
        db = registry._url.database
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    # No half-saved artifact is visible, and every visible one has all its bytes.
    visible = ln.Artifact.filter(key__startswith="batch").to_list()
    assert {a.id for a in visible}.isdisjoint(half_saved)
    assert len(visible) == len(rows) - len(half_saved)
    for artifact in visible:
        assert Path(artifact.path).read_bytes() == content(artifact.key), artifact.key
    for artifact_id in half_saved:
        with pytest.raises(ln.errors.ObjectDoesNotExist):
            ln.Artifact.get(artifact_id)
    # Every run reads back, with its transform and its links.
    for run in ln.Run.filter():
        assert run.transform.key and run.status in ("started", "completed")
        run.output_artifacts.count(), run.input_artifacts.count()
        run.describe()

    # The killed scripts' runs stay "started" until the reaper sees their processes are gone.
    tracked = ln.Run.filter(transform__key="batch_writer.py").order_by("id").to_list()
    assert [(r.pid, r.status) for r in tracked] == [(pid, "started") for pid in killed]
    for run in tracked:
        assert {a.id for a in ln.lineage.downstream(run).artifacts}.isdisjoint(half_saved)
    cli = str(Path(sys.executable).with_name("lamin-integrations"))
    reaped = subprocess.run([cli, "runs", "reap"], capture_output=True, text=True, env=python_env(), timeout=60)
    assert reaped.returncode == 0, reaped.stderr
    for run in tracked:
        run = ln.Run.get(run.uid)
        assert run.status == "aborted" and f"process {run.pid}" in run._aux["end_reason"]

    # Saving the same content again completes the half-saved rows.
    last = max(int(r["key"].split("/")[0].removeprefix("batch")) for r in rows) + 1
    rerun = start_writer(script, tmp_path / "work3", 0, last)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert not any(r["_storage_ongoing"] for r in raw_artifacts(registry))
    completed = ln.Artifact.filter(id__in=sorted(half_saved)).to_list()
    assert {a.id for a in completed} == half_saved
    for artifact in completed:
        assert Path(artifact.path).read_bytes() == content(artifact.key)
    assert ln.Artifact.filter(key__startswith="batch").count() == last * FILES

