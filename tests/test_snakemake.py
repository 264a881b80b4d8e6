"""`snakemake --logger lamin`: real Snakemake runs through the CLI, plus replays of real events."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("snakemake")

import lamin_integrations as ln  # noqa: E402
from tests.conftest import python_env  # noqa: E402

SAMPLE = Path(__file__).parent / "data" / "snakemake_events.jsonl"

WORKFLOW = textwrap.dedent("""
    SAMPLES = ["a", "b"]

    rule all:
        input: "results/summary.txt", "results/plots"

    rule raw:
        input: "data/{s}.txt"
        output: temp("results/{s}.raw.txt")
        shell: "sed 's/^/raw /' {input} > {output}"

    rule upper:
        input: "results/{s}.raw.txt"
        output: "results/{s}.upper.txt"
        log: "logs/upper_{s}.log"
        benchmark: "benchmarks/upper_{s}.tsv"
        params: mode="fast", factor=2
        threads: 1
        resources: mem_mb=10
        message: "upper-casing {wildcards.s}"
        shell: "tr a-z A-Z < {input} > {output}; echo ok > {log}"

    rule plots:
        input: expand("results/{s}.upper.txt", s=SAMPLES)
        output: directory("results/plots")
        shell: "mkdir -p {output} && cp {input} {output}/"

    rule summary:
        input: expand("results/{s}.upper.txt", s=SAMPLES)
        output: "results/summary.txt"
        log: "logs/summary.log"
        shell: "if [ '{config[fail]}' = 1 ]; then echo boom > {log}; exit 3; fi; cat {input} > {output}"
""")


def snakemake(workdir: Path, *args: str, env: dict | None = None, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--logger", "lamin", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env or python_env(), timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def new_workflow(folder: Path, snakefile: str, files: dict[str, str] | None = None) -> Path:
    """A workflow folder: its Snakefile (dedented) and the input files named in `files`."""
    folder.mkdir(parents=True)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    (folder / "Snakefile").write_text(textwrap.dedent(snakefile))
    return folder


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    wd = tmp_path / "wf"
    (wd / "data").mkdir(parents=True)
    (wd / "data" / "a.txt").write_text("alpha\n")
    (wd / "data" / "b.txt").write_text("beta\n")
    (wd / "Snakefile").write_text(WORKFLOW)
    (wd / "config.yaml").write_text("fail: 0\nsamples: [a, b]\n")
    return wd


def workflow_runs() -> list[ln.Run]:
    return ln.Run.filter(reference_type="snakemake_id").order_by("id").to_list()


def jobs(parent: ln.Run) -> dict[str, list[ln.Run]]:
    out: dict[str, list[ln.Run]] = {}
    for run in ln.Run.filter(initiated_by_run=parent, reference_type="snakemake_job").order_by("id"):
        out.setdefault(run.name, []).append(run)
    return out


def test_success_records_workflow_jobs_inputs_outputs(registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml")
    [wf] = workflow_runs()
    assert wf.status == "completed" and wf.finished_at >= wf.started_at
    assert wf.transform.kind == "pipeline" and wf.transform.key == "wf/Snakefile"  # its project folder, then its path
    assert wf.transform.source_code == WORKFLOW
    uuid.UUID(wf.reference)  # the workflow_id
    assert wf.params["config"] == {"fail": 0, "samples": ["a", "b"]}
    assert wf.params["configfiles"] == [str(workflow / "config.yaml")] and wf.params["snakemake_version"].startswith("9.")
    assert "--logger lamin" in wf.cli_args and wf.name == workflow.name
    assert wf._aux["jobs"] == {"completed": 7}

    by_name = jobs(wf)
    assert set(by_name) == {"all", "raw[s=a]", "raw[s=b]", "upper[s=a]", "upper[s=b]", "plots", "summary"}
    [up] = by_name["upper[s=a]"]
    assert up.transform.key == "wf/Snakefile:upper" and up.transform.kind == "step"
    assert up.status == "completed" and up.started_at <= up.finished_at
    assert up.reference.startswith(wf.reference + "/") and up.reference.endswith("/1")
    assert up.params["wildcards"] == {"s": "a"}
    assert up.params["params"] == {"mode": "fast", "factor": 2}
    assert up.params["threads"] == 1 and up.params["resources"]["mem_mb"] == 10
    assert not any(k.startswith("_") for k in up.params["resources"])
    assert up.params["message"] == "upper-casing a" and up.params["attempt"] == 1
    assert "tr a-z A-Z" in up.params["shellcmd"]

    outputs = {a.key for a in up.output_artifacts}
    assert outputs == {"results/a.upper.txt", "logs/upper_a.log", "benchmarks/upper_a.tsv"}
    [raw_a] = by_name["raw[s=a]"]
    # temp() output: hashed and stored although Snakemake deleted it as soon as its reader ended
    # (the logger copies it as its job ends), and the consumer links the same artifact
    [temp] = raw_a.output_artifacts.to_list()
    assert temp.key == "results/a.raw.txt" and not (workflow / "results" / "a.raw.txt").exists()
    assert temp.hash is not None and not (temp._aux or {}).get("not_retained")
    assert Path(temp.cache()).read_text() == "raw alpha\n"
    assert [a.key for a in up.input_artifacts] == ["results/a.raw.txt"]
    assert up.input_artifacts.one().id == temp.id
    [plots] = by_name["plots"]
    [folder] = plots.output_artifacts.to_list()
    assert folder.key == "results/plots" and folder.n_files == 3  # two files + Snakemake's .snakemake_timestamp
    [summary] = by_name["summary"]
    assert {a.key for a in summary.input_artifacts} == {"results/a.upper.txt", "results/b.upper.txt"}
    assert {a.run_id for a in summary.input_artifacts} == {up.id, by_name["upper[s=b]"][0].id}
    [raw_input] = raw_a.input_artifacts.to_list()
    assert raw_input.key == "data/a.txt" and raw_input.run_id is None  # a source file: no creating run
    assert (workflow / "results" / "summary.txt").read_text() == "RAW ALPHA\nRAW BETA\n"


def test_failing_rule_with_keep_going(registry, workflow):
    proc = snakemake(workflow, "--configfile", "config.yaml", "--config", "fail=1", "--keep-going", check=False)
    assert "lamin-integrations:" not in proc.stderr, proc.stderr
    assert proc.returncode != 0
    [wf] = workflow_runs()
    assert wf.status == "errored"
    by_name = jobs(wf)
    [summary] = by_name["summary"]
    assert summary.status == "errored"
    assert "exit status 3" in summary._aux["error"]
    assert [a.key for a in summary.output_artifacts] == ["logs/summary.log"]
    assert by_name["plots"][0].status == "completed"  # --keep-going ran the independent job
    assert "all" not in by_name
    assert wf._aux["jobs"] == {"errored": 1, "completed": 5}, {r.name: r.status for r in ln.Run.filter(initiated_by_run=wf)}
    assert "did not complete successfully" in wf._aux["error"]


def _retried(folder: Path, first: str, retry: str, directive: str = 'log: "logs/flaky.log"',
             env: dict | None = None) -> tuple[ln.Run, ln.Run, ln.Run]:
    """A rule run with --retries 1 that runs `first` then fails, and on the retry runs `retry`
    and succeeds: the workflow run and its two attempts' runs."""
    wd = new_workflow(folder, "\n".join([
        "rule flaky:", '    output: "out.txt"', f"    {directive}", "    resources: n=lambda wildcards, attempt: attempt",
        f'    shell: "if [ {{resources.n}} = 1 ]; then {first}; exit 1; fi; {retry}; echo ok > {{output}}"', ""]))
    snakemake(wd, "--retries", "1", env=env)
    [wf] = workflow_runs()
    failed, done = jobs(wf)["flaky"]
    assert [(r.status, r.params["attempt"], r.reference.rsplit("/", 1)[1]) for r in (failed, done)] == [
        ("errored", 1, "1"), ("completed", 2, "2")]
    return wf, failed, done


