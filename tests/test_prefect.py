"""Prefect adapter: real flows against one ephemeral Prefect server (conftest `prefect_api`, one per session).

Starting Prefect's server costs ~15 s and each flow run ~1.2 s (engine notes), so the
server is shared by the session and each test runs one or two small flows, then asserts on
the Runs, statuses, params and artifact links the hooks wrote.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

prefect = pytest.importorskip("prefect")

import lamin_integrations as ln  # noqa: E402
from lamin_integrations.prefect import LaminFlow, LaminTask, flow, instrument, task  # noqa: E402
from lamin_integrations.prefect import hooks as prefect_hooks  # noqa: E402
from lamin_integrations.prefect import recorder as recorder  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("prefect_api")]


def runs(**lookups):
    return list(ln.Run.filter(**lookups).order_by("id"))


def facts(run) -> dict:
    return run.params["prefect"]


# -- flows and tasks used by the tests (module level: process pools pickle them by reference) --


@task
def count_lines(path: str) -> int:
    return len(Path(path).read_text().splitlines())


@task
def write_item(i: int, prefix: str = "item") -> str:
    out = Path(f"{prefix}_{i}.txt")
    out.write_text(f"{prefix} {i}\n")
    return str(out)


@task
def save_inside(name: str) -> str:
    Path(name).write_text("saved from a task body\n")
    ln.Artifact(name, key=f"manual/{name}").save()
    return "ok"


@flow
def simple_flow(input_path: Path, n: int = 2) -> list[str]:
    lines = count_lines(str(input_path))
    save_inside("manual.txt")
    return [write_item(i + lines) for i in range(n)]


def test_flow_with_tasks(work: Path) -> None:
    data = work / "in.csv"
    data.write_text("a,b\n1,2\n")
    result = simple_flow(data, n=2)
    assert result == ["item_2.txt", "item_3.txt"]

    [flow_run] = runs(reference_type="prefect_flow_run")
    assert isinstance(simple_flow, prefect.Flow)
    assert flow_run.status == "completed" and flow_run.finished_at is not None
    assert flow_run.transform.kind == "pipeline" and flow_run.transform.key == "simple-flow"
    assert flow_run.transform.version == simple_flow.version
    assert "def simple_flow" in flow_run.transform.source_code
    assert flow_run.initiated_by_run is None
    assert flow_run.params["input_path"] == str(data) and flow_run.params["n"] == 2
    assert facts(flow_run)["attempt"] == 1 and flow_run.name

    tasks = runs(reference_type="prefect_task_run")
    assert [r.transform.key for r in tasks] == ["simple-flow:count_lines", "simple-flow:save_inside",
                                               "simple-flow:write_item", "simple-flow:write_item"]
    assert all(r.transform.kind == "step" and r.status == "completed" for r in tasks)
    assert all(r.initiated_by_run_id == flow_run.id and r.root_run_id == flow_run.id for r in tasks)
    assert [r.params.get("i") for r in tasks[2:]] == [2, 3]
    assert all(facts(r)["attempt"] == 1 and facts(r)["cached"] is False for r in tasks)
    import uuid

    uuid.UUID(tasks[0].reference)  # the task run id, whole

    # files: the path parameter is an input of the flow and of the task; returned paths are outputs
    source = ln.Artifact.get(key="in.csv")
    assert {r.id for r in source.input_of_runs} == {flow_run.id, tasks[0].id}
    assert ln.Artifact.get(key="item_2.txt").run_id == tasks[2].id
    assert ln.Artifact.get(key="item_3.txt").run_id == tasks[3].id
    # an artifact saved inside a task body belongs to that task's run
    assert ln.Artifact.get(key="manual/manual.txt").run_id == tasks[1].id
    # the flow returned the task outputs: recreated by the flow run, not re-created
    assert flow_run.id in {r.id for r in ln.Artifact.get(key="item_2.txt").recreating_runs}


@flow
def mapped_flow(n: int) -> list[str]:
    return [f.result() for f in write_item.map(range(n), prefix="m")]


def test_mapped_tasks_know_their_index(work: Path) -> None:
    assert mapped_flow(4) == [f"m_{i}.txt" for i in range(4)]
    [flow_run] = runs(reference_type="prefect_flow_run")
    tasks = runs(reference_type="prefect_task_run")
    assert len(tasks) == 4 and all(r.status == "completed" and r.initiated_by_run_id == flow_run.id for r in tasks)
    assert sorted((r.params["i"], facts(r)["map_index"]) for r in tasks) == [(i, i) for i in range(4)]
    assert all(r.params["prefix"] == "m" for r in tasks)
    assert sorted(a.key for a in ln.Artifact.filter(run__in=tasks)) == [f"m_{i}.txt" for i in range(4)]


FLAKY_CALLS: dict[str, int] = {}


@task(retries=2, retry_delay_seconds=0)
def flaky(tag: str) -> str:
    FLAKY_CALLS[tag] = FLAKY_CALLS.get(tag, 0) + 1
    if FLAKY_CALLS[tag] < 2:
        raise ValueError("first attempt fails")
    return "ok"


@task(retries=1, retry_delay_seconds=0)
def always_fails(x: int) -> int:
    raise ValueError(f"boom {x}")


@flow
def retry_flow(tag: str) -> str:
    state = always_fails(1, return_state=True)
    assert state.is_failed()
    return flaky(tag)


def test_retries_are_one_run_and_failure_after_retries_is_errored(work: Path) -> None:
    assert retry_flow(str(work)) == "ok"
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "completed"
    failed = ln.Run.get(transform__key="retry-flow:always_fails")
    assert failed.status == "errored" and facts(failed)["attempt"] == 2
    assert "boom 1" in failed._aux["error"]
    ok = ln.Run.get(transform__key="retry-flow:flaky")
    assert ok.status == "completed" and facts(ok)["attempt"] == 2
    assert len(runs(reference_type="prefect_task_run")) == 2  # one run per task run, not per attempt
    # each failed attempt's error is kept, not only the last one's
    assert facts(ok)["failed_attempts"] == [{"attempt": 1, "error": "ValueError: first attempt fails"}]
    assert facts(failed)["failed_attempts"] == [{"attempt": 1, "error": "ValueError: boom 1"}]


@task(retries=2, retry_delay_seconds=0.2)
def flaky_later(tag: str) -> str:
    FLAKY_CALLS[tag] = FLAKY_CALLS.get(tag, 0) + 1
    if FLAKY_CALLS[tag] < 3:
        raise OSError(f"attempt {FLAKY_CALLS[tag]}: disk not ready")
    return "ok"


@flow
def delayed_retry_flow(tag: str) -> str:
    return flaky_later(tag)


def test_a_delayed_retry_keeps_each_failed_attempts_error(work: Path) -> None:
    """A retry after a delay starts outside the engine's exception handling: the errors come
    from Prefect's own log line about each failed attempt (at its default level, INFO)."""
    task_runs = logging.getLogger("prefect.task_runs")
    level = task_runs.level
    task_runs.setLevel(logging.INFO)  # (setLevel: it also clears the logger's cache of levels)
    try:
        assert delayed_retry_flow(f"{work}/later") == "ok"
    finally:
        task_runs.setLevel(level)
    run = ln.Run.get(transform__key="delayed-retry-flow:flaky_later")
    assert run.status == "completed" and facts(run)["attempt"] == 3
    assert facts(run)["failed_attempts"] == [{"attempt": 1, "error": "OSError: attempt 1: disk not ready"},
                                             {"attempt": 2, "error": "OSError: attempt 2: disk not ready"}]


