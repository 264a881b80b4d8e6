"""ln.track() on the embedded registry without SQLAlchemy (core/fasttrack.py), in real scripts.

The fast path is taken from the second run of an unchanged script in an unchanged
environment; each test warms the registry with a first run, then checks that the fast run
really skipped SQLAlchemy (the script says so at exit) and recorded what the full path records.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import python_env

import lamin_integrations as ln
from lamin_integrations.core import fasttrack

SCRIPT = textwrap.dedent("""
    import atexit, os, sys, time
    if os.environ.get("FORCE_FULL_PATH"):
        import sqlalchemy  # loaded already: the full path costs nothing more and is taken
    # Registered before ln.track(), so it runs after the run was ended at exit.
    atexit.register(lambda: print("SQLALCHEMY", "sqlalchemy" in sys.modules, file=sys.__stderr__))
    import lamin_integrations as ln
    ln.track(params={"mode": sys.argv[1], "tag": os.environ.get("TAG", "")})
    print("AT_START", "sqlalchemy" in sys.modules, file=sys.__stderr__, flush=True)
    print("output of", os.environ.get("TAG", "run"), flush=True)
    mode = sys.argv[1]
    if mode == "raise":
        raise ValueError("boom")
    if mode == "exit3":
        sys.exit(3)
    if mode == "sleep":
        time.sleep(float(os.environ.get("SLEEP", "60")))
    if mode == "use":
        @ln.step()
        def double(x):
            return 2 * x
        assert double(21) == 42  # a step initiated by the run before anything loaded it
        run = ln.context.run
        assert isinstance(run, ln.Run), "a Run to every isinstance check"
        assert run.status == "started" and run.params["tag"] == "use"  # loads the record
        assert type(run) is ln.Run and run.transform.key == "job.py"
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out.txt")
        open(path, "w").write("made by the run\\n")
        ln.Artifact(path, key="out.txt").save()
        print("TRANSFORM", ln.context.transform.key, ln.context.run is run, file=sys.__stderr__)
    if mode != "noend":
        ln.finish()