def test_retries_give_one_run_per_attempt_each_with_its_own_log(sqlite_registry, tmp_path):
    # Snakemake deletes the failed attempt's log when the retry starts, and the retry writes
    # its own: the logger keeps a copy of it when the attempt fails.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    wf, failed, done = _retried(tmp_path / "retry", "echo attempt 1 > {log}; echo boom >> {log}",
                                "echo attempt 2 > {log}", env=python_env(TMPDIR=str(tmp)))
    assert wf.status == "completed"
    [failed_log] = failed.output_artifacts
    assert (failed_log.key, Path(failed_log.cache()).read_text()) == ("logs/flaky.log", "attempt 1\nboom\n")
    outputs = {a.key: Path(a.cache()).read_text() for a in done.output_artifacts}
    assert outputs == {"out.txt": "ok\n", "logs/flaky.log": "attempt 2\n"}
    assert failed_log.versions.count() == 2
    assert not list(tmp.iterdir()), "the copies are removed once recorded"


def test_copies_left_by_a_killed_recorder_are_removed_by_the_next_workflow(sqlite_registry, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp / f"lamin-integrations-kept-{gone.pid}-killedRecorder01"  # its recorder was SIGKILLed
    busy = tmp / f"lamin-integrations-kept-{os.getpid()}-liveRecorder0001"  # still recording
    for folder in (left, busy):
        folder.mkdir()
        (folder / "1-sample.bam").write_bytes(b"x" * 1000)
    wd = new_workflow(tmp_path / "next", 'rule a:\n    output: "a.txt"\n    shell: "echo a > {output}"\n')
    snakemake(wd, env=python_env(TMPDIR=str(tmp)))
    assert [p.name for p in tmp.iterdir()] == [busy.name]
    [wf] = workflow_runs()
    assert wf.status == "completed"


def test_a_shadow_job_that_succeeds_on_retry_leaves_the_workflow_completed(sqlite_registry, tmp_path):
    """A shadow rule runs in a spawned Snakemake, whose failure is reported as SpawnedJobError:
    it belongs to the failed attempt, not to the workflow, which the retry completed."""
    wf, _, _ = _retried(tmp_path / "shadow", "true", "true", directive='shadow: "minimal"')
    assert wf.status == "completed" and not (wf._aux or {}).get("error"), (wf._aux or {}).get("error")


def test_a_failed_attempts_log_too_big_to_copy_is_listed_never_read_with_the_retrys_bytes(sqlite_registry, tmp_path):
    _, failed, done = _retried(tmp_path / "biglog", "head -c 9000000 /dev/zero > {log}", "echo attempt 2 > {log}")
    [failed_log] = failed.output_artifacts
    assert failed_log.key == "logs/flaky.log" and failed_log.hash is None and failed_log._aux["not_retained"]
    assert {a.key: Path(a.cache()).read_text() for a in done.output_artifacts}["logs/flaky.log"] == "attempt 2\n"


def test_quiet_run_still_completes_every_job(sqlite_registry, workflow):
    # --quiet suppresses job_finished events; a successful workflow closes its jobs at the end
    snakemake(workflow, "--configfile", "config.yaml", "--quiet")
    [wf] = workflow_runs()
    assert wf.status == "completed"
    assert {r.status for r in ln.Run.filter(initiated_by_run=wf)} == {"completed"}
    [summary] = jobs(wf)["summary"]
    assert {a.key for a in summary.output_artifacts} == {"results/summary.txt", "logs/summary.log"}


def test_dry_run_records_nothing(sqlite_registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml", "-n")
    assert ln.Run.filter().count() == 0 and ln.Artifact.filter().count() == 0


def test_reruns_link_lineage_across_invocations(sqlite_registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml")
    snakemake(workflow, "--configfile", "config.yaml")
    (workflow / "data" / "a.txt").write_text("alpha, edited\n")
    snakemake(workflow, "--configfile", "config.yaml")
    first, nothing, third = workflow_runs()
    assert nothing.status == "completed" and nothing._aux.get("nothing_to_do") is True
    assert jobs(nothing) == {}
    assert first.transform.id == third.transform.id  # same Snakefile content, same version
    by_name = jobs(third)
    assert "upper[s=b]" not in by_name and "upper[s=a]" in by_name
    [summary] = by_name["summary"]
    inputs = {a.key: a for a in summary.input_artifacts}
    b_upper = inputs["results/b.upper.txt"]
    assert b_upper.run.initiated_by_run_id == first.id  # produced by the first invocation
    assert inputs["results/a.upper.txt"].run.initiated_by_run_id == third.id
    a_versions = ln.Artifact.filter(key="results/a.upper.txt").order_by("id").to_list()
    assert len(a_versions) == 2 and a_versions[1].is_latest and a_versions[1].uid[:16] == a_versions[0].uid[:16]


def test_workdir_directive_and_directory_flag(sqlite_registry, tmp_path):
    project = tmp_path / "project"
    (project / "work" / "in").mkdir(parents=True)
    (project / "work" / "in" / "x.txt").write_text("x\n")
    (project / "Snakefile").write_text(textwrap.dedent(f"""
        workdir: "{project / 'work'}"
        rule copy:
            input: "in/x.txt"
            output: "out/x.txt"
            shell: "sed 's/^/copy /' {{input}} > {{output}}"
    """))
    snakemake(project)
    other = tmp_path / "elsewhere"
    (other / "in").mkdir(parents=True)
    (other / "in" / "x.txt").write_text("y\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "Snakefile").write_text(textwrap.dedent("""
        rule copy:
            input: "in/x.txt"
            output: "out/x.txt"
            shell: "sed 's/^/copy /' {input} > {output}"
    """))
    snakemake(tmp_path, "-s", str(tmp_path / "flows" / "Snakefile"), "-d", str(other))
    first, second = workflow_runs()
    for wf, folder in ((first, project / "work"), (second, other)):
        [job] = jobs(wf)["copy"]
        [out] = job.output_artifacts.to_list()
        assert out.key == "out/x.txt" and out.path.read_text() == (folder / "out" / "x.txt").read_text()
        assert [a.key for a in job.input_artifacts] == ["in/x.txt"]
        assert wf.params["workdir"] == str(folder)


def test_script_rule_tracking_becomes_child_of_its_job(sqlite_registry, tmp_path):
    wd = tmp_path / "scripted"
    (wd / "scripts").mkdir(parents=True)
    (wd / "scripts" / "count.py").write_text(textwrap.dedent("""
        import lamin_integrations as ln
        ln.track()
        with open(snakemake.output[0], "w") as f:
            f.write(str(len(snakemake.wildcards.s)))
        ln.finish()
    """))
    (wd / "Snakefile").write_text(textwrap.dedent("""
        rule all:
            input: "n/aa.txt", "shell.txt"
        rule count:
            output: "n/{s}.txt"
            script: "scripts/count.py"
        rule via_shell:
            output: "shell.txt"
            shell: "python -c 'import lamin_integrations as ln; ln.track(path=\\"x.py\\"); open(\\"{output}\\", \\"w\\").write(\\"1\\")'"
    """))
    (wd / "x.py").write_text("# placeholder script identity\n")
    env = python_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    snakemake(wd, env=env)
    [wf] = workflow_runs()
    by_name = jobs(wf)
    [count_job] = by_name["count[s=aa]"]
    [tracked] = ln.Run.filter(initiated_by_run=count_job).to_list()
    assert tracked.transform.kind == "script" and tracked.status == "completed"
    assert tracked.transform.key == "count.py"  # the user's script, not Snakemake's temporary copy
    [shell_tracked] = ln.Run.filter(initiated_by_run=wf, reference_type=None).to_list()
    assert shell_tracked.transform.key == "x.py"  # a shell: command cannot name its job: workflow run


def test_run_block_tracking_becomes_child_of_its_job_with_the_rule_as_transform(sqlite_registry, tmp_path):
    """Code in a `run:` block is the rule's, not Snakemake's executor module; its run belongs
    to the job that ran it (each job its own, also with jobs running side by side)."""
    wd = new_workflow(tmp_path / "runblock", """
        rule all:
            input: expand("out/{s}.txt", s=["a", "b"])
        rule make:
            output: "out/{s}.txt"
            run:
                import lamin_integrations as ln
                ln.track(params={"sample": wildcards.s})
                with open(output[0], "w") as f:
                    f.write(wildcards.s)
                ln.Artifact(output[0], key=f"made/{wildcards.s}.txt").save()
                ln.finish()
    """)
    snakemake(wd, "--cores", "2")
    [wf] = workflow_runs()
    by_name = jobs(wf)
    for sample in ("a", "b"):
        [job] = by_name[f"make[s={sample}]"]
        [tracked] = ln.Run.filter(initiated_by_run=job).to_list()
        assert tracked.params == {"sample": sample} and tracked.status == "completed"
        assert tracked.transform == job.transform and tracked.transform.key.endswith(":make")
        [saved] = ln.Artifact.filter(key=f"made/{sample}.txt").to_list()
        assert saved.run == tracked


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the registry")


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signals_while_a_job_runs(sqlite_registry, tmp_path, sig, group):
    """`group`: Ctrl-C in a terminal, which signals the job's shell as well as Snakemake."""
    wd = new_workflow(tmp_path / "sleepy", """
        rule all:
            input: "b.txt"
        rule slow:
            output: "a.txt"
            log: "logs/slow.log"
            shell: "echo 'step 1 of 2' > {log}; sleep 4; echo done > {output}"
        rule after:
            input: "a.txt"
            output: "b.txt"
            shell: "cp {input} {output}"
    """)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], cwd=wd,
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group)
    try:
        _wait_for(lambda: ln.Run.filter(name="slow", status="started").first())
        # The job's shell is running, and Snakemake has finished submitting it: its SIGTERM
        # handler takes the scheduler's lock (a threading.Lock), so a signal that arrives while
        # its main thread holds that lock, submitting the job, deadlocks Snakemake itself (seen
        # once in CI, with or without this plugin).
        _wait_for(lambda: (wd / "logs" / "slow.log").exists() and (wd / "logs" / "slow.log").read_text())
        time.sleep(0.5)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    [wf] = workflow_runs()
    assert wf.status == "aborted", err[-2000:]
    by_name = jobs(wf)
    [slow] = by_name["slow"]
    if sig == signal.SIGINT:
        assert slow.status == "aborted" and slow.finished_at is not None
        [log] = slow.output_artifacts.to_list()  # what it logged before it was stopped
        assert log.key == "logs/slow.log" and log.path.read_text() == "step 1 of 2\n"
    else:  # SIGTERM lets the running job finish, and it is recorded with its output
        assert slow.status == "completed" and {a.key for a in slow.output_artifacts} == {"a.txt", "logs/slow.log"}
    assert "after" not in by_name
    assert ln.Run.filter(status="started").count() == 0


def test_sigkill_of_snakemake_is_recorded_as_aborted(sqlite_registry, tmp_path):
    """The recorder lives in its own process: it sees Snakemake vanish and closes the runs."""
    wd = new_workflow(tmp_path / "killed", 'rule slow:\n    output: "a.txt"\n    shell: "sleep 30; touch {output}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], cwd=wd,
                            env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: ln.Run.filter(name="slow", status="started").first())
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    wf = _wait_for(lambda: ln.Run.filter(reference_type="snakemake_id", status="aborted").first())
    assert "without closing" in wf._aux["reason"]
    [slow] = jobs(wf)["slow"]
    assert slow.status == "aborted"


def test_sigkill_keeps_the_jobs_snakemake_saw_finish(sqlite_registry, tmp_path):
    """Under --quiet no job_finished event comes; killed, only Snakemake's incomplete markers tell
    a finished job from one it was running (were: both aborted, the finished one without outputs)."""
    wd = new_workflow(tmp_path / "killed", textwrap.dedent("""
        rule all:
            input: "fast.txt", "slow.txt"
        rule fast:
            output: "fast.txt"
            shell: "echo done > {output}"
        rule slow:
            output: "slow.txt"
            shell: "echo partial > {output}; sleep 60"
    """))
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "--logger", "lamin"], cwd=wd,
                            env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (wd / "fast.txt").exists() and (wd / "slow.txt").exists()
                  and not list((wd / ".snakemake" / "incomplete").glob(base64.urlsafe_b64encode(b"fast.txt").decode())))
        _wait_for(lambda: ln.Run.filter(name="slow").first())
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    wf = _wait_for(lambda: ln.Run.filter(reference_type="snakemake_id", status="aborted").first())
    fast, slow = jobs(wf)["fast"][0], jobs(wf)["slow"][0]
    assert fast.status == "completed" and [a.key for a in fast.output_artifacts] == ["fast.txt"]
    assert slow.status == "aborted" and slow.output_artifacts.count() == 0  # a partial output is no output


