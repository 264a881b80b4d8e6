"""Prefect runs while the registry is unavailable: kept in the journal, written by `sync`.

When a hook or the background writer finds the registry unavailable (SQLite locked past the
write budget, a PostgreSQL server down), recording switches here for the outage
(`hooks.Outage`): flow and task runs get their uids in memory, and their starts and ends go to
the registry's journal (core/journal.py, kind "prefect", one group per run) instead of being
dropped. `lamin-integrations sync` replays them (`replay`) once the registry is back, by uid,
so a run whose start was written before the outage only gets its end.

A run started offline stays offline until it ends, so its start and end are in one place.
What needs the registry meanwhile is not available: a parent is the open run this process
knows (its flow, the task that called a subflow, `ln.track()`'s run) or the run the
environment names, never a lookup by Prefect id.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
from collections.abc import Iterable
from typing import Any

from ..core.context import ENV_LAMINDB_RUN_UID, ENV_RUN_UID
from ..core.context import peek_current_run as get_current_run
from . import recorder
from .recorder import FLOW_RUN, STATUS, TASK_RUN, _Open, state
from .values import absent_paths, existing_paths, params_json, resolved

logger = logging.getLogger("lamin_integrations")

KIND = "prefect"
_reported: set[str] = set()
_ended: dict[str, str] = {}  # Prefect task run id -> run uid, ended here: its map index may come later
_journaled_under: set[str] = set()  # uids of runs with journaled children: their ends go to the journal too
_sequence = itertools.count()
_used = False  # set once anything was journaled here


# -- the journal's lines -------------------------------------------------------------------


def _append(uid: str, events: list[dict[str, Any]], parent: str | None = None) -> None:
    """Each event is its own group (`<run uid>/<pid>-<n>`): `sync` replays them in the order they
    happened, as the live recorder would have written them (a task's outputs before the next
    task reads them, before its flow returns them), each once."""
    _append_all([(uid, event) for event in events], {parent})


def _append_all(events: list[tuple[str, dict[str, Any]]], parents: Iterable[str | None] = ()) -> None:
    """`parents`: the runs these events are under; their own ends go to the journal from now on."""
    from ..core.journal import Journal

    global _used
    _used = True
    _journaled_under.update(p for p in parents if p)
    try:
        journal = Journal.of(state.instance)
        journal.append_groups(KIND, [(f"{uid}/{os.getpid()}-{next(_sequence)}", event) for uid, event in events])
    except Exception as e:  # nowhere to keep it: say so once, the flow goes on
        if "journal" not in _reported:
            _reported.add("journal")
            logger.warning("lamin-integrations: could not journal Prefect runs either (they are not recorded): %s: %s",
                           type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")


def _transform_of(run: Any) -> dict[str, Any]:
    t = run.__dict__.get("_related", {}).get("transform")
    if t is None:  # a run read from the registry: written, found by uid on replay
        return {}
    if t.id is not None:
        return {"uid": t.uid, "key": t.key, "kind": t.kind}
    return {"key": t.key, "kind": t.kind, "version": t.version, "source_code": t.source_code,
            "description": t.description, "reference": t.reference, "reference_type": t.reference_type}


def _parent_uid_of(run: Any) -> str | None:
    parent = run.__dict__.get("_related", {}).get("initiated_by_run")
    return parent.uid if parent is not None else None


def _iso(value: Any) -> str:
    from ..core.schema import now

    value = value or now()
    return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).isoformat()


def start_event(run: Any, parent_uid: str | None, inputs: list[str], workdir: str) -> dict[str, Any]:
    return {"event": "start", "transform": _transform_of(run),
            "run": {"name": run.name, "params": run.params, "reference": run.reference,
                    "reference_type": run.reference_type, "parent_uid": parent_uid,
                    "started_at": _iso(run.started_at), "host": run.host, "pid": run.pid,
                    "entrypoint": run.entrypoint, "git": (run._aux or {}).get("git")},
            "inputs": inputs, "workdir": workdir}


def end_event(status: str, finished_at: Any, params: Any, error: str | None, outputs: list[str],
              workdir: str) -> dict[str, Any]:
    return {"event": "end", "status": status, "finished_at": _iso(finished_at), "params": params,
            "error": error, "outputs": outputs, "workdir": workdir}


def journal_batch(batch: list[Any]) -> None:
    """The background writer's batch, journaled instead of written."""
    from .writer import End, Start, Update

    events: list[tuple[str, dict[str, Any]]] = []
    parents: set[str | None] = set()
    for item in batch:
        run = item.run
        parents.add(_parent_uid_of(run))
        if isinstance(item, Start):
            event = start_event(run, _parent_uid_of(run), item.inputs, item.workdir)
        elif isinstance(item, Update):
            event = {"event": "update", "status": "restarted", "params": item.params}
        elif isinstance(item, End):
            event = end_event(item.status, item.finished_at, item.params, item.error, item.outputs, item.workdir)
            if run.reference_type == TASK_RUN:
                _ended[str(run.reference)] = run.uid
        else:
            continue
        events.append((run.uid, event))
    _append_all(events, parents)


