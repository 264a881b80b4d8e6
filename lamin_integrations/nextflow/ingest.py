"""Recording a Nextflow launch: one pipeline Run, one child Run per task attempt, their files.

Every source (trace file, execution report, weblog events, a nextflow-py Execution) is
turned into a `Launch` plus a list of `Task`s and goes through `record()`, inside one
transaction. Task runs are identified by (task_id, short hash) under their pipeline run, so
recording the same rows again changes nothing and a grown trace adds only its new rows; a
row seen before with less information (a weblog `process_started`, a RUNNING row) is
updated, never duplicated, and a run's status never moves backwards.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..errors import ValidationError
from .launch import Launch
from .trace import DATE_FIELDS, Task, Trace, TraceError, full_hash, read_trace, short_hash

PIPELINE_REFERENCE = "nextflow_id"
TASK_REFERENCE = "nextflow_task"
TASK_STATUS = {"COMPLETED": "completed", "FAILED": "errored", "ABORTED": "aborted", "CACHED": "completed",
               "SUBMITTED": "scheduled", "NEW": "scheduled", "RUNNING": "started"}
logger = logging.getLogger("lamin_integrations")
_RANK = {"scheduled": 0, "restarted": 1, "started": 1, "completed": 2, "errored": 2, "aborted": 2}


@dataclass
class Files:
    """Where the launch's files are (None: do not record files of that kind)."""

    work_dir: str | None = None  # the base work dir (`work/`)
    outdir: str | None = None  # published results
    base: str | None = None  # artifact keys are relative to this (the launch dir)
    max_hash_size: int | None = None
    moved_from: str | None = None  # the launch dir the files name, when the launch is now at `base`
    next_launch_at: dt.datetime | None = None  # when the next launch in this launch dir began (its history line)
    report: str | None = None  # the execution report: kept as the pipeline run's report

    def here(self, path: str) -> str:
        """A path named by the launch's files (the log's work dirs, staging commands) where it
        is on this machine: a launch folder copied off the cluster or moved keeps naming the
        launch dir it ran in, whose files are now under `base`."""
        old = self.moved_from
        if not old or not self.base or not path.startswith(old.rstrip("/") + "/") or os.path.exists(path):
            return path
        moved = self.base.rstrip("/") + path[len(old.rstrip("/")):]
        return moved if os.path.lexists(moved) else path


def timezone(name: str | None) -> dt.tzinfo | None:
    """`--timezone Europe/Berlin` (or UTC, or +02:00); None means this machine's local time."""
    if not name:
        return None
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    if name[0] in "+-":
        try:
            hours, _, minutes = name[1:].partition(":")
            delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        except ValueError:
            raise ValidationError(f"--timezone: expected a zone name such as Europe/Berlin or an offset such as +02:00, got {name!r}") from None
        return dt.timezone(delta if name[0] == "+" else -delta)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"--timezone: unknown time zone {name!r} (use an IANA name such as Europe/Berlin, or UTC)") from None


# -- the records --------------------------------------------------------------------------------


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    iso, datetime = _DATETIME.isoformat, _DATETIME
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items() if v is not None}


_DATETIME = dt.datetime
_NUMBER = (int, float)


# Nextflow's own hosting providers: a repository there is the project `org/repo` (`nextflow run
# nf-core/rnaseq` and `nextflow run https://github.com/nf-core/rnaseq` are one project).
_PROJECT_URL = re.compile(r"^(?:https?://|git@|ssh://git@)(?:www\.)?(?:github\.com|gitlab\.com|bitbucket\.org)[:/]"
                          r"([^/\s]+/[^\s]+?)(?:\.git)?/?$")


def project_name(pipeline: str) -> str:
    """The name Nextflow gives a pipeline (`projectName`): `org/repo` for a repository URL on
    GitHub, GitLab or Bitbucket, so the report's URL, the log's and the history's `org/repo`
    and the weblog's `repository` all name one Transform."""
    m = _PROJECT_URL.match(pipeline)
    return m.group(1) if m else pipeline


def pipeline_key(launch: Launch, fallback_dir: str | None) -> str:
    name = project_name(launch.pipeline) if launch.pipeline else None
    if name and name.endswith(".nf") and "/" not in name:
        folder = launch.project_dir or launch.launch_dir or fallback_dir
        return f"{Path(folder).name}/{name}" if folder else name
    if name:
        return name
    where = Path(os.path.abspath(launch.launch_dir or fallback_dir or "."))
    if not launch.launch_dir and where.name == "pipeline_info":  # <launch dir>/<outdir>/pipeline_info
        where = where.parent.parent
    return where.name or "nextflow-pipeline"


def infer_status(tasks: list[Task]) -> str:
    """The launch's outcome when no report, log, history or weblog says it (documented guess)."""
    statuses = {t.fields.get("status") for t in tasks}
    if statuses & {"SUBMITTED", "RUNNING", "NEW"}:
        return "aborted"  # rows of unfinished tasks are only flushed when the run stops
    failed = [t for t in tasks if t.fields.get("status") == "FAILED"] if "FAILED" in statuses else []
    if any((t.fields.get("error_action") or "TERMINATE") in ("TERMINATE", "FINISH") for t in failed):
        names = {t.fields.get("name") for t in tasks if t.fields.get("status") in ("COMPLETED", "CACHED")}
        last = max((s for t in tasks if t.fields.get("status") == "COMPLETED"
                    and isinstance(s := t.fields.get("submit"), dt.datetime)), default=None)
        if any(t.fields.get("name") not in names and not _ignored(t, last) for t in failed
               if t.fields.get("error_action") != "IGNORE"):
            return "errored"
    if "ABORTED" in statuses:
        return "aborted"  # tasks are aborted when the launch is stopped (Ctrl-C, kill, -stub error)
    return "completed"


def _ignored(failed: Task, last_submit: dt.datetime | None) -> bool:
    """Was this failure ignored (`errorStrategy 'ignore'`), when the trace has no error_action
    column (nf-core's default fields)? After a failure that ends the launch ('terminate' or
    'finish') Nextflow submits no new task: a completed one submitted later (`last_submit`, the
    latest) means the launch went on."""
    ended = end_time(failed.fields)
    return ended is not None and last_submit is not None and last_submit > ended + dt.timedelta(seconds=1)


