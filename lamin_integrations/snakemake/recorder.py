"""Writing a Snakemake workflow's events to the registry (runs in the worker process).

Events arrive in order; whatever has queued up is recorded together (one insert for many
job runs, one hashing pool for many outputs), so a busy workflow costs fewer transactions
per job, not more. Everything here is guarded: a failure is logged once and the
workflow's outcome never changes.

When the registry becomes unavailable (server down, database locked, disk full), every event
of the workflow so far and from then on goes to the registry's journal (core/journal.py);
at the end the recorder tries once to write it, else `lamin-integrations sync` does. Replay
runs the same code on the journaled events: the workflow run has a fixed uid and job runs
uids derived from (workflow run, jobid, attempt), so records already written are found,
not duplicated.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.hashing import FileState, file_state

logger = logging.getLogger("lamin_integrations")

_STOP = object()
_FAILED_JOB = re.compile(r"^Job (\d+) ", re.MULTILINE)
DEFAULT_DRAIN_SECONDS = 120
WRITE_SECONDS = 30.0  # the longest one write waits for a locked SQLite registry


@dataclass
class Job:
    run: Any
    outputs: list[str]
    cwd: str
    open: bool = True
    logs: list[str] = field(default_factory=list)  # also kept when the job is stopped
    copies: dict[str, str] = field(default_factory=dict)  # files Snakemake deletes, as the logger kept them
    uncopied: set[str] = field(default_factory=set)  # ...and those too big to copy, rewritten since: listed only
    stored: set[str] = field(default_factory=set)  # outputs recorded before the job's end (temp() ones, under --quiet)


@dataclass
class Config:
    db: str | None = None
    storage: str | None = None
    project: str | None = None
    max_hash_bytes: int | None = None
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    record_inputs: bool = True
    kept: str | None = None  # the logger's folder of copies of files Snakemake deletes (removed at the end)


@dataclass
class State:
    """What the workflow told us so far: enough to decide its final status at close."""

    workflow_id: str = ""
    jobs: dict[int, Job] = field(default_factory=dict)
    producers: dict[str, Job] = field(default_factory=dict)  # output path -> the job that writes it (latest attempt)
    attempts: dict[int, int] = field(default_factory=dict)
    errors: dict[Any, str] = field(default_factory=dict)  # emitting thread -> last error text
    workflow_errors: list[str] = field(default_factory=list)
    done: int | None = None
    total: int | None = None
    stats: dict[str, Any] | None = None
    nothing_to_do: bool = False
    no_finish_events: bool = False  # --quiet: jobs end without job_finished
    keep_incomplete: bool = False  # --keep-incomplete: a failed job's outputs stay on disk
    interrupted: bool = False
    terminating: bool = False
    lost: bool = False  # the Snakemake process went away without closing the logger
    closed: bool = False


def _time(created: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(created, tz=dt.UTC)


class Recorder:
    def __init__(self, config: Config, run_uid: str, *, replay: bool = False):
        self.config = config
        self.run_uid = run_uid  # chosen up front, so jobs can name their parent before it is saved
        self.state = State()
        self.workflow_run: Any = None
        self.pipeline: Any = None
        self.steps: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}  # absolute path -> artifact recorded in this workflow
        self.awaited: dict[str, list[Any]] = {}  # an output of a running job -> runs that read it already
        self.disabled = False
        self._warned = False
        self.replaying = replay  # writing journaled events: no thread, unavailability raises
        self.seen: list[dict[str, Any]] = []  # every event so far, journaled if the registry goes away
        self.journal: Any = None  # the Journal, once the registry was unavailable
        self._synced = False
        self._back = False  # the journaled workflow was written at its close: write what follows too
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="lamin-integrations-recorder", daemon=True)
        if not replay:
            self._thread.start()

    # -- the listener side -----------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> None:
        if not self.disabled:
            self._queue.put(event)

    def close(self, timeout: float | None = None) -> bool:
        """Record the end of the workflow; False if the backlog outlived `timeout` seconds."""
        self._queue.put({"event": "close", "created": time.time()})
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the worker side -------------------------------------------------------------------

    def _loop(self) -> None:
        from ..core.instance import write_budget

        # A registry locked for long (a stuck writer, a stale lock on a network file system) is
        # unavailable after a quarter of the drain time: the workflow is journaled, and Snakemake
        # does not wait out the drain time at its end. (Each write would else wait SQLite's busy
        # timeout, eight times over.)
        with write_budget(min(WRITE_SECONDS, max(1.0, self.config.drain_seconds / 4))):
            self._loop_events()

    def _loop_events(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # take whatever else is waiting: many jobs are then recorded at once
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [e for e in batch if e is not _STOP]
            if self.journal is not None:
                self._journal(events)
            elif not self.disabled:
                self.seen.extend(events)
                self._process(events)
            # After the close (or after it when the registry came back: Snakemake's last events
            # may arrive in a later batch), try to write the journaled workflow.
            if self.journal is not None and events and (self._back or any(e["event"] == "close" for e in events)):
                self._sync_at_close()
            if len(events) < len(batch):
                if self.config.kept:  # what was not recorded by now is not kept longer
                    import shutil

                    shutil.rmtree(self.config.kept, ignore_errors=True)
                return

    def _process(self, events: list[dict[str, Any]]) -> None:
        """Handle events in order, grouping job events into segments recorded in bulk."""
        segment: list[dict[str, Any]] = []
        jobids: set[int] = set()
        for event in events:
            name = event["event"]
            if name in ("workflow_started", "close") or (name == "job_info" and event["jobid"] in jobids):
                self._guarded(self._segment, segment)  # a retry of a job in this segment: keep order
                segment, jobids = [], set()
            if name in ("workflow_started", "close"):
                self._guarded(getattr(self, "_on_" + name), event)
                continue
            segment.append(event)
            if name in ("job_info", "job_finished", "job_error"):
                # a job_info after this jobid's end is the next attempt (--retries): a segment of
                # its own, else the earlier attempt's end would be matched to it
                jobids.add(event["jobid"])
        self._guarded(self._segment, segment)

    def _guarded(self, handler: Any, arg: Any) -> None:
        if self.disabled or self.journal is not None or arg == []:
            return
        try:
            handler(arg)
        except Exception as e:
            from ..core.journal import is_unavailable

            if is_unavailable(e):
                if self.replaying:
                    raise  # sync keeps the journal lines and says why
                self._go_offline(e)
                return
            if isinstance(arg, list) and len(arg) > 1:  # record what can be, one event at a time
                for event in arg:
                    self._guarded(self._segment_again, [event])
            else:
                self._failed(arg[0] if isinstance(arg, list) else arg, e)

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

    # -- the journal ------------------------------------------------------------------------

    def _go_offline(self, error: Exception) -> None:
        """The registry is unavailable: journal everything of this workflow, now and from now on."""
        from ..core.instance import mask_text, resolve
        from ..core.journal import Journal

        reason = mask_text(f"{type(error).__name__}: {error}").splitlines()[0][:500]
        try:
            self.journal = Journal(resolve(self.config.db, self.config.storage)[0])
            self._journal(self.seen)
        except Exception as e:
            self._journal_failed(reason, e)
            return
        self.seen = []
        sys.stderr.write(f"lamin-integrations: not recording this workflow now, the registry is unavailable ({reason}); "
                         f"its events are journaled in {self.journal.path} for `lamin-integrations sync`\n")
        logger.debug("registry unavailable", exc_info=error)

    def _journal(self, events: list[dict[str, Any]]) -> None:
        from dataclasses import asdict

        config = asdict(self.config)
        entries = [{"config": config, "event": e, **({"end": True} if e["event"] == "close" else {})} for e in events]
        try:
            self.journal.append("snakemake", self.run_uid, entries)
        except Exception as e:
            self._journal_failed("the registry is unavailable", e)

    def _journal_failed(self, reason: str, error: Exception) -> None:
        self.journal, self.disabled = None, True
        sys.stderr.write(f"lamin-integrations: not recording this workflow: {reason}, and its journal cannot be "
                         f"written either ({type(error).__name__}: {error})\n")

    def _sync_at_close(self) -> None:
        """One attempt to write the journaled workflow, in case the registry is back (again for
        events journaled after a successful one)."""
        if (self._synced and not self._back) or self.journal is None:
            return
        self._synced = True
        from ..core.instance import connect
        from ..core.journal import sync

        try:
            result = sync(connect(self.config.db, self.config.storage), only=self.run_uid)
        except Exception as e:  # still unavailable: the journal keeps it for `lamin-integrations sync`
            logger.debug("syncing the journal at the end failed", exc_info=e)
            return
        if (result.runs or result.present) and not self._back:
            sys.stderr.write("lamin-integrations: the registry is back; the journaled workflow is recorded\n")
        self._back = self._back or bool(result.runs or result.present)

    # -- events ------------------------------------------------------------------------------

    def _on_workflow_started(self, e: dict[str, Any]) -> None:
        from ..core.context import context, parent_run_from_env
        from ..core.instance import connect, mask_text
        from ..core.models import Run, Transform

        snakefile = Path(e["snakefile"])
        # `--logger-lamin-db URL` is on the command line: masked before it is saved or journaled.
        e["cmd"] = mask_text(e.get("cmd") or "")
        if "snakefile_source" not in e:  # read now, so a later replay records the Snakefile of this run
            from ..core.gitinfo import git_reference, git_state

            source = snakefile.read_text(encoding="utf-8", errors="replace") if snakefile.is_file() else None
            e["snakefile_source"] = _with_includes(source, snakefile, e.get("included") or [])
            e["git"] = git_state(snakefile.resolve()) if source is not None else None
            e["git_reference"] = list(git_reference(snakefile.resolve())) if e["git"] else [None, None]
            e["recorder_pid"] = os.getpid()
        if not self.replaying and (self.config.db or self.config.storage):
            connect(self.config.db, self.config.storage)
        self.state.workflow_id = e["workflow_id"]
        self.state.no_finish_events = bool(e.get("no_finish_events"))
        self.state.keep_incomplete = bool(e.get("keep_incomplete"))
        if self.config.project:
            context.use_project(self.config.project)
        source, git = e["snakefile_source"], e["git"]
        reference, reference_type = e["git_reference"]
        self.pipeline = Transform(key=_pipeline_key(snakefile, e["cwd"]), kind="pipeline", source_code=source,
                                  description=f"Snakemake workflow {snakefile.name}", reference=reference,
                                  reference_type=reference_type).save()
        params = {"config": e.get("config"), "configfiles": e.get("configfiles") or [],
                  "snakemake_version": e.get("snakemake_version"), "user": e.get("user"), "workdir": e["cwd"]}
        if self.replaying:
            found = Run.filter(uid=self.run_uid).one_or_none()
            if found is not None:  # written before the registry went away
                self.workflow_run = found
                return
        launched_by = e.get("launched_by")  # the tracked run (or job) that started Snakemake
        parent = parent_run_from_env(launched_by) if launched_by else None
        run = Run(self.pipeline, name=_workflow_name(snakefile, e["cwd"]), reference=e["workflow_id"],
                  reference_type="snakemake_id", params=params, status="started", uid=self.run_uid,
                  initiated_by_run=parent)
        run.cli_args = (e.get("cmd") or "")[:4096] or None
        run.started_at = _time(e["created"])
        run.host = (e.get("host") or "")[:255] or None
        run.pid = e["recorder_pid"]
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

    def _segment_again(self, events: list[dict[str, Any]]) -> None:
        """An event of a segment that failed part-way: its workflow state was taken already."""
        self._segment(events, again=True)

    def _segment(self, events: list[dict[str, Any]], again: bool = False) -> None:
        """Record a run of job events: new runs, outputs, inputs, ends (in that order)."""
        from ..core.bulk import save
        from ..core.models import Run
        from ..core.pipeline import artifact_key
        from ..core.uids import derived
        from .parent import job_name

        if self.workflow_run is None:
            return
        infos, ends, removed = [], [], []
        for e in events:  # state first, in order: an error text belongs to the job_error after it
            name = e["event"]
            if name == "job_info":
                infos.append(e)
            elif name == "temp_removed":
                removed.append(e)
            elif name in ("job_finished", "job_error"):
                if name == "job_error" and not again:
                    e["error_text"] = self.state.errors.pop(e.get("thread"), None)
                ends.append(e)
            elif name != "job_started" and not again:  # job_started marks submission; the run starts at job_info
                getattr(self, "_on_" + name)(e)
            if name == "error" and e.get("failed_job") is not None:  # no job_error follows this one
                ends.append({"event": "job_error", "created": e["created"], "jobid": e["failed_job"],
                             "error_text": e["text"]})
        new_jobs, unsaved = [], []
        for e in infos:
            jobid = e["jobid"]
            # kept in the event: a segment that failed part-way is recorded again event by event
            # (_guarded), and its job runs, already written, must be found, not written twice
            attempt = e["attempt"] = e.get("attempt") or self.state.attempts.get(jobid, 0) + 1
            self.state.attempts[jobid] = attempt
            uid = derived(f"{self.run_uid}/{jobid}/{attempt}")
            known = self.state.jobs.get(jobid)
            if known is not None and known.run.uid == uid and known.run.id is not None:
                new_jobs.append((known, _absolute(e["input"], known.cwd) if self.config.record_inputs else []))
                continue
            params = {"wildcards": e["wildcards"], "params": e.get("params"), "threads": e.get("threads"),
                      "resources": e.get("resources"), "reason": e.get("reason"), "priority": e.get("priority"),
                      "shellcmd": e.get("shellcmd"), "message": e.get("message"), "attempt": attempt, "jobid": jobid}
            run = Run(self._step(e["rule"]), name=job_name(e["rule"], e["wildcards"])[:150],
                      reference=f"{self.state.workflow_id}/{jobid}/{attempt}", reference_type="snakemake_job",
                      initiated_by_run=self.workflow_run, uid=uid,
                      params={k: v for k, v in params.items() if v is not None}, status="started")
            run.started_at = _time(e["created"])
            run.host, run.pid = self.workflow_run.host, self.workflow_run.pid
            cwd = e["cwd"]
            job = Job(run, _absolute(e["output"] + e["log"] + e["benchmark"], cwd), cwd, logs=_absolute(e["log"], cwd))
            self.state.jobs[jobid] = job
            self.state.producers.update((p, job) for p in job.outputs)
            new_jobs.append((job, _absolute(e["input"], cwd) if self.config.record_inputs else []))
            unsaved.append(job)
        if unsaved and self.replaying:  # job runs written before the registry went away are kept
            found = {r.uid: r for r in Run.filter(uid__in=[job.run.uid for job in unsaved])}
            for job in unsaved:
                job.run = found.get(job.run.uid, job.run)
        if unsaved:
            save([job.run for job in unsaved])  # one insert: a script's ln.track() finds its job
        self._adopt_scripts()
        # an update() output's earlier content, as recorded before this job rewrote it (looked
        # up before this segment records outputs: the job may have finished already)
        earlier = [(self.state.jobs[e["jobid"]].run, found) for e in infos for p in e.get("updated") or []
                   if (found := _recorded_here(artifact_key(p, e["cwd"]), e["cwd"])) is not None]
        closing: list[tuple[Any, str, Any, dict[str, Any]]] = []
        outputs, closed = [], []
        for e in ends:
            ended = self.state.jobs.get(e["jobid"])
            if ended is None or not ended.open or ended in closed:
                continue
            job = ended
            closed.append(job)  # marked closed once recorded: else _on_close still ends it
            # the logger's copies of what Snakemake deletes before we read it (a failed
            # attempt's logs, temp() outputs), keyed by the paths as the job named them
            copies = e.get("copies") or {}
            job.copies = {path: copy for given, copy in copies.items() if isinstance(copy, str)
                          for path in _absolute([given], job.cwd) if os.path.exists(copy)}
            # a log too big to copy, known by its stat then: read only if no retry wrote over it
            job.uncopied = {path for given, seen in copies.items() if isinstance(seen, list | tuple)
                            for path in _absolute([given], job.cwd) if file_state(path) != FileState(*seen)}
            if e["event"] == "job_finished":
                outputs.append((job, job.outputs))
                closing.append((job.run, "completed", _time(e["created"]), {}))
            else:  # the log explains the failure; Snakemake deletes the other outputs
                kept = [p for p in _absolute(e.get("log") or [], job.cwd) if p in job.copies or os.path.exists(p)]
                if self.state.keep_incomplete:  # ...unless told to keep them: what it left is its output
                    kept += [p for p in job.outputs if p not in kept and _written_since(p, job)]
                outputs.append((job, kept))
                error = e.get("error_text") or e.get("message") or "job failed"
                # Ctrl-C in a terminal signals the whole process group: the job's command dies
                # of it before Snakemake reports the interrupt. That job was stopped, not failed.
                stopped = any(f"<Signals.{name}:" in error for name in ("SIGINT", "SIGTERM"))
                closing.append((job.run, "aborted" if stopped else "errored", _time(e["created"]),
                                {"error": error, "engine": e.get("aux") or None}))
        outputs += self._removed_temp(removed)
        self._record_outputs(outputs)
        _remove_copies(c for e in ends + removed for c in (e.get("copies") or {}).values() if isinstance(c, str))
        self._record_inputs(new_jobs)
        if earlier:
            from ..core.pipeline import record_files

            record_files(links=earlier)
        if closing:
            from ..core.pipeline import close_runs

            close_runs(closing)
        for job in closed:
            job.open = False

    def _removed_temp(self, removed: list[dict[str, Any]]) -> list[tuple[Job, list[str]]]:
        """temp() outputs that Snakemake removed before their job's end was reported (--quiet
        reports none): stored now, from the logger's copies, as outputs of the open job."""
        out = []
        for e in removed:
            for path, copy in (e.get("copies") or {}).items():
                job = self.state.producers.get(path)
                if job is not None and job.open and path not in job.stored and os.path.exists(copy):
                    job.copies[path] = copy
                    job.stored.add(path)
                    out.append((job, [path]))
        return out

    def _on_error(self, e: dict[str, Any]) -> None:
        if e.get("exception") == "RuleException":
            self.state.errors[e.get("thread")] = e["text"]  # the job_error that follows owns it
            return
        if e.get("exception") == "SpawnedJobError":  # a job run in a spawned Snakemake (shadow:, group:) failed:
            self.state.errors.setdefault(e.get("thread"), e["text"])  # its job_error follows; a retry may succeed
            return
        self.state.workflow_errors.append(e["text"])
        # A job that ran but left an output missing or incomplete (MissingOutputException,
        # IncompleteFilesException) gets only this record, naming it as "Job 2 ...": it failed.
        found = _FAILED_JOB.search(e.get("text") or "")
        if found and e.get("exception") != "WorkflowError":
            job = self.state.jobs.get(int(found.group(1)))
            if job is not None and job.open:
                e["failed_job"] = int(found.group(1))

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

    def _on_lost(self, e: dict[str, Any]) -> None:
        self.state.lost = True

    def _on_close(self, e: dict[str, Any]) -> None:
        from ..core.pipeline import close_run, close_runs
        from ..core.schema import now

        if self.workflow_run is None or self.state.closed:
            return
        s = self.state
        s.closed = True
        if s.interrupted or s.terminating or s.lost:
            status = "aborted"
        elif s.workflow_errors or any(job.run.status == "errored" for job in s.jobs.values()):
            # s.jobs holds each job's last attempt: one that failed and then succeeded on retry
            # does not fail the workflow. (Not "done < total": --until plans more than it runs.)
            status = "errored"
        else:
            status = "completed"
        self._adopt_scripts()
        still_open = [job for job in s.jobs.values() if job.open]
        for job in still_open:
            job.open = False
        # Under --quiet Snakemake sends no job_finished: a workflow that succeeded finished every
        # job it started; in one that failed (--keep-going), a job finished if its outputs are
        # there, written since it started (Snakemake deletes a failed job's outputs).
        # Killed (SIGKILL, OOM): Snakemake's own markers tell the jobs it saw finish from the ones it
        # was running (`.snakemake/incomplete/`, removed as each job finishes).
        finished = [job for job in still_open if status == "completed"
                    or (s.no_finish_events and not (s.interrupted or s.terminating or s.lost) and _wrote_outputs(job))
                    or (s.lost and _wrote_outputs(job) and _marked_finished(job))]
        stopped = [job for job in still_open if job not in finished]
        self._record_outputs([(job, [p for p in job.outputs if p not in job.stored]) for job in finished])
        close_runs([(job.run, "completed", None, {"end_time": "workflow end (no job_finished event)"})
                    for job in finished])
        # what the stopped jobs logged so far explains where they were
        self._record_outputs([(job, [p for p in job.logs if os.path.exists(p)]) for job in stopped])
        close_runs([(job.run, "aborted", None, {"error": "the workflow ended before this job finished"})
                    for job in stopped])
        counts: dict[str, int] = {}
        for job in s.jobs.values():
            counts[job.run.status] = counts.get(job.run.status, 0) + 1
        error = "\n\n".join(s.workflow_errors) or None
        finished_at = _time(e["created"]) if e.get("created") else now()
        close_run(self.workflow_run, status, finished_at=finished_at, error=error, jobs=counts, planned=s.stats,
                  nothing_to_do=s.nothing_to_do or None,
                  reason="interrupted (SIGINT)" if s.interrupted else "terminated (SIGTERM)" if s.terminating
                  else "Snakemake ended without closing its logger (killed?)" if s.lost else None)

    # -- helpers ---------------------------------------------------------------------------

    def _record_outputs(self, items: list[tuple[Job, list[str]]]) -> None:
        """Outputs, logs and benchmarks of finished jobs; vanished files are listed as not retained."""
        from ..core.pipeline import artifact_key, given_path, record_files
        from ..errors import LaminIntegrationsError

        recorded_bare = self._metadata_only([job for job, _ in items]) if self.replaying else set()
        entries = [(job.run, [p for p in paths if p not in job.uncopied and ("://" in p or p in job.copies or os.path.exists(p))
                              and (job.run.id, artifact_key(p, job.cwd)) not in recorded_bare], job.cwd)
                   for job, paths in items]
        entries = [e for e in entries if e[1]]
        artifacts: list[Any] = []
        if entries:
            copies = {p: c for job, _ in items for p, c in job.copies.items()}
            try:
                artifacts = record_files(outputs=entries, max_hash_size=self.config.max_hash_bytes, copies=copies)[0]
            except (OSError, LaminIntegrationsError):
                # A file vanished mid-way (a temp() output deleted while we hashed it): record
                # the rest one by one, so only that file ends up listed as not retained.
                for run, paths, cwd in entries:
                    for path in paths:
                        try:
                            artifacts += record_files(outputs=[(run, [path], cwd)],
                                                      max_hash_size=self.config.max_hash_bytes, copies=copies)[0]
                        except (OSError, LaminIntegrationsError):
                            continue
        recorded = {given_path(a) or "": a for a in artifacts}
        for job, paths in items:
            gone = [p for p in paths if p not in recorded]
            if gone:  # temp() outputs removed before we got to them, or outputs Snakemake deleted
                recorded.update(_record_missing(job.run, gone, job.cwd, self.replaying))
        self.outputs.update(recorded)
        waiting = [(run, recorded[p]) for p in list(self.awaited) if p in recorded for run in self.awaited.pop(p)]
        if waiting:  # read before its writer finished: a pipe(), or any output under --quiet
            from ..core.pipeline import record_files

            record_files(links=waiting)

    def _gone_inputs(self, job: Job, gone: list[str]) -> list[tuple[Any, Any]]:
        """Inputs deleted before we got to them (a temp() file removed when its last reader
        ended): the output of a job still running here is linked when that job is recorded;
        else the file as this working directory's workflows last recorded it; else a record of
        its path, not retained, so the run still lists it."""
        from ..core.models import Artifact
        from ..core.pipeline import artifact_key

        running = {p for other in self.state.jobs.values() if other.open and other is not job for p in other.outputs}
        links = []
        for path in gone:
            if path in running:
                self.awaited.setdefault(path, []).append(job.run)
                continue
            key = artifact_key(path, job.cwd)
            found = _recorded_here(key, job.cwd)
            if found is None:
                found = Artifact(key=key)
                found._aux = {"not_retained": True, "path": path}
                found.save()
            links.append((job.run, found))
        return links

    def _adopt_scripts(self) -> None:
        """Scripts that gave up waiting for their job run (the recorder was behind, hashing a
        big output) started under the workflow run with their job's name: move each under
        its job, now recorded."""
        from ..core.bulk import update_all
        from ..core.models import Run

        if self.workflow_run is None or self.workflow_run.id is None:
            return
        waiting = Run.filter(initiated_by_run=self.workflow_run, _aux__parent_hint__isnull=False).to_list()
        if not waiting:
            return
        by_name: dict[str, list[Any]] = {}
        for job in self.state.jobs.values():
            if job.run.id is not None:
                by_name.setdefault(job.run.name, []).append(job.run)
        moved = []
        for run in waiting:
            hint = (run._aux or {}).get("parent_hint") or {}
            if not isinstance(hint, dict) or hint.get("reference_type") != "snakemake_job":
                continue
            jobs = [j for j in by_name.get(str(hint.get("name")), [])
                    if j.started_at is None or run.started_at is None or j.started_at <= run.started_at]
            if jobs:
                run.initiated_by_run = max(jobs, key=lambda j: j.id)  # the latest attempt
                run._aux = {k: v for k, v in (run._aux or {}).items() if k != "parent_hint"} or None
                moved.append(run)
        if moved:
            update_all(moved)

    def _metadata_only(self, jobs: list[Job]) -> set[tuple[int, str]]:
        """(run id, key) of outputs recorded without content (not retained, not hashed) before a replay."""
        from ..core.models import Artifact

        ids = [job.run.id for job in jobs if job.run.id is not None]
        return {(a.run_id, a.key) for a in Artifact.filter(run_id__in=ids, hash__isnull=True)} if ids else set()

    def _record_inputs(self, items: list[tuple[Job, list[str]]]) -> None:
        """Outputs of earlier jobs are linked as recorded (no second hashing, and a temp() file
        may be gone by now); other files are hashed and found by content."""
        from ..core.pipeline import record_files

        links, entries = [], []
        for job, inputs in items:
            links += [(job.run, self.outputs[p]) for p in inputs if p in self.outputs]
            others = [p for p in inputs if p not in self.outputs and ("://" in p or os.path.exists(p))]
            for p in [p for p in others if "://" not in p and not os.path.isfile(p) and not os.path.isdir(p)]:
                others.remove(p)  # a pipe(): linked when the job writing it is recorded
                self.awaited.setdefault(p, []).append(job.run)
            gone = [p for p in inputs if p not in self.outputs and "://" not in p and not os.path.lexists(p)]
            if gone:
                links += self._gone_inputs(job, gone)
            if others:
                entries.append((job.run, others, job.cwd))
        if links or entries:
            record_files(inputs=entries, links=links, max_hash_size=self.config.max_hash_bytes, own_files_by_path=True)


