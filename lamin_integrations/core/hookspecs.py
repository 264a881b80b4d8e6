"""What the registry announces and what it asks of plugins (pluggy project `lamin_integrations`).

Hooks are called after the transaction that caused them has committed.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lamin_integrations")
hookimpl = pluggy.HookimplMarker("lamin_integrations")


@hookspec
def run_started(run: Any) -> None:
    """A run was saved with status started (or restarted)."""


@hookspec
def run_finished(run: Any, status: str) -> None:
    """A run reached completed, errored or aborted; `status` is the name."""


@hookspec
def artifact_saved(artifact: Any, run: Any) -> None:
    """A new artifact was saved; `run` is the run that created it, or None."""


@hookspec
def artifact_recreated(artifact: Any, run: Any) -> None:
    """Content that already existed was saved again by `run` (recorded in recreated_artifacts)."""


@hookspec
def run_inputs_linked(run: Any, artifacts: list[Any]) -> None:
    """Artifacts were linked as inputs of `run`."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the `lamin-integrations` click group `cli`."""


@hookspec
def parent_run_for_process(run: Any) -> Any:
    """`run` launched this process (from the environment); return a more specific run it belongs to, or None."""


@hookspec
def parent_hint_for_process() -> Any:
    """The registry cannot be reached (ln.track() journals its run): describe the more specific
    run this process belongs to below its parent from the environment, for `sync` to find, as
    {"reference_type": ..., "name": ...}; or None."""


@hookspec
def original_script_path(path: Any) -> Any:
    """`path` runs as a script; return the file the user wrote if it is an engine's temporary copy, else None."""


@hookspec
def transform_for_process(run: Any) -> Any:
    """`ln.track()` was called from code of `run` (the parent from the environment, refined)
    that is no script file, such as a Snakemake `run:` block: return that code's Transform, or None."""
