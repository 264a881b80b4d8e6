"""Prefect adapter: drop-in `flow` / `task` decorators that record lineage.

    from lamin_integrations.prefect import flow, task   # instead of: from prefect import ...

Every flow run becomes a Run of a `pipeline` Transform (subflows chain through
`initiated_by_run`), every task run a child Run of a `step` Transform, with parameters,
attempts, cache hits, input files (path parameters) and output files (returned paths).
The objects returned are genuine `prefect.Flow` / `prefect.Task` instances with state
hooks attached, so everything Prefect offers keeps working. `instrument(obj)` adds the same
recording to a Flow or Task someone else defined.

Importing this module imports Prefect; `import lamin_integrations` does not.
"""

from __future__ import annotations

from .decorators import LaminFlow, LaminTask, flow, instrument, task

__all__ = ["LaminFlow", "LaminTask", "flow", "instrument", "task"]
