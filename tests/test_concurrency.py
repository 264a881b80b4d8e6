"""Many processes writing into one registry at once, on SQLite and on PostgreSQL.

16 writer processes (tests/concurrent_writer.py) each record runs with three artifacts,
two of them shared by every writer (same key and content, or same content and no key),
saved in opposite orders by odd and even writers; they all start together. The
registry must end with every record, no duplicate, and no writer may have seen a "database
is locked" or a deadlock. The issue's full load (16 x 200 runs x 3 artifacts); its throughput
is benchmarks/bench_concurrency.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.core import schema
from tests.concurrent_writer import expected_counts
from tests.conftest import python_env

pytestmark = pytest.mark.slow

WRITER = Path(__file__).with_name("concurrent_writer.py")
WRITERS, RUNS = 16, 200
FORBIDDEN = ("database is locked", "deadlock", "could not serialize", "Traceback")


def run_writers(tmp_path: Path, writers: int, runs: int, timeout: float = 300) -> list[dict]:
    """Start the writers, release them together once all are imported, return their reports."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, str(WRITER), str(i), str(runs), str(tmp_path / f"node{i}"), str(ready), str(go)],
                              env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(writers)]
    deadline = time.monotonic() + timeout
    while len(list(ready.iterdir())) < writers:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise AssertionError(f"writers did not all start: {[p.communicate()[1][-2000:] for p in procs]}")
        time.sleep(0.01)
    go.touch()
    reports, problems = [], []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0 or any(s in err for s in FORBIDDEN):
            problems.append(f"exit {p.returncode}: {err[-3000:]}")
        else:
            reports.append(json.loads(out.strip().splitlines()[-1]))
    assert not problems, "\n".join(problems)
    return reports


def table_counts(instance) -> dict[str, int]:  # noqa: ANN001
    """Row counts straight from the tables: hidden (in-progress or trashed) rows count too."""
    with instance.read() as conn:
        def count(table: sa.Table, *where: sa.ColumnElement) -> int:
            return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()

        a = schema.artifact
        return {
            "runs": count(schema.run),
            "artifacts": count(a),
            "recreated_links": count(schema.run_recreated_artifact),
            "input_links": count(schema.run_input_artifact),
            "hidden_artifacts": count(a, sa.or_(a.c._storage_ongoing.is_(True), a.c.branch_id == -1)),
            "artifacts_without_run": count(a, a.c.run_id.is_(None)),
            "transforms": count(schema.transform),
        }


def test_concurrent_writers_lose_nothing_and_never_duplicate(registry, tmp_path):
    ln.Transform(key="warm-up", kind="script").save()  # schema created before the race
    reports = run_writers(tmp_path, WRITERS, RUNS)
    assert len(reports) == WRITERS

    counts = table_counts(registry)
    expected = expected_counts(WRITERS, RUNS)
    assert {k: counts[k] for k in expected} == expected
    assert counts["hidden_artifacts"] == 0 and counts["artifacts_without_run"] == 0
    assert counts["transforms"] == 2, "every writer saved the same transform: one row"
    # The same through the public API.
    assert ln.Run.filter(transform__key="concurrent_writer.py", status="completed").count() == expected["runs"]
    assert ln.Artifact.filter().count() == expected["artifacts"]

    a = schema.artifact
    with registry.read() as conn:
        duplicates = conn.execute(sa.select(a.c.key, sa.func.count()).where(a.c.key.is_not(None))
                                  .group_by(a.c.key).having(sa.func.count() > 1)).all()
        assert duplicates == [], "one artifact per key: each key always holds the same content"
        duplicates = conn.execute(sa.select(a.c.hash, sa.func.count()).group_by(a.c.hash)
                                  .having(sa.func.count() > 1)).all()
        assert duplicates == [], "one artifact per content"
        # Each shared artifact: created by one writer's run, recreated by the 15 others.
        links = schema.run_recreated_artifact
        per_shared = conn.execute(
            sa.select(a.c.id, sa.func.count(links.c.id))
            .select_from(a.outerjoin(links, links.c.artifact_id == a.c.id))
            .where(sa.or_(a.c.key.like("shared/%"), a.c.key.is_(None))).group_by(a.c.id)).all()
    assert len(per_shared) == 2 * RUNS and {n for _, n in per_shared} == {WRITERS - 1}

    shared = ln.Artifact.get(key="shared/7.txt")
    writers = {shared.run.name.split("-")[0]} | {r.name.split("-")[0] for r in shared.recreating_runs}
    assert writers == {f"writer{i}" for i in range(WRITERS)}
    # Each run read its predecessor's first output, in its own writer.
    run = ln.Run.get(name="writer3-50")
    assert [x.key for x in run.input_artifacts] == ["w3/49.txt"]