# -- hooks while offline --------------------------------------------------------------------


def owns(prefect_run: Any) -> bool:
    """Does this Prefect run go to the journal even after the outage? When it started offline,
    runs of it were journaled (its end must be replayed after theirs), or it runs inside a
    run that started offline (its parent exists only in the journal)."""
    if not _used:  # nothing journaled by this process yet: the common case, on every hook
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    refs = [getattr(prefect_run, "id", None), getattr(prefect_run, "flow_run_id", None)]
    for ctx, attr in ((TaskRunContext.get(), "task_run"), (FlowRunContext.get(), "flow_run")):
        inner = getattr(ctx, attr, None) if ctx is not None else None
        refs.append(getattr(inner, "id", None))
    current = get_current_run()
    if current is not None and current.reference_type in (FLOW_RUN, TASK_RUN):
        refs.append(current.reference)
    for ref in refs:
        entry = state.open.get(str(ref)) if ref is not None else None
        if entry is not None and (entry.offline or entry.run.uid in _journaled_under):
            return True
    return False


def _environment_parent() -> str | None:
    environ = dict(os.environ)
    if state.env_before is not recorder._UNSET:  # the variable names one of our runs: the launching run is what we started with
        environ.pop(ENV_RUN_UID, None)
        if state.env_before is not None:
            environ[ENV_RUN_UID] = state.env_before
    return environ.get(ENV_RUN_UID) or environ.get(ENV_LAMINDB_RUN_UID) or None


def _flow_parent_uid(flow_run: Any) -> str | None:
    """`recorder._flow_parent` without the registry: open runs of this process, else the environment."""
    from prefect.context import FlowRunContext, TaskRunContext

    own = str(flow_run.id)
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run is not None:
        entry = state.open.get(str(task_ctx.task_run.id))
        if entry is not None:
            return str(entry.run.uid)
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None and str(flow_ctx.flow_run.id) != own:
        entry = state.open.get(str(flow_ctx.flow_run.id))
        return str(entry.run.uid) if entry is not None else None
    current = get_current_run()
    if current is not None and current.reference != own:
        return str(current.uid)
    return _environment_parent() if flow_ctx is None and task_ctx is None else None


def _restart(entry: _Open, params: dict[str, Any]) -> None:
    from .writer import Update, writer

    if entry.deferred and entry.run.id is None and not entry.offline:
        writer.submit(Update(entry.run, params))  # the writer holds its start: keep the order there
        return
    entry.run.params = params
    _append(entry.run.uid, [{"event": "update", "status": "restarted", "params": params}])


def _end(entry: _Open, status: str, finished_at: Any, params: Any, error: str | None, outputs: list[str]) -> None:
    from .writer import End, writer

    if entry.deferred and entry.run.id is None and not entry.offline:
        writer.submit(End(entry.run, status, finished_at, params, error, outputs, os.getcwd()))
        return
    _append(entry.run.uid, [end_event(status, finished_at, params, error, outputs, os.getcwd())],
            entry.parent_uid or _parent_uid_of(entry.run))
    if entry.run.reference_type == TASK_RUN:
        _ended[str(entry.run.reference)] = entry.run.uid