def _written_since(path: str, job: Job) -> bool:
    """The local file exists and was written after the job started (a second of slack)."""
    started = job.run.started_at.timestamp() - 1.0 if job.run.started_at else 0.0
    try:
        return "://" not in path and os.lstat(path).st_mtime >= started
    except OSError:
        return False


def _marked_finished(job: Job) -> bool:
    """No output of the job has Snakemake's incomplete marker (`.snakemake/incomplete/<base64 of the
    path as the Snakefile names it>`, set when the job starts and removed when it finishes)."""
    from base64 import urlsafe_b64encode

    folder = os.path.join(job.cwd, ".snakemake", "incomplete")
    if not os.path.isdir(folder):
        return False  # not Snakemake's usual bookkeeping: nothing tells
    logs = set(job.logs)
    for path in (p for p in job.outputs if p not in logs and "://" not in p):
        for name in {path, os.path.relpath(path, job.cwd)}:
            b64 = urlsafe_b64encode(name.encode()).decode()
            parts = [b64[i:i + 254] for i in range(0, len(b64), 254)]  # long names: "@"-prefixed folders
            if os.path.exists(os.path.join(folder, *["@" + part for part in parts[:-1]], parts[-1])):
                return False
    return True


def _wrote_outputs(job: Job) -> bool:
    """Every output of the job (not its logs) exists and was written after the job started."""
    logs = set(job.logs)
    outputs = [p for p in job.outputs if p not in logs and "://" not in p]
    return bool(outputs) and all(_written_since(p, job) for p in outputs)


