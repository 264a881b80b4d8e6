"""What is known about one `nextflow run` launch, gathered from whichever files exist.

The trace has no run name, session id or outcome; the report, `.nextflow.log`,
`.nextflow/history`, the weblog and the user's options each know some of it. Sources are
merged field by field: a value given by the user wins, then the first source that has it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Launch:
    run_name: str | None = None
    session_id: str | None = None
    pipeline: str | None = None  # repository or project name
    revision: str | None = None  # revision, else commit id
    script_id: str | None = None  # hash of the main script
    command_line: str | None = None
    params: dict[str, Any] | None = None
    status: str | None = None  # completed / errored / aborted / started
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    exit_status: int | None = None
    launch_dir: str | None = None
    work_dir: str | None = None
    project_dir: str | None = None
    nextflow_version: str | None = None
    profile: str | None = None
    container: str | None = None
    stats: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
    work_dirs: dict[str, str] = field(default_factory=dict)  # task_id -> work dir (from the log)

    def merge(self, other: Launch) -> Launch:
        """Fill what this launch lacks from `other` (this one wins)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "sources":
                self.sources += [s for s in theirs if s not in self.sources]
            elif f.name == "work_dirs":
                self.work_dirs = {**theirs, **mine}
            elif mine is None and theirs is not None:
                setattr(self, f.name, theirs)
        return self

    def engine_facts(self) -> dict[str, Any]:
        """What goes into the pipeline run's params (facts without a Run field)."""
        from ..core.jsonutil import masked

        facts = {"session_id": self.session_id, "command_line": self.command_line, "params": masked(self.params),
                 "revision": self.revision, "script_id": self.script_id, "launch_dir": self.launch_dir,
                 "work_dir": self.work_dir, "project_dir": self.project_dir, "nextflow_version": self.nextflow_version,
                 "profile": self.profile, "container": self.container, "exit_status": self.exit_status,
                 "stats": self.stats, "manifest": self.manifest}
        return {k: v for k, v in facts.items() if v is not None}
