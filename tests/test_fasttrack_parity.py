"""core/fasttrack.py against the full path: the same script must behave the same on both.

Each test runs a real script three times against a temp registry: a warm-up run (creates the
transform, user, storage, environment), a run forced onto the full path (SQLAlchemy imported
before ln.track(), as tests/test_fasttrack.py does) and a run that takes the fast path. The
script reports what it observed on stderr; the test asserts both paths agree.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import python_env

HEADER = textwrap.dedent("""
    import json, os, sys
    if os.environ.get("FORCE_FULL_PATH"):
        import sqlalchemy  # loaded already: the full path is taken
    import lamin_integrations as ln
    def report(**kw):
        print("REPORT " + json.dumps(kw), file=sys.__stderr__, flush=True)
""")


def _run(script: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120,
                          env=python_env(**env), cwd=cwd or script.parent)


def _reports(proc: subprocess.CompletedProcess) -> dict:
    out: dict = {}
    for line in proc.stderr.splitlines():
        if line.startswith("REPORT "):
            out.update(json.loads(line[len("REPORT "):]))
    return out


def _three_runs(tmp_path: Path, body: str, *args: str, cwd: Path | None = None, **env: str):
    script = tmp_path / "job.py"
    script.write_text(HEADER + textwrap.dedent(body))
    warm = _run(script, *args, cwd=cwd, TAG="warm", **env)
    full = _run(script, *args, cwd=cwd, TAG="full", FORCE_FULL_PATH="1", **env)
    fast = _run(script, *args, cwd=cwd, TAG="fast", **env)
    return script, warm, full, fast


def _rows(db: Path, sql: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


@pytest.fixture
def home_registry(tmp_path, monkeypatch) -> Path:
    """The default embedded registry under LAMIN_INTEGRATIONS_HOME (absolute), as users have it."""
    home = tmp_path / "home"
    monkeypatch.setenv("LAMIN_INTEGRATIONS_HOME", str(home))
    return home / "lineage.db"


# -- 1. Ctrl-C: the process exit status differs ------------------------------------------------


def test_ctrl_c_exit_status_is_the_same_on_both_paths(tmp_path, home_registry):
    body = """
        import signal, time
        ln.track(params={"tag": os.environ["TAG"]})
        report(fast="sqlalchemy" not in sys.modules)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
        time.sleep(10)
    """
    _, _, full, fast = _three_runs(tmp_path, body)
    assert _reports(fast)["fast"] and not _reports(full)["fast"]
    statuses = {r["params"]: r["_status_code"] for r in _rows(home_registry, "SELECT params, _status_code FROM run")}
    assert statuses['{"tag": "full"}'] == statuses['{"tag": "fast"}'] == 2  # aborted on both: fine
    # Was: full path 1, fast path -2. Plain Python dies of SIGINT (-2, 130 in a shell).
    assert fast.returncode == full.returncode == -2, (full.returncode, fast.returncode)


# -- 2. run.params: the caller's dict on the full path, a JSON round trip on the fast path ---------


def test_params_read_back_as_passed(tmp_path, home_registry):
    body = """
        p = {"tag": os.environ["TAG"], "shape": (3, 4)}
        run = ln.track(params=p)
        report(fast="sqlalchemy" not in sys.modules)
        report(equal=run.params == p, shape_type=type(run.params["shape"]).__name__)
        ln.finish()
    """
    _, _, full, fast = _three_runs(tmp_path, body)
    assert full.returncode == fast.returncode == 0, fast.stderr
    assert _reports(fast)["fast"]
    f, q = _reports(full), _reports(fast)
    # Was (before the fix): full {'equal': True, 'shape_type': 'tuple'}, fast {'equal': False, 'shape_type': 'list'}.
    assert (q["equal"], q["shape_type"]) == (f["equal"], f["shape_type"])


def test_params_mutated_through_the_passed_dict_are_recorded_alike(tmp_path, home_registry):
    body = """
        p = {"tag": os.environ["TAG"]}
        run = ln.track(params=p)
        report(fast="sqlalchemy" not in sys.modules)
        run.params  # read once (lamindb users do: ln.context.run.params)
        p["best_epoch"] = 7
        ln.finish()
    """
    _, _, full, fast = _three_runs(tmp_path, body)
    assert full.returncode == fast.returncode == 0, fast.stderr
    assert _reports(fast)["fast"]
    params = [json.loads(r["params"]) for r in _rows(home_registry, "SELECT params FROM run ORDER BY id")]
    by_tag = {p["tag"]: p for p in params}
    # Was (before the fix): full {"tag": "full", "best_epoch": 7}, fast {"tag": "fast"}.
    assert ("best_epoch" in by_tag["full"]) == ("best_epoch" in by_tag["fast"]), by_tag


# -- 3. a run passed to a step is recorded as a Run, loaded or not -------------------------------


def test_a_step_given_the_run_records_it_as_run(tmp_path, home_registry):
    body = """
        run = ln.track(params={"tag": os.environ["TAG"]})
        report(fast="sqlalchemy" not in sys.modules)
        @ln.step()
        def evaluate(run, x):
            return x
        evaluate(run, 1)
        report(step_params=ln.Run.filter(initiated_by_run_id=run.id).one().params)
        ln.finish()
    """
    _, _, full, fast = _three_runs(tmp_path, body)
    assert _reports(fast)["fast"]
    # Was (before the fix): full {'run': 'Run[<uid>]', ...}, fast {'run': 'LiteRun[<uid>]', ...} (stored in the registry).
    assert _reports(full)["step_params"]["run"].startswith("Run[")
    assert _reports(fast)["step_params"]["run"].startswith("Run["), _reports(fast)


# -- 4. the registry is located again at first use, not at ln.track() ---------------------------


@pytest.mark.parametrize("relative", ["db_url", "home"])
def test_relative_registry_then_chdir_still_finishes_the_run(tmp_path, monkeypatch, relative):
    """LAMIN_INTEGRATIONS_DB=sqlite:///lineage.db (or a relative LAMIN_INTEGRATIONS_HOME) and a
    script that changes directory before ln.finish()."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    if relative == "db_url":
        monkeypatch.setenv("LAMIN_INTEGRATIONS_HOME", str(tmp_path / "home"))
        env = {"LAMIN_INTEGRATIONS_DB": "sqlite:///lineage.db"}
        db = work / "lineage.db"
    else:
        env = {"LAMIN_INTEGRATIONS_HOME": "home"}
        db = work / "home" / "lineage.db"
    body = """
        run = ln.track(params={"tag": os.environ["TAG"]})
        report(fast="sqlalchemy" not in sys.modules)
        print("hello")
        os.chdir("sub")
        ln.finish()
    """
    _, warm, full, fast = _three_runs(work, body, cwd=work, **env)
    assert warm.returncode == 0 and _reports(fast)["fast"]
    statuses = {json.loads(r["params"])["tag"]: r["_status_code"] for r in _rows(db, "SELECT params, _status_code FROM run")}
    assert full.returncode == 0 and statuses["full"] == 0, full.stderr
    # Was (before the fix): fast exits 1 with ObjectDoesNotExist from ln.finish(), its run stays "started"
    # (-1), and an empty registry is created in sub/.
    assert fast.returncode == 0, fast.stderr[-600:]
    assert statuses["fast"] == 0
    assert not (work / "sub" / "lineage.db").exists() and not (work / "sub" / "home").exists()


