"""`flow`, `task` and `instrument`: real Prefect objects with our state hooks attached.

We never wrap the user's function: a wrapper changes `Flow.version` (it would hash this
file), hides `async def` from Prefect and points `serve`/`deploy` entrypoints at this
library (see the engine notes). Instead Prefect builds its own Flow/Task and we append
hooks. Two thin subclasses exist only because Prefect's `with_options(on_completion=[h])`
replaces hook lists (dropping ours) and because `.map()` never tells a task run its index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import prefect

from . import recorder
from .hooks import FLOW_HOOKS, TASK_HOOKS


def _attach(obj: Any, hooks: dict[str, Callable[..., None]]) -> None:
    for attr, hook in hooks.items():
        current = list(getattr(obj, attr, None) or [])
        if hook not in current:
            # a new list: Prefect shares hook lists between with_options copies and the
            # user's own list objects, which we must not mutate
            setattr(obj, attr, [*current, hook])


class LaminFlow(prefect.Flow):  # type: ignore[type-arg]
    """A `prefect.Flow` whose copies made by `with_options` keep recording."""

    def with_options(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return instrument(super().with_options(*args, **kwargs))


class LaminTask(prefect.Task):  # type: ignore[type-arg]
    """A `prefect.Task` whose copies keep recording and whose mapped runs know their index."""

    def with_options(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return instrument(super().with_options(*args, **kwargs))

    def map(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        result = super().map(*args, **kwargs)  # type: ignore[call-overload]
        try:
            recorder.note_map_indexes(_task_run_ids(result))
        except Exception:  # recording must never break .map()
            pass
        return result


def _task_run_ids(result: Any) -> list[Any]:
    out = []
    for item in result:
        task_run_id = getattr(item, "task_run_id", None)
        if task_run_id is None:  # return_state=True gives states
            task_run_id = getattr(getattr(item, "state_details", None), "task_run_id", None)
        out.append(task_run_id)
    return out


def instrument(obj: Any) -> Any:
    """Add lineage recording to an existing Flow or Task (e.g. a third-party task); idempotent.

    Returns the same object, so `instrument(some_task)` can be used inline.
    """
    if isinstance(obj, prefect.Flow):
        if type(obj) is prefect.Flow:
            obj.__class__ = LaminFlow
        _attach(obj, FLOW_HOOKS)
        return obj
    if isinstance(obj, prefect.Task):
        if type(obj) is prefect.Task:
            obj.__class__ = LaminTask
        _attach(obj, TASK_HOOKS)
        return obj
    raise TypeError(f"instrument() expects a prefect Flow or Task, got {type(obj).__name__}")


def flow(__fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
    """Drop-in for `prefect.flow`: same arguments, returns a `prefect.Flow` that records its runs."""
    if __fn is None:
        return lambda fn: instrument(prefect.flow(fn, **kwargs))
    return instrument(prefect.flow(__fn, **kwargs))


def task(__fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
    """Drop-in for `prefect.task`: same arguments, returns a `prefect.Task` that records its runs."""
    if __fn is None:
        return lambda fn: instrument(prefect.task(fn, **kwargs))
    return instrument(prefect.task(__fn, **kwargs))


flow.from_source = prefect.flow.from_source  # type: ignore[attr-defined]
