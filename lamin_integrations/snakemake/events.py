"""Turning Snakemake 9 log records into plain event dicts, in the listener thread.

This runs for every record Snakemake logs, so it only copies what later recording needs.
It reads fields the way Snakemake actually sends them (see the engine notes: `jobs` not
`job_ids`, `job_id` on job_finished, benchmark as a string, no exit code on job_error) and
takes what the events leave out (config, params, attempt) from the live workflow object,
guarded, because that is private API.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from ..core.jsonutil import masked, param_json, to_json

# Snakemake appends these to io strings (snakemake/io/fmt.py); a checkpoint target is "<TBD>".
_ANNOTATION = re.compile(
    r"\s+\((?:retrieve from storage|send to storage|only provide storage uri|in storage|pipe|service|nodelocal"
    r"|update|before update|cached|access: [^()]*)\)$"
)

# Plain messages that carry workflow state (there is no event for them).
NOTHING_TO_DO = "Nothing to be done"
SIGINT_MESSAGE = "Terminating processes on user request"
SIGTERM_MESSAGE = "Will exit after finishing currently running jobs"


def strip_annotation(path: str) -> str:
    """`s3://b/x.txt (retrieve from storage)` -> `s3://b/x.txt`."""
    previous = None
    while previous != path:
        previous, path = path, _ANNOTATION.sub("", path)
    return path


def paths(value: Any) -> list[str]:
    """io lists (or the single benchmark string) as plain path strings, without placeholders."""
    if value is None:
        return []
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    out = []
    for item in items:
        text = strip_annotation(str(item))
        if text and text != "<TBD>" and not text.startswith("<TBD>"):
            out.append(text)
    return out


def event_name(record: Any) -> str | None:
    event = getattr(record, "event", None)
    if event is None:
        return None
    return str(getattr(event, "value", event))


def translate(record: Any) -> dict[str, Any] | None:
    """The event dict for one record, or None when the record matters to no one."""
    name = event_name(record)
    created = float(getattr(record, "created", 0.0) or 0.0)
    get = record.__dict__.get
    if name == "workflow_started":
        _jobs_by_id.clear()  # a new workflow (this thread only: the filter waits for the workflow's start)
        workflow = live_workflow()
        header = {**_header(workflow), **{k: v for k, v in record.__dict__.items() if v is not None}}
        return {
            "event": name, "created": created, "cwd": os.getcwd(),
            "workflow_id": str(header.get("workflow_id") or ""),
            "snakefile": _snakefile(header),
            "configfiles": [str(p) for p in (header.get("configfiles") or [])],
            "cmd": str(header.get("cmd") or ""),
            "snakemake_version": header.get("snakemake_version"),
            "host": header.get("host"), "user": header.get("user"),
            "config": _config(workflow),
            "included": _included(workflow),
            # (not `workflow.touch`: it imports a module, which races the main thread's imports)
            # The executor may not be set yet when this record is handled: the command line says it too.
            "touch": _flag(lambda: workflow.executor_plugin.executor.__module__ == "snakemake.executors.touch")
            or any(arg in ("--touch", "-t") for arg in sys.argv[1:]),
            "keep_incomplete": _flag(lambda: bool(workflow.execution_settings.keep_incomplete)),
            # `--quiet` (progress): the scheduler sends no job_finished at all
            "no_finish_events": _flag(lambda: any(getattr(q, "name", str(q)) in ("PROGRESS", "ALL")
                                                  for q in (workflow.output_settings.quiet or ()))),
        }
    if name == "job_started":
        # a group job (pipe(), group:) is listed by its UUID; its members follow as job_info
        return {"event": name, "created": created, "jobs": [_jobid(j) for j in (get("jobs") or [])]}
    if name == "job_info":
        jobid = int(get("jobid"))
        job = _live_job(jobid)
        return {
            "event": name, "created": created, "cwd": os.getcwd(), "jobid": jobid,
            "rule": str(get("rule_name") or "unknown"),
            "message": get("rule_msg"),
            "input": paths(get("input")), "output": paths(get("output")),
            # update() outputs are read as well as written: their earlier content is an input
            "updated": paths(_updated(get("output"))),
            "log": paths(get("log")), "benchmark": paths(get("benchmark")),
            "wildcards": to_json(dict(get("wildcards") or {})),
            "threads": get("threads"),
            "resources": _resources(get("resources")),
            "reason": None if get("reason") is None else str(get("reason")),
            "priority": to_json(get("priority")),
            "shellcmd": get("shellcmd"),
            "params": _params(job),
            "attempt": _attempt(job),
        }
    if name == "job_finished":
        return {"event": name, "created": created, "jobid": int(get("job_id"))}
    if name == "job_error":
        return {"event": name, "created": created, "jobid": int(get("jobid")), "log": paths(get("log")),
                "message": get("rule_msg"), "aux": to_json(get("aux") or {}), "thread": get("thread")}
    if name == "error":
        return {"event": name, "created": created, "text": _message(record), "exception": get("exception"),
                "thread": get("thread")}
    if name == "progress":
        return {"event": name, "created": created, "done": get("done"), "total": get("total")}
    if name == "run_info":
        return {"event": name, "created": created, "stats": to_json(dict(get("stats") or {}))}
    if name in (None, "None"):
        text = _message(record)
        for marker, kind in ((NOTHING_TO_DO, "nothing_to_do"), (SIGINT_MESSAGE, "interrupted"),
                             (SIGTERM_MESSAGE, "terminating")):
            if text.startswith(marker):
                return {"event": kind, "created": created}
    return None


def _updated(value: Any) -> list[str]:
    """The outputs marked `(update)` (Snakemake's update() flag)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return []
    return [str(v) for v in value if str(v).endswith(" (update)")]


def _jobid(value: Any) -> int | str:
    return value if isinstance(value, int) else int(value) if str(value).isdigit() else str(value)


def _message(record: Any) -> str:
    try:
        return str(record.getMessage())
    except Exception:
        return str(getattr(record, "msg", ""))


def _resources(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        items = list(value.items())
    except Exception:
        return {}
    return {str(k): to_json(v) for k, v in items if not str(k).startswith("_")}


def live_workflow() -> Any:
    """The running `Workflow` (a module global Snakemake sets), or None."""
    module = sys.modules.get("snakemake.workflow")
    return getattr(module, "workflow", None) if module is not None else None


def _header(workflow: Any) -> dict[str, Any]:
    """What Snakemake >= 9.17 puts in workflow_started, taken from the live workflow when the
    record lacks it (9.0-9.16 send only workflow_id and the Snakefile)."""
    import getpass
    import platform

    header: dict[str, Any] = {"cmd": " ".join(sys.argv), "host": platform.node()}
    try:
        header["user"] = getpass.getuser()
    except Exception:
        pass
    try:
        from snakemake import __version__

        header["snakemake_version"] = __version__
    except Exception:
        pass
    for key, attribute in (("snakefile_main", "main_snakefile"), ("configfiles", "configfiles")):
        try:
            header[key] = getattr(workflow, attribute)
        except Exception:
            pass
    return header


def _snakefile(header: dict[str, Any]) -> str:
    """The user's main Snakefile. 9.17+ names it `snakefile_main` (their `snakefile` is
    Snakemake's own workflow.py); older releases name it `snakefile`."""
    for candidate in (header.get("snakefile_main"), header.get("snakefile")):
        if candidate and not str(candidate).endswith(os.path.join("snakemake", "workflow.py")):
            return str(candidate)
    return ""


def _flag(read: Any) -> bool:
    try:
        return bool(read())
    except Exception:  # private API: an older or newer Snakemake without it
        return False


def _included(workflow: Any) -> list[str]:
    """Local Snakefiles the workflow read (the main one and its `include:`s), in include order:
    their rules are part of the pipeline's code."""
    out: list[str] = []
    try:
        for source in list(workflow.included):
            path = source.get_path_or_uri(secret_free=True)
            if type(source).__name__ == "LocalSourceFile" and os.path.isfile(path):
                out.append(os.path.abspath(path))
    except Exception:
        pass
    return out


def _config(workflow: Any) -> Any:
    try:
        return masked(to_json(dict(workflow.config))) if workflow is not None else None
    except Exception:
        return None


_jobs_by_id: dict[int, Any] = {}


def _live_job(jobid: int) -> Any:
    """The Job object behind a jobid, from the live DAG (private API, so guarded)."""
    global _jobs_by_id
    try:
        job = _jobs_by_id.get(jobid)
        if job is None:  # a new dict swapped in whole: another thread asking meanwhile sees the old one
            dag = live_workflow().dag
            _jobs_by_id = {v: k for k, v in list(dag._jobid.items())}
            job = _jobs_by_id.get(jobid)
        return job
    except Exception:
        return None


def _params(job: Any) -> dict[str, Any] | None:
    try:
        return param_json(job.params) if job is not None else None
    except Exception:
        return None


def _attempt(job: Any) -> int | None:
    try:
        return int(job.attempt) if job is not None else None
    except Exception:
        return None
