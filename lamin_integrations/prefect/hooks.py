"""The state hooks attached to every instrumented Flow and Task.

They are module-level functions so that a Task pickled to a process-pool worker carries
them by reference, and so that "is this hook already attached" is an identity check.
Recording must never change what the flow does: any error is caught here, logged once per
kind of error (a broken registry would otherwise log for each of thousands of task runs),
and the hook returns normally.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import recorder

logger = logging.getLogger("lamin_integrations")

_reported: set[str] = set()
_reported_lock = threading.Lock()


# A hook's writes give up after this long on a locked registry (instead of minutes of
# retries inside the user's flow); after an outage is seen, hooks skip recording for a while.
WRITE_SECONDS = 3.0
OUTAGE_PAUSE_SECONDS = 60.0


class Outage:
    """When the registry was last found unavailable: hooks and the writer thread then skip
    recording for OUTAGE_PAUSE_SECONDS, so a flow of thousands of tasks does not wait out a
    timeout for each of them."""

    def __init__(self) -> None:
        self.until = 0.0

    def active(self) -> bool:
        import time

        return time.monotonic() < self.until

    def begin(self, error: Exception) -> None:
        import time

        first = not self.active()
        self.until = time.monotonic() + OUTAGE_PAUSE_SECONDS
        if first:
            from ..core.instance import mask_text

            reason = mask_text(f"{type(error).__name__}: {error}").splitlines()[0][:300]
            try:
                from ..core.journal import Journal

                where = f" {Journal.of(recorder.state.instance).path}"
            except Exception:
                where = ""
            logger.warning("lamin-integrations: the registry is unavailable (%s); Prefect runs go to the journal%s "
                           "for the next %g s, for `lamin-integrations sync` (the flow is not affected)",
                           reason, where, OUTAGE_PAUSE_SECONDS)


outage = Outage()


def _guarded(what: str, fn: Callable[[Any, Any, Any], None], obj: Any, run: Any, state: Any) -> None:
    from . import offline

    if outage.active() or offline.owns(run):
        _offline(what, fn, obj, run, state)
        return
    # End hooks take runs out of the open ones before writing them (a flow's end, its children
    # too): if the write fails, the journal needs them back.
    ref = str(getattr(run, "id", ""))
    with recorder.state.lock:
        before = {ref: recorder.state.open[ref]} if ref in recorder.state.open else {}
        if fn is recorder.flow_finished and before:
            before.update(offline.children(before[ref]))
    try:
        from ..core.instance import write_budget

        with write_budget(WRITE_SECONDS):
            fn(obj, run, state)
    except Exception as e:
        from ..core.journal import is_unavailable

        if is_unavailable(e):
            outage.begin(e)
            with recorder.state.lock:
                for key, entry in before.items():
                    recorder.state.open.setdefault(key, entry)
            _offline(what, fn, obj, run, state)
            return
        signature = type(e).__name__  # a broken registry fails every hook alike: say it once
        with _reported_lock:
            first = signature not in _reported
            _reported.add(signature)
        if first:  # one line; the traceback at debug level
            logger.warning("lamin-integrations: could not record %s of %s (the run itself is not affected): %s: %s",
                           what, getattr(run, "name", run), type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
        logger.debug("lamin-integrations: could not record %s", what, exc_info=e)


def _offline(what: str, fn: Callable[[Any, Any, Any], None], obj: Any, run: Any, state: Any) -> None:
    """The registry is unavailable: the same hook into the journal (offline.py), never raising."""
    from . import offline

    try:
        offline.dispatch(fn, obj, run, state)
    except Exception as e:
        logger.debug("lamin-integrations: could not journal %s", what, exc_info=e)


def lamin_flow_running(flow: Any, flow_run: Any, state: Any) -> None:
    _guarded("the start of flow run", recorder.flow_started, flow, flow_run, state)


def lamin_flow_finished(flow: Any, flow_run: Any, state: Any) -> None:
    _guarded("the end of flow run", recorder.flow_finished, flow, flow_run, state)


def lamin_task_running(task: Any, task_run: Any, state: Any) -> None:
    _guarded("the start of task run", recorder.task_started, task, task_run, state)


def lamin_task_finished(task: Any, task_run: Any, state: Any) -> None:
    _guarded("the end of task run", recorder.task_finished, task, task_run, state)


class _QuietHooks(logging.Filter):
    """Drop Prefect's two INFO lines per call of our hooks ("Running hook 'lamin_task_running'
    ...", "Hook ... finished running successfully"): four extra lines per task run in the
    user's console and in Prefect's API, about recording the user never asked to read.
    The user's own hooks are logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not ("'lamin_" in message and (message.startswith("Running hook") or message.startswith("Hook ")))


def _failed_attempt(record: logging.LogRecord) -> bool:
    """A logger filter that keeps the error of a task run's attempt that Prefect retries (see
    `recorder.task_attempt_failed`)."""
    if isinstance(record.msg, str) and record.msg.startswith("Task run failed with %s") and "Retry" in record.msg:
        args = record.args if isinstance(record.args, tuple) else ()
        try:
            recorder.task_attempt_failed(getattr(record, "task_run_id", None), args[1] if len(args) > 1 else None)
        except Exception as e:  # never in the flow's way
            logger.debug("could not keep a failed attempt's error: %s", e)
    return True


_QUIET = _QuietHooks()
for _name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
    logging.getLogger(_name).addFilter(_QUIET)
logging.getLogger("prefect.task_runs").addFilter(_failed_attempt)


FLOW_HOOKS: dict[str, Callable[..., None]] = {
    "on_running_hooks": lamin_flow_running,
    "on_completion_hooks": lamin_flow_finished,
    "on_failure_hooks": lamin_flow_finished,
    "on_crashed_hooks": lamin_flow_finished,
    "on_cancellation_hooks": lamin_flow_finished,
}
TASK_HOOKS: dict[str, Callable[..., None]] = {
    "on_running_hooks": lamin_task_running,
    "on_completion_hooks": lamin_task_finished,
    "on_failure_hooks": lamin_task_finished,
}