def end_time(fields: dict[str, Any]) -> dt.datetime | None:
    """When the task ended: `complete`, else submit + duration (Nextflow's duration counts from
    submission), else start + realtime. The default trace fields have no `complete` column."""
    get = fields.get
    complete = get("complete")
    if complete is not None:
        return complete
    anchor, span = get("submit"), get("duration")
    if isinstance(anchor, _DATETIME) and isinstance(span, _NUMBER):
        return anchor + dt.timedelta(milliseconds=span)
    anchor, span = get("start"), get("realtime")
    if isinstance(anchor, _DATETIME) and isinstance(span, _NUMBER):
        return anchor + dt.timedelta(milliseconds=span)
    return None


@dataclass
class TraceFile:
    """The trace file a launch is recorded from: its path, and its first lines (`Trace.head`).

    A trace that grew still starts with the lines recorded before, so it is the same launch
    whatever names this ingest knows; a file at the same path that starts otherwise was
    written over by a later launch (`trace.overwrite`, then `-resume`) and is another launch.
    """

    path: str
    head: str

    def facts(self) -> dict[str, Any]:
        """What the pipeline run keeps to know this file again."""
        return {"trace_file": self.path, "trace_head": {"chars": len(self.head), "sha256": _sha256(self.head)}}

    def continues(self, params: dict[str, Any]) -> bool:
        """Does this file start with the lines recorded in a pipeline run's `params`?"""
        stored = params.get("trace_head")
        if not isinstance(stored, dict):
            return True  # recorded before the first lines were kept: by path alone
        chars = stored.get("chars")
        return isinstance(chars, int) and len(self.head) >= chars and _sha256(self.head[:chars]) == stored.get("sha256")


def _task_runs(shorts: Collection[str], not_initiated_by: int | None = None) -> list[Any]:
    """Task runs of these short hashes. A task's reference is its short hash ("ab/123456") or,
    with its work dir known, the full hash that starts with those 8 digits: one index range each."""
    from ..core.references import runs_by_reference

    return runs_by_reference(TASK_REFERENCE, shorts, [short.replace("/", "").lower() for short in shorts],
                             not_initiated_by=not_initiated_by)


def _launch_of(tasks: list[Task]) -> Any:
    """The pipeline run that executed these tasks, for a source that names no launch (a bare
    trace after the weblog recorded the launch): the one launch whose tasks have their hashes.
    CACHED rows are left out: a resume lists the earlier launch's tasks so."""
    shorts = {h for t in tasks[:50] if (h := t.fields.get("hash")) and t.fields.get("status") != "CACHED"}
    if not shorts:
        return None
    launches = {r.initiated_by_run_id for r in _task_runs(shorts) if (r.params or {}).get("hash") in shorts
                and not (r.params or {}).get("cached") and r.initiated_by_run_id is not None}
    if len(launches) != 1:
        return None
    from ..core.models import Run

    return Run.filter(id=launches.pop(), reference_type=PIPELINE_REFERENCE).first()


