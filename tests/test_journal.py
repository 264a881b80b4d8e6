"""Nothing lost when the registry fails: the journal, `ln.track()` offline, and `sync`.

The PostgreSQL server here is this module's own (started once), because the tests stop and
restart it: a real outage, with the real error PostgreSQL clients see.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.core.journal import Journal, is_unavailable, sync
from lamin_integrations.errors import RegistryUnavailable, ValidationError
from tests.conftest import python_env

CLI = str(Path(sys.executable).with_name("lamin-integrations"))


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env or python_env(), timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    import servers

    reason = servers.postgres_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"required test server unavailable in CI: {reason}")
        pytest.skip(reason)
    server = servers.start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def outage(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh registry on the module's server, with the environment pointing at it; the
    server is running again after the test whatever happened."""
    url = server.create_database()
    storage = tmp_path / "storage"
    monkeypatch.setenv("LAMIN_INTEGRATIONS_DB", url)
    monkeypatch.setenv("LAMIN_INTEGRATIONS_STORAGE", str(storage))
    ln.connect(url, str(storage)).dispose()  # the schema exists before the outage
    try:
        yield server, url, storage
    finally:
        server.start()
        from lamin_integrations.core import instance

        if instance._current is not None:
            instance._current.dispose()
        instance._current = None


# -- the journal file ------------------------------------------------------------------------------


def test_append_writes_one_private_line_per_event_named_without_the_password(tmp_path):
    journal = Journal("postgresql+psycopg://alice:s3cret@db.example:5432/lineage")
    journal.append("track", "R" * 16, [{"event": "start", "n": 1}, {"event": "end", "n": 2}])
    journal.append("track", "S" * 16, [{"event": "start", "text": "é\nnewline inside",
                                         "cmd": "snakemake --logger-lamin-db postgresql://bob:hunter2@h/db"}])
    assert "s3cret" not in str(journal.path) and journal.path.parent == Path(os.environ["LAMIN_INTEGRATIONS_HOME"]) / "journal"
    raw = journal.path.read_text()
    assert "s3cret" not in raw and "alice:***@db.example" in raw
    assert "hunter2" not in raw and "bob:***@h/db" in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [(e["group"], e["event"]) for e in lines] == [("R" * 16, "start"), ("R" * 16, "end"), ("S" * 16, "start")]
    assert lines[2]["text"] == "é\nnewline inside" and lines[0]["pid"] == os.getpid()
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert journal.pending_count() == 3
    # the same registry, written differently, is the same journal; another one is not
    assert Journal("postgresql+psycopg://alice:other@db.example:5432/lineage").path == journal.path
    assert Journal("postgresql+psycopg://alice@db.example:5432/other").path != journal.path
    assert Journal(f"sqlite:///{tmp_path}/x/../lineage.db").path == Journal(f"sqlite:///{tmp_path}/lineage.db").path


def test_concurrent_writers_never_interleave_lines(tmp_path):
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    script = textwrap.dedent("""
        import sys
        from lamin_integrations.core.journal import Journal
        journal = Journal(sys.argv[1])
        for i in range(50):  # 200 KB lines: far beyond what a single write() keeps atomic on a pipe
            journal.append("track", sys.argv[2], [{"event": "start", "i": i, "pad": sys.argv[2] * 12_500}])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, url, c * 16], env=python_env()) for c in "ABCD"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = Journal(url).path.read_bytes().splitlines()
    assert len(lines) == 200
    entries = [json.loads(line) for line in lines]
    for c in "ABCD":
        assert [e["i"] for e in entries if e["group"] == c * 16] == list(range(50))
        assert all(e["pad"] == c * 16 * 12_500 for e in entries if e["group"] == c * 16)


def test_a_torn_or_unreadable_line_is_reported_and_kept(sqlite_registry):
    journal = Journal.of()
    journal.path.parent.mkdir(parents=True, exist_ok=True)
    journal.path.write_bytes(b'{"kind": "track", "group": "torn')  # a writer that died mid-line
    journal.append("track", "T" * 16, [{"event": "end", "status": "completed", "finished_at": "2024-01-01T00:00:00+00:00"}])
    assert journal.path.read_bytes().count(b"\n") == 2  # the fragment stayed on a line of its own
    with journal.path.open("ab") as f:
        f.write(b'not json\n{"kind": "track"')
    result = sync()
    assert len(result.errors) == 4 and result.replayed == 0
    *unreadable, replay_error = result.errors
    assert [e.split(":")[0] for e in unreadable] == ["line 1", "line 3", "line 4"]
    assert "incomplete" in unreadable[2]
    assert "track run TTTTTTTTTTTTTTTT (line 2)" in replay_error and "neither in the registry" in replay_error
    assert journal.pending_count() == 4  # nothing dropped


def test_what_counts_as_the_registry_being_unavailable():
    def operational(message: str) -> sa.exc.OperationalError:
        return sa.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))

    assert is_unavailable(operational("database is locked"))
    assert is_unavailable(operational("disk I/O error"))
    assert is_unavailable(operational("database or disk is full"))
    assert is_unavailable(RegistryUnavailable("cannot reach the registry"))
    assert not is_unavailable(operational("no such table: run"))  # a bug, not an outage
    assert not is_unavailable(sa.exc.IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))
    assert not is_unavailable(ValidationError("bad params"))
    assert not is_unavailable(ValueError("x"))


# -- ln.track() / ln.finish() ----------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    import lamin_integrations as ln

    run = ln.track(params={"lr": 0.1})
    print("RUN", run.uid, os.environ["LAMIN_INTEGRATIONS_RUN_UID"] == run.uid)
    subprocess.run([sys.executable, sys.argv[1]], check=True)  # a child process tracks itself too
    ln.finish()
    print("DONE")
""")
CHILD = "import lamin_integrations as ln\nrun = ln.track()\nprint('CHILD', run.uid)\n"