def _recorded_here(key: str, cwd: str) -> Any:
    """The artifact a workflow run in this working directory last recorded under `key`."""
    from ..core.models import Artifact, Run

    for artifact in Artifact.filter(key=key, run__isnull=False).order_by("-id")[:20]:
        root = Run.filter(id=artifact.run.root_run_id or artifact.run_id).first()
        if root is not None and root.reference_type == "snakemake_id" and (root.params or {}).get("workdir") == cwd:
            return artifact
    return None


def _record_missing(run: Any, paths: list[str], cwd: str, replaying: bool = False) -> dict[str, Any]:
    """Outputs that no longer exist get a metadata-only record, so the run still lists them."""
    from ..core.models import Artifact
    from ..core.pipeline import artifact_key

    recorded = {}
    for path in paths:
        if replaying:  # recorded before the registry went away (hashed then, or not retained)
            found = Artifact.filter(run=run, key=artifact_key(path, cwd)).order_by("-id").first()
            if found is not None:
                recorded[path] = found
                continue
        artifact = Artifact(key=artifact_key(path, cwd), run=run)
        artifact._aux = {"not_retained": True, "path": path}
        recorded[path] = artifact.save()
    return recorded


def _with_includes(source: str | None, snakefile: Path, included: list[str]) -> str | None:
    """The Snakefile followed by each file it includes, so that a rule changed in
    `rules/align.smk` is a new version of the pipeline, and its code is kept."""
    if source is None:
        return None
    parts = [source]
    main = os.path.realpath(snakefile)
    for path in dict.fromkeys(included):
        if os.path.realpath(path) == main:
            continue
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        name = os.path.relpath(path, snakefile.parent)
        parts.append(f"\n# ---- include: {name} ----\n{text}")
    return "".join(parts)


