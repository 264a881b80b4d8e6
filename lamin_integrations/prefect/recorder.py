"""Flow runs and task runs as registry Runs: everything the hooks write.

Hooks fire in whichever thread or process runs the flow or task (pool threads, process
pool workers, async event loops), so the only state kept here is a per-process cache of
the Runs this process opened, keyed by Prefect's run id. Anything not in the cache (a
parent flow run seen from a worker process, a flow whose end hook runs in a runner) is
found in the registry by its `reference`. Nothing here writes SQL: Runs and Transforms go
through the core records, files through `core.pipeline`.

No flow run is left `started`: a flow that returns a Cancelled state ends without any hook
(Prefect runs `on_cancellation` only on Cancelling), so every flow hook first closes the
flow runs whose engine already holds such a state, a flow's end closes its children, and at
interpreter exit whatever this process opened and never closed is closed as aborted.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..core.context import parent_run_from_env, reset_current_run, set_current_run
from ..core.context import peek_current_run as get_current_run
from ..core.hashing import FileState, file_state
from .values import absent_paths, existing_paths, params_json, resolved

logger = logging.getLogger("lamin_integrations")

FLOW_RUN = "prefect_flow_run"
TASK_RUN = "prefect_task_run"

# Prefect state type -> registry status. Cancelling counts: the engine fires
# on_cancellation on Cancelling, and nothing fires on the later Cancelled.
STATUS = {"COMPLETED": "completed", "FAILED": "errored", "CRASHED": "aborted",
          "CANCELLING": "aborted", "CANCELLED": "aborted"}
# Final states the flow engine fires no hook for (its call_hooks has no branch for them).
UNHOOKED = ("CANCELLED",)
_ENGINE_FRAMES = 12  # how far up the hook's call stack the flow engine is looked for
OPEN = ("started", "restarted", "scheduled")
_FACTS = "prefect"  # params key holding engine facts (attempt, cached, map index, ...)


@dataclass
class _Open:
    run: Any
    attempt: int
    token: Any = None
    previous: Any = None
    # Real paths of input files and their state at the start: returning one unchanged
    # is no output; returning one the task rewrote (an `out: Path` parameter) is.
    inputs: dict[str, FileState | None] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the task's own parameters
    facts: dict[str, Any] = field(default_factory=dict)  # Prefect facts (attempt, cached, ...)
    deferred: bool = False  # written by the background writer (see writer.py)
    engine: Any = None  # a flow run's Prefect engine: its `.state` is the run's live state
    # When it started (ns since the epoch): a returned file not written since is no output
    # (a task listing existing raw files returns them unchanged).
    started_ns: int = field(default_factory=time.time_ns)
    # Path parameters that did not exist at the start (`out: Path`): made by the run if they
    # exist at its end, returned or not.
    absent: list[str] = field(default_factory=list)
    # Recorded in the journal (the registry was unavailable when it started): see offline.py.
    offline: bool = False
    parent_uid: str | None = None


_UNSET = object()


class _State:
    """This process's view: open runs, transforms and parents it already looked up."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.instance: Any = None
        self.open: dict[str, _Open] = {}
        self.transforms: dict[tuple, Any] = {}
        self.known: dict[str, Any] = {}  # reference -> Run found in the registry (parents)
        self.map_index: dict[str, int] = {}
        self.host = socket.gethostname()[:255]
        self.env_before: Any = _UNSET  # LAMIN_INTEGRATIONS_RUN_UID before our first run opened

    def check_instance(self) -> None:
        """Forget cached records when the process switched registries (tests, ln.connect)."""
        from ..core.instance import current

        instance = current()
        if instance is not self.instance:
            with self.lock:
                self.instance = instance
                self.open.clear()
                self.transforms.clear()
                self.known.clear()


state = _State()


# -- helpers ------------------------------------------------------------------------------


def _source(fn: Any) -> str | None:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return None


def _transform(key: str, kind: str, version: str | None, fn: Any, description: str | None = None) -> Any:
    from ..core.models import Transform

    cache_key = (key, kind, version, getattr(fn, "__code__", None))
    found = state.transforms.get(cache_key)
    if found is None:
        reference = _code(fn)[1] if kind == "pipeline" else (None, None)
        found = Transform(key=key[:1024], kind=kind, version=version, source_code=_source(fn),
                          description=description, reference=reference[0], reference_type=reference[1]).save()
        state.transforms[cache_key] = found
    return found