def test_unreachable_registry_leaves_the_workflow_alone(tmp_path, workflow):
    proc = snakemake(workflow, "--configfile", "config.yaml", "--logger-lamin-db",
                     "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "lamin-integrations: not recording this workflow" in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if "lamin-integrations:" in line and "secret" in line]
    assert (workflow / "results" / "summary.txt").read_text() == "RAW ALPHA\nRAW BETA\n"
    assert proc.stderr.count("lamin-integrations:") == 1


def test_settings_flags_and_environment(sqlite_registry, tmp_path, workflow):
    help_text = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True,
                               env=python_env(), timeout=120).stdout
    for flag in ("--logger-lamin-db", "--logger-lamin-storage", "--logger-lamin-project", "--logger-lamin-max-hash-mb"):
        assert flag in help_text
    atlas = ln.Project(name="atlas").save()
    snakemake(workflow, "--configfile", "config.yaml", env=python_env(SNAKEMAKE_LOGGER_LAMIN_PROJECT="atlas"))
    [wf] = workflow_runs()
    assert atlas.runs.count() == 7 + 1
    assert "results/summary.txt" in {a.key for a in atlas.artifacts}

    # the flags choose another registry (a plain SQLite path works) and storage
    other_db, other_storage = tmp_path / "other.db", tmp_path / "other-storage"
    (workflow / "data" / "a.txt").write_text("changed\n")
    snakemake(workflow, "--configfile", "config.yaml", "--logger-lamin-db", str(other_db),
              "--logger-lamin-storage", str(other_storage))
    assert len(workflow_runs()) == 1
    ln.connect(f"sqlite:///{other_db}", str(other_storage))
    [other] = workflow_runs()
    assert other.status == "completed"
    assert ln.Artifact.filter(key="results/summary.txt").one().path.is_relative_to(other_storage)

    # a relative sqlite:/// URL is relative to where snakemake was started, also with -d
    (tmp_path / "launch").mkdir()
    snakemake(tmp_path / "launch", "-s", str(workflow / "Snakefile"), "-d", str(workflow), "--configfile",
              str(workflow / "config.yaml"), "--forceall", "--logger-lamin-db", "sqlite:///rel.db",
              "--logger-lamin-storage", str(other_storage))
    assert (tmp_path / "launch" / "rel.db").exists() and not (workflow / "rel.db").exists()