def flow_started(flow: Any, flow_run: Any, state_obj: Any) -> None:
    from ..core.models import Run, Transform
    from ..core.schema import now
    from ..core.uids import base62

    ref = str(flow_run.id)
    attempt = int(flow_run.run_count or 0) + 1
    entry = state.open.get(ref)
    if entry is not None and (entry.offline or entry.run.id is not None):
        if attempt > entry.attempt:  # a flow retry: same run, next attempt
            entry.attempt = attempt
            _restart(entry, recorder._with_facts(_own_params(entry.run), {**recorder._facts_of(entry.run), "attempt": attempt}))
        elif not entry.offline:  # written, then the outage began: its inputs were not
            values = list((flow_run.parameters or {}).values())
            inputs = existing_paths(values)
            entry.inputs, entry.absent = recorder._input_stats(inputs), absent_paths(values)
            if inputs:
                _append(entry.run.uid, [start_event(entry.run, _parent_uid_of(entry.run), inputs, os.getcwd())])
        return
    git, (reference, reference_type) = recorder._code(flow.fn)  # as a flow run written at once has them
    transform = Transform(key=str(flow.name)[:1024], kind="pipeline", version=flow.version,
                          source_code=recorder._source(flow.fn), description=flow.description,
                          reference=reference, reference_type=reference_type)
    params = recorder._with_facts(params_json(flow_run.parameters), recorder._flow_facts(flow_run, attempt))
    parent_uid = _flow_parent_uid(flow_run)
    run = Run(transform, name=(flow_run.name or "")[:150] or None, params=params, reference=ref, reference_type=FLOW_RUN,
              status="started", uid=base62(16), started_at=now(), entrypoint=getattr(flow, "_entrypoint", None))
    run.host, run.pid = state.host, os.getpid()
    if git:
        run._aux = {"git": git}
    entry = _Open(run, attempt, offline=True, parent_uid=parent_uid)
    values = list((flow_run.parameters or {}).values())
    inputs = existing_paths(values)
    entry.inputs, entry.absent = recorder._input_stats(inputs), absent_paths(values)
    with state.lock:
        state.open[ref] = entry
    recorder._set_current(entry)
    recorder.export_env()
    _append(run.uid, [start_event(run, parent_uid, inputs, os.getcwd())], parent_uid)


def _own_params(run: Any) -> dict[str, Any]:
    return recorder._without_facts(run.params)


def _related_transform_key(run: Any) -> str | None:
    t = run.__dict__.get("_related", {}).get("transform")
    return str(t.key) if t is not None else None


def task_started(task: Any, task_run: Any, state_obj: Any) -> None:
    from prefect.context import FlowRunContext, TaskRunContext

    from ..core.models import Run, Transform
    from ..core.schema import now
    from ..core.uids import base62

    ref = str(task_run.id)
    attempt = int(task_run.run_count or 1)
    entry = state.open.get(ref)
    if entry is not None:
        if attempt > entry.attempt:  # a retry
            entry.attempt = attempt
            entry.facts = {**entry.facts, "attempt": attempt}
            _restart(entry, recorder._with_facts(entry.params, entry.facts))
        return
    ctx = TaskRunContext.get()
    parameters = resolved(ctx.parameters if ctx is not None else {})
    flow_ref = str(task_run.flow_run_id) if task_run.flow_run_id else None
    flow_entry = state.open.get(flow_ref) if flow_ref else None
    current = get_current_run()
    parent_uid = None
    if flow_ref is None:
        parent_uid = str(current.uid) if current is not None else None
    elif flow_entry is not None:
        parent_uid = str(flow_entry.run.uid)
        outer = state.open.get(str(current.reference)) if current is not None and current.reference_type == TASK_RUN else None
        if outer is not None and current is not None and current.reference != ref \
                and (outer.parent_uid or _parent_uid_of(outer.run)) == parent_uid:
            parent_uid = str(current.uid)  # a task called inside another task's body
    flow_ctx = FlowRunContext.get()
    flow = getattr(flow_ctx, "flow", None) if flow_ctx is not None else None
    flow_name = str(flow.name) if flow is not None else (_related_transform_key(flow_entry.run) if flow_entry else None)
    key = f"{flow_name}:{task.name}" if flow_name else str(task.name)
    transform = Transform(key=key[:1024], kind="step", version=task.version, source_code=recorder._source(task.fn),
                          description=task.description)
    facts = {"attempt": attempt, "cached": False, "map_index": state.map_index.get(ref),
             "task_key": task_run.task_key, "tags": list(task_run.tags or []) or None}
    params = params_json(parameters)
    run = Run(transform, name=(task_run.name or "")[:150] or None, params=recorder._with_facts(params, facts),
              reference=ref, reference_type=TASK_RUN, status="started", uid=base62(16), started_at=now())
    run.host, run.pid = state.host, os.getpid()
    entry = _Open(run, attempt, params=params, facts=facts, offline=True, parent_uid=parent_uid)
    inputs = existing_paths(parameters.values()) if parameters else []
    entry.inputs = recorder._input_stats(inputs)
    entry.absent = absent_paths(parameters.values()) if parameters else []
    with state.lock:
        state.open[ref] = entry
    recorder._set_current(entry)
    recorder.export_env()
    _append(run.uid, [start_event(run, parent_uid, inputs, os.getcwd())], parent_uid)