""")


def run(script: Path, mode: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120,
                          env=python_env(**env), cwd=script.parent)


def fast(proc: subprocess.CompletedProcess) -> bool:
    """Whether the script ran without SQLAlchemy from ln.track() to its exit."""
    return "AT_START False" in proc.stderr and "SQLALCHEMY False" in proc.stderr


@pytest.fixture
def script(sqlite_registry, tmp_path):
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    first = run(path, "warm")  # creates the transform, user, storage and environment artifact
    assert first.returncode == 0, first.stderr
    return path


def rows(table: str, where: str, args: tuple) -> list[dict]:
    db = ln.instance._url.database
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", args)]


def test_fast_and_full_paths_write_the_same_rows(script):
    full = run(script, "finish", FORCE_FULL_PATH="1", TAG="full")
    quick = run(script, "finish", TAG="fast")
    assert full.returncode == 0 and quick.returncode == 0, quick.stderr
    assert not fast(full) and fast(quick), quick.stderr
    a, b = (ln.Run.get(params__tag=t) for t in ("full", "fast"))
    ra, rb = rows("run", "id = ?", (a.id,))[0], rows("run", "id = ?", (b.id,))[0]
    differ = {"id", "uid", "params", "started_at", "finished_at", "created_at", "updated_at", "pid",
              "root_run_id", "report_id"}
    assert {k: v for k, v in ra.items() if k not in differ} == {k: v for k, v in rb.items() if k not in differ}
    assert ra["root_run_id"] == ra["id"] and rb["root_run_id"] == rb["id"]
    assert b.params == {"mode": "finish", "tag": "fast"} and b.status == "completed"
    assert b.started_at <= b.finished_at
    # Each report is a new artifact (different output): same columns apart from identity.
    ea, eb = rows("artifact", "id = ?", (a.report_id,))[0], rows("artifact", "id = ?", (b.report_id,))[0]
    differ = {"id", "uid", "description", "hash", "created_at", "updated_at"}
    assert {k: v for k, v in ea.items() if k not in differ} == {k: v for k, v in eb.items() if k not in differ}
    assert eb["description"] == f"log streams of run {b.uid}" and eb["_storage_ongoing"] == 0
    assert "output of fast" in b.report.path.read_text()
    assert b.environment == a.environment and b.transform == a.transform
    for record in (ra, rb, ea, eb):  # timestamps in the text form SQLAlchemy writes and parses
        assert len(record["created_at"]) == len("2026-01-01 00:00:00.000000")


@pytest.mark.parametrize(("mode", "status", "code"), [("noend", "completed", 0), ("raise", "errored", 1),
                                                       ("exit3", "errored", 3)])
def test_fast_run_ends_like_the_full_path(script, mode, status, code):
    proc = run(script, mode, TAG=mode)
    assert proc.returncode == code and fast(proc), proc.stderr
    recorded = ln.Run.get(params__tag=mode)
    assert recorded.status == status and recorded.finished_at is not None
    report = recorded.report.path.read_text()
    assert f"output of {mode}" in report
    if mode == "raise":
        assert "ValueError: boom" in report and recorded._aux["end_reason"] == "ValueError: boom"
    if mode == "exit3":
        assert recorded._aux["end_reason"] == "exit code 3"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_abort_a_fast_run(script, sig):
    proc = subprocess.Popen([sys.executable, str(script), "sleep"], env=python_env(TAG="sig", LAMIN_INTEGRATIONS_QUIET="1"), cwd=script.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = proc.stderr.readline()  # printed once ln.track() returned (or EOF if the script died)
        assert ln.Run.filter(params__tag="sig", status="started").exists()
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert started.startswith("AT_START False"), started
    recorded = ln.Run.get(params__tag="sig")
    assert recorded.status == "aborted" and recorded.finished_at is not None


def test_heartbeat_of_a_fast_run(script):
    proc = run(script, "sleep", TAG="beat", SLEEP="1.5", LAMIN_INTEGRATIONS_HEARTBEAT="0.2")
    assert proc.returncode == 0 and fast(proc), proc.stderr
    recorded = ln.Run.get(params__tag="beat")
    assert recorded.heartbeat_at is not None and recorded.started_at < recorded.heartbeat_at <= recorded.finished_at


def test_the_run_becomes_a_real_run_when_used(script):
    proc = run(script, "use", TAG="use")
    assert proc.returncode == 0, proc.stderr
    assert "AT_START False" in proc.stderr and "TRANSFORM job.py True" in proc.stderr
    recorded = ln.Run.get(params__tag="use")
    assert recorded.status == "completed" and "output of use" in recorded.report.path.read_text()
    assert [a.key for a in recorded.output_artifacts] == ["out.txt"]
    step = ln.Run.get(initiated_by_run=recorded)
    assert step.params == {"x": 21} and step.status == "completed" and step.root_run_id == recorded.id


def test_children_of_a_fast_run_chain_under_it(sqlite_registry, tmp_path):
    child = tmp_path / "child.py"
    child.write_text("import sys, lamin_integrations as ln\nln.track(params={'i': int(sys.argv[1])})\n"
                     "print('CHILD', 'sqlalchemy' in sys.modules, file=sys.__stderr__)\nln.finish()\n")
    parent = tmp_path / "parent.py"
    parent.write_text(textwrap.dedent(f"""
        import subprocess, sys
        import lamin_integrations as ln
        ln.track()
        for i in sys.argv[1:]:
            subprocess.run([sys.executable, {str(child)!r}, i], check=True)
        ln.finish()
    """))
    for args in (["1"], ["2", "3"]):  # the first run creates the transforms
        proc = subprocess.run([sys.executable, str(parent), *args], capture_output=True, text=True, timeout=120,
                              env=python_env(), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("CHILD False") == 2
    top = ln.Run.filter(transform__key="parent.py").order_by("-id").first()
    children = ln.Run.filter(initiated_by_run=top)
    assert sorted(r.params["i"] for r in children) == [2, 3]
    assert all(r.root_run_id == top.id and r.status == "completed" for r in children)


def test_whatever_the_fast_path_does_not_know_goes_the_full_way(script):
    edited = script.read_text() + "\n# edited\n"
    script.write_text(edited)  # a new version: created by the full path
    proc = run(script, "finish", TAG="edited")
    assert proc.returncode == 0 and not fast(proc), proc.stderr
    recorded = ln.Run.get(params__tag="edited")
    assert recorded.transform.source_code == edited and recorded.status == "completed"
    again = run(script, "finish", TAG="again")
    assert fast(again) and ln.Run.get(params__tag="again").transform == recorded.transform


def test_a_failed_report_copy_falls_back_and_leaves_no_half_artifact(script):
    storage = Path(ln.instance.storage_root)
    managed = storage / ".lamindb"
    moved = storage / "moved-away"
    managed.rename(moved)
    managed.write_text("not a folder")  # copying the report into storage fails
    try:
        proc = run(script, "finish", TAG="nocopy")
    finally:
        managed.unlink()
        moved.rename(managed)
    assert proc.returncode == 0, proc.stderr
    recorded = ln.Run.get(params__tag="nocopy")
    assert recorded.status == "completed" and recorded.report is None
    assert not ln.Artifact.filter(description=f"log streams of run {recorded.uid}").exists()
    assert rows("artifact", "_storage_ongoing = 1", ()) == []


def test_schema_head_is_the_migrations_head():
    from lamin_integrations.core.migrate import HEAD

    assert fasttrack.SCHEMA_HEAD == HEAD