def _same_launch(params: dict[str, Any], launch: Launch) -> bool:
    """Is a pipeline run of this launch's run name this launch? Nextflow keeps run names unique
    within a launch dir only (some 25,000 of them): another project's launch may share it. A
    -resume keeps its launch's session id, but gets a name of its own."""
    for fact in ("session_id", "launch_dir"):
        known, now = params.get(fact), getattr(launch, fact)
        if known and now:
            return bool(known == now)
    return True


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Recorder:
    """Writes one launch; reusable for the weblog, which records the same launch many times."""

    def __init__(self, files: Files | None = None):
        self.files = files or Files()
        self.steps: dict[tuple[str, str, str | None], Any] = {}  # (pipeline key, process, version)
        self.named: set[tuple[int, str]] = set()  # (pipeline run, file named by its params) recorded

    def record(self, launch: Launch, tasks: list[Task], *, final: bool = True, identity: TraceFile | None = None) -> Any:
        from ..core.instance import current

        try:
            with current().transaction():
                return self._record(launch, tasks, final=final, identity=identity)
        except BaseException:
            self.steps.clear()  # transforms made in the rolled-back transaction do not exist
            self.named.clear()
            raise

    # -- pipeline -------------------------------------------------------------------------------

    def _pipeline_run(self, launch: Launch, tasks: list[Task], final: bool, identity: TraceFile | None,
                      ends: list[dt.datetime | None] | None = None) -> Any:
        from ..core.instance import mask_text
        from ..core.models import Run, Transform

        if launch.command_line:  # kept as cli_args and in params; a registry URL in it keeps no password
            launch.command_line = mask_text(launch.command_line)
        run = None
        if launch.run_name:
            named = Run.filter(reference_type=PIPELINE_REFERENCE, reference=launch.run_name).order_by("-id")
            run = next((r for r in named if _same_launch(r.params or {}, launch)), None)
        if run is None and identity is not None:
            # this trace recorded before, under a name this ingest does not know (no log now, or
            # `--follow` before the report or log appeared), or not yet named when this one knows it
            earlier = Run.filter(reference_type=PIPELINE_REFERENCE, params__trace_file=identity.path).order_by("-id")
            run = next((r for r in earlier if (r.reference is None or not launch.run_name)
                        and identity.continues(r.params or {})), None)
            if run is not None and launch.run_name:
                run.reference, run.name = launch.run_name, launch.run_name[:150]
        if run is None and not launch.run_name and not launch.session_id:
            run = _launch_of(tasks)
        if run is not None and not (launch.pipeline or launch.revision):
            transform = run.transform  # this source (a trace, a late weblog event) knows less than the one before
        else:
            key = pipeline_key(launch, self.files.base)
            version = launch.revision or launch.script_id
            transform = Transform(key=key, kind="pipeline", version=version, description=f"Nextflow pipeline {key}").save()
        status = launch.status or (infer_status(tasks) if final else "started")
        # CACHED rows carry the times of the launch that first ran them: not this launch's
        fields = [t.fields for t in tasks]
        all_ends = ends if ends is not None else [end_time(f) for f in fields]
        if any(f.get("status") == "CACHED" for f in fields):
            kept = [(f, e) for f, e in zip(fields, all_ends, strict=True) if f.get("status") != "CACHED"]
            if kept:
                fields, all_ends = [f for f, _ in kept], [e for _, e in kept]
        submits = [s for f in fields if (s := f.get("submit")) is not None]
        completes = [e for e in all_ends if e is not None]
        started_at = launch.started_at or (min(submits) if submits else None)
        finished_at = launch.finished_at or (max(completes) if completes and _RANK[status] == 2 else None)
        facts = launch.engine_facts()
        if identity is not None and (run is None or (run.params or {}).get("trace_file") in (None, identity.path)):
            facts.update(identity.facts())
        if run is None:
            run = Run(transform, name=(launch.run_name or Path(identity.path if identity else "nextflow").stem)[:150],
                      reference=launch.run_name, reference_type=PIPELINE_REFERENCE, params=facts)
        else:
            run.params = {**(run.params or {}), **facts}
        named_before = run.transform if run.id is not None and run.transform_id != transform.id else None
        run.transform = transform
        if launch.command_line:
            run.cli_args = launch.command_line[:4096]
        _set_status(run, status, finished_at)
        if started_at is not None and (run.id is None or run.started_at is None or started_at < _aware(run.started_at)):
            run.started_at = started_at
        aux = dict(run._aux or {})
        if launch.error:
            aux["error"] = launch.error[:10_000]
        if launch.status is None and final:
            aux["status_source"] = "inferred from the trace rows"
        elif launch.sources:
            aux["status_source"] = ",".join(launch.sources)
        run._aux = aux or None
        run.save()
        self.transform = transform
        if named_before is not None:
            self._rehome(run, named_before, launch.revision or launch.script_id)
        return run

    def _rehome(self, run: Any, before: Any, version: str | None) -> None:
        """Move the task runs of a launch first recorded under a name guessed from a folder (a
        weblog event before `started`, a trace before its report) to the steps of the pipeline now
        known, and drop the guessed transforms that nothing else uses."""
        from ..core.models import Run, Transform

        for step in Transform.filter(kind="step", key__startswith=f"{before.key}:"):
            tasks = Run.filter(initiated_by_run=run, transform=step)
            if tasks.exists():
                tasks.update(transform_id=self._step(step.key[len(before.key) + 1:], version).id)
            if not Run.filter(transform=step).exists():
                step.delete(permanent=True)
        if not Run.filter(transform=before).exists():
            before.delete(permanent=True)
        self.steps = {k: v for k, v in self.steps.items() if k[0] != before.key}

    def _step(self, process: str, version: str | None) -> Any:
        step = self.steps.get((self.transform.key, process, version))
        if step is None:
            from ..core.models import Transform

            step = Transform(key=f"{self.transform.key}:{process}", kind="step", version=version,
                             description=f"Nextflow process {process}").save()
            self.steps[(self.transform.key, process, version)] = step
        return step

    # -- tasks ------------------------------------------------------------------------------------

    def _record(self, launch: Launch, tasks: list[Task], *, final: bool, identity: TraceFile | None) -> Any:
        from ..core.bulk import insert_run_columns, save, update_all
        from ..core.models import Run

        self._fill_work_dirs(launch, tasks)
        ends = [end_time(t.fields) for t in tasks]
        pipeline = self._pipeline_run(launch, tasks, final, identity, ends)
        if final and pipeline.status in ("aborted", "errored"):
            tasks, ends = _ended_with_launch(tasks, ends, pipeline.finished_at)
        version = launch.revision or launch.script_id
        existing: dict[tuple[str, str | None], Any] = {}
        by_task_id: dict[str, Any] = {}
        children = Run.filter(initiated_by_run=pipeline, reference_type=TASK_REFERENCE)
        if len(tasks) <= 50 and not self.files.outdir:
            # a weblog event or a few new rows: ask for these tasks only, not every task of a big launch
            if all(t.fields.get("task_id") is not None for t in tasks):
                children = children.filter(params__task_id__in=sorted({str(t.key[0]) for t in tasks}))
            elif all(t.fields.get("hash") is not None for t in tasks):  # custom trace.fields without task_id
                children = children.filter(params__hash__in=sorted({str(t.key[1]) for t in tasks}))
        for child in children:
            p = child.params or {}
            existing[(str(p.get("task_id")), p.get("hash"))] = child
            if p.get("task_id") is not None:
                by_task_id.setdefault(str(p["task_id"]), child)
        originals = self._originals([t for t in tasks if t.fields.get("status") == "CACHED"], pipeline)
        new: list[Any] = []
        changed: list[Any] = []
        touched: list[tuple[Task, Any]] = []
        ran: list[Task] = []  # rows recorded or updated by this ingest
        cached_from: dict[str, str] = {}
        # New rows go to the database as plain values (core.bulk.insert_run_columns) unless a
        # key repeats within this batch, where a later row updates the run of an earlier one.
        keys = [(str(t.fields.get("task_id")), t.fields.get("hash")) for t in tasks]  # Task.key
        plain = len(set(keys)) == len(tasks)
        new_tasks: list[Task] = []
        new_ends: list[dt.datetime | None] = []
        if plain and not existing and not originals:  # a first ingest without cached results found elsewhere
            new_tasks, new_ends = list(tasks), list(ends)
        elif plain and not existing:  # every row is new but the CACHED ones found elsewhere
            for task, end in zip(tasks, ends, strict=True):
                if task.fields.get("status") == "CACHED" and self._cached(task, originals, cached_from):
                    continue
                new_tasks.append(task)
                new_ends.append(end)
        else:
            for task, key, end in zip(tasks, keys, ends, strict=True):
                f = task.fields
                run = existing.get(key) or (by_task_id.get(key[0]) if key[1] is None else None)
                if run is None and key[1] is not None:
                    loose = by_task_id.get(key[0])  # recorded before its hash was known (weblog submitted)
                    if loose is not None and (loose.params or {}).get("hash") is None:
                        run = loose
                if run is None and f.get("status") == "CACHED" and self._cached(task, originals, cached_from):
                    continue
                if run is None and plain:
                    new_tasks.append(task)
                    new_ends.append(end)
                elif run is None:
                    run = self._new_task_run(task, pipeline, version)
                    new.append(run)
                    ran.append(task)
                    existing[key] = run
                    if self._files_due(run, task):
                        touched.append((task, run))
                elif self._update_task_run(run, task) | self._files_due(run, task):
                    changed.append(run)
                    ran.append(task)
                    if (run._aux or {}).get("files_recorded"):
                        touched.append((task, run))
        if new_tasks:
            with_files = bool(self.files.work_dir or self.files.outdir)
            runs = insert_run_columns(self._task_columns(new_tasks, new_ends, pipeline, version), records=with_files,
                                      fill_times=False)  # a row without times (an ABORTED task) keeps none
            if with_files:
                for task, run in zip(new_tasks, runs, strict=True):
                    existing[task.key] = run
                    if (run._aux or {}).get("files_recorded"):
                        touched.append((task, run))
        if new:
            save(new)
        if changed:
            update_all(changed)
        placeholders = self._placeholders_of(pipeline, new_tasks + ran)
        if placeholders:
            from .artifacts import adopt_cached

            update_all([placeholder for placeholder, _ in placeholders])
            adopt_cached(placeholders, pipeline)  # before this launch's files are recorded
        if cached_from:
            aux = dict(pipeline._aux or {})
            aux["cached_tasks"] = {**aux.get("cached_tasks", {}), **cached_from}
            pipeline._aux = aux
            pipeline.save()
        if self.files.work_dir or self.files.outdir:
            from dataclasses import replace

            from .artifacts import named_files, record_task_files

            files = replace(self.files, base=self.files.base or launch.launch_dir)  # the weblog knows the launch dir
            hashes = {t.fields["hash"] for t in tasks if t.fields.get("hash")}
            hashes |= {h for r in existing.values() if isinstance(h := (r.params or {}).get("hash"), str)}
            # once every task is known (the weblog records a launch again at each event: then once)
            named = [p for p in named_files(launch.params, launch.command_line, files.base)
                     if (pipeline.id, p) not in self.named] if final else []
            record_task_files(files, pipeline, touched, by_work_dir=self._work_dir_runs(pipeline, existing),
                              launch_hashes=hashes, named=named)
            self.named.update((pipeline.id, p) for p in named)
        if self.files.report:
            from .artifacts import record_report

            record_report(self.files.report, pipeline)
        pipeline.__dict__["_ingest_counts"] = {"new": len(new) + len(new_tasks), "updated": len(changed), "cached": len(cached_from)}
        return pipeline

    def _files_due(self, run: Any, task: Task) -> bool:
        """Mark a finished task whose work dir files were not recorded yet (weblog runs, RUNNING rows)."""
        if not self.files.work_dir or (run._aux or {}).get("files_recorded"):
            return False
        if task.fields.get("status") not in ("COMPLETED", "FAILED", "CACHED") or not task.fields.get("workdir"):
            return False
        run._aux = {**(run._aux or {}), "files_recorded": True}
        return True

    def _work_dir_runs(self, pipeline: Any, existing: dict[tuple[str, str | None], Any]) -> dict[str, Any]:
        from .workdir import real

        out = {}
        for run in existing.values():
            work = (run.params or {}).get("workdir")
            if work:
                out[real(self.files.here(work))] = run
        return out

    def _fill_work_dirs(self, launch: Launch, tasks: list[Task]) -> None:
        """A task's work dir from the trace, else the log's TaskHandler line, else a glob of the short hash."""
        from .workdir import find_work_dir

        if not launch.work_dirs and not self.files.work_dir:
            return  # nowhere to find one
        listings: dict[str, list[str]] = {}
        for task in tasks:
            f = task.fields
            if f.get("workdir"):
                continue
            work = launch.work_dirs.get(str(f.get("task_id")))
            if work is not None and f.get("hash") and not (full_hash(work) or "").startswith(f["hash"].replace("/", "")):
                work = None  # the log of another launch (a resume) names another task by this id
            if work is not None and self.files.work_dir and "://" not in work and not os.path.isdir(self.files.here(work)):
                work = None  # not on this machine: the work dir given is searched instead
            if work is None and self.files.work_dir and f.get("hash"):
                work = find_work_dir(self.files.work_dir, f["hash"], listings)
            if work is not None:
                f["workdir"] = work
                if f.get("hash") is None and full_hash(work):
                    f["hash"] = short_hash(full_hash(work) or "")

    def _originals(self, cached: list[Task], pipeline: Any) -> dict[str, Any]:
        """Runs already in the registry that first produced a CACHED row's result (same hash)."""
        shorts = {t.fields["hash"] for t in cached if t.fields.get("hash")}
        if not shorts:
            return {}
        found: dict[str, Any] = {}
        runs = _task_runs(shorts, not_initiated_by=pipeline.id)
        for run in sorted(runs, key=lambda r: bool((r.params or {}).get("cached"))):  # the execution before a cached copy
            short = (run.params or {}).get("hash")
            if not isinstance(short, str) or short not in shorts:
                continue  # a full hash that only shares the digits with a short one
            found.setdefault(str(short), run)
            if run.reference and len(run.reference) == 32:
                found.setdefault(run.reference, run)
        return found

    def _placeholders_of(self, pipeline: Any, tasks: list[Task]) -> list[tuple[Any, Any]]:
        """Cached rows of other launches recorded before this launch, which ran their tasks, was
        ingested (a resume ingested first): each gets `_aux.cached_from`, the uid of its task run
        here, as a resume ingested after its original gets `_aux.cached_tasks`. Returns them,
        each with its task run here."""
        from ..core.models import Run
        from ..core.references import runs_by_reference

        ran = {t.fields["hash"]: t for t in tasks if t.fields.get("status") == "COMPLETED" and t.fields.get("hash")}
        if not ran or not Run.filter(reference_type=PIPELINE_REFERENCE).exclude(id=pipeline.id).exists():
            return []  # no other launch: nothing can have been recorded as cached before
        others = [r for r in _task_runs(ran, not_initiated_by=pipeline.id)
                  if (r.params or {}).get("cached") and not (r._aux or {}).get("cached_from")
                  and (r.params or {}).get("hash") in ran]
        if not others:
            return []
        mine: dict[str, Any] = {}
        for run in runs_by_reference(TASK_REFERENCE, {t.full_hash or h for h, t in ran.items()}, ()):
            if run.initiated_by_run_id == pipeline.id and (run.params or {}).get("status") == "COMPLETED":
                mine.setdefault(str((run.params or {}).get("hash")), run)
        linked = []
        for placeholder in others:
            original = mine.get(placeholder.params["hash"])
            if original is None or (len(placeholder.reference or "") == 32 == len(original.reference or "")
                                    and placeholder.reference != original.reference):
                continue  # the same 8 hex digits, another task
            placeholder._aux = {**(placeholder._aux or {}), "cached_from": original.uid}
            linked.append((placeholder, original))
        return linked

    def _new_task_run(self, task: Task, pipeline: Any, version: str | None) -> Any:
        from ..core.models import Run

        f = task.fields
        process = f.get("process") or "unknown"
        run = Run(self._step(process, version), name=(f.get("name") or process)[:150],
                  reference=task.full_hash or f.get("hash"), reference_type=TASK_REFERENCE,
                  initiated_by_run=pipeline, params=_params(task))
        _apply(run, task)
        return run

    @staticmethod
    def _cached(task: Task, originals: dict[str, Any], cached_from: dict[str, str]) -> bool:
        """A CACHED row whose result a run of an earlier launch produced: noted, not recorded again."""
        f = task.fields
        full = task.full_hash
        original = originals.get(full or "") or originals.get(f.get("hash") or "")
        if original is not None and full and len(original.reference or "") == 32 and original.reference != full:
            original = None  # the same 8 hex digits, another task
        if original is None:
            return False
        cached_from[str(f.get("task_id"))] = original.uid
        return True

    def _task_columns(self, tasks: list[Task], ends: list[dt.datetime | None], pipeline: Any,
                      version: str | None) -> dict[str, list[Any]]:
        """`_new_task_run` (with `_files_due`) for many tasks, as the value columns of
        core.bulk.insert_run_columns: one pass per column instead of one dict per task."""
        fields = [t.fields for t in tasks]
        n = len(fields)
        processes = [f.get("process") or "unknown" for f in fields]
        step_ids = {p: self._step(p, version).id for p in dict.fromkeys(processes)}  # in order of appearance
        trace_statuses = [f.get("status") for f in fields]
        statuses = [TASK_STATUS.get(s or "", "started") for s in trace_statuses]
        starts = [f.get("start") or f.get("submit") for f in fields]
        aux: list[dict[str, Any] | None] = [None] * n
        files = bool(self.files.work_dir)
        for i, (f, status) in enumerate(zip(fields, trace_statuses, strict=True)):
            if status in ("FAILED", "CACHED") or (files and status == "COMPLETED"):
                extra = _task_aux(f, {}) if status != "COMPLETED" else {}
                if files and f.get("workdir"):
                    extra["files_recorded"] = True
                aux[i] = extra or None
        hostnames = [f.get("hostname") for f in fields]
        return {
            "transform_id": [step_ids[p] for p in processes],
            "name": [(f.get("name") or p)[:150] for f, p in zip(fields, processes, strict=True)],
            "reference": [(full_hash(w) if (w := f.get("workdir")) else None) or f.get("hash") for f in fields],
            "reference_type": [TASK_REFERENCE] * n,
            "initiated_by_run_id": [pipeline.id] * n,
            "params": _params_column(fields),
            "status": statuses,
            # an ended row without any end time (an ABORTED task): its start, not the time of ingest
            "finished_at": [(end or start) if _RANK[status] == 2 else None
                            for end, start, status in zip(ends, starts, statuses, strict=True)],
            "started_at": starts,
            "host": [str(h)[:255] if h else None for h in hostnames] if any(hostnames) else [None] * n,
            "_aux": aux,
        }

    def _update_task_run(self, run: Any, task: Task) -> bool:
        before = (dict(run.params or {}), run.status, run.reference, run.started_at, run.finished_at, run._aux)
        merged = {**(run.params or {}), **_params(task)}
        rank_old, rank_new = _RANK[run.status], _RANK[TASK_STATUS.get(task.fields.get("status") or "", "started")]
        if rank_new < rank_old:  # an older event arriving late: keep the newer status and times
            merged["status"] = (run.params or {}).get("status")
            run.params = merged
        else:
            run.params = merged
            # what was recorded before and this source lacks (the report's `start`, read before
            # an ingest without it) still counts: times come from all that is known of the task
            known = {k: dt.datetime.fromisoformat(v) if k in DATE_FIELDS and isinstance(v, str) else v
                     for k, v in before[0].items()}
            _apply(run, Task({**known, **{k: v for k, v in task.fields.items() if v is not None}}))
        reference = task.full_hash or task.fields.get("hash")  # a first weblog event may have had neither
        if reference and len(reference) > len(run.reference or ""):
            run.reference = reference
        return (dict(run.params or {}), run.status, run.reference, run.started_at, run.finished_at, run._aux) != before