def _remove_copies(copies: Iterable[str]) -> None:
    """The logger's copies of files Snakemake deletes, once recorded (their folder goes at the end:
    the logger may be making the next copy in it)."""
    for copy in copies:
        try:
            os.remove(copy)
        except OSError:
            continue


def _absolute(paths: list[str], cwd: str) -> list[str]:
    return [p if "://" in p or os.path.isabs(p) else os.path.join(cwd, p) for p in paths]


def _project_folder(snakefile: Path, workdir: str) -> Path:
    """The Snakefile's folder, or its parent's in the recommended layout
    (`<project>/workflow/Snakefile`, where every workflow's folder is called "workflow")."""
    folder = (Path(workdir) / snakefile).parent
    if folder.name == "workflow" and folder.parent.name:
        folder = folder.parent
    return folder


def _workflow_name(snakefile: Path, workdir: str) -> str:
    """The project's folder name."""
    return (_project_folder(snakefile, workdir).name or snakefile.name or "Snakefile")[:150]


def _pipeline_key(snakefile: Path, workdir: str) -> str:
    """The Snakefile's path below its project, starting with the project's name: the git
    repository's (its remote's name, so every clone is one pipeline; else its folder's), or
    outside git the project folder's (`rnaseq/workflow/Snakefile`). Every project's Snakefile
    is `Snakefile` or `workflow/Snakefile`: without the name, unrelated workflows would be
    versions of one transform in a registry shared by all of a user's projects."""
    from ..core.gitinfo import git_root

    if not snakefile.name:  # Snakemake did not say
        return "Snakefile"
    path = (Path(workdir) / snakefile).resolve()
    root = git_root(path) if path.exists() else None
    if root is not None:
        try:
            return f"{_repo_name(root)}/{path.relative_to(root.resolve()).as_posix()}"
        except ValueError:
            pass
    project = _project_folder(snakefile, workdir).resolve()
    if project.name:
        try:
            return path.relative_to(project.parent).as_posix()
        except ValueError:
            pass
    return snakefile.name