@task(cache_policy=prefect.cache_policies.INPUTS, persist_result=True)
def cached_write(folder: str) -> str:
    out = Path(folder) / "cached.txt"
    out.write_text("computed once\n")
    return str(out)


@flow
def cache_flow(folder: str) -> str:
    return cached_write(folder)


def test_cache_hit_is_completed_cached_and_recreates_outputs(work: Path) -> None:
    out_dir = work / "out"
    out_dir.mkdir()
    cache_flow(str(out_dir))
    cache_flow(str(out_dir))
    first, second = runs(reference_type="prefect_task_run")
    assert first.status == second.status == "completed"
    assert facts(first)["cached"] is False and facts(second)["cached"] is True
    assert facts(second)["state"] == "Cached"
    assert facts(first)["result_key"] == facts(second)["result_key"]  # Prefect's cache join key
    artifact = ln.Artifact.get(key="out/cached.txt")
    assert artifact.run_id == first.id
    assert second.id in {r.id for r in artifact.recreating_runs}


@flow
def child_flow(n: int) -> int:
    return count_lines.with_options(name="count_child")(n_path(n))


def n_path(n: int) -> str:
    path = Path(f"child_{n}.txt")
    path.write_text("x\n" * n)
    return str(path)


@flow
def parent_flow() -> int:
    return child_flow(3)


def test_subflow_chains_to_parent(work: Path) -> None:
    assert parent_flow() == 3
    parent, child = runs(reference_type="prefect_flow_run")
    assert parent.transform.key == "parent-flow" and child.transform.key == "child-flow"
    assert child.initiated_by_run_id == parent.id and child.root_run_id == parent.id
    assert child.params["n"] == 3 and parent.status == child.status == "completed"
    [step] = runs(reference_type="prefect_task_run")
    assert step.initiated_by_run_id == child.id and step.root_run_id == parent.id
    assert step.transform.key == "child-flow:count_child"  # with_options(name=...) keeps recording


@task
async def async_write(k: int) -> str:
    await asyncio.sleep(0)
    out = Path(f"async_{k}.txt")
    out.write_text(str(k))
    ln.Artifact(str(out), key=f"manual/async_{k}.txt").save()
    return str(out)


@flow
async def async_flow(k: int) -> str:
    return await async_write(k)


def test_async_flow(work: Path) -> None:
    assert asyncio.run(async_flow(5)) == "async_5.txt"
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    assert flow_run.status == task_run.status == "completed"
    assert task_run.initiated_by_run_id == flow_run.id and task_run.params["k"] == 5
    assert ln.Artifact.get(key="async_5.txt").run_id == task_run.id
    assert ln.Artifact.get(key="manual/async_5.txt").run_id == task_run.id


