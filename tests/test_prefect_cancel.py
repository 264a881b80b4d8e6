"""Prefect cancellation: no flow run may stay "started".

Two ways a flow run ends Cancelled, both against one Prefect server for this module:
- the flow returns a `Cancelled` state: Prefect fires no hook at all, so the recorder closes
  the run when it next sees a flow hook (a parent's end, the next flow) or at process exit;
- a deployment's run is cancelled from the API while `serve()` runs it: the runner kills the
  flow's process and runs `on_cancellation` in its own process, which has never seen the run
  and must find it by reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import python_env

prefect = pytest.importorskip("prefect")

import lamin_integrations as ln  # noqa: E402
from lamin_integrations.prefect import flow, recorder, task  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("prefect_api")]

OPEN = ["started", "restarted", "scheduled"]


def prefect_env(api_url: str, **extra: str) -> dict[str, str]:
    """A subprocess that talks to this module's Prefect server and writes to the test's registry."""
    return python_env(**{"PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                         "PREFECT_LOGGING_LEVEL": "WARNING", **extra})


def runs(**lookups: Any) -> list[Any]:
    return list(ln.Run.filter(**lookups).order_by("id"))


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}: {read_log(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f": {read_log(proc)}" if proc is not None else ""))
        time.sleep(0.2)


def read_log(proc: subprocess.Popen) -> str:
    log = getattr(proc, "log_path", None)
    return Path(log).read_text()[-4000:] if log and Path(log).exists() else ""


# -- a flow that returns a Cancelled state -----------------------------------------------------------


CANCELLING_SCRIPT = """
import sys
from prefect.states import Cancelled
from lamin_integrations.prefect import flow, task

@task
def step(x: int) -> int:
    return x + 1

@flow
def gives_up(x: int):
    step(x)
    return Cancelled(message="the flow cancelled itself")

state = gives_up(1, return_state=True)
print(state.type.value, state.message)
"""


def test_flow_returning_cancelled_is_aborted_at_process_exit(work: Path, prefect_api: str) -> None:
    """Prefect runs no hook for a flow that returns Cancelled; the process's exit closes the run."""
    script = work / "gives_up.py"
    script.write_text(CANCELLING_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], env=prefect_env(prefect_api), capture_output=True,
                          text=True, timeout=90, cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "CANCELLED the flow cancelled itself"

    [flow_run] = runs(reference_type="prefect_flow_run")
    assert flow_run.status == "aborted" and flow_run.finished_at is not None
    assert flow_run.finished_at >= flow_run.started_at
    assert "the flow cancelled itself" in flow_run._aux["error"]
    assert flow_run.params["prefect"]["state"] == "Cancelled" and flow_run.pid != os.getpid()
    [step] = runs(reference_type="prefect_task_run")
    assert step.status == "completed" and step.initiated_by_run_id == flow_run.id
    assert ln.Run.filter(status__in=OPEN).count() == 0


@task
def add_one(x: int) -> int:
    return x + 1


@flow
def cancels_itself(x: int) -> Any:
    from prefect.states import Cancelled

    add_one(x)
    return Cancelled(message=f"cancelled itself at {x}")


@flow
def runs_a_cancelling_subflow() -> int:
    state = cancels_itself(2, return_state=True)
    assert state.is_cancelled()
    return add_one(10)


def test_cancelled_subflow_is_aborted_when_its_parent_ends(work: Path) -> None:
    # on its own: nothing reports the end, the run stays open until the next flow hook
    assert cancels_itself(1, return_state=True).is_cancelled()
    [alone] = runs(reference_type="prefect_flow_run")
    assert alone.status == "started"

    assert runs_a_cancelling_subflow() == 11
    alone = ln.Run.get(id=alone.id)
    assert alone.status == "aborted" and "cancelled itself at 1" in alone._aux["error"]  # closed at the next flow's start
    assert alone.finished_at is not None and alone.finished_at < ln.Run.get(transform__key="runs-a-cancelling-subflow").started_at

    parent = ln.Run.get(transform__key="runs-a-cancelling-subflow")
    sub = ln.Run.get(transform__key="cancels-itself", initiated_by_run=parent)
    assert parent.initiated_by_run_id is None  # not a child of the unreported run left "current"
    assert parent.status == "completed"
    assert sub.status == "aborted" and "cancelled itself at 2" in sub._aux["error"]
    assert sub.params["prefect"]["state"] == "Cancelled"
    steps = runs(reference_type="prefect_task_run", transform__key__endswith="add_one")
    assert {r.status for r in steps} == {"completed"} and len(steps) == 3
    assert {r.initiated_by_run_id for r in steps} == {alone.id, sub.id, parent.id}
    assert ln.Run.filter(status__in=OPEN).count() == 0 and recorder.state.open == {}