def task_finished(task: Any, task_run: Any, state_obj: Any) -> None:
    from ..core.schema import now

    finished_at = now()
    ref = str(task_run.id)
    with state.lock:
        entry = state.open.pop(ref, None)
    if entry is None:  # its start was seen by no hook of this process: nothing to attach the end to
        return
    status = STATUS.get(recorder._kind(state_obj), "aborted")
    cached = state_obj.name == "Cached"
    error = None if status == "completed" else (state_obj.message or state_obj.name)
    params = recorder._with_facts(entry.params, entry.facts)
    outputs: list[str] = []
    try:
        facts = {**entry.facts, "attempt": int(task_run.run_count or entry.attempt), "cached": cached,
                 "state": state_obj.name, "result_key": recorder._storage_key(state_obj)}
        with state.lock:
            index = state.map_index.pop(ref, None)
        if index is not None:
            facts["map_index"] = index
        params = recorder._with_facts(entry.params, facts)
        if status == "completed":
            outputs = recorder._produced(recorder._result(state_obj), entry, cached)
    finally:
        recorder._unset_current(entry)
        recorder.export_env()
        _end(entry, status, finished_at, params, error, outputs)


def flow_finished(flow: Any, flow_run: Any, state_obj: Any) -> None:
    from ..core.schema import now
    from .hooks import WRITE_SECONDS
    from .writer import writer

    writer.flush(WRITE_SECONDS + 5)  # this flow's queued task runs are journaled before its end
    ref = str(flow_run.id)
    with state.lock:
        entry = state.open.pop(ref, None)
        indexes = [(r, i) for r, i in state.map_index.items() if r in _ended]  # learnt after their ends
        for r, _ in indexes:
            state.map_index.pop(r, None)
    _append_all([(_ended.pop(r), {"event": "map_index", "index": i}) for r, i in indexes])
    if entry is None:
        return
    status = STATUS.get(recorder._kind(state_obj), "aborted")
    error = None if status == "completed" else (state_obj.message or state_obj.name)
    params = recorder._with_facts(_own_params(entry.run), {**recorder._facts_of(entry.run), "state": state_obj.name})
    outputs: list[str] = []
    try:
        if status == "completed":
            outputs = recorder._produced(recorder._result(state_obj), entry)
    finally:
        close_children(entry, "the flow run ended before this run reported a final state (crashed or killed)")
        recorder._unset_current(entry)
        entry.engine = None
        _end(entry, status, now(), params, error, outputs)
        recorder.export_env()


def children(parent: _Open) -> dict[str, _Open]:
    """The open runs of this process directly under `parent` (call with state.lock held)."""
    uid = parent.run.uid
    return {r: e for r, e in state.open.items() if (e.parent_uid or _parent_uid_of(e.run)) == uid
            or (parent.run.id is not None and e.run.initiated_by_run_id == parent.run.id)}


def close_children(parent: _Open, reason: str) -> None:
    """Open runs of this process under `parent` that never reported an end: aborted."""
    from ..core.schema import now

    with state.lock:
        mine = list(children(parent).items())
        for ref, _ in mine:
            state.open.pop(ref, None)
    for _, child in mine:
        recorder._unset_current(child)
        _end(child, "aborted", now(), child.run.params, reason, [])