@flow
def failing_flow(x: int) -> None:
    count_lines(n_path(x))
    raise RuntimeError("flow-level failure")


def test_failing_flow_is_errored_and_validation_failure_still_recorded(work: Path) -> None:
    with pytest.raises(RuntimeError, match="flow-level failure"):
        failing_flow("7")
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "errored" and "flow-level failure" in flow_run._aux["error"]
    assert flow_run.params["x"] == 7  # validated value, not the raw "7"
    [task_run] = runs(reference_type="prefect_task_run")
    assert task_run.status == "completed"

    with pytest.raises(Exception, match="(?i)valid"):
        failing_flow("not-an-int")
    invalid = ln.Run.filter(reference_type="prefect_flow_run").order_by("-id").first()
    assert invalid.id != flow_run.id and invalid.status == "errored"
    assert "not-an-int" in str(invalid.params) and "invalid parameters" in invalid._aux["error"]


class Boom(BaseException):
    pass


@task
def crashing() -> None:
    raise Boom("simulated crash")


@flow
def crashing_flow() -> None:
    count_lines(n_path(1))
    crashing()


def test_crashing_task_aborts_task_and_flow(work: Path) -> None:
    with pytest.raises(Boom):
        crashing_flow()
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "aborted"
    ok, crashed = runs(reference_type="prefect_task_run")
    assert ok.status == "completed"
    # a crashed task fires no end hook: the flow's end closes it
    assert crashed.status == "aborted" and crashed.finished_at is not None
    assert "ended before" in crashed._aux["error"]
    assert ln.context.run is None and recorder.state.open == {}


@task
def in_process(i: int) -> str:
    out = Path(f"proc_{i}.txt")
    out.write_text(f"{os.getpid()}\n")
    return str(out)


@flow(task_runner=prefect.task_runners.ProcessPoolTaskRunner(max_workers=2))
def process_flow(n: int) -> list[str]:
    return [f.result() for f in in_process.map(range(n))]


def test_process_pool_tasks_find_their_parent(work: Path) -> None:
    assert process_flow(2) == ["proc_0.txt", "proc_1.txt"]
    [flow_run] = runs(reference_type="prefect_flow_run")
    tasks = runs(reference_type="prefect_task_run")
    assert len(tasks) == 2 and all(r.status == "completed" and r.initiated_by_run_id == flow_run.id for r in tasks)
    assert all(r.pid != os.getpid() for r in tasks)  # written from the worker processes
    assert sorted(facts(r)["map_index"] for r in tasks) == [0, 1]
    assert ln.Artifact.get(key="proc_0.txt").run_id in {r.id for r in tasks}


def test_with_options_keeps_our_hooks_next_to_the_users(work: Path) -> None:
    seen: list[str] = []

    def user_flow_hook(flow, flow_run, state):
        seen.append(f"flow {state.name}")

    def user_task_hook(task, task_run, state):
        seen.append(f"task {state.name}")

    tweaked_task = write_item.with_options(name="renamed", on_completion=[user_task_hook], on_running=[user_task_hook])
    assert isinstance(tweaked_task, LaminTask) and isinstance(tweaked_task, prefect.Task)

    def body() -> str:
        return tweaked_task(7)

    tweaked = flow(body, name="tweaked").with_options(name="tweaked-2", on_completion=[user_flow_hook])
    assert isinstance(tweaked, LaminFlow) and tweaked.name == "tweaked-2"
    assert tweaked() == "item_7.txt"
    assert seen == ["task Running", "task Completed", "flow Completed"]
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    assert flow_run.transform.key == "tweaked-2" and flow_run.status == "completed"
    assert task_run.transform.key == "tweaked-2:renamed" and task_run.status == "completed"
    assert tweaked.on_completion_hooks.count(prefect_hooks.lamin_flow_finished) == 1


def plain_double(x: int) -> int:
    return 2 * x


def test_instrument_plain_prefect_task_is_idempotent(work: Path) -> None:
    third_party = prefect.task(plain_double, name="third_party")
    assert instrument(third_party) is third_party
    instrument(third_party)
    assert third_party.on_running_hooks.count(prefect_hooks.lamin_task_running) == 1
    assert third_party.on_failure_hooks.count(prefect_hooks.lamin_task_finished) == 1

    plain_flow = prefect.flow(lambda: third_party(21), name="plain-flow")
    instrument(instrument(plain_flow))
    assert plain_flow() == 42
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    assert task_run.transform.key == "plain-flow:third_party" and task_run.params["x"] == 21
    assert task_run.initiated_by_run_id == flow_run.id
    with pytest.raises(TypeError):
        instrument(plain_double)