def test_track_with_the_server_down_runs_on_and_sync_records_it(outage, tmp_path):
    server, url, _ = outage
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "child.py").write_text(CHILD)
    server.stop()
    proc = subprocess.run([sys.executable, str(tmp_path / "train.py"), str(tmp_path / "child.py")], cwd=tmp_path,
                          capture_output=True, text=True, env=python_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "DONE" in proc.stdout and "RUN" in proc.stdout and " True" in proc.stdout
    assert "the registry is unavailable" in proc.stderr and "lamin-integrations sync" in proc.stderr
    uid = proc.stdout.split("RUN ")[1].split()[0]
    child_uid = proc.stdout.split("CHILD ")[1].split()[0]

    down = cli("info")
    assert down.returncode == 1 and "pending journal events: 4" in down.stdout  # 2 starts, 2 ends
    assert cli("sync").returncode == 1  # still unavailable: one error line, nothing lost
    server.start()
    assert "pending journal events: 4" in cli("info").stdout
    journal = Journal(url).path
    saved = journal.read_bytes()
    assert "would write 4 journaled event(s)" in cli("sync", "--dry-run").stdout
    done = cli("sync")
    assert done.returncode == 0, done.stderr
    assert "wrote 4 journaled event(s) (2 run(s)); 0 already recorded" in done.stdout

    run = ln.Run.get(uid)
    assert run.status == "completed" and run.params == {"lr": 0.1} and run.finished_at > run.started_at
    assert run.transform.key == "train.py" and run.transform.source_code == SCRIPT and run._aux["journaled"]
    child = ln.Run.get(child_uid)
    assert child.initiated_by_run_id == run.id and child.status == "completed"
    assert "pending journal events: 0" in cli("info").stdout
    assert "wrote 0 journaled event(s)" in cli("sync").stdout
    # replaying the same lines again (a sync that died before forgetting them) adds nothing
    journal.write_bytes(saved)
    assert "wrote 0 journaled event(s) (0 run(s)); 4 already recorded" in cli("sync").stdout
    assert ln.Run.filter().count() == 2 and ln.Transform.filter().count() == 2


def test_track_of_code_without_a_file_and_a_plan_with_the_server_down_is_journaled(outage, tmp_path):
    """lamindb's track(key=, source_code=, entrypoint=, plan=) offline: the run goes on and is
    journaled (without its plan, which cannot be looked up), as a plain track() is."""
    server, _, _ = outage
    (tmp_path / "agent.py").write_text(textwrap.dedent("""
        import lamin_integrations as ln
        run = ln.track(key="agents/curate", kind="function", source_code="def curate(): ...", entrypoint="curate",
                       plan="plans/curate.md")
        print("RUN", run.uid, flush=True)
        ln.finish()
    """))
    server.stop()
    proc = subprocess.run([sys.executable, str(tmp_path / "agent.py")], cwd=tmp_path, capture_output=True, text=True,
                          env=python_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "recorded without its plan" in proc.stderr and "the registry is unavailable" in proc.stderr
    uid = proc.stdout.split("RUN ")[1].split()[0]
    server.start()
    assert cli("sync").returncode == 0
    run = ln.Run.get(uid)
    assert (run.transform.key, run.transform.kind, run.transform.source_code) == ("agents/curate", "function",
                                                                                  "def curate(): ...")
    assert run.status == "completed"


def waiting_job(folder: Path) -> Path:
    """`job.py` in `folder`: a tracked script that prints its run uid, waits for the file it
    returns to appear, then finishes its run and says so."""
    go = folder / "go"
    (folder / "job.py").write_text(textwrap.dedent(f"""
        import os, time
        import lamin_integrations as ln
        print("RUN", ln.track().uid, flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        ln.finish()
        print("AFTER FINISH", flush=True)
    """))
    return go


def test_finish_with_the_server_down_journals_the_end(outage, tmp_path):
    server, _, _ = outage
    go = waiting_job(tmp_path)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "job.py")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=python_env())
    try:
        uid = proc.stdout.readline().split()[1]  # the run is in the registry
        assert ln.Run.get(uid).status == "started"
        server.stop()
        go.touch()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    server.start()
    done = cli("sync")
    assert "wrote 1 journaled event(s) (1 run(s))" in done.stdout, done.stderr
    run = ln.Run.get(uid)
    assert run.status == "completed" and run.finished_at is not None


