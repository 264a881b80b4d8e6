"""`@ln.step()`: each call of a decorated function is a Run, chained to the current run.

The current run is a ContextVar, so nested steps chain, asyncio tasks each see their own,
and threads fall back to the global run of `ln.track()`. Recording never breaks the
function: if the registry fails, the function runs untracked and a warning says why.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ValidationError
from .jsonutil import param_json

logger = logging.getLogger("lamin_integrations")
F = TypeVar("F", bound=Callable[..., Any])


def bind_params(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {}
    bound.apply_defaults()
    params = {}
    for name, value in bound.arguments.items():
        kind = inspect.signature(func).parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            params.update(param_json(value))
        else:
            params.update(param_json({name: value}))
    return params


def step(uid: str | None = None) -> Callable[[F], F]:
    """Track every call of the decorated function as a Run initiated by the current run."""
    from .context import get_current_run, reset_current_run, set_current_run

    def decorator(func: F) -> F:
        transforms: dict[int, Any] = {}

        def transform() -> Any:
            from .context import context
            from .instance import current
            from .models import Transform

            instance = current()
            if id(instance) not in transforms:
                path = inspect.getsourcefile(func)
                if path and Path(path).is_file():
                    # lamindb's: the defining file is the transform (kind script), shared with the flows and
                    # the script that call the step; the function is each run's entrypoint
                    transforms[id(instance)] = context._resolve_transform(uid, path)
                else:  # a notebook cell, `python -c`: the function is the transform
                    try:
                        source = inspect.getsource(func)
                    except (OSError, TypeError):
                        source = None
                    transforms[id(instance)] = Transform(key=func.__qualname__, kind="function", source_code=source, uid=uid).save()
            return transforms[id(instance)]

        def start(args: tuple, kwargs: dict) -> tuple[Any, Any]:
            from .models import Run

            try:
                run = Run(transform(), params=bind_params(func, args, kwargs), initiated_by_run=get_current_run(),
                          entrypoint=func.__qualname__[:255], status="started")
                run.host, run.pid = socket.gethostname()[:255], os.getpid()
                run.save()
            except Exception as e:
                logger.warning("step %s is running untracked: %s", func.__qualname__, e)
                return None, None
            return run, set_current_run(run)

        def end(state: tuple[Any, Any], error: BaseException | None) -> None:
            run, token = state
            if run is None:
                return
            reset_current_run(token)
            try:
                if error is not None:
                    run._aux = {**(run._aux or {}), "end_reason": f"{type(error).__name__}: {error}"[:1000]}
                    run.status = "aborted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "errored"
                else:
                    run.status = "completed"
                run.save()
            except Exception as e:
                logger.warning("could not record the end of step run %s: %s", run.uid, e)

        return _around(func, start, end)

    return decorator


def flow(uid: str | None = None) -> Callable[[F], F]:
    """lamindb's `@ln.flow`: every call of the decorated function is a top-level run of the file
    that defines it, as `ln.track()` ... `ln.finish()` around the call would be (output captured
    as its report, params bound from the signature, `@ln.step` calls inside it its children).
    An exception marks the run errored (Ctrl-C: aborted) and is raised again."""

    def decorator(func: F) -> F:
        def start(args: tuple, kwargs: dict) -> Any:
            from .context import _current_run, context

            if context._guard is not None:
                raise ValidationError(f"@ln.flow {func.__qualname__}: a run is tracked already (ln.track() or another flow); "
                                      "decorate the function with @ln.step to record its calls as steps of that run")
            outer = _current_run.get()
            run = context.track(uid, params=bind_params(func, args, kwargs), path=inspect.getsourcefile(func))
            try:
                run.entrypoint = func.__qualname__[:255]
                run.save()
            except Exception as e:
                logger.warning("could not record the entrypoint of flow run %s: %s", run.uid, e)
            return outer

        def end(outer: Any, error: BaseException | None) -> None:
            from .context import _current_run, context

            try:
                if error is None:
                    context.finish()
                else:
                    status = "aborted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "errored"
                    context._end(status, reason=f"{type(error).__name__}: {error}"[:1000])
            finally:
                _current_run.set(outer)  # the next call is not a child of this one

        return _around(func, start, end)

    return decorator


def _around(func: F, start: Callable[[tuple, dict], Any], end: Callable[[Any, BaseException | None], None]) -> F:
    """`func` (sync or async) with `start(args, kwargs)` before each call and `end(state, error)`
    after it, whatever happens; the error is raised again."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            state = start(args, kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as e:
                end(state, e)
                raise
            end(state, None)
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = start(args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            end(state, e)
            raise
        end(state, None)
        return result

    return wrapper  # type: ignore[return-value]
