"""ln.track() / ln.finish() / @ln.step() in real scripts run as subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import python_env

import lamin_integrations as ln

SCRIPT = textwrap.dedent("""
    import sys, time
    import lamin_integrations as ln
    ln.track(params={"mode": sys.argv[1]})
    print("working on", sys.argv[1], flush=True)
    if sys.argv[1] == "raise":
        raise ValueError("boom")
    if sys.argv[1] == "exit3":
        sys.exit(3)
    if sys.argv[1] == "builtin_exit":
        exit(5)
    if sys.argv[1] == "quit_message":
        quit("fatal: no input")
    if sys.argv[1] == "sleep":
        time.sleep(60)
    if sys.argv[1] == "finish":
        ln.finish()
""")


def run_script(path: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=python_env(),
                          cwd=path.parent, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    return path


def only_run(mode: str) -> ln.Run:
    return ln.Run.get(params__mode=mode)


def test_finish_records_status_report_environment_and_context(registry, script):
    proc = run_script(script, "finish", "--flag", check=True)
    run = only_run("finish")
    assert run.status == "completed" and run.finished_at >= run.started_at
    assert run.transform.key == "job.py" and run.transform.kind == "script"
    assert run.transform.source_code == script.read_text()
    assert run.cli_args == "finish --flag" and run.pid and run.host
    assert "working on finish" in run.report.path.read_text()
    assert "working on finish" in proc.stdout, "the program's own output is untouched"
    requirements = run.environment.path.read_text()
    assert "SQLAlchemy==" in requirements and "pluggy==" in requirements
    # the report and the environment are lamindb's hidden artifacts: left out of queries not about them
    hidden = {run.report, run.environment}
    assert hidden.isdisjoint(ln.Artifact.filter().to_list()) and ln.Artifact.filter().count() == 0
    assert set(ln.Artifact.filter(kind="__lamindb_run__")) == hidden and ln.Artifact.get(run.report.uid) == run.report
    assert set(ln.Artifact.filter(hash=run.report.hash)) == {run.report}
    run_script(script, "finish", check=True)
    second = ln.Run.filter(params__mode="finish").order_by("-id").first()
    assert second.environment == run.environment, "identical environments share one artifact"
    assert second.transform == run.transform, "unchanged source reuses the transform"
    assert run.environment not in set(run.query_output_artifacts()), "logs and environments are not outputs"


def test_environment_cache_survives_outputs_written_beside_the_script(registry, script):
    """The requirements scan (~100-300 ms) is cached; a pipeline writing files next to its script
    (which changes that folder, sys.path[0]) must not invalidate the cache."""
    import os

    cache = Path(os.environ["LAMIN_INTEGRATIONS_HOME"]) / "cache" / "environments"
    run_script(script, "finish", check=True)
    (script.parent / "output.csv").write_text("a,b\n")
    run_script(script, "finish", check=True)
    assert len(list(cache.glob("*.txt"))) == 1
    first, second = ln.Run.filter(params__mode="finish").order_by("id")
    assert first.environment == second.environment


def test_normal_exit_without_finish_completes(registry, script):
    assert run_script(script, "nofinish").returncode == 0
    run = only_run("nofinish")
    assert run.status == "completed" and run.finished_at is not None and run.report is not None


def test_uncaught_exception_marks_errored_with_traceback(registry, script):
    proc = run_script(script, "raise")
    assert proc.returncode == 1 and "ValueError: boom" in proc.stderr
    run = only_run("raise")
    assert run.status == "errored" and run.finished_at is not None
    report = run.report.path.read_text()
    assert "Traceback" in report and "ValueError: boom" in report


def test_sys_exit_code_marks_errored(registry, script):
    assert run_script(script, "exit3").returncode == 3
    run = only_run("exit3")
    assert run.status == "errored" and "exit code 3" in run._aux["end_reason"]


@pytest.mark.parametrize("mode,code", [("builtin_exit", 5), ("quit_message", 1)])
def test_the_builtin_exit_and_quit_mark_errored(registry, script, mode, code):
    assert run_script(script, mode).returncode == code
    assert only_run(mode).status == "errored" and f"exit code {code}" in only_run(mode)._aux["end_reason"]


FORKS = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    import lamin_integrations as ln

    def double(x):
        return 2 * x

    if __name__ == "__main__":
        mp.set_start_method("fork")
        run = ln.track()
        with mp.Pool(2) as pool:  # leaving the block sends SIGTERM to the workers
            print(pool.map(double, range(4)), flush=True)
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a forked child exiting runs the inherited handlers
        os.waitpid(child, 0)
        time.sleep(0.3)
        print("mid-run:", ln.Run.get(run.uid).status, ln.Run.get(run.uid).finished_at, flush=True)
        sys.exit(4)
""")