def _repo_name(root: Path) -> str:
    """`rnaseq` for a clone of github.com/lab/rnaseq(.git) wherever it is; else the folder's name."""
    from ..core.gitinfo import commit_and_remote

    remote = commit_and_remote(root)[1]
    name = remote.rstrip("/").removesuffix(".git").replace(":", "/").rsplit("/", 1)[-1] if remote else ""
    return name or root.resolve().name or "repository"


def replay(entries: list[dict[str, Any]]) -> bool:
    """Record a journaled workflow (core/journal.py calls this inside one transaction).

    Returns True when the workflow was already fully recorded. A workflow whose end is not in
    the journal (its recorder was killed) is closed as lost, like a live one.
    """
    from dataclasses import fields

    from ..core.context import context
    from ..core.models import Run

    run_uid = entries[0]["group"]
    found = Run.filter(uid=run_uid).one_or_none()
    if found is not None and found.status in ("completed", "errored", "aborted"):
        return True
    known = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in (entries[0].get("config") or {}).items() if k in known})
    config.db = config.storage = None  # the registry being synced, wherever it is now
    events = [entry["event"] for entry in entries]
    if not any(entry.get("end") for entry in entries):
        created = events[-1].get("created")
        events += [{"event": "lost", "created": created}, {"event": "close", "created": created}]
    recorder = Recorder(config, run_uid, replay=True)
    previous = context._project
    try:
        recorder._process(events)
    finally:
        context._project = previous
    return False