def test_recording_errors_never_change_the_flow(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("registry is down")

    monkeypatch.setattr(recorder, "task_started", broken)
    monkeypatch.setattr(prefect_hooks, "_reported", set())
    with caplog.at_level(logging.WARNING, logger="lamin_integrations"):
        assert mapped_flow(3) == [f"m_{i}.txt" for i in range(3)]
    messages = [r.getMessage() for r in caplog.records if "registry is down" in r.getMessage()]
    assert len(messages) == 1  # logged once, not once per task run
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "completed"


def test_flow_inside_a_tracked_script_is_its_child(work: Path) -> None:
    script_run = ln.track(path=str(Path(__file__)))
    try:
        mapped_flow(1)
    finally:
        ln.finish()
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.initiated_by_run_id == script_run.id


def test_postgres_flow_with_tasks(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert mapped_flow(2) == ["m_0.txt", "m_1.txt"]
    [flow_run] = runs(reference_type="prefect_flow_run")
    tasks = runs(reference_type="prefect_task_run")
    assert flow_run.status == "completed" and [r.status for r in tasks] == ["completed"] * 2
    assert {r.initiated_by_run_id for r in tasks} == {flow_run.id}


def test_importing_the_package_does_not_import_prefect() -> None:
    code = "import sys, lamin_integrations as ln; ln.Run; assert 'prefect' not in sys.modules, 'prefect imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


FLOW_ATTEMPTS: dict[str, int] = {}


@flow(retries=1, retry_delay_seconds=0)
def retrying_flow(tag: str) -> str:
    FLOW_ATTEMPTS[tag] = FLOW_ATTEMPTS.get(tag, 0) + 1
    if FLOW_ATTEMPTS[tag] == 1:
        raise ValueError("first flow attempt fails")
    return f"ok on attempt {FLOW_ATTEMPTS[tag]}"


def test_flow_retry_is_one_run_with_attempts(work: Path) -> None:
    assert retrying_flow(str(work)) == "ok on attempt 2"
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "completed" and facts(flow_run)["attempt"] == 2
    assert flow_run.initiated_by_run_id is None  # not its own parent on the second attempt


@task
def launch_subflow(n: int) -> int:
    return child_flow(n)


@flow
def many_tasks_flow(n: int) -> int:
    futures = [write_item.submit(i, prefix="many") for i in range(n)]
    return sum(1 for f in futures if f.result()) + launch_subflow(2)


def test_background_writes_are_complete_when_the_flow_returns(work: Path) -> None:
    """Task runs are written by a background thread; when the flow call returns, every one is in
    the registry, closed, with its output, and a subflow started inside a task is that task's child."""
    assert many_tasks_flow(40) == 42
    [main, sub] = runs(reference_type="prefect_flow_run")
    items = runs(reference_type="prefect_task_run", initiated_by_run=main, transform__key="many-tasks-flow:write_item")
    assert len(items) == 40 and {r.status for r in items} == {"completed"}
    assert all(r.finished_at >= r.started_at for r in items)
    assert sorted(a.key for a in ln.Artifact.filter(run__in=items)) == sorted(f"many_{i}.txt" for i in range(40))
    [launcher] = runs(reference_type="prefect_task_run", transform__key="many-tasks-flow:launch_subflow")
    assert sub.initiated_by_run_id == launcher.id and sub.root_run_id == main.id
    assert ln.Run.filter(status__in=["started", "scheduled", "restarted"]).count() == 0


def test_deployments_point_at_the_users_code(work: Path) -> None:
    """No wrapper around the user's function: a deployment's entrypoint and the flow's version
    are those of the user's module, exactly as with plain Prefect."""
    deployment = simple_flow.to_deployment(name="nightly")
    assert deployment.entrypoint.endswith("test_prefect.py:simple_flow")
    plain = prefect.flow(simple_flow.fn, name=simple_flow.name)
    assert simple_flow.version == plain.version
    assert isinstance(simple_flow, prefect.Flow) and isinstance(count_lines, prefect.Task)


@task
def tracked_inside(script: str) -> str:
    run = ln.track(path=script)
    ln.finish()
    return run.uid


@flow
def tracking_flow(script: str) -> str:
    return tracked_inside(script)


def test_track_inside_a_task_is_a_child_of_the_task_run(work: Path) -> None:
    script = work / "inner.py"
    script.write_text("print('inner')\n")
    uid = tracking_flow(str(script))
    inner = ln.Run.get(uid=uid)
    [task_run] = runs(reference_type="prefect_task_run")
    assert inner.transform.key == "inner.py" and inner.initiated_by_run_id == task_run.id
    assert inner.status == "completed" and task_run.status == "completed"


@task
def length_of(path: str) -> int:
    return len(Path(path).read_text())


@flow
def futures_flow() -> list[int]:
    first = write_item.submit(1, prefix="fut")
    one = length_of.submit(first)  # a future as the argument: the task's input is the file it names
    many = length_of.map(write_item.map([2, 3], prefix="fut"))
    return [one.result(), *many.result()]


def test_a_task_given_futures_records_their_values_and_files(work: Path) -> None:
    assert futures_flow() == [6, 6, 6]
    counted = [r for r in runs(reference_type="prefect_task_run") if r.transform.key.endswith(":length_of")]
    assert sorted(r.params["path"] for r in counted) == ["fut_1.txt", "fut_2.txt", "fut_3.txt"]
    for run in counted:
        [source] = run.input_artifacts.to_list()
        assert source.key == run.params["path"] and source.run.transform.key.endswith(":write_item")


def test_an_edit_elsewhere_in_the_flow_file_keeps_recording_the_flow(work: Path) -> None:
    """Prefect's default version hashes the whole file: an edited task changes the flow's version
    while the flow function (its source hash) stays the same."""
    script = work / "edited.py"
    body = ("from lamin_integrations.prefect import flow, task\n@task\ndef double(x: int) -> int:\n    return x * 2\n"
            "@flow\ndef pipeline(x: int = 1) -> int:\n    return double(x)\n"
            "if __name__ == '__main__':\n    print(pipeline())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for old, new in (("x * 2", "x * 2"), ("x * 2", "x * 3")):
        script.write_text(body.replace(old, new))
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=work, env=env, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    flows = runs(reference_type="prefect_flow_run")
    assert [r.status for r in flows] == ["completed", "completed"] and "could not" not in proc.stderr
    assert flows[0].transform == flows[1].transform  # same flow code
    doubles = runs(reference_type="prefect_task_run")
    assert [r.initiated_by_run_id for r in doubles] == [flows[0].id, flows[1].id]
    assert doubles[0].transform != doubles[1].transform  # the task's code changed


def test_a_flow_in_a_git_repository_records_the_commit_of_its_code(work: Path) -> None:
    """As for a script's `ln.track()`: the flow run keeps the commit and whether its code was all
    committed, the flow's transform links to the file at that commit, and describe() says it."""
    repo = work / "repo"
    repo.mkdir()
    body = ("from lamin_integrations.prefect import flow\n@flow\ndef {name}() -> int:\n    return 1\n"
            "if __name__ == '__main__':\n    {name}()\n")
    (repo / "committed.py").write_text(body.format(name="committed"))
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run(git + args, check=True, capture_output=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "new.py").write_text(body.format(name="uncommitted"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for script in ("committed.py", "new.py"):
        proc = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=repo, env=env, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    committed, uncommitted = runs(reference_type="prefect_flow_run")
    assert committed._aux["git"] == {"commit": head, "remote": None, "dirty": False}
    assert committed.transform.reference == f"{head}:committed.py" and committed.transform.reference_type == "git"
    assert uncommitted._aux["git"] == {"commit": head, "remote": None, "dirty": True, "not_in_commit": True}
    assert uncommitted.transform.reference is None
    assert f"git: {head[:12]} · clean" in committed.describe(return_str=True)
    assert "uncommitted changes (the code itself is not in the commit)" in uncommitted.describe(return_str=True)


def test_a_flow_journaled_while_the_registry_is_unavailable_keeps_the_commit_of_its_code(work: Path) -> None:
    """The journal carries what a flow run written at once has: its git state and its
    transform's link to the file at that commit."""
    repo = work / "repo"
    repo.mkdir()
    (repo / "flow.py").write_text("from lamin_integrations.prefect import flow\n@flow\ndef offline_flow() -> int:\n"
                                  "    return 1\nif __name__ == '__main__':\n    offline_flow()\n")
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run(git + args, check=True, capture_output=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    broken = work / "broken.db"
    broken.write_bytes(b"not a database, " * 512)  # unavailable: its runs are journaled
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["LAMIN_INTEGRATIONS_DB"] = f"sqlite:///{broken}"
    proc = subprocess.run([sys.executable, "flow.py"], capture_output=True, text=True, cwd=repo, env=env, timeout=180)
    assert proc.returncode == 0 and "journal" in proc.stderr, proc.stderr[-2000:]
    broken.unlink()
    synced = subprocess.run([str(Path(sys.executable).with_name("lamin-integrations")), "sync"], capture_output=True, text=True,
                            env=env, timeout=180)
    assert synced.returncode == 0, synced.stderr[-2000:]
    query = ("import lamin_integrations as ln; r = ln.Run.get(reference_type='prefect_flow_run'); "
             "print(r._aux['git']['commit'], r._aux['git']['dirty'], r.transform.reference)")
    shown = subprocess.run([sys.executable, "-c", query], capture_output=True, text=True, env=env, timeout=180)
    assert shown.stdout.split() == [head, "False", f"{head}:flow.py"], shown.stderr[-2000:]


@task
def write_report(text: str, out: Path) -> Path:
    out.write_text(text)
    return out


@flow
def report_flow(text: str) -> Path:
    return write_report(text, Path("report.txt"))


def test_a_path_parameter_the_task_rewrites_is_its_output(work: Path) -> None:
    report_flow("hello")
    report_flow("world!")  # report.txt exists now: passed in, rewritten, returned
    first, second = [r for r in runs(reference_type="prefect_task_run")]
    assert [a.key for a in first.output_artifacts] == ["report.txt"]
    [written] = second.output_artifacts.to_list()
    assert written.key == "report.txt" and written.is_latest and written.size == len("world!")
    assert written.path.read_text() == "world!"


@task
def normalize(path: str) -> str:
    Path(path).write_text(Path(path).read_text().upper())  # in place, at once
    return path


@task
def rewrite(path: str) -> str:
    Path(path).write_text("rewritten")
    return path


@flow
def normalizing_flow(known: str, unknown: str) -> None:
    normalize(known)
    rewrite(unknown)


def test_an_input_rewritten_in_place_is_linked_as_the_content_the_task_read(work: Path) -> None:
    """Task starts are written in the background, ~50 ms later: a task that has already
    rewritten its input by then read the content it had at its start, not the new one. When
    that content is not known (never hashed), the input is left out rather than linked wrong."""
    raw = work / "raw.txt"
    raw.write_text("raw data")
    os.utime(raw, (1e9, 1e9))  # an old file: its hash is remembered when saved
    original = ln.Artifact(str(raw), key="raw.txt").save()
    fresh = work / "fresh.txt"
    fresh.write_text("never hashed")
    normalizing_flow.with_options(name="normalizing")(str(raw), "fresh.txt")
    runs_by_key = {r.transform.key.split(":")[-1]: r for r in runs(reference_type="prefect_task_run")}
    normalized = runs_by_key["normalize"]
    assert normalized.input_artifacts.to_list() == [original]
    [output] = normalized.output_artifacts.to_list()
    assert output.path.read_text() == "RAW DATA" and output.stem_uid == original.stem_uid
    rewritten = runs_by_key["rewrite"]
    assert all(a.path.read_text() != "rewritten" for a in rewritten.input_artifacts)
    assert [a.path.read_text() for a in rewritten.output_artifacts] == ["rewritten"]


CHILD_SCRIPT = "import sys, lamin_integrations as ln\nln.track(params={'who': sys.argv[1]})\nln.finish()\n"


@task
def run_script(script: str, who: str) -> int:
    return subprocess.run([sys.executable, script, who], check=True).returncode


@flow
def launching_flow(script: str) -> None:
    run_script(script, "task")
    subprocess.run([sys.executable, script, "flow"], check=True)


def test_scripts_launched_by_a_task_or_a_flow_are_their_children(work: Path) -> None:
    script = work / "child.py"
    script.write_text(CHILD_SCRIPT)
    before = os.environ.get("LAMIN_INTEGRATIONS_RUN_UID")
    launching_flow(str(script))
    assert os.environ.get("LAMIN_INTEGRATIONS_RUN_UID") == before, "the process environment is restored"
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    by_who = {r.params["who"]: r for r in ln.Run.filter(transform__key="child.py")}
    assert by_who["task"].initiated_by_run_id == task_run.id and by_who["flow"].initiated_by_run_id == flow_run.id
    assert by_who["task"].root_run_id == flow_run.id


def test_prefect_does_not_log_our_hooks(work: Path) -> None:
    """Prefect logs every hook call at INFO; ours are recording, not the user's business."""
    script = work / "quiet.py"
    script.write_text("from lamin_integrations.prefect import flow, task\n"
                      "def mine(flow, flow_run, state):\n    pass\n"
                      "@task\ndef one() -> int:\n    return 1\n"
                      "@flow(on_completion=[mine])\ndef quiet() -> int:\n    return one()\n"
                      "if __name__ == '__main__':\n    print(quiet())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=work, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Running hook 'mine'" in proc.stderr, "the user's own hooks are still logged"
    assert "lamin_" not in proc.stderr
    assert [r.status for r in runs(reference_type="prefect_task_run")] == ["completed"]


@task
def slow_write(path: str) -> str:
    import time

    time.sleep(1.0)
    Path(path).write_text("late\n")
    return path


@flow
def fire_and_forget() -> str:
    slow_write.submit("late.txt")  # never awaited: the flow's end hook runs before the task ends
    return "returned"


def test_a_task_never_awaited_is_one_completed_run_with_its_output(work: Path) -> None:
    assert fire_and_forget() == "returned"
    [run] = runs(reference_type="prefect_task_run")
    assert run.status == "completed", run._aux
    assert [a.key for a in run.output_artifacts] == ["late.txt"] and run.input_artifacts.count() == 0


from pydantic import BaseModel  # noqa: E402


class RunConfig(BaseModel):
    n: int = 5
    scale: float = 2.0


@flow
def configured(cfg: RunConfig = RunConfig()) -> int:  # noqa: B008 (Prefect users write defaults so)
    return cfg.n


def test_pydantic_parameters_are_stored_as_their_fields(work: Path) -> None:
    assert configured() == 5
    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.params["cfg"] == {"n": 5, "scale": 2.0}
    assert ln.Run.filter(reference_type="prefect_flow_run", params__cfg__n=5).count() == 1


@task
def connect(db: dict, api_token: str, values: list) -> int:
    return len(values)


@flow
def secret_flow(db: dict, api_key: str, day: dt.date, values: list) -> int:
    return connect(db, api_key, values)


def test_parameters_are_stored_like_ln_track_stores_them(work: Path) -> None:
    """Secret-looking names masked, dates as ISO text, a big list summarised (it would be
    stored with every task run that takes it)."""
    values = [float(i) for i in range(5_000)]
    assert secret_flow({"host": "db.local", "password": "pg-pass"}, "sk-live-123", dt.date(2024, 1, 2), values) == 5_000
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    stored = json.dumps([flow_run.params, task_run.params])
    assert "pg-pass" not in stored and "sk-live-123" not in stored
    assert flow_run.params["db"] == {"host": "db.local", "password": "***"} and flow_run.params["api_key"] == "***"
    assert flow_run.params["day"] == "2024-01-02" and ln.Run.filter(params__day="2024-01-02").count() == 1
    assert task_run.params["api_token"] == "***"
    assert task_run.params["values"] == "<list of 5,000 items: too many to record>"


@dataclass
class DBConfig:
    host: str
    password: str


@task
def query(cfg: DBConfig, url: str) -> str:
    return cfg.host


@flow
def dataclass_flow(cfg: DBConfig, url: str, prefect: str = "2.x-compat") -> str:
    return query(cfg, url)


def test_secrets_in_dataclasses_and_urls_are_masked_and_a_prefect_parameter_kept(work: Path) -> None:
    """A config dataclass is stored as its fields (masked by name, as a dict or pydantic model
    is); a password inside a URL is hidden; a flow parameter named `prefect` is the user's."""
    assert dataclass_flow(DBConfig("db.internal", "hunter2"), "postgresql://u:pg-pass@h/db") == "db.internal"
    [flow_run] = runs(reference_type="prefect_flow_run")
    [task_run] = runs(reference_type="prefect_task_run")
    assert "hunter2" not in json.dumps([flow_run.params, task_run.params])
    assert "pg-pass" not in json.dumps([flow_run.params, task_run.params])
    assert flow_run.params["cfg"] == task_run.params["cfg"] == {"host": "db.internal", "password": "***"}
    assert flow_run.params["url"] == "postgresql://u:***@h/db"
    assert flow_run.params["prefect"] == "2.x-compat" and flow_run.params["_prefect"]["state"] == "Completed"


@task
def skipped() -> object:
    from prefect.states import Cancelled

    return Cancelled(message="nothing to do")


@task
def after_skip(x: int) -> int:
    return x + 1


@flow
def cancelling_flow() -> str:
    skipped(return_state=True)
    after_skip(1)
    Path("summary.txt").write_text("s")
    return ln.Artifact("summary.txt", key="summary.txt").save().uid


def test_a_task_that_returns_cancelled_is_not_the_parent_of_what_follows(work: Path) -> None:
    """Prefect runs no hook for a task that ends Cancelled: its run must not stay the current
    one, or the next task and the flow's own artifacts would be recorded under it."""
    uid = cancelling_flow()
    [flow_run] = runs(reference_type="prefect_flow_run")
    by_key = {r.transform.key.split(":")[-1]: r for r in runs(reference_type="prefect_task_run")}
    assert by_key["after_skip"].initiated_by_run == flow_run and by_key["skipped"].initiated_by_run == flow_run
    assert ln.Artifact.get(uid).run == flow_run


def test_a_locked_registry_does_not_hold_the_flow_back(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the SQLite write lock (a big ingest, a sync): recording gives up
    after a few seconds, says so in one line, and skips the rest of the outage."""
    import sqlite3
    import time

    assert mapped_flow(1) == ["m_0.txt"]  # the registry exists, Prefect is warm
    monkeypatch.setattr(prefect_hooks, "outage", prefect_hooks.Outage())
    lock = sqlite3.connect(work.parent / "lineage.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="lamin_integrations"):
            assert mapped_flow(20) == [f"m_{i}.txt" for i in range(20)]
        elapsed = time.monotonic() - started
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert elapsed < 30, elapsed  # was minutes: eight retries of the 30 s busy timeout per write
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "stayed busy" in warnings[0] and "\n" not in warnings[0], warnings
    assert "journal" in warnings[0] and "lamin-integrations sync" in warnings[0]
    assert prefect_hooks.outage.active()
    # nothing was lost: the runs of the outage are in the journal, and `sync` writes them
    assert len(runs(reference_type="prefect_flow_run")) == 1
    from lamin_integrations.core.journal import pending_count, sync

    assert pending_count() > 0
    result = sync()
    assert not result.errors and pending_count() == 0, result
    first, flow_run = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "completed" and flow_run.params["n"] == 20 and flow_run._aux["journaled"]
    tasks = [r for r in runs(reference_type="prefect_task_run") if r.initiated_by_run_id == flow_run.id]
    assert len(tasks) == 20 and all(r.status == "completed" for r in tasks)
    assert sorted(facts(r)["map_index"] for r in tasks) == list(range(20))
    # m_0.txt, with the same bytes, was made by the first flow: recreated now, as it would be live
    assert {a.key for a in ln.Artifact.filter(run__in=tasks)} == {f"m_{i}.txt" for i in range(1, 20)}
    assert {r.id for r in ln.Artifact.get(key="m_0.txt").recreating_runs} & {r.id for r in tasks}
    assert sync().replayed == 0  # again: nothing twice
    assert ln.Run.filter(reference_type="prefect_task_run").count() == 21


@task
def locking_task() -> str:
    """Another process takes the registry's write lock while the flow runs (a big ingest)."""
    import sqlite3

    from lamin_integrations.errors import RegistryUnavailable

    LOCKS.append(sqlite3.connect(LOCKED[0], isolation_level=None, check_same_thread=False))
    LOCKS[-1].execute("BEGIN EXCLUSIVE")
    # what the next write would find out after its 3 s, now: the tasks after this one run in the outage
    prefect_hooks.outage.begin(RegistryUnavailable("the registry is locked by the test"))
    return "locked"


@task
def unlocking_task() -> None:
    """Once recording has noticed the outage, the lock goes, and the outage pause passes."""
    deadline = time.monotonic() + 20
    while not prefect_hooks.outage.active() and time.monotonic() < deadline:
        time.sleep(0.05)
    _release_locks()
    time.sleep(prefect_hooks.OUTAGE_PAUSE_SECONDS + 0.5)


def _release_locks() -> None:
    for lock in LOCKS:
        lock.execute("ROLLBACK")
        lock.close()
    LOCKS.clear()


LOCKS: list = []
LOCKED: list[str] = []


@flow
def sub_of_outage(i: int) -> str:
    return write_item(i, prefix="sub")


@flow
def outage_midway() -> list[str]:
    first = write_item(1, prefix="before")
    locking_task()
    during = write_item(2, prefix="during")
    unlocking_task()
    return [first, during, sub_of_outage(3)]


def test_an_outage_that_begins_and_ends_mid_flow_loses_nothing(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs written before it get their ends from the journal; the flow whose tasks were
    journaled, and a subflow it starts after the registry is back, are journaled to the end,
    so `sync` writes everything in the order it happened (a task's output is the task's)."""
    monkeypatch.setattr(prefect_hooks, "outage", prefect_hooks.Outage())
    monkeypatch.setattr(prefect_hooks, "OUTAGE_PAUSE_SECONDS", 1.0)
    LOCKED[:] = [str(work.parent / "lineage.db")]
    try:
        assert outage_midway() == ["before_1.txt", "during_2.txt", "sub_3.txt"]
    finally:
        _release_locks()
    from lamin_integrations.core.journal import sync

    assert not sync().errors
    flow_run, sub = (ln.Run.get(reference_type="prefect_flow_run", transform__key=k) for k in ("outage-midway", "sub-of-outage"))
    assert flow_run.status == sub.status == "completed" and sub.initiated_by_run == flow_run
    task_runs = runs(reference_type="prefect_task_run")
    assert len(task_runs) == 5 and all(r.status == "completed" for r in task_runs)
    assert sum(r.initiated_by_run_id == flow_run.id for r in task_runs) == 4
    for key, parent in (("before_1.txt", flow_run), ("during_2.txt", flow_run), ("sub_3.txt", sub)):
        made_by = ln.Artifact.get(key=key).run
        assert made_by.reference_type == "prefect_task_run" and made_by.initiated_by_run == parent, key
    assert {a.key for a in flow_run.recreated_artifacts} == {"before_1.txt", "during_2.txt", "sub_3.txt"}


@task
def discover(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv"))


@task
def save_summary(rows: int, out: Path) -> None:
    out.write_text(f"rows\n{rows}\n{time.time_ns()}\n")  # new bytes each time: a new version


@flow
def listing_flow(folder: Path, out: Path) -> int:
    found = discover(folder)
    save_summary(len(found), out)
    return len(found)


def test_listed_files_are_not_outputs_and_a_path_written_without_return_is(work: Path) -> None:
    """A task returning existing files it only listed did not make them; a task writing to
    an `out: Path` parameter made it, whether the file existed before (rewritten) or not."""
    raw = work / "raw"
    raw.mkdir()
    for i in range(2):
        (raw / f"sample{i}.csv").write_text(f"id\n{i}\n")
    time.sleep(0.1)  # the raw files are older than the runs
    out = work / "results" / "summary.csv"
    out.parent.mkdir()
    for _ in range(2):
        assert listing_flow(raw, out) == 2
    tasks = runs(reference_type="prefect_task_run")
    discovers = [r for r in tasks if r.transform.key.endswith(":discover")]
    saves = [r for r in tasks if r.transform.key.endswith(":save_summary")]
    assert len(discovers) == len(saves) == 2
    assert all(r.output_artifacts.count() == 0 for r in discovers)  # listing is not making
    assert [[a.key for a in r.output_artifacts] for r in saves] == [["results/summary.csv"]] * 2
    assert ln.Artifact.filter(key="raw/sample0.csv", run__isnull=False).count() == 0


@task
def may_fail(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * 10


@task
def after(values: list) -> int:
    return len(values)


@flow
def allow_failure_flow() -> int:
    from prefect import allow_failure

    good = may_fail.submit(2)
    return after.submit([allow_failure(good)]).result()


def test_allow_failure_records_the_value_not_a_future(work: Path) -> None:
    assert allow_failure_flow() == 1
    [run] = [r for r in runs(reference_type="prefect_task_run") if r.transform.key.endswith(":after")]
    assert run.params["values"] == [20], run.params