def test_forked_children_do_not_end_their_parents_run(registry, tmp_path):
    path = tmp_path / "forks.py"
    path.write_text(FORKS)
    proc = run_script(path)
    assert proc.returncode == 4, proc.stderr
    assert "mid-run: started None" in proc.stdout, proc.stdout + proc.stderr
    run = ln.Run.get(transform__key="forks.py")
    assert run.status == "errored" and run._aux["end_reason"] == "exit code 4"


def test_an_invalid_value_set_on_the_run_does_not_leave_it_started(registry, tmp_path):
    path = tmp_path / "badvalue.py"
    path.write_text("import lamin_integrations as ln\nln.track(params={'lr': 0.1})\n"
                    "ln.context.run.params = {'lr': 0.1, 'cutoff': float('nan')}\nprint('done')\nln.finish()\n")
    proc = run_script(path)
    assert proc.returncode == 0
    assert "the changes to run" in proc.stderr and "cutoff" in proc.stderr
    run = ln.Run.get(transform__key="badvalue.py")
    assert run.status == "completed" and run.finished_at is not None
    assert run.params == {"lr": 0.1} and "cutoff" in run._aux["unsaved_changes"]
    assert "done" in run.report.path.read_text()


def _wait_for_started(mode: str, timeout: float = 60) -> ln.Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ln.Run.filter(params__mode=mode, status="started").one_or_none()
        if run is not None:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {mode} was never recorded as started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_mark_aborted(registry, script, sig):
    proc = subprocess.Popen([sys.executable, str(script), "sleep"], env=python_env(), cwd=script.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_started("sleep")
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    run = only_run("sleep")
    assert run.status == "aborted" and run.finished_at is not None
    assert proc.returncode in ((-signal.SIGTERM,) if sig == signal.SIGTERM else (1, 130, -signal.SIGINT))


def test_child_scripts_become_child_runs(registry, tmp_path):
    child = tmp_path / "child.py"
    child.write_text("import sys, lamin_integrations as ln\nln.track(params={'i': int(sys.argv[1])})\nln.finish()\n")
    parent = tmp_path / "parent.py"
    parent.write_text(textwrap.dedent(f"""
        import subprocess, sys
        import lamin_integrations as ln
        ln.track()
        for i in (1, 2):
            subprocess.run([sys.executable, {str(child)!r}, str(i)], check=True)
        ln.finish()
        subprocess.run([sys.executable, {str(child)!r}, "3"], check=True)  # after finish: not a child
    """))
    run_script(parent, check=True)
    top = ln.Run.get(transform__key="parent.py")
    children = ln.Run.filter(initiated_by_run=top)
    assert sorted(r.params["i"] for r in children) == [1, 2]
    assert all(r.root_run == top for r in children)
    assert ln.Run.get(params__i=3).initiated_by_run is None


def test_a_second_track_in_one_script_starts_beside_the_first_not_under_it(registry, tmp_path):
    """As in lamindb: tracking again starts a new run of the script; the first one ends
    (completed), and both have the parent the process was started with."""
    script = tmp_path / "twice.py"
    script.write_text("import lamin_integrations as ln\nln.track(params={'n': 1})\nln.track(params={'n': 2})\nln.finish()\n")
    launcher = ln.Run(ln.Transform(key="launcher", kind="pipeline").save()).save()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=python_env(LAMIN_INTEGRATIONS_RUN_UID=launcher.uid))
    assert proc.returncode == 0, proc.stderr
    first, second = ln.Run.get(params__n=1), ln.Run.get(params__n=2)
    assert first.status == second.status == "completed"
    assert first.initiated_by_run == launcher and second.initiated_by_run == launcher