_CODE: dict[str, tuple[dict[str, Any] | None, tuple[str | None, str | None]]] = {}


def _code(fn: Any) -> tuple[dict[str, Any] | None, tuple[str | None, str | None]]:
    """The git state of the file a flow is defined in (commit, remote, dirty) and the link to
    it at that commit, as `ln.track()` records them for a script: once per file and process."""
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    if not path or not os.path.isfile(path):
        return None, (None, None)
    if path not in _CODE:
        from pathlib import Path

        from ..core.gitinfo import git_reference, git_state

        try:
            real = Path(path).resolve()
            _CODE[path] = (git_state(real), git_reference(real))
        except Exception:  # never in the flow's way
            _CODE[path] = (None, (None, None))
    return _CODE[path]


def _by_reference(reference: str, reference_type: str) -> Any:
    """A Run opened by another process (or an earlier attempt), found by Prefect's id."""
    from ..core.models import Run

    found = state.known.get(reference)
    if found is None:
        found = Run.filter(reference=reference, reference_type=reference_type).order_by("-id").first()
        if found is not None:
            state.known[reference] = found
    return found


def _with_facts(params: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    key = _FACTS if _FACTS not in params else f"_{_FACTS}"
    return {**params, key: {k: v for k, v in facts.items() if v is not None}}


def _without_facts(params: dict[str, Any] | None) -> dict[str, Any]:
    """The user's own parameters: only the key that holds the facts is dropped (a parameter
    named `prefect` moves the facts to `_prefect`, and stays)."""
    params = params or {}
    key = f"_{_FACTS}" if isinstance(params.get(f"_{_FACTS}"), dict) else _FACTS
    return {k: v for k, v in params.items() if k != key}


def _facts_of(run: Any) -> dict[str, Any]:
    params = run.params or {}
    value = params.get(f"_{_FACTS}") if isinstance(params.get(f"_{_FACTS}"), dict) else params.get(_FACTS)
    return dict(value) if isinstance(value, dict) else {}


def _set_current(entry: _Open) -> None:
    entry.previous = get_current_run()
    entry.token = set_current_run(entry.run)


def _unset_current(entry: _Open) -> None:
    """Undo the ContextVar set at start; end hooks may run in another context, so tolerate it."""
    if entry.token is None:
        return
    try:
        reset_current_run(entry.token)
    except (ValueError, RuntimeError):
        if get_current_run() is entry.run:
            set_current_run(entry.previous)
    entry.token = None


def _record_inputs(entry: _Open, values: Any) -> None:
    from ..core.pipeline import record_inputs

    values = list(values)
    paths = existing_paths(values)
    entry.absent = absent_paths(values)
    if paths:
        entry.inputs = _input_stats(paths)
        record_inputs(entry.run, paths, workdir=os.getcwd())


def _input_stats(paths: list[str]) -> dict[str, FileState | None]:
    return {os.path.realpath(p): file_state(p) for p in paths}


# File times come from the kernel's coarse clock, a few ms behind the time the run started.
_CLOCK_SLACK_NS = 50_000_000


def _written(path: str, entry: _Open) -> bool:
    """A returned path is an output if the run wrote it: an input it changed, or a file (or
    folder) modified since the run started. An input left as it was, or an existing file it
    only listed, is not."""
    real = os.path.realpath(path)
    if real in entry.inputs:
        return file_state(real) != entry.inputs[real]
    state = file_state(real)
    return state is not None and state.mtime_ns >= entry.started_ns - _CLOCK_SLACK_NS


def _produced(result: Any, entry: _Open, cached: bool = False) -> list[str]:
    """What the run made: returned paths it wrote, path parameters it rewrote (an input
    changed in place) and path parameters that did not exist at its start but do now. A
    cache hit made what it returns (recorded as recreated), written now or not."""
    out = [p for p in existing_paths([result]) if cached or _written(p, entry)]
    out += [p for p in entry.inputs if p not in out and os.path.isfile(p) and file_state(p) != entry.inputs[p]]
    out += [p for p in existing_paths(entry.absent) if p not in out]
    return list(dict.fromkeys(out))


def _record_outputs(run: Any, result: Any, entry: _Open) -> list[Any]:
    from ..core.pipeline import record_outputs

    paths = _produced(result, entry)
    if not paths:
        return []
    return record_outputs(run, paths, workdir=os.getcwd())


def _result(state_obj: Any) -> Any:
    """The return value of a completed run (sync even inside async flows)."""
    from prefect.results import ResultRecord, ResultRecordMetadata

    data = getattr(state_obj, "data", None)
    if data is None:
        return None
    # the common cases without state.result(), which hops to Prefect's event-loop thread
    # (~1 ms per task run, measured)
    if isinstance(data, ResultRecord):
        return data.result
    if not isinstance(data, ResultRecordMetadata):
        return data
    try:
        return state_obj.result(raise_on_failure=False, _sync=True)
    except TypeError:
        return state_obj.result(raise_on_failure=False)


def _storage_key(state_obj: Any) -> str | None:
    """Where Prefect persisted the result: the same for the producing run and its cache hits."""
    try:
        key = state_obj.data.metadata.storage_key
    except AttributeError:
        return None
    return str(key) if key else None


# -- flow runs ----------------------------------------------------------------------------


def _flow_parent(flow_run: Any) -> Any:
    """The run that started this flow run: a task (subflow in a task), a flow, or the script."""
    from prefect.context import FlowRunContext, TaskRunContext

    own = str(flow_run.id)
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run is not None:
        entry = state.open.get(str(task_ctx.task_run.id))
        if entry is not None:
            return entry.run
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None and str(flow_ctx.flow_run.id) != own:
        ref = str(flow_ctx.flow_run.id)
        entry = state.open.get(ref)
        return entry.run if entry is not None else _by_reference(ref, FLOW_RUN)
    current = get_current_run()
    if current is not None and current.reference != own:
        return current
    if flow_ctx is None and task_ctx is None:
        if state.env_before is _UNSET:
            return parent_run_from_env()
        from ..core.context import ENV_RUN_UID

        # The variable names a run this process still has open (see export_env): the launching
        # run is what the process was started with.
        given = dict(os.environ)
        given.pop(ENV_RUN_UID, None)
        if state.env_before is not None:
            given[ENV_RUN_UID] = state.env_before
        return parent_run_from_env(given)
    return None


def _flow_facts(flow_run: Any, attempt: int, **extra: Any) -> dict[str, Any]:
    return {"attempt": attempt, "tags": list(flow_run.tags or []) or None,
            "deployment_id": str(flow_run.deployment_id) if flow_run.deployment_id else None, **extra}


def _new_flow_run(flow: Any, flow_run: Any, attempt: int) -> Any:
    from ..core.models import Run

    transform = _transform(flow.name, "pipeline", flow.version, flow.fn, flow.description)
    params = _with_facts(params_json(flow_run.parameters), _flow_facts(flow_run, attempt))
    parent = _flow_parent(flow_run)
    if parent is not None and parent.id is None:  # a subflow called in a task not yet written
        from .writer import writer

        writer.flush()
    run = Run(transform, name=(flow_run.name or "")[:150] or None, params=params, reference=str(flow_run.id),
              reference_type=FLOW_RUN, initiated_by_run=parent, status="started",
              entrypoint=getattr(flow, "_entrypoint", None))
    run.host, run.pid = state.host, os.getpid()
    git = _code(flow.fn)[0]
    if git:
        run._aux = {"git": git}
    return run.save()


def export_env() -> None:
    """Name the run that a subprocess started now belongs to (LAMIN_INTEGRATIONS_RUN_UID), so a
    script it runs that calls `ln.track()` becomes that run's child: the running task run,
    else the innermost open flow run. The environment is one per process: while several
    task runs run at once it names their flow run, the parent they share."""
    from ..core.context import ENV_RUN_UID

    with state.lock:
        entries = list(state.open.values())
        if state.env_before is _UNSET:
            state.env_before = os.environ.get(ENV_RUN_UID)
        tasks = [e for e in entries if e.run.reference_type == TASK_RUN]
        flows = [e for e in entries if e.run.reference_type == FLOW_RUN]
        uid = tasks[0].run.uid if len(tasks) == 1 else flows[-1].run.uid if flows else None
        if uid is not None:
            os.environ[ENV_RUN_UID] = uid
            return
        if state.env_before is None:
            os.environ.pop(ENV_RUN_UID, None)
        else:
            os.environ[ENV_RUN_UID] = state.env_before
        state.env_before = _UNSET


def flow_started(flow: Any, flow_run: Any, state_obj: Any) -> None:
    state.check_instance()
    close_unreported()  # before the parent lookup: an unreported run may still be "current"
    ref = str(flow_run.id)
    attempt = int(flow_run.run_count or 0) + 1  # run_count is the count before this attempt
    entry = state.open.get(ref)
    if entry is not None or (attempt > 1 and _by_reference(ref, FLOW_RUN) is not None):
        if entry is None:
            entry = state.open[ref] = _Open(_by_reference(ref, FLOW_RUN), attempt - 1)
        if entry.engine is None:
            entry.engine = _engine_of(flow_run)
        if attempt > entry.attempt:  # a flow retry: same run, next attempt
            entry.attempt = attempt
            entry.run.status = "restarted"
            entry.run.params = _with_facts(_without_facts(entry.run.params),
                                           {**_facts_of(entry.run), "attempt": attempt})
            entry.run.save()
        return
    run = _new_flow_run(flow, flow_run, attempt)
    entry = _Open(run, attempt, engine=_engine_of(flow_run))
    with state.lock:
        state.open[ref] = entry
    _set_current(entry)
    export_env()
    _record_inputs(entry, (flow_run.parameters or {}).values())


def _engine_of(flow_run: Any) -> Any:
    """The Prefect engine running `flow_run`, found on the running hook's call stack.

    The flow_run handed to the hook is replaced by a fresh copy when the run context is set
    up, so it never sees the final state; the engine's `.state` always is the current one.
    None when not found (another Prefect version): such a run is still closed at exit.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_ENGINE_FRAMES):
        if frame is None:
            break
        candidate = frame.f_locals.get("self")
        if (candidate is not None and callable(getattr(candidate, "set_state", None))
                and getattr(getattr(candidate, "flow_run", None), "id", None) == flow_run.id):
            return candidate
        frame = frame.f_back
    return None


def _live_state(entry: _Open) -> Any:
    if entry.engine is None:
        return None
    try:
        return entry.engine.state
    except Exception:  # the engine lost its flow run: no state to tell
        return None


def _kind(state_obj: Any) -> str:
    return state_obj.type.value if hasattr(state_obj.type, "value") else str(state_obj.type)


def close_unreported() -> None:
    """Close the flow runs that ended in a state Prefect fires no hook for.

    A flow that returns `Cancelled(...)` ends Cancelled, and neither on_cancellation (which
    runs on Cancelling only) nor any other hook fires. Each flow hook, and the exit handler,
    calls this: it costs a look at the few open flow runs' live states.
    """
    with state.lock:
        ended = []
        for ref, entry in list(state.open.items()):
            live = _live_state(entry)
            if live is not None and _kind(live) in UNHOOKED:
                ended.append((state.open.pop(ref), live))
    for entry, live in sorted(ended, key=lambda item: -(item[0].run.id or 0)):  # subflows first
        try:
            engine = entry.engine
            _finish_flow(engine.flow, engine.flow_run, live, entry, finished_at=_state_time(live),
                         note=f"the flow run ended {live.name}, a state Prefect runs no hook for; recorded afterwards")
        except Exception as e:
            logger.warning("lamin-integrations: could not close flow run %s: %s: %s",
                           entry.run.reference, type(e).__name__, e)


def flow_finished(flow: Any, flow_run: Any, state_obj: Any) -> None:
    from .writer import writer

    state.check_instance()
    writer.flush()  # this flow's task runs are written before it judges which are still open
    ref = str(flow_run.id)
    with state.lock:
        entry = state.open.pop(ref, None)
    close_unreported()  # e.g. a subflow of this flow that returned Cancelled
    try:
        _finish_flow(flow, flow_run, state_obj, entry)
    finally:
        export_env()


def _state_time(state_obj: Any) -> Any:
    """When Prefect entered the state (a run closed later still gets its real end time)."""
    from datetime import UTC, datetime

    stamp = getattr(state_obj, "timestamp", None)
    try:
        return datetime.fromtimestamp(stamp.timestamp(), tz=UTC) if stamp is not None else None
    except (AttributeError, OSError, OverflowError, ValueError):
        return None


def _finish_flow(flow: Any, flow_run: Any, state_obj: Any, entry: _Open | None, *,
                 note: str | None = None, finished_at: Any = None) -> None:
    from prefect.context import FlowRunContext

    from ..core.pipeline import close_run

    ref = str(flow_run.id)
    run = entry.run if entry is not None else _by_reference(ref, FLOW_RUN)
    if run is None:  # parameter validation failed: no running hook fired
        attempt = max(int(flow_run.run_count or 0), 1)
        run = _new_flow_run(flow, flow_run, attempt)
        entry = _Open(run, attempt)
    elif entry is None:
        entry = _Open(run, int(flow_run.run_count or 1))
    status = STATUS.get(_kind(state_obj), "aborted")
    error = None if status == "completed" else (state_obj.message or state_obj.name)
    if error and note:
        error = f"{error} ({note})"
    try:
        ctx = FlowRunContext.get()
        params = run.params or {}
        if ctx is not None and ctx.flow_run is not None and str(ctx.flow_run.id) == ref and ctx.parameters is not None:
            params = _with_facts(params_json(ctx.parameters), _facts_of(run))  # validated values
        run.params = _with_facts(_without_facts(params),
                                 {**_facts_of(run), "state": state_obj.name})
        if status == "completed":
            _record_outputs(run, _result(state_obj), entry)
        _close_children(run, entry)
    finally:
        _unset_current(entry)
        entry.engine = None
        close_run(run, status, finished_at=finished_at, error=error)
        state.known.pop(ref, None)


def _close_children(run: Any, entry: _Open) -> None:
    """Task runs (and subflows) this flow started that never reported an end: aborted.

    A task that crashes (BaseException) fires no end hook, and a killed worker process
    fires nothing at all; without this those runs would stay `started` forever.
    """
    from ..core.models import Run
    from ..core.pipeline import close_run

    reason = "the flow run ended before this run reported a final state (crashed or killed)"
    with state.lock:
        mine = [(ref, e) for ref, e in state.open.items() if e.run.initiated_by_run_id == run.id]
        for ref, _ in mine:
            state.open.pop(ref, None)
    closed = set()
    for _, child in mine:
        _unset_current(child)
        close_run(child.run, "aborted", error=reason)
        closed.add(child.run.id)
    stale = Run.filter(initiated_by_run=run, status__in=list(OPEN)).exclude(id__in=list(closed) or [-1])
    for child in stale:
        close_run(child, "aborted", error=reason)
    _apply_map_indexes(run)


def close_leftovers() -> None:
    """At interpreter exit: close what this process opened and never saw end, as aborted.

    After the background writer's last batch, flow runs that ended without a hook get their
    Prefect state (`close_unreported`); flow runs still running here (a process killed by
    SIGTERM, a daemon thread) are closed innermost first, each with its still-open children;
    then task runs left open outside any flow. Runs of a registry this process has since
    left are not touched. Never raises.
    """
    from ..core import instance as instance_module
    from ..core.pipeline import close_run
    from .writer import EXIT_FLUSH_SECONDS, writer

    try:
        if not state.open or state.instance is None or instance_module._current is not state.instance:
            return
        writer.flush(EXIT_FLUSH_SECONDS)
        from . import offline
        from .hooks import outage

        # what started offline ends there; during an outage, everything does
        offline.close_at_exit("the process exited before this run reported a final state", everything=outage.active())
        close_unreported()
        with state.lock:
            flows = sorted(((r, e) for r, e in state.open.items() if e.run.reference_type == FLOW_RUN),
                           key=lambda item: -(item[1].run.id or 0))  # subflows before their parents
    except Exception as e:
        logger.debug("lamin-integrations: could not close open runs at exit: %s", e)
        return
    for ref, entry in flows:
        try:
            with state.lock:
                if state.open.pop(ref, None) is None:
                    continue  # closed with a parent already
            live = _live_state(entry)
            name = getattr(live, "name", None) or "unknown"
            entry.run.params = _with_facts(_without_facts(entry.run.params),
                                           {**_facts_of(entry.run), "state": name})
            _close_children(entry.run, entry)
            close_run(entry.run, "aborted", error=(
                f"the process exited before this flow run reported a final state (its Prefect state here was {name})"))
        except Exception as e:
            logger.debug("lamin-integrations: could not close flow run %s at exit: %s", ref, e)
    with state.lock:
        tasks = list(state.open.items())
        state.open.clear()
    for ref, entry in tasks:
        try:
            if entry.run.id is not None:
                close_run(entry.run, "aborted", error="the process exited before this task run reported a final state")
        except Exception as e:
            logger.debug("lamin-integrations: could not close task run %s at exit: %s", ref, e)


atexit.register(close_leftovers)


def _apply_map_indexes(run: Any) -> None:
    """Map indexes learnt after their runs were written (process pools, fast tasks)."""
    from ..core.models import Run

    with state.lock:
        pending = dict(state.map_index)
    if not pending:
        return
    done = []
    for child in Run.filter(initiated_by_run=run, reference__in=list(pending), reference_type=TASK_RUN):
        facts = _facts_of(child)
        index = pending[child.reference]
        if facts.get("map_index") != index:
            child.params = _with_facts(_without_facts(child.params),
                                       {**facts, "map_index": index})
            child.save()
        done.append(child.reference)
    with state.lock:
        for ref in done if any(e.run.reference_type == FLOW_RUN for e in state.open.values()) else pending:
            state.map_index.pop(ref, None)  # the last flow to end forgets the rest


# -- task runs ----------------------------------------------------------------------------


def _task_parent(task_run: Any) -> Any:
    flow_ref = str(task_run.flow_run_id) if task_run.flow_run_id else None
    current = get_current_run()
    if flow_ref is None:
        return current  # a task called outside any flow: child of the script's run, if any
    entry = state.open.get(flow_ref)
    parent = entry.run if entry is not None else _by_reference(flow_ref, FLOW_RUN)
    # a task called inside another task's body: the outer task run started it (Prefect names
    # it among the task's `__parents__`). Any other task run still current in this thread
    # ended without a hook (it returned a Cancelled state): it started nothing more.
    outer = {str(getattr(r, "id", "")) for r in (getattr(task_run, "task_inputs", None) or {}).get("__parents__", ())}
    if current is not None and current.reference_type == TASK_RUN and current.reference != str(task_run.id):
        if current.reference in outer:
            return current
        stale = state.open.get(str(current.reference))
        if stale is not None:
            _unset_current(stale)
    return parent


def _flow_name(parent: Any) -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    flow = getattr(ctx, "flow", None) if ctx is not None else None
    if flow is not None:
        return str(flow.name)
    if parent is not None and parent.reference_type == FLOW_RUN:
        return str(parent.transform.key)
    if parent is not None and parent.reference_type == TASK_RUN:
        return str(parent.transform.key).split(":", 1)[0]
    return None


def task_attempt_failed(task_run_id: Any, error: Any) -> None:
    """An attempt failed and will be retried: its error goes into the run's facts, which the
    next attempt's start writes. (No hook sees that failure: Prefect retries the task run in
    place, through AwaitingRetry or Retrying, states with no error. The engine logs the
    exception, with the task run's id, just before; or the retry starts while it handles it.)"""
    entry = state.open.get(str(task_run_id))
    if entry is None:
        return
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:  # a failed state returned by the task
        text = str(getattr(error, "message", None) or getattr(error, "name", None) or error)
    failed = [*entry.facts.get("failed_attempts", []), {"attempt": entry.attempt, "error": text[:2000]}]
    entry.facts = {**entry.facts, "failed_attempts": failed}


def task_started(task: Any, task_run: Any, state_obj: Any) -> None:
    from prefect.context import TaskRunContext

    from ..core.models import Run
    from ..core.schema import now
    from ..core.uids import base62
    from .writer import Start, Update, writer

    state.check_instance()
    ref = str(task_run.id)
    attempt = int(task_run.run_count or 1)
    entry = state.open.get(ref)
    if entry is not None:
        # a retry (next attempt), or the duplicate running hook of a crash (same attempt)
        if attempt > entry.attempt:
            failed = entry.facts.get("failed_attempts") or [{}]
            if failed[-1].get("attempt") != entry.attempt and sys.exc_info()[1] is not None:
                # Prefect's INFO line about it was not logged (a higher logging level); an
                # immediate retry starts while the engine still handles the attempt's exception
                task_attempt_failed(ref, sys.exc_info()[1])
            entry.attempt = attempt
            entry.facts = {**entry.facts, "attempt": attempt}
            if entry.deferred:
                writer.submit(Update(entry.run, _with_facts(entry.params, entry.facts)))
            else:
                entry.run.status = "restarted"
                entry.run.params = _with_facts(entry.params, entry.facts)
                entry.run.save()
        return
    ctx = TaskRunContext.get()
    parameters = resolved(ctx.parameters if ctx is not None else {})
    parent = _task_parent(task_run)
    flow_name = _flow_name(parent)
    key = f"{flow_name}:{task.name}" if flow_name else str(task.name)
    transform = _transform(key, "step", task.version, task.fn, task.description)
    facts = {"attempt": attempt, "cached": False, "map_index": state.map_index.get(ref),
             "task_key": task_run.task_key, "tags": list(task_run.tags or []) or None}
    params = params_json(parameters)
    run = Run(transform, name=(task_run.name or "")[:150] or None, params=_with_facts(params, facts),
              reference=ref, reference_type=TASK_RUN, initiated_by_run=parent, status="started",
              uid=base62(16), started_at=now())
    run.host, run.pid = state.host, os.getpid()
    # Write in the background when this process runs the task's flow (its end flushes the
    # writer); a task in a pool worker process or outside any flow writes at once.
    flow_ref = str(task_run.flow_run_id) if task_run.flow_run_id else None
    entry = _Open(run, attempt, params=params, facts=facts, deferred=flow_ref is not None and flow_ref in state.open)
    with state.lock:
        state.open[ref] = entry
    _set_current(entry)
    export_env()
    inputs = existing_paths(parameters.values()) if parameters else []
    entry.inputs = _input_stats(inputs)
    entry.absent = absent_paths(parameters.values()) if parameters else []
    if entry.deferred:
        run.__dict__["_materialize"] = writer.flush
        writer.submit(Start(run, inputs, os.getcwd(), stats=entry.inputs))
        return
    run.save()
    if inputs:
        from ..core.pipeline import record_inputs

        record_inputs(run, inputs, workdir=os.getcwd())


def task_finished(task: Any, task_run: Any, state_obj: Any) -> None:
    from ..core.pipeline import close_run
    from ..core.schema import now
    from .writer import End, writer

    finished_at = now()
    state.check_instance()
    ref = str(task_run.id)
    with state.lock:
        entry = state.open.pop(ref, None)
    if entry is None:
        found = _by_reference(ref, TASK_RUN)
        if found is not None:  # closed "aborted" by its flow's end first (submitted, never awaited)
            params = _without_facts(found.params)
            entry = _Open(found, int(task_run.run_count or 1), params=params, facts=_facts_of(found))
    if entry is None:  # no running hook seen (instrumented mid-run): record the end alone
        task_started(task, task_run, state_obj)
        with state.lock:
            entry = state.open.pop(ref, None)
        if entry is None:
            return
    run = entry.run
    status = STATUS.get(_kind(state_obj), "aborted")
    cached = state_obj.name == "Cached"
    error = None if status == "completed" else (state_obj.message or state_obj.name)
    outputs: list[str] = []
    try:
        facts = {**entry.facts, "attempt": int(task_run.run_count or entry.attempt), "cached": cached,
                 "state": state_obj.name, "result_key": _storage_key(state_obj)}
        with state.lock:
            index = state.map_index.pop(ref, None)
        if index is not None:
            facts["map_index"] = index
        params = _with_facts(entry.params, facts)
        if status == "completed":
            outputs = _produced(_result(state_obj), entry, cached)
    finally:
        _unset_current(entry)
        export_env()
        if entry.deferred:
            writer.submit(End(run, status, finished_at, params, error, outputs, os.getcwd()))
        else:
            run.params = params
            if outputs:
                from ..core.pipeline import record_outputs

                record_outputs(run, outputs, workdir=os.getcwd())
            close_run(run, status, finished_at=finished_at, error=error)


def note_map_indexes(task_run_ids: list[Any]) -> None:
    """Remember which map index each task run has (Prefect does not tell the task run).

    Runs already written get their index at their end hook or, if they ended before `.map()`
    returned, when their flow ends.
    """
    with state.lock:
        for i, task_run_id in enumerate(task_run_ids):
            if task_run_id is not None:
                state.map_index[str(task_run_id)] = i