def test_max_hash_size_records_big_outputs_by_size_only(sqlite_registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml", "--logger-lamin-max-hash-mb", "0")
    [wf] = workflow_runs()
    [up] = jobs(wf)["upper[s=a]"]
    out = up.output_artifacts.filter(key="results/a.upper.txt").one()
    assert out.hash is None and out.size == len("RAW ALPHA\n") and out._aux["not_hashed"] is True


# -- replaying the real event sample -------------------------------------------------------


def _records(scenario: str):
    """LogRecords shaped like what Snakemake 9.27 sent (tests/data/snakemake_events.jsonl)."""
    for line in SAMPLE.read_text().splitlines():
        d = json.loads(line)
        if d.get("scenario") != scenario or "__scenario_header__" in d:
            continue
        if d.get("__meta__") == "close":
            yield "close"
            continue
        if "__meta__" in d:
            continue
        record = logging.LogRecord("snakemake.logging", logging.INFO, __file__, 0, d["msg"], None, None)
        record.created = d["created"]
        record.thread = d.get("created_thread")
        for key, value in d.get("extra", {}).items():
            if isinstance(value, dict) and value.get("__type__") == "uuid.UUID":
                value = uuid.UUID(value["repr"][6:-2])
            elif isinstance(value, dict) and value.get("__type__") == "ResourceList":
                value = dict(value["items"])
            setattr(record, key, value)
        if d["event"] not in ("None", None):
            record.event = d["event"]
        yield record


def _handler(dryrun: bool = False):
    from lamin_integrations.snakemake.plugin import LogHandler, LogHandlerSettings

    common = SimpleNamespace(dryrun=dryrun, printshellcmds=False, nocolor=True, quiet=None, debug_dag=False,
                             verbose=False, show_failed_logs=False, stdout=False)
    return LogHandler(common, LogHandlerSettings())


def _replay(scenario: str, dryrun: bool = False):
    handler = _handler(dryrun)
    for record in _records(scenario):
        if record == "close":
            handler.close()
            handler.close()  # Snakemake calls it twice
        else:
            handler.emit(record)
    return handler


def test_replay_success_sample(sqlite_registry):
    _replay("success")
    [wf] = workflow_runs()
    assert wf.reference == "ffdb451a-8812-4348-a5b8-e5b58d23ec4e" or uuid.UUID(wf.reference)
    assert wf.status == "completed" and wf.transform.key == "ok/Snakefile"  # the sample ran in a folder "ok"
    by_name = jobs(wf)
    assert set(by_name) == {"all", "make_raw[sample=a]", "make_raw[sample=b]", "upper[sample=a]", "upper[sample=b]",
                            "summary"}
    [raw] = by_name["make_raw[sample=b]"]
    assert raw.params["resources"] == {"tmpdir": "/tmp", "mem_mb": 100, "mem": "100 MB", "mem_mib": 96}
    assert raw.params["message"] == "making raw for b" and raw.params["threads"] == 2
    # the sample's files are not on this machine: the outputs are listed, marked not retained
    keys = sorted(a.key for a in raw.output_artifacts)
    assert keys == ["benchmarks/make_raw_b.tsv", "logs/make_raw_b.log", "results/b.raw.txt"]
    assert all(a._aux["not_retained"] for a in raw.output_artifacts)
    assert ln.Run.filter(status="started").count() == 0


def test_replay_failure_and_sigint_samples(sqlite_registry):
    _replay("failure")
    _replay("sigint")
    failed, interrupted = workflow_runs()
    assert failed.status == "errored"
    [summary] = jobs(failed)["summary"]
    assert summary.status == "errored" and "non-zero exit status 3" in summary._aux["error"]
    assert interrupted.status == "aborted"
    assert {r.status for r in ln.Run.filter(initiated_by_run=interrupted)} == {"aborted"}


def test_replay_nothing_to_do_dryrun_and_storage(sqlite_registry):
    _replay("dryrun", dryrun=True)
    assert ln.Run.filter().count() == 0
    _replay("nothing_to_do")
    [wf] = workflow_runs()
    assert wf.status == "completed" and jobs(wf) == {}
    _replay("storage_fs_plugin")
    stored = workflow_runs()[-1]
    [raw] = jobs(stored)["make_raw[sample=a]"]
    # "(send to storage)" is stripped: the key is the storage path, not the annotated string
    assert "results/a.raw.txt" in {a.key.split("remote/", 1)[-1] for a in raw.output_artifacts}
    assert not any("(" in a.key for a in ln.Artifact.filter())


def test_emit_never_raises_and_close_is_idempotent(sqlite_registry):
    handler = _handler()
    garbage = logging.LogRecord("x", logging.INFO, __file__, 0, "msg", None, None)
    for event, extra in [("job_info", {"jobid": "not-a-number"}), ("job_finished", {}), ("workflow_started", {}),
                         ("job_error", {"jobid": None}), ("progress", {"done": object()}), ("unknown", {})]:
        record = logging.makeLogRecord(garbage.__dict__)
        record.event = event
        for k, v in extra.items():
            setattr(record, k, v)
        handler.emit(record)
    handler.close()
    handler.close()


def test_shim_imports_cheaply_without_a_registry(tmp_path):
    code = ("import time, sys; t = time.perf_counter(); import snakemake_logger_plugin_lamin as p; "
            "print(time.perf_counter() - t, p.LogHandler.__module__, 'sqlalchemy' in sys.modules)")
    env = python_env(LAMIN_INTEGRATIONS_DB="postgresql+psycopg://x@127.0.0.1:1/none")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out[1] == "lamin_integrations.snakemake.plugin"
    assert out[2] == "False"  # the registry (and SQLAlchemy) is not touched at import


def test_workflow_started_of_older_snakemake_releases():
    """9.0-9.16 send only workflow_id and `snakefile` (the user's); 9.17+ add the header and
    name the user's file `snakefile_main` while `snakefile` is Snakemake's own workflow.py."""
    from lamin_integrations.snakemake.events import translate

    old = logging.makeLogRecord({"event": "workflow_started", "workflow_id": uuid.uuid4(),
                                 "snakefile": "/data/wf/Snakefile"})
    event = translate(old)
    assert event["snakefile"] == "/data/wf/Snakefile"
    assert event["cmd"] and event["user"] and event["snakemake_version"].startswith("9.")
    new = logging.makeLogRecord({"event": "workflow_started", "workflow_id": uuid.uuid4(),
                                 "snakefile": "/venv/lib/python3.11/site-packages/snakemake/workflow.py",
                                 "snakefile_main": "/data/wf/workflow/Snakefile", "cmd": "snakemake -c1"})
    event = translate(new)
    assert event["snakefile"] == "/data/wf/workflow/Snakefile" and event["cmd"] == "snakemake -c1"


CHECKPOINT_WORKFLOW = textwrap.dedent("""
    import os

    rule all:
        input: "agg/all.txt"

    checkpoint split:
        output: directory("split")
        shell: "mkdir -p {output} && for i in 0 1 2; do echo $i > {output}/$i.txt; done"

    rule process:
        input: "split/{i}.txt"
        output: "proc/{i}.txt"
        shell: "cat {input} {input} > {output}"

    def parts(wildcards):
        folder = checkpoints.split.get().output[0]
        return expand("proc/{i}.txt", i=glob_wildcards(os.path.join(folder, "{i}.txt")).i)

    rule aggregate:
        input: parts
        output: "agg/all.txt"
        shell: "cat {input} > {output}"
""")


def test_files_inside_a_produced_folder_lead_back_to_its_producer(sqlite_registry, tmp_path):
    """A checkpoint writes a folder; later jobs read files inside it. Those jobs used the folder,
    so the lineage of the final output reaches the checkpoint's job."""
    wd = new_workflow(tmp_path / "cp", CHECKPOINT_WORKFLOW)
    snakemake(wd)
    [wf] = workflow_runs()
    [split] = jobs(wf)["split"]
    [process] = jobs(wf)["process[i=1]"]
    assert {a.key for a in process.input_artifacts} == {"split", "split/1.txt"}
    upstream = ln.lineage.upstream(ln.Artifact.get(key="agg/all.txt"))
    assert split.uid in {r.uid for r in upstream.runs}


COPIES_WORKFLOW = textwrap.dedent("""
    rule all:
        input: "results/raw.txt", "gathered.txt"
    rule stage:
        input: "data/raw.txt"
        output: "results/raw.txt"
        shell: "cp {input} {output}"
    rule flag:
        output: "flags/ready.txt"
        shell: "echo x > {output}"
    checkpoint scatter:
        input: "flags/ready.txt"
        output: directory("parts")
        shell: "mkdir -p parts && echo x > parts/p1.txt && echo y > parts/p2.txt"
    def parts(wildcards):
        folder = checkpoints.scatter.get().output[0]
        return expand("parts/{i}.txt", i=glob_wildcards(folder + "/{i}.txt").i)
    rule gather:
        input: parts
        output: "gathered.txt"
        shell: "cat {input} > {output}"
""")


def test_inputs_with_the_bytes_of_another_file_of_the_run_are_themselves(sqlite_registry, tmp_path):
    """A `cp` job's input and a checkpoint part equal to another output: each is the file at its
    own path, not the other file with the same bytes (lineage would skip the real producer)."""
    wd = tmp_path / "copies"
    (wd / "data").mkdir(parents=True)
    (wd / "data" / "raw.txt").write_text("hello\n")
    (wd / "Snakefile").write_text(COPIES_WORKFLOW)
    snakemake(wd)
    [wf] = workflow_runs()
    by_name = jobs(wf)
    [stage], [gather], [scatter] = by_name["stage"], by_name["gather"], by_name["scatter"]
    assert [a.key for a in stage.input_artifacts] == ["data/raw.txt"]
    assert [a.key for a in stage.output_artifacts] == ["results/raw.txt"]
    assert {a.key for a in gather.input_artifacts} == {"parts", "parts/p1.txt", "parts/p2.txt"}
    upstream = ln.lineage.upstream(ln.Artifact.get(key="gathered.txt"))
    assert scatter.uid in {r.uid for r in upstream.runs}
    assert ln.Artifact.get(key="parts/p1.txt").hash == ln.Artifact.get(key="flags/ready.txt").hash


def test_until_a_rule_is_a_completed_workflow(sqlite_registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml", "--until", "upper")
    [wf] = workflow_runs()
    assert wf.status == "completed", wf._aux
    assert {r.name for r in ln.Run.filter(initiated_by_run=wf)} == {"raw[s=a]", "raw[s=b]", "upper[s=a]", "upper[s=b]"}


def test_a_script_job_with_a_long_name_finds_its_job(sqlite_registry, tmp_path):
    """Run names are cut at 150 characters; the script's lookup of its job cuts the same way."""
    wd = tmp_path / "long"
    (wd / "scripts").mkdir(parents=True)
    (wd / "scripts" / "p.py").write_text("import lamin_integrations as ln\nln.track()\n"
                                         "open(snakemake.output[0], 'w').write('ok')\nln.finish()\n")
    sample = "".join(f"{i:03d}-" for i in range(40))  # 160 characters, not a repeated pattern
    (wd / "Snakefile").write_text(textwrap.dedent(f"""
        rule all:
            input: "out/{sample}.txt"
        rule proc:
            output: "out/{{name}}.txt"
            script: "scripts/p.py"
    """))
    snakemake(wd, env=python_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
    [wf] = workflow_runs()
    [job] = [r for r in ln.Run.filter(initiated_by_run=wf) if r.name.startswith("proc[")]
    assert len(job.name) == 150
    [script] = ln.Run.filter(initiated_by_run=job).to_list()
    assert script.transform.key == "p.py" and script.status == "completed"


def test_the_recommended_layout_names_the_run_after_the_project(sqlite_registry, tmp_path):
    project = tmp_path / "rnaseq-project"
    (project / "workflow").mkdir(parents=True)
    (project / "workflow" / "Snakefile").write_text('rule all:\n    output: "done.txt"\n    shell: "touch {output}"\n')
    snakemake(project)  # Snakemake finds workflow/Snakefile itself
    [wf] = workflow_runs()
    assert wf.name == "rnaseq-project" and wf.transform.key == "rnaseq-project/workflow/Snakefile"


def test_unrelated_projects_outside_git_are_not_versions_of_one_pipeline(sqlite_registry, tmp_path):
    """Every project's Snakefile is called Snakefile: outside a git repository its key starts
    with its project folder, so two projects sharing one registry stay two transforms."""
    for name, body in (("alpha", "echo a"), ("beta", "echo b")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Snakefile").write_text(f'rule all:\n    output: "x.txt"\n    shell: "{body} > {{output}}"\n')
        snakemake(tmp_path / name)
    layout = tmp_path / "gamma"
    (layout / "workflow").mkdir(parents=True)
    (layout / "workflow" / "Snakefile").write_text('rule all:\n    output: "y.txt"\n    shell: "touch {output}"\n')
    snakemake(tmp_path, "-s", str(layout / "workflow" / "Snakefile"), "-d", str(layout / "work"))
    alpha, beta, gamma = (wf.transform for wf in workflow_runs())
    assert (alpha.key, beta.key, gamma.key) == ("alpha/Snakefile", "beta/Snakefile", "gamma/workflow/Snakefile")
    assert len({t.uid[:12] for t in (alpha, beta, gamma)}) == 3 and alpha.is_latest and beta.is_latest
    assert {r.transform.key for r in ln.Run.filter(reference_type="snakemake_job")} == {
        "alpha/Snakefile:all", "beta/Snakefile:all", "gamma/workflow/Snakefile:all"}


def test_unrelated_git_repositories_are_not_versions_of_one_pipeline_and_clones_are_one(sqlite_registry, tmp_path):
    """In git the key starts with the repository's name (its remote's, so two clones in folders
    named otherwise are one pipeline; else its folder's), then the path in the repository."""
    def repo(folder: Path, body: str, remote: str | None = None) -> Path:
        (folder / "workflow").mkdir(parents=True)
        (folder / "workflow" / "Snakefile").write_text(f'rule all:\n    output: "x.txt"\n    shell: "{body} > {{output}}"\n')
        for args in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one"],
                     *([["remote", "add", "origin", remote]] if remote else [])):
            subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)
        return folder
    for folder in (repo(tmp_path / "rnaseq-pipeline", "echo r"), repo(tmp_path / "chipseq-pipeline", "echo c"),
                   repo(tmp_path / "my-copy", "echo c", "git@github.com:lab/chipseq-pipeline.git")):
        snakemake(folder)
    keys = [wf.transform.key for wf in workflow_runs()]
    assert keys == ["rnaseq-pipeline/workflow/Snakefile", "chipseq-pipeline/workflow/Snakefile",
                    "chipseq-pipeline/workflow/Snakefile"]
    rnaseq, chipseq, clone = (wf.transform for wf in workflow_runs())
    assert rnaseq.uid[:12] != chipseq.uid[:12] and clone.uid == chipseq.uid  # the same code: the same transform


def test_a_pipe_group_is_recorded_and_its_reader_linked_to_its_writer(sqlite_registry, tmp_path):
    """pipe() makes a group job (listed by a UUID in job_started) whose members run together;
    the pipe is a FIFO that must never be opened by the recorder (it would block, or take the
    reader's bytes)."""
    wd = new_workflow(tmp_path / "piped", """
        rule all:
            input: "counted.txt", "after.txt"
        rule produce:
            output: pipe("stream.pipe")
            shell: "seq 1 1000 > {output}"
        rule consume:
            input: "stream.pipe"
            output: "counted.txt"
            shell: "wc -l < {input} > {output}"
        rule after:
            input: "counted.txt"
            output: "after.txt"
            shell: "echo failing >&2; exit 1"
    """)
    proc = snakemake(wd, check=False)
    assert proc.returncode != 0 and "lamin-integrations:" not in proc.stderr, proc.stderr[-2000:]
    assert (wd / "counted.txt").read_text().strip() == "1000"  # the reader got every line
    [wf] = workflow_runs()
    by_name = jobs(wf)
    assert {name: [r.status for r in runs] for name, runs in by_name.items()} == {
        "produce": ["completed"], "consume": ["completed"], "after": ["errored"]}
    assert wf.status == "errored" and wf._aux["jobs"] == {"completed": 2, "errored": 1}
    [pipe] = by_name["produce"][0].output_artifacts.to_list()
    assert pipe.key == "stream.pipe" and pipe.hash is None and pipe._aux["not_retained"]
    assert [a.id for a in by_name["consume"][0].input_artifacts] == [pipe.id]
    [counted] = by_name["after"][0].input_artifacts.to_list()
    assert counted.run_id == by_name["consume"][0].id


def test_a_segment_that_fails_part_way_is_recorded_once(sqlite_registry, tmp_path, monkeypatch):
    """When recording a batch of events fails after its job runs were written, the recorder
    records the batch again event by event: the written runs are found, not inserted twice,
    and the jobs whose end failed to record are still closed."""
    from lamin_integrations.core import pipeline
    from lamin_integrations.snakemake.recorder import Config, Recorder

    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'a.txt'\n")
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    real_close_runs, calls = pipeline.close_runs, []

    def close_runs_failing_once(closing):
        calls.append(len(closing))
        if len(calls) == 1:
            raise RuntimeError("injected: the first close fails")
        return real_close_runs(closing)

    monkeypatch.setattr(pipeline, "close_runs", close_runs_failing_once)
    recorder = Recorder(Config(), "wfRunUidForTest01", replay=True)
    base = {"created": time.time(), "cwd": str(tmp_path)}
    info = dict(base, event="job_info", rule="a", message=None, input=[], log=[], benchmark=[], wildcards={},
                threads=1, resources={}, reason=None, priority=None, shellcmd=None, params=None, attempt=None)
    recorder._process([
        dict(base, event="workflow_started", workflow_id=str(uuid.uuid4()), snakefile=str(tmp_path / "Snakefile"),
             configfiles=[], cmd="snakemake", snakemake_version="9", host="h", user="u", config={}),
        dict(info, jobid=1, output=["a.txt"]), dict(info, jobid=2, output=["b.txt"]),
        dict(base, event="job_finished", jobid=1), dict(base, event="job_finished", jobid=2),
        dict(base, event="close")])
    assert calls[0] == 2  # both ends in one batch, which failed
    [wf] = workflow_runs()
    runs = ln.Run.filter(initiated_by_run=wf).order_by("id").to_list()
    assert [(r.params["jobid"], r.status) for r in runs] == [(1, "completed"), (2, "completed")]
    assert [[a.key for a in r.output_artifacts] for r in runs] == [["a.txt"], ["b.txt"]]
    assert wf.status == "completed" and wf._aux["jobs"] == {"completed": 2}


def test_a_retry_reported_in_the_same_batch_as_its_failed_attempt_keeps_the_attempts_apart(sqlite_registry, tmp_path):
    """A recorder behind Snakemake takes an attempt's failure and its retry in one batch: the
    retry's job_info (same jobid) starts a new run after the failed one, and each end closes its
    own attempt (the retry's end once closed the failed attempt, and the error went to the retry)."""
    from lamin_integrations.snakemake.recorder import Config, Recorder

    (tmp_path / "Snakefile").write_text("rule flaky:\n    output: 'out.txt'\n")
    (tmp_path / "out.txt").write_text("ok\n")
    recorder = Recorder(Config(), "wfRunUidForTest03", replay=True)
    base = {"created": time.time(), "cwd": str(tmp_path)}
    info = dict(base, event="job_info", jobid=1, rule="flaky", message=None, input=[], output=["out.txt"], log=[],
                benchmark=[], wildcards={}, threads=1, resources={}, reason=None, priority=None, shellcmd=None,
                params=None)
    recorder._process([
        dict(base, event="workflow_started", workflow_id=str(uuid.uuid4()), snakefile=str(tmp_path / "Snakefile"),
             configfiles=[], cmd="snakemake --retries 1", snakemake_version="9", host="h", user="u", config={}),
        dict(info, attempt=1), dict(base, event="job_error", jobid=1, log=[], message=None, aux={}, thread=None),
        dict(info, attempt=2), dict(base, event="job_finished", jobid=1), dict(base, event="close")])
    [wf] = workflow_runs()
    runs = ln.Run.filter(initiated_by_run=wf).order_by("id").to_list()
    assert [(r.params["attempt"], r.status) for r in runs] == [(1, "errored"), (2, "completed")]
    assert [[a.key for a in r.output_artifacts] for r in runs] == [[], ["out.txt"]]
    assert wf.status == "completed" and wf._aux["jobs"] == {"completed": 1}  # a job, counted by its last attempt


def test_a_job_that_leaves_an_output_missing_failed(sqlite_registry, tmp_path):
    """MissingOutputException comes as an `error` record only (no job_error): the job errored,
    it was not stopped by the end of the workflow."""
    wd = new_workflow(tmp_path / "missing", """
        rule all:
            input: "b.txt"
        rule a:
            output: "a.txt"
            shell: "echo hi > a_typo.txt"
        rule b:
            input: "a.txt"
            output: "b.txt"
            shell: "cp {input} {output}"
    """)
    proc = snakemake(wd, "--latency-wait", "1", check=False)
    assert proc.returncode != 0 and "lamin-integrations:" not in proc.stderr
    [wf] = workflow_runs()
    [a] = jobs(wf)["a"]
    assert a.status == "errored" and a.finished_at is not None
    assert "MissingOutputException" in a._aux["error"] and "a.txt" in a._aux["error"]
    assert wf.status == "errored" and wf._aux["jobs"] == {"errored": 1}


def test_included_rule_files_are_part_of_the_pipeline_code(sqlite_registry, tmp_path):
    wd = tmp_path / "inc"
    (wd / "rules").mkdir(parents=True)
    (wd / "Snakefile").write_text('include: "rules/a.smk"\nrule all:\n    input: "a.txt"\n')
    (wd / "rules" / "a.smk").write_text('rule a:\n    output: "a.txt"\n    shell: "echo 1 > {output}"\n')
    snakemake(wd)
    (wd / "rules" / "a.smk").write_text('rule a:\n    output: "a.txt"\n    shell: "echo 2 > {output}"\n')
    snakemake(wd, "--forceall")
    first, second = workflow_runs()
    assert "include: rules/a.smk" in first.transform.source_code and "echo 1" in first.transform.source_code
    assert "echo 2" in second.transform.source_code
    # the same Snakefile, another included rule: a new version of the pipeline, not the same one
    assert second.transform.id != first.transform.id
    assert second.transform.uid[:12] == first.transform.uid[:12]
    assert second.transform.key == first.transform.key == "inc/Snakefile"


def test_temp_outputs_are_stored_whole_named_and_left_alone_for_their_readers(sqlite_registry, tmp_path):
    """The logger's copy of a temp() output is a copy, not a second link (gzip refuses a file with
    two links), named so that `.fastq.gz` keeps its whole suffix; the copies go once recorded."""
    wd = new_workflow(tmp_path / "gz", """
        rule all:
            input: "plain.txt.gz", "counts.txt"
        rule make:
            output: temp("reads.fastq.gz"), temp("plain.txt")
            shell: "printf 'ACGT\\n' | gzip -c > {output[0]}; echo 7 > {output[1]}"
        rule zip:
            input: "plain.txt"
            output: "plain.txt.gz"
            shell: "gzip {input}"
        rule count:
            input: "reads.fastq.gz"
            output: "counts.txt"
            shell: "zcat {input} | wc -l > {output}"
    """)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = snakemake(wd, "--cores", "1", env=python_env(TMPDIR=str(tmp)))
    assert "other link" not in proc.stderr
    [wf] = workflow_runs()
    [make] = jobs(wf)["make"]
    outputs = {a.key: a for a in make.output_artifacts}
    assert set(outputs) == {"reads.fastq.gz", "plain.txt"}
    assert outputs["reads.fastq.gz"].suffix == ".fastq.gz" and outputs["reads.fastq.gz"].hash is not None
    assert Path(outputs["plain.txt"].cache()).read_text() == "7\n"
    assert not list(tmp.iterdir())


def test_quiet_runs_still_store_temp_outputs(sqlite_registry, tmp_path):
    """Under --quiet Snakemake reports no job end, so the logger copies a temp() output when
    Snakemake says it removes it (logged in every mode): its bytes are stored all the same."""
    wd = new_workflow(tmp_path / "quiettemp", """
        rule all:
            input: "counts.txt"
        rule make:
            output: temp("sub/reads.txt")
            shell: "printf 'a\\nb\\n' > {output}"
        rule count:
            input: "sub/reads.txt"
            output: "counts.txt"
            shell: "wc -l < {input} > {output}"
    """)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    snakemake(wd, "--quiet", env=python_env(TMPDIR=str(tmp)))
    assert not (wd / "sub" / "reads.txt").exists()
    [wf] = workflow_runs()
    [make], [count] = jobs(wf)["make"], jobs(wf)["count"]
    [reads] = make.output_artifacts.to_list()
    assert reads.key == "sub/reads.txt" and not (reads._aux or {}).get("not_retained")
    assert Path(reads.cache()).read_text() == "a\nb\n"
    assert [a.id for a in count.input_artifacts] == [reads.id]
    assert not list(tmp.iterdir()), "the copies are removed once recorded"


def test_a_temp_input_deleted_before_it_was_recorded_still_links_its_producer(sqlite_registry, tmp_path):
    """A temp() file kept by a failed run and deleted right after the next run's short job
    read it: the job's input is the file as the first run recorded it (by key, same workdir)."""
    wd = new_workflow(tmp_path / "tmpres", """
        rule all:
            input: "b.txt"
        rule a:
            input: "raw.txt"
            output: temp("a.txt")
            shell: "cat {input} > {output}; echo a >> {output}"
        rule b:
            input: "a.txt"
            output: "b.txt"
            shell: "test -e fixed; cat {input} > {output}"
    """, files={"raw.txt": "raw\n"})
    assert snakemake(wd, check=False).returncode != 0
    (wd / "fixed").touch()
    snakemake(wd)
    assert not (wd / "a.txt").exists()
    first, second = workflow_runs()
    [a] = jobs(first)["a"]
    [b] = jobs(second)["b"]
    [a_txt] = a.output_artifacts.to_list()
    assert [x.id for x in b.input_artifacts] == [a_txt.id]


def test_quiet_keep_going_records_the_jobs_that_finished(sqlite_registry, tmp_path):
    wd = new_workflow(tmp_path / "quietfail", """
        rule all:
            input: "good.txt", "bad.txt"
        rule good:
            input: "raw.txt"
            output: "good.txt"
            shell: "cp {input} {output}"
        rule bad:
            input: "raw.txt"
            output: "bad.txt"
            shell: "exit 2"
    """, files={"raw.txt": "raw\n"})
    assert snakemake(wd, "--quiet", "--keep-going", check=False).returncode != 0
    [wf] = workflow_runs()
    by_name = jobs(wf)
    assert by_name["good"][0].status == "completed"
    assert [a.key for a in by_name["good"][0].output_artifacts] == ["good.txt"]
    assert by_name["bad"][0].status == "errored" and wf.status == "errored"


def test_touch_records_nothing(sqlite_registry, workflow):
    snakemake(workflow, "--configfile", "config.yaml")
    counts = (ln.Run.filter().count(), ln.Artifact.filter().count())
    (workflow / "data" / "a.txt").write_text("alpha, edited\n")
    snakemake(workflow, "--configfile", "config.yaml", "--touch")
    assert (ln.Run.filter().count(), ln.Artifact.filter().count()) == counts


def test_secrets_are_masked_and_huge_params_summarised(sqlite_registry, tmp_path):
    wd = new_workflow(tmp_path / "secrets", """
        SAMPLES = [f"s{i}" for i in range(5000)]
        rule all:
            output: "out.txt"
            params: api_key=config["api_key"], samples=SAMPLES, day="2024-01-02"
            shell: "echo {params.day} > {output}"
    """)
    snakemake(wd, "--config", "api_key=SECRET123", "db_password=hunter2", "count=3")
    [wf] = workflow_runs()
    [job] = jobs(wf)["all"]
    stored = json.dumps([wf.cli_args, wf.params, job.params])
    assert "SECRET123" not in stored and "hunter2" not in stored
    assert wf.params["config"] == {"api_key": "***", "db_password": "***", "count": 3}
    assert job.params["params"]["api_key"] == "***" and job.params["params"]["day"] == "2024-01-02"
    assert job.params["params"]["samples"] == "<list of 5,000 items: too many to record>"


def test_script_jobs_whose_names_differ_only_after_150_characters_find_their_own_job(sqlite_registry, tmp_path):
    wd = tmp_path / "longer"
    (wd / "scripts").mkdir(parents=True)
    (wd / "scripts" / "s.py").write_text("import lamin_integrations as ln\nln.track()\n"
                                         "open(snakemake.output[0], 'w').write(snakemake.wildcards.s[-2:])\nln.finish()\n")
    (wd / "Snakefile").write_text(textwrap.dedent("""
        P = "x" * 160
        rule all:
            input: expand("out/{s}.txt", s=[P + "_A", P + "_B"])
        rule r:
            output: "out/{s}.txt"
            script: "scripts/s.py"
    """))
    snakemake(wd, env=python_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
    [wf] = workflow_runs()
    scripts = ln.Run.filter(transform__key="s.py").to_list()
    assert sorted(r.initiated_by_run.params["wildcards"]["s"][-2:] for r in scripts) == ["_A", "_B"]
    assert all(r.initiated_by_run.initiated_by_run_id == wf.id for r in scripts)


def test_a_script_that_started_before_its_job_was_recorded_is_moved_under_it(sqlite_registry, tmp_path):
    """The recorder was behind (hashing a big output): a script's ln.track() gave up waiting
    for its job run and started under the workflow run with its job's name; when the job is
    recorded, the script's run is moved under it."""
    from lamin_integrations.snakemake.recorder import Config, Recorder

    (tmp_path / "Snakefile").write_text("rule s:\n    output: 'x.txt'\n")
    recorder = Recorder(Config(), "wfRunUidForTest02", replay=True)
    base = {"created": time.time(), "cwd": str(tmp_path)}
    recorder._process([dict(base, event="workflow_started", workflow_id=str(uuid.uuid4()),
                            snakefile=str(tmp_path / "Snakefile"), configfiles=[], cmd="snakemake",
                            snakemake_version="9", host="h", user="u", config={})])
    [wf] = workflow_runs()
    early = ln.Run(ln.Transform(key="s.py", kind="script").save(), initiated_by_run=wf).save()
    early._aux = {"parent_hint": {"reference_type": "snakemake_job", "name": "s[i=1]"}}
    early.save()
    info = dict(base, event="job_info", rule="s", message=None, input=[], output=[], log=[], benchmark=[],
                threads=1, resources={}, reason=None, priority=None, shellcmd=None, params=None, attempt=None)
    recorder._process([dict(info, jobid=1, wildcards={"i": "1"}), dict(info, jobid=2, wildcards={"i": "2"})])
    job = ln.Run.get(name="s[i=1]")
    early = ln.Run.get(early.uid)
    assert early.initiated_by_run_id == job.id and early.root_run_id == wf.id
    assert "parent_hint" not in (early._aux or {})


def test_an_update_output_has_its_earlier_content_as_input(sqlite_registry, tmp_path):
    wd = new_workflow(tmp_path / "upd", """
        rule all:
            input: "db.txt"
        rule add:
            input: "new.txt"
            output: update("db.txt")
            shell: "cat {input} >> {output}"
    """)
    for row in ("row1", "row2"):
        (wd / "new.txt").write_text(row + "\n")
        snakemake(wd, "--forcerun", "add")
    first, second = workflow_runs()
    [add1], [add2] = jobs(first)["add"], jobs(second)["add"]
    [db1] = add1.output_artifacts.to_list()
    [db2] = add2.output_artifacts.to_list()
    assert db1.key == db2.key == "db.txt" and db1.id != db2.id
    assert {a.key: a.id for a in add2.input_artifacts} == {"new.txt": add2.input_artifacts.get(key="new.txt").id,
                                                            "db.txt": db1.id}


def test_keep_incomplete_outputs_are_outputs_of_the_failed_job(sqlite_registry, tmp_path):
    wd = new_workflow(tmp_path / "keepinc", """
        rule all:
            input: "c.txt"
        rule b:
            input: "raw.txt"
            output: "b.txt"
            shell: "echo partial > {output}; exit 3"
        rule c:
            input: "b.txt"
            output: "c.txt"
            shell: "cat {input} > {output}"
    """, files={"raw.txt": "raw\n"})
    assert snakemake(wd, "--keep-incomplete", check=False).returncode != 0
    snakemake(wd)  # b.txt is there: only c runs, on the partial file
    first, second = workflow_runs()
    [b] = jobs(first)["b"]
    [c] = jobs(second)["c"]
    assert b.status == "errored" and [a.key for a in b.output_artifacts] == ["b.txt"]
    assert [a.run_id for a in c.input_artifacts] == [b.id]


def test_a_workflow_started_by_a_tracked_script_is_its_child(sqlite_registry, tmp_path):
    """A driver script that calls ln.track() and then runs Snakemake: the workflow run is the
    driver's child (lamindb's chain), and so is a workflow run by a job of another workflow."""
    inner = new_workflow(tmp_path / "inner", """
        rule all:
            output: "inner.txt"
            shell: "echo inner > {output}"
    """)
    new_workflow(tmp_path / "outer", f"""
        rule all:
            output: "outer.txt"
            shell: "{sys.executable} -m snakemake --cores 1 --logger lamin -d {inner} -s {inner}/Snakefile && touch {{output}}"
    """)
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import subprocess, sys
        import lamin_integrations as ln
        ln.track()
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"],
                       cwd={str(tmp_path / "outer")!r}, check=True, capture_output=True)
        ln.finish()
    """))
    subprocess.run([sys.executable, str(driver)], check=True, env=python_env(), cwd=tmp_path, timeout=240)
    tracked = ln.Run.get(transform__key="driver.py")
    outer = ln.Run.get(reference_type="snakemake_id", initiated_by_run=tracked)
    [job] = jobs(outer)["all"]
    inner_run = ln.Run.get(reference_type="snakemake_id", name="inner")
    assert inner_run.initiated_by_run in (outer, job) and inner_run.status == "completed"
    assert outer.status == "completed" and tracked.status == "completed"
