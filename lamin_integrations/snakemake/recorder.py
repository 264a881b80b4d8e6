"""Writing a Snakemake workflow's events to the registry, on a thread of its own.

Snakemake calls the logger from one listener thread and, at exit, waits for it to drain.
Hashing outputs and writing rows there would make that wait as long as the recording; a
separate worker lets `close()` bound it (`--logger-lamin-drain-seconds`). Everything here
is guarded: a failure is logged once and the workflow's outcome never changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("lamin_integrations")

_STOP = object()
DEFAULT_DRAIN_SECONDS = 120


@dataclass
class Job:
    run: Any
    outputs: list[str]
    cwd: str
    open: bool = True


@dataclass
class Config:
    db: str | None = None
    storage: str | None = None
    project: str | None = None
    max_hash_bytes: int | None = None
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    record_inputs: bool = True


@dataclass
class State:
    """What the workflow told us so far: enough to decide its final status at close."""

    workflow_id: str = ""
    jobs: dict[int, Job] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    errors: dict[Any, str] = field(default_factory=dict)  # emitting thread -> last error text
    workflow_errors: list[str] = field(default_factory=list)
    done: int | None = None
    total: int | None = None
    stats: dict[str, Any] | None = None
    nothing_to_do: bool = False
    interrupted: bool = False
    terminating: bool = False


def _time(created: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(created, tz=dt.UTC)


class Recorder:
    def __init__(self, config: Config, run_uid: str):
        self.config = config
        self.run_uid = run_uid  # chosen up front, so jobs can name their parent before it is saved
        self.state = State()
        self.workflow_run: Any = None
        self.pipeline: Any = None
        self.steps: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}  # absolute path -> artifact recorded in this workflow
        self.disabled = False
        self._warned = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="lamin-integrations-recorder", daemon=True)
        self._thread.start()

    # -- the listener side -----------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> None:
        if not self.disabled:
            self._queue.put(event)

    def close(self) -> None:
        """Record the end of the workflow, waiting at most `drain_seconds` for the backlog."""
        self._queue.put({"event": "close"})
        self._queue.put(_STOP)
        self._thread.join(self.config.drain_seconds)
        if self._thread.is_alive():
            backlog = self._queue.qsize()
            sys.stderr.write(f"lamin-integrations: gave up after {self.config.drain_seconds:g} s with about {backlog} "
                             "events not recorded (raise --logger-lamin-drain-seconds to wait longer)\n")

    # -- the worker side -------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            if self.disabled:
                continue
            try:
                getattr(self, "_on_" + event["event"])(event)
            except Exception as e:
                self._failed(event, e)

    def _failed(self, event: dict[str, Any], error: Exception) -> None:
        from ..core.instance import mask_text

        reason = mask_text(f"{type(error).__name__}: {error}")
        if self.workflow_run is None:
            self.disabled = True  # no workflow run: nothing else can be recorded
            from ..core.context import ENV_RUN_UID

            if os.environ.get(ENV_RUN_UID) == self.run_uid:
                os.environ.pop(ENV_RUN_UID, None)
        if not self._warned:
            self._warned = True
            what = "not recording this workflow" if self.disabled else f"could not record a {event['event']} event"
            sys.stderr.write(f"lamin-integrations: {what}: {reason.splitlines()[0][:500]}\n")
        logger.debug("recording %s failed", event.get("event"), exc_info=error)

    def _on_workflow_started(self, e: dict[str, Any]) -> None:
        from ..core.context import context
        from ..core.instance import connect
        from ..core.models import Run, Transform

        if self.config.db or self.config.storage:
            connect(self.config.db, self.config.storage)
        if self.config.project:
            context.use_project(self.config.project)
        self.state.workflow_id = e["workflow_id"]
        snakefile = Path(e["snakefile"])
        source = snakefile.read_text(encoding="utf-8", errors="replace") if snakefile.is_file() else None
        from ..core.context import _git_reference, _git_state

        git = _git_state(snakefile.resolve()) if source is not None else None
        reference, reference_type = _git_reference(snakefile.resolve()) if git else (None, None)
        self.pipeline = Transform(key=_pipeline_key(snakefile, e["cwd"]), kind="pipeline", source_code=source,
                                  description=f"Snakemake workflow {snakefile.name}", reference=reference,
                                  reference_type=reference_type).save()
        params = {"config": e.get("config"), "configfiles": e.get("configfiles") or [],
                  "snakemake_version": e.get("snakemake_version"), "user": e.get("user"), "workdir": e["cwd"]}
        run = Run(self.pipeline, name=snakefile.parent.name or snakefile.name, reference=e["workflow_id"],
                  reference_type="snakemake_id", params=params, status="started", uid=self.run_uid)
        run.cli_args = (e.get("cmd") or "")[:4096] or None
        run.started_at = _time(e["created"])
        run.host = (e.get("host") or "")[:255] or None
        run.pid = os.getpid()
        if git:
            run._aux = {"git": git}
        self.workflow_run = run.save()

    def _step(self, rule: str) -> Any:
        step = self.steps.get(rule)
        if step is None:
            from ..core.models import Transform

            step = Transform(key=f"{self.pipeline.key}:{rule}", kind="step", hash=self.pipeline.hash,
                             description=f"rule {rule}").save()
            self.steps[rule] = step
        return step

    def _on_job_started(self, e: dict[str, Any]) -> None:
        pass  # submission; the job's run starts with its job_info, logged right after

    def _on_job_info(self, e: dict[str, Any]) -> None:
        from ..core.models import Run
        from ..core.pipeline import link_inputs, record_inputs
        from .parent import job_name

        if self.workflow_run is None:
            return
        jobid = e["jobid"]
        attempt = e.get("attempt") or self.state.attempts.get(jobid, 0) + 1
        self.state.attempts[jobid] = attempt
        params = {"wildcards": e["wildcards"], "params": e.get("params"), "threads": e.get("threads"),
                  "resources": e.get("resources"), "reason": e.get("reason"), "priority": e.get("priority"),
                  "shellcmd": e.get("shellcmd"), "message": e.get("message"), "attempt": attempt, "jobid": jobid}
        run = Run(self._step(e["rule"]), name=job_name(e["rule"], e["wildcards"])[:150],
                  reference=f"{self.state.workflow_id}/{jobid}/{attempt}", reference_type="snakemake_job",
                  initiated_by_run=self.workflow_run, params={k: v for k, v in params.items() if v is not None},
                  status="started")
        run.started_at = _time(e["created"])
        run.host, run.pid = self.workflow_run.host, self.workflow_run.pid
        run.save()
        cwd = e["cwd"]
        self.state.jobs[jobid] = Job(run, _absolute(e["output"] + e["log"] + e["benchmark"], cwd), cwd)
        if not self.config.record_inputs or not e["input"]:
            return
        inputs = _absolute(e["input"], cwd)
        # Outputs of earlier jobs are linked as recorded (no second hashing, and a temp() file
        # may be gone by now); other files are hashed and found by content.
        known = [self.outputs[p] for p in inputs if p in self.outputs]
        others = [p for p in inputs if p not in self.outputs and ("://" in p or os.path.exists(p))]
        if others:
            record_inputs(run, others, workdir=cwd, max_hash_size=self.config.max_hash_bytes)
        if known:
            link_inputs(run, known)

    def _on_job_finished(self, e: dict[str, Any]) -> None:
        job = self.state.jobs.get(e["jobid"])
        if job is None or not job.open:
            return
        self._record_outputs(job, job.outputs)
        self._close(job, "completed", e["created"])

    def _on_job_error(self, e: dict[str, Any]) -> None:
        job = self.state.jobs.get(e["jobid"])
        if job is None or not job.open:
            return
        text = self.state.errors.pop(e.get("thread"), None) or e.get("message") or "job failed"
        logs = _absolute(e.get("log") or [], job.cwd)
        self._record_outputs(job, [p for p in logs if os.path.exists(p)])
        self._close(job, "errored", e["created"], error=text, engine=e.get("aux") or None)

    def _on_error(self, e: dict[str, Any]) -> None:
        if e.get("exception") == "RuleException":
            self.state.errors[e.get("thread")] = e["text"]  # the job_error that follows owns it
        else:
            self.state.workflow_errors.append(e["text"])

    def _on_progress(self, e: dict[str, Any]) -> None:
        self.state.done, self.state.total = e.get("done"), e.get("total")

    def _on_run_info(self, e: dict[str, Any]) -> None:
        self.state.stats = e.get("stats")

    def _on_nothing_to_do(self, e: dict[str, Any]) -> None:
        self.state.nothing_to_do = True

    def _on_interrupted(self, e: dict[str, Any]) -> None:
        self.state.interrupted = True

    def _on_terminating(self, e: dict[str, Any]) -> None:
        self.state.terminating = True

    def _on_close(self, e: dict[str, Any]) -> None:
        from ..core.pipeline import close_run
        from ..core.schema import now

        if self.workflow_run is None:
            return
        s = self.state
        for job in s.jobs.values():
            if job.open:
                self._close(job, "aborted", None, error="the workflow ended before this job finished")
        if s.interrupted or s.terminating:
            status = "aborted"
        elif s.workflow_errors or (s.total is not None and (s.done or 0) < s.total):
            # (a job attempt that failed and then succeeded on retry does not fail the workflow)
            status = "errored"
        else:
            status = "completed"
        counts: dict[str, int] = {}
        for job in s.jobs.values():
            counts[job.run.status] = counts.get(job.run.status, 0) + 1
        error = "\n\n".join(s.workflow_errors) or None
        close_run(self.workflow_run, status, finished_at=now(), error=error, jobs=counts, planned=s.stats,
                  nothing_to_do=s.nothing_to_do or None,
                  reason="interrupted (SIGINT)" if s.interrupted else "terminated (SIGTERM)" if s.terminating else None)

    # -- helpers ---------------------------------------------------------------------------

    def _record_outputs(self, job: Job, paths: list[str]) -> None:
        from ..core.pipeline import given_path, record_outputs
        from ..errors import LaminIntegrationsError

        present = [p for p in paths if "://" in p or os.path.exists(p)]
        recorded: dict[str, Any] = {}
        if present:
            try:
                artifacts = record_outputs(job.run, present, workdir=job.cwd, max_hash_size=self.config.max_hash_bytes)
            except (OSError, LaminIntegrationsError):
                # One file vanished mid-way (a temp() output deleted while we hashed it): record
                # the rest one by one, so only that file ends up listed as not retained.
                artifacts = []
                for path in present:
                    try:
                        artifacts += record_outputs(job.run, [path], workdir=job.cwd,
                                                    max_hash_size=self.config.max_hash_bytes)
                    except (OSError, LaminIntegrationsError):
                        continue
            for artifact in artifacts:
                recorded[given_path(artifact) or ""] = artifact
        gone = [p for p in paths if p not in recorded]
        if gone:  # temp() outputs removed before we got to them, or outputs Snakemake deleted
            recorded.update(_record_missing(job.run, gone, job.cwd))
        self.outputs.update(recorded)

    def _close(self, job: Job, status: str, created: float | None, **aux: Any) -> None:
        from ..core.pipeline import close_run

        job.open = False
        close_run(job.run, status, finished_at=_time(created) if created else None, **aux)


def _record_missing(run: Any, paths: list[str], cwd: str) -> dict[str, Any]:
    """Outputs that no longer exist get a metadata-only record, so the run still lists them."""
    from ..core.models import Artifact
    from ..core.pipeline import artifact_key

    recorded = {}
    for path in paths:
        artifact = Artifact(key=artifact_key(path, cwd), run=run)
        artifact._aux = {"not_retained": True, "path": path}
        recorded[path] = artifact.save()
    return recorded


def _absolute(paths: list[str], cwd: str) -> list[str]:
    return [p if "://" in p or os.path.isabs(p) else os.path.join(cwd, p) for p in paths]


def _pipeline_key(snakefile: Path, workdir: str) -> str:
    """The Snakefile's path relative to its git root, else to the working directory, else its name."""
    from ..core.context import git_root

    root = git_root(snakefile.resolve()) if snakefile.exists() else None
    for base in (root, Path(workdir)):
        if base is None:
            continue
        try:
            return snakefile.resolve().relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
    return snakefile.name or "Snakefile"
