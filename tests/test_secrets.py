"""Database passwords never appear in logs, errors, `info`, reports or exports.

The registry is a real PostgreSQL database owned by a role that logs in with a password
(scram-sha-256 on loopback, only for that role), so a wrong password really fails. One
module-scoped recording puts the URL with the password everywhere a user would: Snakemake's
command line (`--logger-lamin-db URL`, whose jobs inherit it and call `ln.track()`), a
tracked script given the URL in its environment and on its own command line, and a Nextflow
launch whose command line names the registry, ingested with the URL in the environment.
Every output, log line (SQL statements included), stored row, saved file, report and export
is then searched for the password.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.core import instance as instance_module
from lamin_integrations.errors import InstanceError
from tests.conftest import _connected, python_env

PASSWORD = "Pw-9f3kQ-leak"
WRONG_PASSWORD = "Pw-wr0ng-7xQ2"  # a mistyped password is a secret too
ROLE = "lamin_secret_role"
CLI = str(Path(sys.executable).with_name("lamin-integrations"))
DATA = Path(__file__).parent / "data" / "nextflow"
SECRETS = (PASSWORD, WRONG_PASSWORD)

SNAKEFILE = textwrap.dedent("""
    rule all:
        input: "out/b.txt"

    rule a:
        input: "data/in.txt"
        output: "out/a.txt"
        script: "scripts/step.py"

    rule b:
        input: "out/a.txt"
        output: "out/b.txt"
        shell: "cp {input} {output}"
""")

# Logging at DEBUG, SQLAlchemy's included (it sets its own loggers to WARNING): every statement
# is then logged with its values.
STEP = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    logging.getLogger("sqlalchemy").setLevel(logging.DEBUG)
    import lamin_integrations as ln
    ln.track()
    with open(snakemake.output[0], "w") as f:
        f.write(open(snakemake.input[0]).read().upper())
    print("step done")
    ln.finish()
""")

ANALYZE = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    logging.getLogger("sqlalchemy").setLevel(logging.DEBUG)
    import lamin_integrations as ln
    ln.track(params={"mode": "analysis"})
    with open("analysis.txt", "w") as f:
        f.write("analysed\\n")
    ln.Artifact("analysis.txt", key="analysis/analysis.txt").save()
    print("analysis done")
    ln.finish()