def close_at_exit(reason: str, everything: bool) -> None:
    """At exit: the runs still open here that started offline (`everything`: all of them,
    during an outage) end aborted, in the journal."""
    from ..core.schema import now

    with state.lock:
        ended = [(r, e) for r, e in state.open.items() if everything or e.offline]  # runs under offline ones are offline
        for ref, _ in ended:
            state.open.pop(ref, None)
    for _, entry in ended:
        _end(entry, "aborted", now(), entry.run.params, reason, [])



HOOKS: dict[Any, Any] = {
    recorder.flow_started: flow_started,
    recorder.flow_finished: flow_finished,
    recorder.task_started: task_started,
    recorder.task_finished: task_finished,
}


def dispatch(live_hook: Any, obj: Any, prefect_run: Any, state_obj: Any) -> None:
    """Run the offline version of a recorder hook."""
    global _used
    _used = True  # before any run is opened offline: `owns` must see it from other threads at once
    HOOKS[live_hook](obj, prefect_run, state_obj)


# -- replay ------------------------------------------------------------------------------------


def replay(entries: list[dict[str, Any]]) -> bool:
    """Write one journaled event of a run (core/journal.py calls this inside one transaction, in
    the order the events happened); True when the registry already had it."""
    from ..core.journal import run_uid
    from ..core.models import Run
    from ..core.pipeline import close_run, record_inputs, record_outputs
    from ..errors import ObjectDoesNotExist

    uid = run_uid(entries[0]["group"])
    run = Run.filter(uid=uid).one_or_none()
    present = True
    for event in entries:
        kind = event.get("event")
        if kind == "start":
            if run is None:
                run, present = _create(uid, event), False
            inputs = _paths(event.get("inputs"), event.get("workdir"))
            if inputs:  # also for a run written before: its inputs may not have been (linking is idempotent)
                record_inputs(run, inputs, workdir=event.get("workdir"))
            continue
        if run is None:
            raise ObjectDoesNotExist(f"run {uid} is neither in the registry nor started in the journal")
        if kind == "update" and run.status in ("started", "restarted", "scheduled"):
            run.status, run.params, present = "restarted", event.get("params") or run.params, False
            run.save()
        elif kind == "map_index":
            facts = {**recorder._facts_of(run), "map_index": event.get("index")}
            run.params, present = recorder._with_facts(_own_params(run), facts), False
            run.save()
        elif kind == "end" and run.status != event["status"]:
            if event.get("params") is not None:
                run.params = event["params"]
            outputs = _paths(event.get("outputs"), event.get("workdir"))
            if outputs and event["status"] == "completed":
                record_outputs(run, outputs, workdir=event.get("workdir"))
            close_run(run, event["status"], finished_at=dt.datetime.fromisoformat(event["finished_at"]), error=event.get("error"))
            present = False
    return present


def _paths(paths: Any, workdir: Any) -> list[str]:
    """Journaled paths that still exist, relative ones under the run's working directory."""
    out = []
    for p in paths or []:
        if "://" not in p and not os.path.isabs(p) and workdir:
            p = os.path.join(workdir, p)
        if "://" in p or os.path.exists(p):
            out.append(p)
    return out


def _create(uid: str, start: dict[str, Any]) -> Any:
    from ..core.models import Run, Transform

    described, fields = start.get("transform") or {}, start["run"]
    transform = Transform.filter(uid=described["uid"]).one_or_none() if described.get("uid") else None
    if transform is None:
        transform = Transform(key=described.get("key") or "prefect", kind=described.get("kind") or "step",
                              version=described.get("version"), source_code=described.get("source_code"),
                              description=described.get("description"), reference=described.get("reference"),
                              reference_type=described.get("reference_type")).save()
    parent_uid = fields.get("parent_uid")
    parent = Run.filter(uid=parent_uid).one_or_none() if parent_uid else None
    run = Run(transform, name=fields.get("name"), params=fields.get("params"), reference=fields.get("reference"),
              reference_type=fields.get("reference_type"), initiated_by_run=parent, status="started", uid=uid,
              entrypoint=fields.get("entrypoint"))
    run.started_at = dt.datetime.fromisoformat(fields["started_at"])
    run.host, run.pid = fields.get("host"), fields.get("pid")
    aux: dict[str, Any] = {"journaled": True, **({"git": fields["git"]} if fields.get("git") else {})}
    if parent_uid and parent is None:
        aux["initiated_by_run_uid"] = parent_uid  # not in this registry: say who it was
    run._aux = aux
    return run.save()