def test_connect_after_track_keeps_the_tracked_run(tmp_path, home_registry):
    other = tmp_path / "other"
    other.mkdir()
    seed = other / "seed.py"
    seed.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
    for _ in range(4):  # another registry with a few runs of its own
        proc = _run(seed, LAMIN_INTEGRATIONS_HOME=str(other / "home"))
        assert proc.returncode == 0, proc.stderr
    body = f"""
        run = ln.track(params={{"tag": os.environ["TAG"]}})
        uid = run.uid
        report(fast="sqlalchemy" not in sys.modules)
        ln.connect({f"sqlite:///{other / 'home' / 'lineage.db'}"!r}, {str(other / 'home' / 'storage')!r})
        params = run.params  # first real use after connect()
        report(same_uid=run.uid == uid, params=params)
    """
    _, _, full, fast = _three_runs(tmp_path, body)
    assert _reports(fast)["fast"]
    assert _reports(full)["same_uid"] and _reports(full)["params"] == {"tag": "full"}
    # Was (before the fix): fast same_uid False, params None -- the object silently became the other
    # registry's run that has the same id.
    assert _reports(fast)["same_uid"] and _reports(fast)["params"] == {"tag": "fast"}, _reports(fast)


def test_tilde_in_the_sqlite_url_means_the_same_file_on_both_paths(tmp_path, monkeypatch):
    fake_home = tmp_path / "user"
    fake_home.mkdir()
    monkeypatch.setenv("LAMIN_INTEGRATIONS_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LAMIN_INTEGRATIONS_STORAGE", str(tmp_path / "storage"))
    seed = HEADER + "ln.track(params={'tag': os.environ['TAG']})\nreport(fast='sqlalchemy' not in sys.modules)\nln.finish()\n"
    script = tmp_path / "job.py"
    script.write_text(seed)
    absolute = _run(script, HOME=str(fake_home), TAG="abs", LAMIN_INTEGRATIONS_DB=f"sqlite:///{fake_home / 'r.db'}")
    assert absolute.returncode == 0, absolute.stderr
    env = {"HOME": str(fake_home), "LAMIN_INTEGRATIONS_DB": "sqlite:///~/r.db"}
    full = _run(script, TAG="full", FORCE_FULL_PATH="1", **env)
    fast = _run(script, TAG="fast", **env)
    assert not _reports(fast)["fast"], "a path SQLAlchemy would not open either is left to the full path"
    tags = {json.loads(r["params"])["tag"] for r in _rows(fake_home / "r.db", "SELECT params FROM run")}
    # SQLAlchemy opens './~/r.db' (no expansion), fails with "unable to open database file" and
    # journals the run; the fast path once expanded ~ and wrote to ~/r.db instead.
    assert ("full" in tags) == ("fast" in tags), (tags, full.stderr[-300:])