def _processes_of(postmaster: int) -> list[int]:
    """The postmaster and its backends (each in a process group of its own)."""
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_finish_gives_up_on_a_server_that_stops_answering_and_journals_the_end(outage, tmp_path):
    server, _, _ = outage
    go = waiting_job(tmp_path)
    env = {**python_env(), "LAMIN_INTEGRATIONS_END_TIMEOUT": "3"}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "job.py")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    cluster: list[int] = []
    try:
        uid = proc.stdout.readline().split()[1]
        cluster = _processes_of(server.postmaster_pid())
        for pid in cluster:  # hung: its connections stay open, its kernel acknowledges, nothing answers
            os.kill(pid, signal.SIGSTOP)
        go.touch()
        out, err = proc.communicate(timeout=60)  # was: ln.finish() waited forever, the run left started
    finally:
        for pid in cluster:
            os.kill(pid, signal.SIGCONT)
        proc.kill()
    assert proc.returncode == 0 and "AFTER FINISH" in out, err
    assert "did not answer within 3 s" in err
    done = cli("sync")
    assert "(1 run(s))" in done.stdout, done.stdout + done.stderr
    run = ln.Run.get(uid)
    assert run.status == "completed" and run.finished_at is not None


def test_processes_started_just_after_an_unanswered_one_journal_without_waiting(outage, tmp_path):
    server, _, _ = outage
    (tmp_path / "job.py").write_text("import lamin_integrations as ln\nprint('RUN', ln.track().uid)\nln.finish()\n")

    def job() -> tuple[str, str]:
        proc = subprocess.run([sys.executable, str(tmp_path / "job.py")], cwd=tmp_path, capture_output=True, text=True,
                              env=python_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()[1], proc.stderr

    server.stop()
    first, err = job()
    assert "the registry is unavailable" in err and "by another process" not in err  # it tried: it waited
    # a hung server costs each try the connect timeout (10 s): a workflow's next jobs do not try
    second, err = job()
    assert "by another process" in err and "journaled" in err
    server.start()
    done = cli("sync")
    assert "(2 run(s))" in done.stdout, done.stdout + done.stderr
    assert {ln.Run.get(first).status, ln.Run.get(second).status} == {"completed"}
    third, err = job()  # synced: the next process tries the registry again
    assert "unavailable" not in err and ln.Run.get(third).status == "completed"


# -- Snakemake -------------------------------------------------------------------------------------

WORKFLOW = textwrap.dedent("""
    rule all:
        input: "results/b.txt"
    rule slow:
        output: "results/a.txt"
        shell: "sleep 3; echo alpha > {output}"
    rule after:
        input: "results/a.txt"
        output: "results/b.txt"
        shell: "tr a-z A-Z < {input} > {output}"
""")


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the registry")


def test_snakemake_run_survives_a_server_outage_and_sync_completes_it(outage, tmp_path):
    pytest.importorskip("snakemake")
    server, url, _ = outage
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(WORKFLOW)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], cwd=wd,
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: ln.Run.filter(name="slow", status="started").first())
        from lamin_integrations.core import instance

        instance.current().dispose()  # our own pooled connections must not hold the server up
        server.stop()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert (wd / "results" / "b.txt").read_text() == "ALPHA\n"
    assert "not recording this workflow now, the registry is unavailable" in err
    journal = Journal(url)
    pending = journal.pending_count()
    assert pending > 0

    server.start()
    saved = journal.path.read_bytes()
    done = cli("sync")
    assert done.returncode == 0, done.stderr
    assert f"wrote {pending} journaled event(s) (1 run(s))" in done.stdout
    [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
    assert wf.status == "completed" and wf.transform.source_code == WORKFLOW
    runs = {r.name: r for r in ln.Run.filter(initiated_by_run=wf)}
    assert set(runs) == {"all", "slow", "after"}
    assert {r.status for r in runs.values()} == {"completed"}
    assert [a.key for a in runs["slow"].output_artifacts] == ["results/a.txt"]
    assert [a.key for a in runs["after"].output_artifacts] == ["results/b.txt"]
    assert [a.key for a in runs["after"].input_artifacts] == ["results/a.txt"]
    counts = (ln.Run.filter().count(), ln.Artifact.filter().count(), ln.Transform.filter().count())

    assert "wrote 0 journaled event(s)" in cli("sync").stdout
    journal.path.write_bytes(saved)  # the same events again, on a completed workflow: nothing to do
    assert f"{pending} already recorded" in cli("sync").stdout
    journal.path.write_bytes(saved)  # ...and on one left started: replayed in full, nothing duplicated
    wf.status = "started"
    wf.save()
    again = cli("sync")
    assert f"wrote {pending} journaled event(s) (1 run(s))" in again.stdout, again.stderr
    assert (ln.Run.filter().count(), ln.Artifact.filter().count(), ln.Transform.filter().count()) == counts
    assert ln.Run.get(wf.uid).status == "completed"
    assert {r.status for r in ln.Run.filter(initiated_by_run=wf)} == {"completed"}


def test_snakemake_records_its_journal_itself_when_the_server_is_back_before_the_end(outage, tmp_path):
    pytest.importorskip("snakemake")
    server, url, _ = outage
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(WORKFLOW.replace('shell: "tr', 'shell: "sleep 3; tr'))
    journal = Journal(url)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], cwd=wd,
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: ln.Run.filter(name="slow", status="started").first())
        from lamin_integrations.core import instance

        instance.current().dispose()
        server.stop()
        _wait_for(journal.path.exists)  # the recorder noticed the outage (slow finished)
        server.start()  # ...and the server is back while `after` still runs
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "the registry is back; the journaled workflow is recorded" in err
    assert journal.pending_count() == 0
    [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
    assert wf.status == "completed"
    assert {r.name: r.status for r in ln.Run.filter(initiated_by_run=wf)} == {
        "all": "completed", "slow": "completed", "after": "completed"}


def test_a_close_event_that_comes_after_the_registry_is_back_is_recorded_too(outage, tmp_path):
    """The logger's close and the recorder's own close may reach the recording thread in two
    batches: the second was left in the journal, `info` counting it as pending (it failed CI once)."""
    from lamin_integrations.snakemake.recorder import Config, Recorder

    server, url, storage = outage
    server.stop()
    recorder = Recorder(Config(db=url, storage=str(storage)), "W" * 16)
    recorder.put({"event": "workflow_started", "created": time.time(), "cwd": str(tmp_path), "workflow_id": "w1",
                  "snakefile": str(tmp_path / "Snakefile")})
    journal = Journal(url)
    _wait_for(journal.path.exists)
    server.start()
    recorder.put({"event": "close", "created": time.time()})  # the logger's: the registry is back, the journal is written
    _wait_for(lambda: journal.pending_count() == 0)
    assert recorder.close(timeout=60)  # the recorder's own close, in a batch of its own
    assert journal.pending_count() == 0
    assert ln.Run.get("W" * 16).status == "completed"


def test_a_workflow_whose_recorder_still_runs_waits_and_one_whose_recorder_died_is_closed(sqlite_registry):
    journal = Journal.of()
    started = {"event": "workflow_started", "created": time.time(), "cwd": "/nowhere", "workflow_id": "w1",
               "snakefile": "/nowhere/Snakefile"}
    journal.append("snakemake", "W" * 16, [{"config": {}, "event": started}])  # this process: alive
    result = sync()
    assert (result.waiting, result.replayed, result.errors) == (1, 0, [])
    lines = journal.path.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999')  # gone
    journal.path.write_text(lines)
    result = sync()
    assert (result.waiting, result.replayed, result.runs, result.errors) == (0, 1, 1, [])
    wf = ln.Run.get("W" * 16)
    assert wf.status == "aborted" and "without closing" in wf._aux["reason"]


def test_a_sqlite_registry_whose_folder_cannot_be_made_is_unavailable_not_fatal(tmp_path):
    """`--logger-lamin-db` pointing below a file (or an unmounted / read-only disk): the
    workflow and the scripts calling ln.track() in its jobs run on, journaled; once the path
    works, `sync` records the workflow with the script run under its job."""
    pytest.importorskip("snakemake")
    wd = tmp_path / "wf"
    (wd / "scripts").mkdir(parents=True)
    (wd / "scripts" / "tracked.py").write_text("import lamin_integrations as ln\nln.track(params={'x': 1})\n"
                                               "open(snakemake.output[0], 'w').write('done')\nln.finish()\n")
    (wd / "Snakefile").write_text('rule all:\n    output: "out.txt"\n    script: "scripts/tracked.py"\n')
    blocker = tmp_path / "notadir"
    blocker.write_text("a file where the registry's folder should be")
    url = f"sqlite:///{blocker / 'lineage.db'}"
    env = python_env(LAMIN_INTEGRATIONS_HOME=str(tmp_path / "home"),
                     PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("LAMIN_INTEGRATIONS_DB", None)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin",
                           "--logger-lamin-db", url], cwd=wd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (wd / "out.txt").read_text() == "done"
    assert "its folder" in proc.stderr and "cannot be created" in proc.stderr
    assert "Traceback" not in proc.stderr

    blocker.unlink()
    done = cli("sync", env={**env, "LAMIN_INTEGRATIONS_DB": url})
    assert done.returncode == 0, done.stderr
    ln.connect(url, str(tmp_path / "storage"))
    [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
    [job] = ln.Run.filter(initiated_by_run=wf).to_list()
    [script] = ln.Run.filter(initiated_by_run=job).to_list()  # found by the job name it journaled
    assert (wf.status, job.status, script.status) == ("completed", "completed", "completed")
    assert script.transform.key == "tracked.py" and script.params == {"x": 1}
    assert [a.key for a in job.output_artifacts] == ["out.txt"]


def test_snakemake_journals_soon_when_the_sqlite_registry_stays_locked(sqlite_registry, tmp_path):
    """A registry locked by another process for long (a stuck writer, a stale lock on a network
    file system): the recorder waits a quarter of the drain time for each write, then journals,
    so Snakemake does not wait out its drain time at the end. `sync` records it afterwards."""
    pytest.importorskip("snakemake")
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(WORKFLOW.replace("sleep 3; ", ""))
    sqlite_registry.dispose()
    lock = sqlite3.connect(tmp_path / "lineage.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin",
                               "--logger-lamin-drain-seconds", "12"], cwd=wd, env=python_env(),
                              capture_output=True, text=True, timeout=300)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the registry is unavailable" in proc.stderr and "locked" in proc.stderr, proc.stderr[-3000:]
    assert "still recording after" not in proc.stderr, proc.stderr[-3000:]
    assert ln.Run.filter(reference_type="snakemake_id").count() == 0
    done = cli("sync")
    assert done.returncode == 0, done.stderr
    [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
    assert wf.status == "completed"
    assert {r.name: r.status for r in ln.Run.filter(initiated_by_run=wf)} == {
        "all": "completed", "slow": "completed", "after": "completed"}


def _running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_recorder_still_busy_after_the_drain_time_lets_go_of_snakemakes_output(sqlite_registry, tmp_path):
    """Snakemake waits its drain time for the recorder, then exits; the recorder finishes in the
    background. A caller that reads Snakemake's output to its end (`| tee`, CI) must not wait for
    it too: the recorder moves its output to a file when the drain time is over."""
    pytest.importorskip("snakemake")
    import re

    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(WORKFLOW.replace("sleep 3; ", ""))
    sqlite_registry.dispose()
    lock = sqlite3.connect(tmp_path / "lineage.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the recorder's last try at the end waits for it
    try:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin",
                                 "--logger-lamin-drain-seconds", "0"], cwd=wd, env=python_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=120)  # both pipes at their end
        found = re.search(r"finishing in the background \(pid (\d+), messages in (.+)\)", err)
        assert found, err[-3000:]
        pid, log = int(found[1]), Path(found[2])
        assert _running(pid), "the pipes ended only when the recorder did"
        _wait_for(lambda: not _running(pid))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert proc.returncode == 0
    assert log.exists() and log.parent.parent == Path(os.environ["LAMIN_INTEGRATIONS_HOME"])
    assert cli("sync").returncode == 0
    [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
    assert wf.status == "completed"
