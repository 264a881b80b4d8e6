"""Concurrent writers: 16 processes each recording 200 runs with 3 artifacts, on SQLite and PostgreSQL.

Each writer is tests/concurrent_writer.py: runs of one shared transform, one artifact of
its own per run and two shared by every writer (one keyed, one without a key; odd writers
save in reverse order), an input link to the previous run's output. All writers are
imported first and released together; the time is from the release to the last writer's
end. Baseline, measured in the same run on the same database kind: one writer alone
recording 200 runs (before and after the crowd, averaged). The registry is checked
afterwards: every run, artifact and link there, no content twice, no writer with a lock or
deadlock error.

PostgreSQL is a throw-away server started by tests/servers.py (skipped if it cannot start).

Run: .venv/bin/python benchmarks/bench_concurrency.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from report import Row, emit

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from concurrent_writer import expected_counts  # noqa: E402

WRITER = TESTS / "concurrent_writer.py"
WRITERS, RUNS = 16, 200
FORBIDDEN = ("database is locked", "deadlock", "could not serialize", "Traceback")


def race(folder: Path, env: dict[str, str], writers: int, runs: int) -> float:
    """Run `writers` writers released together; returns the wall time from release to last end."""
    ready, go = folder / "ready", folder / "go"
    ready.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, str(WRITER), str(i), str(runs), str(folder / f"w{i}"), str(ready), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(writers)]
    while len(list(ready.iterdir())) < writers:
        if any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError(f"a writer failed to start: {[p.communicate()[1][-2000:] for p in procs]}")
        time.sleep(0.01)
    released = time.time()
    go.touch()
    ends = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0 or any(s in err for s in FORBIDDEN):
            raise RuntimeError(f"a writer failed (exit {p.returncode}): {err[-3000:]}")
        ends.append(json.loads(out.strip().splitlines()[-1])["end"])
    return max(ends) - released


def check(url: str, writers: int, runs: int) -> None:
    """Every record there, once."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            def count(sql: str) -> int:
                return conn.exec_driver_sql(sql).scalar_one()

            found = {"runs": count("SELECT count(*) FROM run"), "artifacts": count("SELECT count(*) FROM artifact"),
                     "recreated_links": count("SELECT count(*) FROM run_recreated_artifact"),
                     "input_links": count("SELECT count(*) FROM run_input_artifact")}
            duplicates = count("SELECT count(*) FROM (SELECT hash FROM artifact GROUP BY hash HAVING count(*) > 1) d")
    finally:
        engine.dispose()
    expected = expected_counts(writers, runs)
    if found != expected or duplicates:
        raise RuntimeError(f"registry after {writers} writers: {found} (expected {expected}), {duplicates} duplicated contents")


def rate(make_url, folder: Path, writers: int) -> float:  # noqa: ANN001
    """Runs per second of `writers` writers released together on a fresh registry."""
    url = make_url(folder)
    env = {**os.environ, "LAMIN_INTEGRATIONS_HOME": str(folder / "home"), "LAMIN_INTEGRATIONS_DB": url,
           "LAMIN_INTEGRATIONS_STORAGE": str(folder / "storage")}
    env.pop("LAMIN_INTEGRATIONS_RUN_UID", None)
    # Create the schema first: the race is about recording, not about migrations.
    subprocess.run([sys.executable, "-c", "import lamin_integrations as ln; ln.connect()"], env=env, check=True)
    seconds = race(folder, env, writers, RUNS)
    check(url, writers, RUNS)
    return writers * RUNS / seconds


def measure(make_url, folder: Path) -> tuple[float, float]:  # noqa: ANN001
    """(runs/s of WRITERS concurrent writers, runs/s of one writer alone).

    The machine is shared: the lone writer runs before and after the crowd, and the
    baseline is the mean of the two, so a burst of outside load skews both figures alike.
    """
    before = rate(make_url, folder / "alone_before", 1)
    crowd = rate(make_url, folder / "crowd", WRITERS)
    after = rate(make_url, folder / "alone_after", 1)
    return crowd, (before + after) / 2


def row(database: str, concurrent: float, alone: float) -> Row:
    return Row(f"{WRITERS} concurrent writers x {RUNS} runs x 3 artifacts, {database} (nothing lost)", concurrent, "runs/s",
               alone, "1 writer alone", "ratio >= 0.5 (contention costs at most half)", concurrent >= 0.5 * alone)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows.append(row("SQLite", *measure(lambda work: f"sqlite:///{work / 'lineage.db'}", folder / "sqlite")))
        import servers

        reason = servers.postgres_available()
        if reason:
            print(f"PostgreSQL skipped: {reason}", file=sys.stderr)
        else:
            with servers.start_postgres() as server:
                rows.append(row("PostgreSQL", *measure(lambda work: server.create_database(), folder / "postgres")))
    emit(rows)


if __name__ == "__main__":
    main()