# -- serve() and a real cancellation -------------------------------------------------------------------


SERVED_SCRIPT = """
import sys, time
from pathlib import Path
from lamin_integrations.prefect import flow, task

@task
def prepare(folder: str) -> str:
    out = Path(folder) / "prepared.txt"
    out.write_text("ready\\n")
    return str(out)

@flow
def served_flow(folder: str, wait: bool = True) -> str:
    out = prepare(folder)
    if wait:
        (Path(folder) / "waiting").touch()
        deadline = time.time() + 60
        while time.time() < deadline:  # until cancelled
            time.sleep(0.2)
    return out

if __name__ == "__main__":
    served_flow.serve(name=sys.argv[1])
"""


def test_serve_records_runs_and_a_cancelled_run_is_aborted(work: Path, prefect_api: str, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    script = work / "served.py"
    script.write_text(textwrap.dedent(SERVED_SCRIPT))
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "serve.log"
    env = prefect_env(prefect_api, PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_LOGGING_LEVEL="INFO")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(script), name], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    try:
        with get_client(sync_client=True) as client:
            def deployment() -> Any:
                try:
                    return client.read_deployment_by_name(f"served-flow/{name}")
                except Exception:
                    return None

            dep = wait_for("the deployment", deployment, 60, proc)
            quick_dir, slow_dir = work / "quick", work / "slow"
            quick_dir.mkdir()
            slow_dir.mkdir()
            quick = client.create_flow_run_from_deployment(dep.id, parameters={"folder": str(quick_dir), "wait": False})
            slow = client.create_flow_run_from_deployment(dep.id, parameters={"folder": str(slow_dir)})

            def state_of(flow_run_id: Any) -> Any:
                return client.read_flow_run(flow_run_id).state

            # the slow run is Running, its first task done, and it waits in the flow body
            wait_for("the slow run to wait", lambda: (slow_dir / "waiting").exists(), 60, proc)
            assert state_of(slow.id).is_running()
            [before] = runs(reference=str(slow.id), reference_type="prefect_flow_run")
            assert before.status == "started"

            client.set_flow_run_state(slow.id, Cancelling(message="cancelled by the test"), force=True)
            wait_for("Prefect to report Cancelled", lambda: state_of(slow.id).is_cancelled(), 60, proc)
            assert wait_for("the quick run to complete", lambda: state_of(quick.id).is_completed(), 60, proc)

        def closed(flow_run_id: Any) -> Any:
            run = ln.Run.filter(reference=str(flow_run_id), reference_type="prefect_flow_run").one_or_none()
            return run if run is not None and run.status not in OPEN else None

        cancelled = wait_for("the cancelled Run to be closed", lambda: closed(slow.id), 30, proc)
        assert cancelled.status == "aborted" and cancelled.finished_at is not None
        assert cancelled.params["prefect"]["deployment_id"] == str(dep.id)
        # closed by the runner's on_cancellation hook, in the serve process, found by reference
        # (the flow's own process, terminated, closes it at exit too, as "Running")
        assert cancelled.params["prefect"]["state"] == "Cancelling"
        assert "cancel" in cancelled._aux["error"].lower() and "process exited" not in cancelled._aux["error"]
        [prepared] = runs(initiated_by_run=cancelled, reference_type="prefect_task_run")
        assert prepared.status == "completed" and prepared.transform.key == "served-flow:prepare"

        completed = wait_for("the completed Run", lambda: closed(quick.id), 30, proc)
        assert completed.status == "completed" and completed.params["wait"] is False
        [quick_step] = runs(initiated_by_run=completed, reference_type="prefect_task_run")
        assert quick_step.status == "completed"
        assert ln.Artifact.get(key="quick/prepared.txt").run_id == quick_step.id
        assert ln.Run.filter(status__in=OPEN).count() == 0
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """End the serve process and the flow-run processes it started (its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the session, if any
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=15)