UNFINISHED = frozenset({"NEW", "SUBMITTED", "RUNNING"})


def _ended_with_launch(tasks: list[Task], ends: list[dt.datetime | None],
                       end: dt.datetime | None) -> tuple[list[Task], list[dt.datetime | None]]:
    """Rows still SUBMITTED / RUNNING in the trace of a launch that was killed or failed: Nextflow
    flushes them when the launch stops, and the launch took them down. They are aborted, ended
    when it ended; `status_in_trace` keeps what the row says."""
    if not any(t.fields.get("status") in UNFINISHED for t in tasks):
        return tasks, ends
    out_tasks, out_ends = [], []
    for task, task_end in zip(tasks, ends, strict=True):
        f = task.fields
        if f.get("status") in UNFINISHED:
            f = {**f, "status": "ABORTED", "status_in_trace": f["status"]}
            if f.get("complete") is None and end is not None:
                f["complete"] = task_end = end
            task = Task(f, line=task.line, source=task.source)
        out_tasks.append(task)
        out_ends.append(task_end)
    return out_tasks, out_ends


def _params(task: Task) -> dict[str, Any]:
    params = _jsonable(task.fields)
    if task.fields.get("status") == "CACHED":
        params["cached"] = True
    return params


def _params_column(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`_params` of many tasks: the fields without Nones, datetimes as ISO text, `cached` marked.

    Datetimes are looked for by key (the trace's date fields, and the keys that hold one in
    the first row) instead of value by value, then a C-speed pass over every value's type
    confirms none is left (else each row goes through `_jsonable`).
    """
    out = [f.copy() if None not in f.values() else {k: v for k, v in f.items() if v is not None} for f in fields]
    iso = _DATETIME.isoformat
    dates = DATE_FIELDS | {k for k, v in (out[0].items() if out else ()) if isinstance(v, _DATETIME)}
    for key in dates:
        for params in out:
            v = params.get(key)
            if type(v) is _DATETIME:
                params[key] = iso(v)
    if any(issubclass(t, _DATETIME) for t in set(map(type, chain.from_iterable(map(dict.values, out))))):
        out = list(map(_jsonable, fields))
    for f, params in zip(fields, out, strict=True):
        if f.get("status") == "CACHED":
            params["cached"] = True
    return out


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _set_status(run: Any, status: str, finished_at: dt.datetime | None) -> None:
    """A status never moves backwards; an end is the one the files say (the registry's default
    for a run that ends without one, the time of the ingest, is no fact about the task)."""
    if run.id is not None and _RANK[status] < _RANK[run.status]:
        return
    ended = run.finished_at
    run.status = status
    run.finished_at = (finished_at or ended) if _RANK[status] == 2 else None


def _apply(run: Any, task: Task) -> None:
    f = task.fields
    status = TASK_STATUS.get(f.get("status") or "", "started")
    start = f.get("start") or f.get("submit")
    # an ended row without any end time (an ABORTED task): its start, not the time of ingest
    _set_status(run, status, end_time(f) or start)
    if start is not None:
        run.started_at = start
    if f.get("hostname"):
        run.host = str(f["hostname"])[:255]
    run._aux = _task_aux(f, dict(run._aux or {})) or None


def _task_aux(f: dict[str, Any], aux: dict[str, Any]) -> dict[str, Any]:
    if f.get("status") == "FAILED":
        exit_code = f.get("exit")
        aux["error"] = f"task failed (exit {exit_code if exit_code is not None else 'unknown'})" + (
            f"; error_action {f['error_action']}" if f.get("error_action") else "")
        aux["exit"] = exit_code
    if f.get("status") == "CACHED":
        aux["cached"] = True
    return aux


# -- the trace file ------------------------------------------------------------------------------


@dataclass
class Sources:
    """The files of one launch; `discover` fills what was not given from next to the trace."""

    trace: str
    report: str | None = None
    log: str | None = None
    history: str | None = None
    work_dir: str | None = None
    outdir: str | None = None
    launch_dir: str | None = None
    params: str | None = None  # nf-core's params_<stamp>.json


def discover(sources: Sources) -> Sources:
    """Look next to the trace: nf-core puts it in `<outdir>/pipeline_info/`, plain runs in the launch dir."""
    trace = Path(sources.trace).resolve()
    folder = trace.parent
    stamp = trace.stem.removeprefix("execution_trace").removeprefix("trace")
    if sources.report is None:
        candidates = sorted(folder.glob("execution_report*.html")) + sorted(folder.glob("report*.html"))
        # Nextflow (since 22.10) and nf-core stamp the trace and the report alike: a report with
        # another stamp is another launch's (the resume running now has none yet).
        exact = [c for c in candidates if stamp and c.stem.endswith(stamp)]
        chosen = exact or (candidates if len(candidates) == 1 and not stamp else [])
        sources.report = str(chosen[0]) if chosen else None
    if sources.params is None:
        found = folder / f"params{stamp}.json"
        sources.params = str(found) if stamp and found.is_file() else None
    if sources.launch_dir:
        _in_launch_dir(sources, Path(sources.launch_dir))
    else:
        launch_dir = next((c for c in (folder, folder.parent, folder.parent.parent) if _is_launch_dir(c)), None)
        if launch_dir is not None:
            _in_launch_dir(sources, launch_dir)
    if sources.outdir is None and folder.name == "pipeline_info":
        sources.outdir = str(folder.parent)
    return sources


def _is_launch_dir(folder: Path) -> bool:
    """Did Nextflow run here? It leaves its log and its `.nextflow` folder."""
    return (folder / ".nextflow.log").exists() or (folder / ".nextflow").is_dir()


def _in_launch_dir(sources: Sources, launch_dir: Path, work_dir: str | None = None) -> None:
    """The log, history and work dir of a launch dir (`work_dir`: the one the report names)."""
    sources.launch_dir = str(launch_dir)
    if sources.log is None and (launch_dir / ".nextflow.log").exists():
        sources.log = str(launch_dir / ".nextflow.log")
    if sources.history is None and (launch_dir / ".nextflow" / "history").exists():
        sources.history = str(launch_dir / ".nextflow" / "history")
    work = Path(work_dir) if work_dir and "://" not in work_dir else launch_dir / "work"
    if sources.work_dir is None and work.is_dir():
        sources.work_dir = str(work)


P = ParamSpec("P")
R = TypeVar("R")


def _gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` with Python's cyclic garbage collector paused (and resumed after, whatever happens).

    A trace of 100,000 rows makes a few hundred thousand dicts and task objects that live
    until the ingest ends; the collector would walk all of them again and again while they
    are made (a tenth of the ingest's time) and find nothing to free: they hold no cycles.
    """
    @functools.wraps(fn)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused


@_gc_paused
def ingest_trace(path: str | os.PathLike, *, report: str | os.PathLike | None = None, log: str | os.PathLike | None = None,
                 history: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
                 outdir: str | os.PathLike | None = None, run_name: str | None = None, session_id: str | None = None,
                 pipeline: str | None = None, revision: str | None = None, params: dict[str, Any] | str | os.PathLike | None = None,
                 timezone_name: str | None = None, sep: str | None = None, discover_files: bool = True,
                 record_files: bool = True, max_hash_size: int | None = None, final: bool = True,
                 _trace: Trace | None = None) -> Any:
    """Record a Nextflow launch from its trace file (plus whatever else is given or found); returns the pipeline Run.

    Everything is parsed and checked before anything is written, and the writing is one
    transaction: a bad file records nothing. Ingesting the same trace again adds nothing;
    a trace that grew adds its new rows.
    """
    from .files import (
        log_of_launch,
        log_task_hashes,
        params_file,
        pick_history,
        read_history,
        read_log,
        read_report,
    )

    tz = timezone(timezone_name)
    sources = Sources(os.fspath(path), *(os.fspath(p) if p is not None else None
                                         for p in (report, log, history, work_dir, outdir)))
    for option, folder in (("--work-dir", sources.work_dir), ("--outdir", sources.outdir)):
        if folder is not None and "://" not in folder and not os.path.isdir(folder):
            from ..errors import NotFoundOnDisk

            raise NotFoundOnDisk(f"{option} {folder}: no such folder")  # given, not found: a typo, not a launch without files
    if discover_files:
        discover(sources)
    trace = _trace or read_trace(sources.trace, tz=tz, sep=sep)
    tasks = trace.tasks
    if params is None and sources.params:
        try:
            params = params_file(sources.params)
        except TraceError as e:  # found, not given: the launch is recorded without it
            logger.warning("lamin-integrations: not using %s: %s", sources.params, e)
    given = Launch(run_name=run_name, session_id=session_id, pipeline=pipeline, revision=revision,
                   params=params_file(params) if isinstance(params, (str, os.PathLike)) else params)
    launch = Launch(sources=[])
    if sources.report:
        try:
            report_launch, report_tasks = read_report(sources.report, tz)
        except TraceError as e:
            if report is not None:
                raise
            # found, not given: the launch is recorded without it, as without a found params file
            logger.warning("lamin-integrations: not using %s: %s", sources.report, e)
            sources.report, report_launch, report_tasks = None, Launch(), []
        if not _covers(report_tasks, tasks):
            if report is not None:
                raise TraceError(f"--report {sources.report}: it does not list this trace's tasks (it lists "
                                 f"{len(report_tasks):,} others): it is the report of another launch")
            logger.warning("lamin-integrations: %s is the report of another launch (it lists other tasks): not used",
                           sources.report)
            sources.report, report_launch, report_tasks = None, Launch(), []
        # (not for a trace being followed: it is read as it is written, and its report comes at the end)
        zone = _zone_of_launch(tasks, report_tasks, tz) if timezone_name is None and _trace is None else None
        if zone is not None and sources.report:  # the launch ran in another zone than this machine's: read its text times so
            logger.warning("lamin-integrations: the trace's times are %s (the report's exact times say so), not "
                           "this machine's zone: read as such (--timezone sets the zone)", zone.tzname(None))
            tz = zone
            trace = read_trace(sources.trace, tz=tz, sep=sep)
            tasks = trace.tasks
            report_launch, report_tasks = read_report(sources.report, tz)
        launch.merge(report_launch)
        tasks = merge_tasks(tasks, report_tasks)
        if discover_files and sources.launch_dir is None and report_launch.launch_dir \
                and _is_launch_dir(Path(report_launch.launch_dir)):
            # the outdir elsewhere (a cluster's project space): the report says where the launch ran
            _in_launch_dir(sources, Path(report_launch.launch_dir), report_launch.work_dir)
    if sources.log and os.path.exists(sources.log):  # is it this launch's? The launch dir's current log is its latest launch's
        found = sources.log
        sources.log = log_of_launch(found, {h for t in tasks if (h := t.fields.get("hash")) and t.fields.get("status") != "CACHED"},
                                    {h for t in tasks if (h := t.fields.get("hash")) and t.fields.get("status") == "CACHED"})
        if log is None and sources.log is None:
            logger.warning("lamin-integrations: %s (and its rotated copies) is the log of another launch: not used", found)
        elif sources.log is None and any(log_task_hashes(found)):
            raise TraceError(f"--log {found}: it names none of this trace's tasks, nor do its rotated copies "
                             f"({os.path.basename(found)}.1 ...): it is the log of another launch (a -resume's?)")
        elif sources.log is None:
            sources.log = found  # it names no tasks at all: its launch facts are all it has
        elif sources.log != found:
            logger.warning("lamin-integrations: using %s, the log of this trace's launch (%s is a later launch's)",
                           sources.log, found)
    # CACHED rows carry the times of the launch that ran them: this launch's times are its own rows'
    submits = [t.fields["submit"] for t in tasks if t.fields.get("submit") is not None and t.fields.get("status") != "CACHED"] \
        or [t.fields["submit"] for t in tasks if t.fields.get("submit") is not None]
    if sources.log:
        launch.merge(read_log(sources.log, tz, min(submits) if submits else None))
    next_launch_at = None
    if sources.history:
        launches = read_history(sources.history, tz)
        chosen = pick_history(launches, given.run_name or launch.run_name,
                              given.session_id or launch.session_id, min(submits) if submits else None)
        if chosen is not None:
            launch.merge(chosen)
            later = launches[launches.index(chosen) + 1:]
            next_launch_at = next((h.started_at for h in later if h.started_at is not None), None)
            if next_launch_at is not None and not _written_before(sources.trace, next_launch_at):
                next_launch_at = None  # file times are not the launches' own (the folder was copied)
    launch = given.merge(launch)
    if not final:  # still running: whatever a history or log line says about an outcome is not this yet
        launch.status, launch.finished_at, launch.error = None, None, None
    launch.launch_dir = launch.launch_dir or _launch_dir_named(launch, sources) or sources.launch_dir
    files = Files(base=_base(launch.launch_dir, sources), max_hash_size=max_hash_size, next_launch_at=next_launch_at)
    recorded = launch.launch_dir
    if recorded and files.base != recorded and "://" not in recorded and not os.path.isdir(recorded):
        files.moved_from = recorded  # the launch ran there; its files are here now
    if record_files:
        files.work_dir, files.outdir, files.report = sources.work_dir, sources.outdir, sources.report
    identity = TraceFile(str(Path(sources.trace).resolve()), trace.head)
    run = Recorder(files).record(launch, tasks, final=final, identity=identity)
    run.__dict__["_ingest_sources"] = sources
    return run


def _written_before(path: str, when: dt.datetime) -> bool:
    try:
        return os.stat(path).st_mtime < (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    except OSError:
        return False


def _zone_of_launch(tasks: list[Task], report_tasks: list[Task], tz: dt.tzinfo | None) -> dt.tzinfo | None:
    """The UTC offset the trace's zone-less text was written in, when it is not `tz`'s: the
    report holds the same tasks' times as epoch milliseconds, so their difference is the offset
    of the machine the launch ran on (rounded to a quarter hour). None when `tz` is right."""
    exact = {t.key: f for t in report_tasks if isinstance((f := t.fields).get("submit"), dt.datetime)}
    offsets = []
    for task in tasks[:50]:
        written, known = task.fields.get("submit"), exact.get(task.key)
        if isinstance(written, dt.datetime) and known is not None:
            text = written.astimezone(tz).replace(tzinfo=None)  # the text as the trace had it
            offsets.append(text - known["submit"].astimezone(dt.UTC).replace(tzinfo=None))
    if not offsets:
        return None
    quarter = dt.timedelta(minutes=15)
    offset = round(sorted(offsets)[len(offsets) // 2] / quarter) * quarter
    first = next(t.fields["submit"] for t in tasks[:50] if isinstance(t.fields.get("submit"), dt.datetime))
    if first.astimezone(tz).utcoffset() == offset or abs(offset) > dt.timedelta(hours=14):
        return None
    return dt.timezone(offset)


def _launch_dir_named(launch: Launch, sources: Sources) -> str | None:
    """The launch dir a launch without a report ran in, from the work dir its log names
    (`Work-dir:`, or a task's `workDir:` less its `xx/yyyy...` parts), taken to hold that work
    dir as the launch dir found here holds `work/`: the staging commands and links of a launch
    folder moved off the machine it ran on name that folder, not this one."""
    work = launch.work_dir or next((str(Path(w).parent.parent) for w in launch.work_dirs.values()), None)
    if not work or not sources.launch_dir or not sources.work_dir or "://" in work:
        return None
    inside = os.path.relpath(sources.work_dir, sources.launch_dir)
    if inside.startswith(os.pardir) or inside == os.curdir:
        return None
    suffix = "/" + inside.replace(os.sep, "/")
    work = work.rstrip("/")
    return (work[:-len(suffix)] or "/") if work.endswith(suffix) else None


def _base(recorded: str | None, sources: Sources) -> str:
    """The folder file keys are relative to: the launch dir the report or log names when the
    files are under it, else the one found here (results copied off the cluster), else the
    folder holding the outdir, else the trace's."""
    here = [os.path.abspath(p) for p in (sources.outdir, sources.work_dir, sources.trace) if p]
    for candidate in (recorded, sources.launch_dir):
        folder = os.path.abspath(candidate) if candidate else None
        if folder and any(p == folder or p.startswith(folder.rstrip(os.sep) + os.sep) for p in here):
            return candidate  # type: ignore[return-value]
    if sources.launch_dir:
        return sources.launch_dir
    return os.path.dirname(here[0]) if sources.outdir else str(Path(sources.trace).resolve().parent)


def _covers(report_tasks: list[Task], tasks: list[Task]) -> bool:
    """Can a found report be this trace's launch's? It is written when the launch ends and lists
    every task of its trace (unless it lists none: over `report.maxTasks`, it cannot tell)."""
    listed = {h for t in report_tasks if (h := t.fields.get("hash"))}
    return not listed or {h for t in tasks if (h := t.fields.get("hash"))} <= listed


def merge_tasks(trace_tasks: list[Task], report_tasks: list[Task]) -> list[Task]:
    """The trace's rows completed with the report's (which has every field, and exact times); report-only rows are added."""
    by_key = {t.key: t for t in report_tasks}
    by_id = {t.key[0]: t for t in report_tasks}
    out = []
    for task in trace_tasks:
        extra = by_key.get(task.key) or (by_id.get(task.key[0]) if task.key[1] is None else None)
        if extra is not None:
            # the report's times are epoch milliseconds: exact whatever zone the trace's text was written in
            exact = {k: v for k, v in extra.fields.items() if k in DATE_FIELDS and v is not None}
            task = Task({**{k: v for k, v in extra.fields.items() if v is not None},
                         **{k: v for k, v in task.fields.items() if v is not None}, **exact},
                        line=task.line, source="trace+report")
            by_key.pop(extra.key, None)
        out.append(task)
    seen = {t.key[0] for t in out}
    out += [t for t in by_key.values() if t.key[0] not in seen]
    return out





def _finished(sources: Sources, run_name: str | None) -> bool:
    """Has the launch ended? The report is written at the end; the log says Goodbye or ERROR."""
    from .files import read_log

    found = discover(Sources(sources.trace, launch_dir=sources.launch_dir))
    if sources.report or found.report:
        return True
    log = sources.log or found.log
    if log and os.path.exists(log):
        launch = read_log(log)
        return launch.status is not None and (run_name is None or launch.run_name in (None, run_name))
    return False


def follow_trace(path: str | os.PathLike, *, poll_seconds: float = 2.0, idle_timeout: float | None = None,
                 on_update: Any = None, **options: Any) -> Any:
    """`ingest_trace` repeatedly while Nextflow writes the trace; returns the pipeline Run once the launch ended.

    Rows are recorded as they appear (a last line still being written is left for the next
    poll); the pipeline run stays `started` until the report appears or the log says the
    launch ended, then one last ingest records its outcome. `idle_timeout` seconds without
    a new row are taken as the end too (Ctrl-C stops following: what was recorded stays).
    """
    import time

    trace_path = os.fspath(path)
    seen = -1
    idle_since = time.monotonic()
    totals = {"new": 0, "updated": 0, "cached": 0}  # over every ingest, for the summary at the end

    def ingest(**more: Any) -> Any:
        done = ingest_trace(trace_path, **{**options, **more})
        for name, count in done.__dict__.get("_ingest_counts", {}).items():
            totals[name] = totals.get(name, 0) + count
        return done

    def ended(**more: Any) -> Any:
        done = ingest(**more)
        done.__dict__["_ingest_counts"] = totals
        return done

    while True:
        if os.path.exists(trace_path):
            trace = read_trace(trace_path, tz=timezone(options.get("timezone_name")), sep=options.get("sep"), partial_tail=True)
            if len(trace.tasks) != seen:
                seen = len(trace.tasks)
                idle_since = time.monotonic()
                run = ingest(final=False, _trace=trace, report=None)
                if on_update is not None:
                    on_update(run)
            sources = discover(Sources(trace_path, report=options.get("report"), log=options.get("log")))
            if _finished(sources, options.get("run_name")):
                return ended()
        if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
            # taken as the end: the outcome as the files tell it, without a last line left half-written
            last = read_trace(trace_path, tz=timezone(options.get("timezone_name")), sep=options.get("sep"), partial_tail=True) \
                if os.path.exists(trace_path) else None
            return ended(_trace=last)
        time.sleep(poll_seconds)