""")


def leaked(text: str) -> list[str]:
    """Where a secret occurs in `text` (with some context, for the failure message)."""
    return [text[max(0, i - 200):i + 40] for secret in SECRETS for i in _find_all(text, secret)][:3]


def _find_all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i != -1:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and needle.encode() in p.read_bytes()]


def rows_containing(server, url: str, needle: str) -> list[str]:
    """Every row of every table whose text form (all columns) contains `needle`."""
    from psycopg import sql

    hits = []
    with server._connect(sa.make_url(url).database, autocommit=True, connect_timeout=10) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "run" in tables and "artifact" in tables
        for table in tables:
            query = sql.SQL("SELECT r::text FROM {} AS r WHERE strpos(r::text, %s) > 0").format(sql.Identifier(table))
            hits += [f"{table}: {row[:300]}" for (row,) in conn.execute(query, (needle,))]
    return hits


def role_url(server, database: str, password: str = PASSWORD, port: int | None = None) -> str:
    return f"postgresql+psycopg://{ROLE}:{password}@127.0.0.1:{port or server.port}/{database}"


def run_all(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run CLI commands concurrently (each is mostly interpreter start-up)."""
    procs = [(cmd, subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for cmd in commands]
    results = []
    for cmd, proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_role(postgres_server) -> Iterator[str]:
    """A login role with a password; pg_hba asks that role (only) for it on loopback TCP."""
    hba = postgres_server.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + original)  # the first matching line wins
    with postgres_server._connect(autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is None:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("SELECT pg_reload_conf()")
    import psycopg

    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous: wait until a wrong password is refused
        try:
            psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=ROLE, password=WRONG_PASSWORD,
                            dbname="postgres", connect_timeout=5).close()
        except psycopg.OperationalError as e:
            assert "password authentication failed" in str(e)
            break
        assert time.monotonic() < deadline, "pg_hba.conf reload did not take effect"
        time.sleep(0.05)
    psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=ROLE, password=PASSWORD,
                    dbname="postgres", connect_timeout=5).close()
    try:
        yield ROLE
    finally:
        hba.write_text(original)
        with postgres_server._connect(autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_reload_conf()")


def secret_database(server) -> str:
    """A fresh database owned by the password role; its URL carries the password."""
    name = f"secret_{uuid.uuid4().hex[:12]}"
    with server._connect(autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
    return role_url(server, name)


def nextflow_launch(folder: Path, url: str) -> Path:
    """The sample Nextflow launch, its command line naming the registry URL; returns the trace."""
    root = folder / "launch"
    shutil.copytree(DATA / "run", root)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_text()
            new = text.replace("/nf/launch", str(root)).replace("--genome ref.fa", f"--genome ref.fa --registry {url}")
            if new != text:
                path.write_text(new)
    return next((root / "results" / "pipeline_info").glob("execution_trace_*.txt"))


@pytest.fixture(scope="module")
def recorded(postgres_server, password_role, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One registry, recorded into by Snakemake, a tracked script and a Nextflow ingest."""
    folder = tmp_path_factory.mktemp("secrets")
    url = secret_database(postgres_server)
    storage, home = folder / "storage", folder / "home"
    base = python_env(LAMIN_INTEGRATIONS_HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for var in ("LAMIN_INTEGRATIONS_DB", "LAMIN_INTEGRATIONS_STORAGE", "LAMIN_INTEGRATIONS_RUN_UID",
                "LAMIN_INITIATED_BY_RUN_UID"):
        base.pop(var, None)
    env = {**base, "LAMIN_INTEGRATIONS_DB": url, "LAMIN_INTEGRATIONS_STORAGE": str(storage)}
    outputs: dict[str, str] = {}

    wd = folder / "wf"
    (wd / "data").mkdir(parents=True)
    (wd / "scripts").mkdir()
    (wd / "data" / "in.txt").write_text("alpha\n")
    (wd / "Snakefile").write_text(SNAKEFILE)
    (wd / "scripts" / "step.py").write_text(STEP)
    # The URL only on the command line: the logger hands it on to the jobs' ln.track().
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin",
                           "--logger-lamin-db", url, "--logger-lamin-storage", str(storage)],
                          cwd=wd, capture_output=True, text=True, env=base, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs["snakemake"] = proc.stdout + proc.stderr

    (folder / "analyze.py").write_text(ANALYZE)
    proc = subprocess.run([sys.executable, str(folder / "analyze.py"), "--db", url], cwd=folder,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "analysis done" in proc.stdout
    outputs["script"] = proc.stdout + proc.stderr

    trace = nextflow_launch(folder, url)
    proc = subprocess.run([CLI, "nextflow", "ingest", str(trace), "--timezone", "UTC", "--no-files"], cwd=folder,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs["nextflow"] = proc.stdout + proc.stderr
    return {"url": url, "folder": folder, "storage": storage, "home": home, "env": env, "outputs": outputs,
            "workdir": wd}


@pytest.fixture
def registry_runs(recorded, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    for _ in _connected(recorded["url"], recorded["storage"], monkeypatch):
        yield {
            "workflow": ln.Run.get(reference_type="snakemake_id"),
            "step": ln.Run.get(transform__key="step.py"),
            "script": ln.Run.get(params__mode="analysis"),
            "nextflow": ln.Run.get(reference_type="nextflow_id"),
        }


# -- recording: logs, rows, files ------------------------------------------------------------------


def test_adapter_output_and_debug_logs_show_no_password(recorded):
    outputs = recorded["outputs"]
    # the logs were really at DEBUG (SQL statements with their values), in every process
    assert "INSERT INTO run" in outputs["script"] and "INSERT INTO run" in outputs["snakemake"]
    for name, text in outputs.items():
        assert leaked(text) == [], f"{name} printed the password"
    if "Command:" in outputs["snakemake"]:  # Snakemake >= 9.17 prints its command line in its banner
        assert f"--logger-lamin-db postgresql+psycopg://{ROLE}:***@" in outputs["snakemake"]


def test_recorded_command_lines_are_kept_with_the_password_masked(registry_runs, recorded):
    runs = registry_runs
    masked = f"{ROLE}:***@127.0.0.1"
    wf = runs["workflow"]
    assert "--logger-lamin-db" in wf.cli_args and masked in wf.cli_args, wf.cli_args
    assert runs["script"].cli_args.startswith("--db ") and masked in runs["script"].cli_args
    nf = runs["nextflow"]
    assert "--registry" in nf.cli_args and masked in nf.cli_args, nf.cli_args
    assert masked in nf.params["command_line"]
    assert runs["step"].initiated_by_run.initiated_by_run == wf  # the job's script found the registry
    for run in runs.values():
        assert leaked(f"{run.cli_args} {run.params} {run.reference} {run._aux}") == [], run


def test_no_stored_row_of_any_table_holds_the_password(registry_runs, recorded, postgres_server):
    wf = registry_runs["workflow"]
    assert rows_containing(postgres_server, recorded["url"], wf.uid), "the scan finds what is there"
    assert rows_containing(postgres_server, recorded["url"], PASSWORD) == []


def test_saved_reports_environments_and_journal_hold_no_password(registry_runs, recorded):
    runs = registry_runs
    for name in ("step", "script"):
        assert runs[name].report is not None and runs[name].environment is not None
    assert "analysis done" in runs["script"].report.path.read_text()
    assert "step done" in runs["step"].report.path.read_text()
    assert files_containing(recorded["storage"], "analysis done"), "the scan finds what is there"
    assert list((recorded["workdir"] / ".snakemake" / "log").glob("*.log")), "Snakemake's own log file"
    for root in (recorded["storage"], recorded["home"], recorded["workdir"]):
        assert files_containing(root, PASSWORD) == []


# -- the command line on a working registry ---------------------------------------------------------


def test_info_runs_and_show_print_no_password(registry_runs, recorded):
    runs = registry_runs
    commands = [[CLI, "info"], [CLI, "info", "--json"], [CLI, "runs"], [CLI, "runs", "--json"],
                *([CLI, "show", runs[name].uid] for name in ("workflow", "nextflow", "script"))]
    results = run_all(commands, recorded["env"], recorded["folder"])
    for proc in results:
        assert proc.returncode == 0, (proc.args, proc.stderr[-2000:])
        assert leaked(proc.stdout + proc.stderr) == [], proc.args
    assert f"{ROLE}:***@127.0.0.1" in results[0].stdout, results[0].stdout
    assert "--logger-lamin-db" in results[4].stdout, "show prints the command line"


def test_reports_and_every_export_hold_no_password_and_log_none_at_debug(registry_runs, recorded, tmp_path, caplog):
    """In this process (the heavy imports once), through the same click commands, logging everything."""
    from click.testing import CliRunner

    from lamin_integrations.cli import cli

    caplog.set_level(logging.DEBUG)  # the root logger
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # statements, their values and the rows read
    wf, nf, script = (registry_runs[name].uid for name in ("workflow", "nextflow", "script"))
    commands = [["report", uid, "-o", str(tmp_path / f"{uid}.html")] for uid in (wf, nf, script)]
    formats = {"prov-json": "x.json", "prov-n": "x.provn", "ro-crate": "crate", "openlineage": "x.jsonl"}
    commands += [["export", uid, "--format", fmt, "-o", str(tmp_path / f"{uid}-{out}")]
                 for uid in (wf, nf, script) for fmt, out in formats.items()]
    commands += [["info"], ["lineage", script, "--format", "json"]]
    try:
        for args in commands:  # LAMIN_INTEGRATIONS_DB holds the URL: each command connects with it
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            assert result.exit_code == 0, (args, result.output)
            assert leaked(result.output) == [], args
    finally:
        instance_module.current().dispose()
    assert "--logger-lamin-db" in (tmp_path / f"{wf}.html").read_text(), "the page shows the command line"
    assert "--registry" in (tmp_path / f"{nf}.html").read_text()
    assert len(list(tmp_path.rglob("*"))) > 12
    assert files_containing(tmp_path, PASSWORD) == []
    assert "FROM run" in caplog.text and "--logger-lamin-db" in caplog.text  # statements and the rows read
    assert leaked(caplog.text) == []


# -- errors -----------------------------------------------------------------------------------------


def _error_urls(server) -> dict[str, str]:
    import servers

    database = sa.make_url(secret_database(server)).database
    return {
        "unreachable": role_url(server, database, port=servers.free_port()),
        "wrong password": role_url(server, database, password=WRONG_PASSWORD),
        "no such database": role_url(server, f"missing_{uuid.uuid4().hex[:8]}"),
        "malformed": role_url(server, database).replace(f":{server.port}/", ":port/"),
    }


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "no such database", "malformed"])
def test_connection_errors_reprs_and_cli_failures_show_no_password(case, postgres_server, password_role, tmp_path, caplog):
    url = _error_urls(postgres_server)[case]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    with pytest.raises(InstanceError) as exc:
        ln.connect(url, str(tmp_path / "storage"))
    error = exc.value
    chain = "".join(traceback.format_exception(error))
    seen = [str(error), repr(error), chain, caplog.text]
    while error is not None:  # the suppressed context too: a debugger or a logging handler may show it
        seen.append(f"{error!r} {error}")
        error = error.__cause__ or error.__context__
    assert leaked("\n".join(seen)) == [], case
    assert f"{ROLE}:***@127.0.0.1" in str(exc.value) or "SQLAlchemy URL" in str(exc.value), str(exc.value)
    if case != "malformed":
        inst = instance_module.Instance(url, str(tmp_path))
        assert leaked(repr(inst) + inst.url) == []

    env = python_env(LAMIN_INTEGRATIONS_DB=url, LAMIN_INTEGRATIONS_HOME=str(tmp_path / "home"))
    env.pop("LAMIN_INTEGRATIONS_STORAGE", None)
    for proc in run_all([[CLI, "info"], [CLI, "runs"], [CLI, "sync"], [CLI, "info", "--json"]], env, tmp_path):
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, (proc.args, output)
        assert leaked(output) == [], (proc.args, output)
        assert "Traceback" not in output and "Error: " in proc.stderr, (proc.args, output)


def test_a_run_journaled_while_the_registry_is_unreachable_keeps_no_password(postgres_server, password_role, tmp_path):
    url = _error_urls(postgres_server)["unreachable"]
    home = tmp_path / "home"
    script = tmp_path / "offline.py"
    script.write_text(ANALYZE.replace('ln.Artifact("analysis.txt", key="analysis/analysis.txt").save()\n', ""))
    env = python_env(LAMIN_INTEGRATIONS_DB=url, LAMIN_INTEGRATIONS_HOME=str(home),
                     LAMIN_INTEGRATIONS_STORAGE=str(tmp_path / "storage"))
    proc = subprocess.run([sys.executable, str(script), "--db", url], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "journaled" in proc.stderr and leaked(proc.stdout + proc.stderr) == []
    journal = list((home / "journal").glob("*.jsonl"))
    assert journal and "--db" in journal[0].read_text(), "the journal keeps the command line"
    info, sync = run_all([[CLI, "info"], [CLI, "sync"]], env, tmp_path)
    assert "pending journal events: 2" in info.stdout and sync.returncode != 0
    assert leaked(info.stdout + info.stderr + sync.stdout + sync.stderr) == []
    assert files_containing(home, PASSWORD) == []


def test_secrets_in_a_scripts_source_are_redacted_as_lamindb_does(registry, tmp_path):
    import subprocess
    import sys

    from tests.conftest import python_env

    script = tmp_path / "connect.py"
    script.write_text('import lamin_integrations as ln\nDB_PASSWORD = "hunter2"\napi_key: str = \'sk-live-123\'\n'
                      'timeout = 30\nln.track()\nln.finish()\n')
    for _ in range(2):  # the second run finds the same transform (the hash is of the redacted source)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=python_env(),
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
    [transform] = ln.Transform.filter(key="connect.py").to_list()
    assert "hunter2" not in transform.source_code and "sk-live-123" not in transform.source_code
    assert 'DB_PASSWORD = "***REDACTED***"' in transform.source_code and "timeout = 30" in transform.source_code
    assert transform.runs.count() == 2


def test_an_engine_parameter_that_is_an_object_is_stored_as_a_short_repr_on_every_run():
    """A job's or task's parameters are stored with every run: an object's repr is cut to 200
    characters (a workflow's config, stored once, keeps longer text)."""
    from lamin_integrations.core.jsonutil import param_json, to_json

    class Big:
        def __repr__(self) -> str:
            return "Big(" + "x" * 5000 + ")"

    stored = param_json({"obj": Big(), "nested": {"obj": Big()}, "text": "y" * 300})
    assert len(stored["obj"]) == 200 and stored["obj"].endswith("...") and len(stored["nested"]["obj"]) == 200
    assert stored["text"] == "y" * 300  # text is a value, not a repr
    assert len(to_json(Big())) == 5005
