"""Attaching a job's own script to the job's run (a built-in plugin; no Snakemake import).

The logger exports the workflow run's uid to every job, but all jobs share one environment,
so it cannot say which job a process is. A `script:` directive can: Snakemake injects a
`snakemake` object (rule, wildcards) into the script's `__main__`. A `run:` block can too:
it is the body of a function `__rule_<name>(..., wildcards, ..., rule, ...)` on the calling
stack. With either, `ln.track()` becomes a child of that job's run (a `run:` block's run has
the rule as its transform: its code is in the Snakefile); a `shell:` command calling Python
has neither and its run stays a child of the workflow run.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..core.hookspecs import hookimpl

# How long a script waits for its job run; after that it starts under the workflow run with
# a hint, and the recorder moves it under the job when it records the job.
JOB_WAIT_SECONDS = 3.0


def job_name(rule: str, wildcards: Any) -> str:
    """The run name of a job: `rule` or `rule[sample=a, lane=1]` (shared with the logger)."""
    try:
        items = list(wildcards.items()) if wildcards else []
    except Exception:
        items = []
    if not items:
        return rule
    return f"{rule}[{', '.join(f'{k}={v}' for k, v in items)}]"


def _job() -> Any:
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    return job if job is not None else _run_block()


def _run_block() -> Any:
    """The job whose `run:` block is on this thread's stack (Snakemake compiles the block into
    `def __rule_<name>(input, output, params, wildcards, ..., rule, ...)`), else None."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name.startswith("__rule_") and {"rule", "wildcards"} <= set(code.co_varnames[:code.co_argcount]):
            rule = frame.f_locals.get("rule")
            if isinstance(rule, str):
                return SimpleNamespace(rule=rule, wildcards=frame.f_locals.get("wildcards"), scriptdir=None)
        frame = frame.f_back
    return None


@hookimpl
def original_script_path(path: Any) -> Any:
    """Snakemake runs `script: "scripts/x.py"` from `.snakemake/scripts/tmpXXXX.x.py`."""
    scriptdir = getattr(_job(), "scriptdir", None)
    match = re.fullmatch(r"tmp[A-Za-z0-9_]+\.(.+\.py)", Path(path).name)
    if scriptdir is None or match is None:
        return None
    original = Path(scriptdir) / match.group(1)  # scriptdir: the folder of the user's script
    return original.resolve() if original.is_file() else None


@hookimpl
def parent_hint_for_process() -> Any:
    """Offline, the job run cannot be looked up now: `sync` finds it by this name."""
    job = _job()
    rule = getattr(job, "rule", None)
    if not isinstance(rule, str):
        return None
    return {"reference_type": "snakemake_job", "name": job_name(rule, getattr(job, "wildcards", None))[:150]}


@hookimpl
def parent_run_for_process(run: Any) -> Any:
    if run.reference_type != "snakemake_id":
        return None
    job = _job()
    rule = getattr(job, "rule", None)
    if not isinstance(rule, str):
        return None
    from ..core.models import Run

    wildcards = getattr(job, "wildcards", None)
    name = job_name(rule, wildcards)[:150]  # as the recorder stores it (Run.name's length)
    try:
        from ..core.jsonutil import to_json

        wanted = to_json(dict(wildcards.items())) if wildcards else {}
    except Exception:
        wanted = None
    deadline = time.monotonic() + JOB_WAIT_SECONDS  # the logger records the job in the background
    while True:
        candidates = (Run.filter(initiated_by_run=run, reference_type="snakemake_job", name=name, status="started")
                      .order_by("-id").to_list())
        # names are cut at 150 characters: jobs whose wildcards differ only after that are told
        # apart by the wildcards the recorder keeps in params
        found = next((c for c in candidates if wanted is None or (c.params or {}).get("wildcards", {}) == wanted), None)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


@hookimpl
def transform_for_process(run: Any) -> Any:
    """A `run:` block's code is its rule's: the job's transform (the workflow's `<key>:<rule>`
    as the recorder names it, when the job run was not found in time)."""
    job = _run_block()
    if job is None:
        return None
    if run.reference_type == "snakemake_job":
        return run.transform
    if run.reference_type != "snakemake_id":
        return None
    from ..core.models import Transform

    pipeline = run.transform
    return Transform(key=f"{pipeline.key}:{job.rule}", kind="step", hash=pipeline.hash, description=f"rule {job.rule}").save()