def test_an_artifacts_run_is_the_tracked_run_itself(registry, tmp_path):
    """As in lamindb: after `ln.finish()`, `artifact.run` shows the run completed (it was a
    copy read before, still `started`)."""
    script = tmp_path / "made.py"
    script.write_text(textwrap.dedent("""
        import lamin_integrations as ln
        ln.track()
        open("made.txt", "w").write("content made by this script\\n")
        artifact = ln.Artifact("made.txt", key="made.txt").save()
        assert artifact.run is ln.context.run
        ln.finish()
        print("status:", artifact.run.status)
    """))
    assert "status: completed" in run_script(script, check=True).stdout


def test_lamindb_environment_variable_is_honoured(registry, tmp_path):
    t = ln.Transform(key="launcher", kind="pipeline").save()
    launcher = ln.Run(t, status="started").save()
    child = tmp_path / "c.py"
    child.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
    proc = subprocess.run([sys.executable, str(child)], env=python_env(LAMIN_INITIATED_BY_RUN_UID=launcher.uid),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ln.Run.get(transform__key="c.py").initiated_by_run == launcher


STEPS = textwrap.dedent("""
    import asyncio, threading
    import lamin_integrations as ln

    @ln.step()
    def leaf(x, scale=2):
        return x * scale

    @ln.step()
    def branch(n):
        return [leaf(i) for i in range(n)]

    @ln.step()
    async def fetch(i):
        await asyncio.sleep(0.01)
        return leaf(i)

    @ln.step()
    async def gather():
        return await asyncio.gather(fetch(3), fetch(4))

    @ln.step()
    def fails():
        raise RuntimeError("step failed")

    ln.track()
    branch(2)
    asyncio.run(gather())
    t = threading.Thread(target=leaf, args=(10,))
    t.start(); t.join()
    try:
        fails()
    except RuntimeError:
        pass
    ln.finish()
""")


def test_steps_chain_in_threads_and_asyncio(registry, tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(STEPS)
    run_script(script, check=True)
    top = ln.Run.get(transform__key="steps.py", entrypoint=None)
    branch = ln.Run.get(entrypoint="branch")
    assert branch.initiated_by_run == top and branch.params == {"n": 2} and branch.status == "completed"
    leaves_of_branch = ln.Run.filter(entrypoint="leaf", initiated_by_run=branch)
    assert sorted(r.params["x"] for r in leaves_of_branch) == [0, 1]
    assert all(r.params["scale"] == 2 for r in leaves_of_branch)
    gather = ln.Run.get(entrypoint="gather")
    fetches = ln.Run.filter(entrypoint="fetch")
    assert {f.initiated_by_run for f in fetches} == {gather}, "each asyncio task sees its parent step"
    assert {r.initiated_by_run for r in ln.Run.filter(entrypoint="leaf", params__x__in=[3, 4])} == set(fetches)
    threaded = ln.Run.get(entrypoint="leaf", params__x=10)
    assert threaded.initiated_by_run == top, "a new thread falls back to the global run"
    failed = ln.Run.get(entrypoint="fails")
    assert failed.status == "errored" and "step failed" in failed._aux["end_reason"]
    assert top.status == "completed"
    # as in lamindb: the steps' transform is their file's, the script's own (was one per function, `steps.py:leaf`)
    assert {r.transform for r in ln.Run.filter()} == {top.transform} and top.transform.kind == "script"
    assert ln.Run.filter(transform__key="steps.py").count() == ln.Run.filter().count()


def test_edited_script_gets_a_new_version_and_uid_keeps_family(registry, tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
    run_script(script, check=True)
    v1 = ln.Transform.get(key="analysis.py")
    script.write_text("import lamin_integrations as ln\nln.track()\nprint('changed')\nln.finish()\n")
    run_script(script, check=True)
    v2 = ln.Transform.get(key="analysis.py")
    v1.refresh_from_db()
    assert v2.uid[:12] == v1.uid[:12] and v2.uid != v1.uid and v2.is_latest and not v1.is_latest
    renamed = tmp_path / "renamed.py"
    renamed.write_text(f"import lamin_integrations as ln\nln.track({v1.uid[:12]!r})\nln.finish()\n")
    run_script(renamed, check=True)
    v3 = ln.Transform.get(key="renamed.py")
    assert v3.uid[:12] == v1.uid[:12], "the 12-character uid keeps the family across a rename"
    pinned = tmp_path / "pinned.py"
    pinned.write_text(f"import lamin_integrations as ln\nln.track({v1.uid!r})\n")
    proc = run_script(pinned)
    assert proc.returncode != 0 and "source of" in proc.stderr and v1.uid[:12] in proc.stderr
    assert "UpdateContext" in proc.stderr  # lamindb's name for it
    early = tmp_path / "early.py"
    early.write_text("import lamin_integrations as ln\ntry:\n    ln.finish()\nexcept ln.errors.TrackNotCalled as e:\n"
                     "    print('caught', isinstance(e, ln.errors.ValidationError))\n")
    assert run_script(early, check=True).stdout.strip() == "caught True"


def test_new_run_false_restarts_the_latest_run(registry, tmp_path):
    script = tmp_path / "nb.py"
    script.write_text("import lamin_integrations as ln\nrun = ln.track(new_run=False)\nprint(run.uid)\nln.finish()\n")
    first = run_script(script, check=True).stdout.split()[-1]
    second = run_script(script, check=True).stdout.split()[-1]
    assert first == second and ln.Run.filter(transform__key="nb.py").count() == 1


def test_params_that_are_not_json_are_skipped_with_a_warning(registry, tmp_path):
    # as lamindb does: the analysis goes on, the warning names what was left out and why
    script = tmp_path / "bad.py"
    script.write_text("import lamin_integrations as ln\n"
                      "ln.track(params={'ok': 1, 'when': object(), 'nested': {'x': {1, 2}}, 'bad\\x00key': 2})\nln.finish()\n")
    proc = run_script(script)
    assert proc.returncode == 0, proc.stderr
    assert "skipping param 'when'" in proc.stderr and "params['when'] is a object" in proc.stderr
    assert "skipping param 'nested'" in proc.stderr and "params['nested']['x'] is a set" in proc.stderr
    assert "NUL" in proc.stderr
    assert ln.Run.get(transform__key="bad.py").params == {"ok": 1}


def test_params_are_stored_as_lamindb_stores_them(registry, tmp_path):
    # records by uid, paths as text, numpy scalars and dates as plain values, secrets redacted
    reference = ln.Transform(key="reference.py", kind="script").save()
    script = tmp_path / "params.py"
    script.write_text(f"""
import datetime, pathlib
import numpy as np
import lamin_integrations as ln
reference = ln.Transform.get({reference.uid!r})
ln.track(params={{"n": np.int64(3), "x": np.float32(0.5), "out": pathlib.Path("results/a.csv"),
                  "day": datetime.date(2024, 3, 4), "model": reference, "api_key": "sk-123",
                  "nested": {{"password": "hunter2", "tokenizer": "bert"}}, "max_tokens": 5}})
ln.finish()
""")
    run_script(script, "--password", "hunter2", "--token=abc", "--max-tokens", "5", check=True)
    run = ln.Run.get(transform__key="params.py")
    assert run.params == {"n": 3, "x": 0.5, "out": "results/a.csv", "day": "2024-03-04",
                          "model": f"Transform[{reference.uid}]", "api_key": "***",
                          "nested": {"password": "***", "tokenizer": "bert"}, "max_tokens": 5}
    assert run.cli_args == "--password *** --token=*** --max-tokens 5"


def test_project_labels_everything_created_during_the_run(registry, tmp_path):
    ln.Project(name="atlas").save()
    script = tmp_path / "proj.py"
    out = tmp_path / "o.txt"
    out.write_text("o")
    after = tmp_path / "after.txt"
    after.write_text("after")
    script.write_text(f"import lamin_integrations as ln\nln.track(project='atlas')\nln.Artifact({str(out)!r}, key='o.txt').save()\n"
                      f"ln.finish()\nln.Artifact({str(after)!r}, key='after.txt').save()\n")
    run_script(script, check=True)
    project = ln.Project.get(name="atlas")
    assert [r.transform.key for r in project.runs] == ["proj.py"]
    assert [a.key for a in project.artifacts] == ["o.txt"]  # not what the script saved after finish()
    assert [t.key for t in project.transforms] == ["proj.py"]
    bad = tmp_path / "noproj.py"
    bad.write_text("import lamin_integrations as ln\nln.track(project='nope')\n")
    proc = run_script(bad)
    assert proc.returncode != 0 and "ln.Project(name='nope').save()" in proc.stderr


def test_git_commit_remote_and_dirty_tree(registry, tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / "run.py"
    script.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init")
    git("remote", "add", "origin", "git@github.com:lab/pipeline.git")
    commit = git("rev-parse", "HEAD")
    run_script(script, check=True)
    run = ln.Run.get(transform__key="scripts/run.py")
    assert run.transform.reference == f"https://github.com/lab/pipeline/blob/{commit}/scripts/run.py"
    assert run.transform.reference_type == "url"
    assert run._aux["git"] == {"commit": commit, "remote": "git@github.com:lab/pipeline.git", "dirty": False}
    (repo / "scripts" / "run.py").write_text(script.read_text() + "# edit\n")
    run_script(script, check=True)
    assert ln.Run.filter(transform__key="scripts/run.py").order_by("-id").first()._aux["git"]["dirty"] is True


def test_reap_marks_runs_whose_process_is_gone(registry, tmp_path):
    import datetime as dt
    import socket

    from lamin_integrations.core.reap import reap
    from lamin_integrations.core.schema import now

    t = ln.Transform(key="crashed.py", kind="script").save()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    local = ln.Run(t, status="started", host=socket.gethostname(), pid=dead.pid).save()
    alive = ln.Run(t, status="started", host=socket.gethostname(), pid=subprocess.os.getpid()).save()
    remote_stale = ln.Run(t, status="started", host="node-7", pid=1234).save()
    remote_stale.heartbeat_at = now() - dt.timedelta(hours=1)
    remote_stale.save()
    remote_fresh = ln.Run(t, status="started", host="node-8", pid=1234).save()
    remote_fresh.heartbeat_at = now()
    remote_fresh.save()
    cli = str(Path(sys.executable).with_name("lamin-integrations"))
    dry = subprocess.run([cli, "runs", "reap", "--dry-run"], capture_output=True, text=True, env=python_env(), timeout=60)
    assert dry.returncode == 0 and local.uid in dry.stdout and remote_stale.uid in dry.stdout and "would mark" in dry.stdout
    assert ln.Run.get(local.uid).status == "started"
    changed = {r.uid for r, _ in reap()}
    assert changed == {local.uid, remote_stale.uid}
    assert ln.Run.get(local.uid).status == "aborted" and "is gone" in ln.Run.get(local.uid)._aux["end_reason"]
    assert ln.Run.get(alive.uid).status == "started" and ln.Run.get(remote_fresh.uid).status == "started"


def test_flow_decorator_records_each_call_as_a_run_of_its_file(registry, tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text("""
import lamin_integrations as ln

@ln.step()
def square(x: int) -> int:
    return x * x

@ln.flow()
def main(n: int = 3, label: str = "demo") -> int:
    print("working on", label)
    return sum(square(i) for i in range(n))

@ln.flow()
def broken():
    raise RuntimeError("boom")

print(main(3), main(n=2, label="second"))
try:
    broken()
except RuntimeError:
    print("caught")
ln.track()
try:
    main(1)
except ln.errors.ValidationError as e:
    print("refused:", e)
ln.finish()
""")
    proc = run_script(script, check=True)
    assert "5 1\ncaught\nrefused: @ln.flow main: a run is tracked already" in proc.stdout
    flows = list(ln.Run.filter(transform__key="pipeline.py", entrypoint__in=["main", "broken"]).order_by("id"))
    assert [(r.entrypoint, r.status, r.params) for r in flows] == [
        ("main", "completed", {"n": 3, "label": "demo"}), ("main", "completed", {"n": 2, "label": "second"}),
        ("broken", "errored", {})]
    assert all(r.initiated_by_run is None for r in flows)  # each call a top-level run, not a child of the last
    assert [r.initiated_runs.count() for r in flows] == [3, 2, 0]  # its steps
    assert "working on second" in flows[1].report.path.read_text()
    assert flows[2]._aux["end_reason"] == "RuntimeError: boom"
    assert flows[0].transform.kind == "script" and flows[0].transform.source_code == script.read_text()


SAVE_BIG = textwrap.dedent("""
    import sys
    import lamin_integrations as ln
    ln.track()
    ln.Artifact(sys.argv[1], key="big.bin").save()
    ln.finish()
""")


def test_sigterm_while_a_file_is_copied_into_storage_leaves_no_partial_copy(registry, tmp_path):
    """SLURM and Kubernetes stop jobs with SIGTERM; the run is aborted and the partial copy
    in storage removed (the default action kills the process before any `except` runs)."""
    import glob
    import signal

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(768 * 1024 * 1024)  # sparse: quick to make, still copied byte by byte
    script = tmp_path / "save_big.py"
    script.write_text(SAVE_BIG)
    parts = f"{registry.storage_root}/.lamindb/*.part-*"
    # the copy of big.bin, not that of the environment file that ln.track() stores first
    # (a signal then comes before the run and its handler exist, and kills as it would without us)
    big_part = f"{registry.storage_root}/.lamindb/*.bin.part-*"
    proc = subprocess.Popen([sys.executable, str(script), str(big)], env=python_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not glob.glob(big_part) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    seen = bool(glob.glob(big_part))
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    if not seen:
        pytest.skip("the copy finished before SIGTERM could be sent during it")
    assert proc.returncode == -signal.SIGTERM
    assert glob.glob(parts) == []
    assert ln.Run.get(transform__key="save_big.py").status == "aborted"


def test_runs_starting_together_in_a_new_environment_all_record_it(registry, tmp_path):
    """An array job right after a pip install: every process builds the environment file at
    once; none may replace it under another that is storing it."""
    from tests.conftest import race

    race(tmp_path, "import lamin_integrations as ln\nln.track(params={'i': int(sys.argv[1])})\nln.finish()\n",
         [[str(i)] for i in range(6)])
    runs = ln.Run.filter(params__i__isnull=False).to_list()
    assert len(runs) == 6 and all(r.status == "completed" for r in runs)
    assert {r.environment_id for r in runs} != {None} and None not in {r.environment_id for r in runs}
    assert len({r.environment_id for r in runs}) == 1


def test_files_written_into_a_pythonpath_folder_keep_the_environment_cache(registry, tmp_path):
    """The cache key is what is installed (dist-info names), not folder times: a pipeline
    writing into a PYTHONPATH folder on each run does not rescan every distribution."""
    import os

    lib = tmp_path / "lib"
    lib.mkdir()
    script = tmp_path / "env_job.py"
    script.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
    cache = Path(os.environ["LAMIN_INTEGRATIONS_HOME"]) / "cache" / "environments"
    for i in range(3):
        (lib / f"module_{i}.py").write_text("x = 1\n")
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=python_env(PYTHONPATH=str(lib)))
        assert proc.returncode == 0, proc.stderr
    assert len(list(cache.glob("*.txt"))) == 1
    assert len({r.environment_id for r in ln.Run.filter(transform__key="env_job.py")}) == 1
