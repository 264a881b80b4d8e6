"""Turning Prefect parameters and results into params JSON and file paths.

Prefect hands hooks live Python objects (validated flow parameters, resolved task inputs,
return values). The registry stores JSON and links files, so this module decides what is
plain data, what is a readable repr, and which values name files on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core.jsonutil import param_json

# A parameter holding a huge list of paths is still linked, but we stop looking after this
# many items: stat()-ing a million strings would cost more than the task.
MAX_PATHS = 10_000
_MAX_PATH_LEN = 4096


def resolved(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters with finished futures replaced by their results.

    A task given an upstream future (`b.submit(a_future)`, `.map(futures)`) sees the value by
    the time its function runs, but the hook still holds the future: without this its params
    would be a repr and the file it names would not be linked as an input.
    """
    if not parameters:
        return {}
    from prefect.futures import PrefectFuture
    from prefect.utilities.annotations import BaseAnnotation

    def value(v: Any, depth: int = 0) -> Any:
        if isinstance(v, BaseAnnotation):  # allow_failure(future), quote(x): the value inside
            v = v.unwrap()
        if isinstance(v, PrefectFuture):
            try:
                if v.state.is_completed():
                    return v.result(raise_on_failure=False)
            except Exception:
                pass
            return v
        if depth < 2 and isinstance(v, (list, tuple)) and not isinstance(v, BaseAnnotation) \
                and any(isinstance(x, (PrefectFuture, BaseAnnotation)) for x in v[:MAX_PATHS]):
            return type(v)(value(x, depth + 1) for x in v) if isinstance(v, list) else tuple(value(x, depth + 1) for x in v)
        if depth < 2 and isinstance(v, dict) and any(isinstance(x, (PrefectFuture, BaseAnnotation))
                                                     for x in list(v.values())[:MAX_PATHS]):
            return {k: value(x, depth + 1) for k, x in v.items()}
        return v

    return {k: value(v) for k, v in parameters.items()}


def params_json(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """JSON-safe params (plain values as they are, others as a readable repr)."""
    if not parameters:
        return {}
    return param_json(parameters)


def _candidates(value: Any) -> Iterable[str]:
    if isinstance(value, os.PathLike):
        yield os.fspath(value)  # type: ignore[misc]
    elif isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            if i >= MAX_PATHS:
                return
            if isinstance(item, (str, os.PathLike)):
                yield os.fspath(item)  # type: ignore[misc]
    elif isinstance(value, Mapping):
        for item in list(value.values())[:MAX_PATHS]:
            if isinstance(item, (str, os.PathLike)):
                yield os.fspath(item)  # type: ignore[misc]


def _too_broad(path: str) -> bool:
    """The working directory, one of its ancestors or the home folder: never an artifact.

    A parameter like `"."` or `"/"` is an existing folder, but hashing the whole tree would
    cost far more than the run and is not what the user meant as an input.
    """
    real = Path(os.path.realpath(path))
    cwd = Path.cwd()
    return real == cwd or real in cwd.parents or real == Path.home()


_FILE_NAME = re.compile(r"[^/\\\s]\.[A-Za-z0-9]{1,10}$")  # ends in a suffix: `summary.csv`, `out/x.tar.gz`
MAX_ABSENT = 100


def absent_paths(values: Iterable[Any]) -> list[str]:
    """Parameters naming files that do not exist yet: Path values, and strings that look like
    a file name (a suffix). A task given `out: Path` that writes it made it, returned or not."""
    out: list[str] = []
    for value in values:
        for text in _candidates(value):
            if len(out) >= MAX_ABSENT:
                return out
            if not text or len(text) > _MAX_PATH_LEN or "\n" in text or "\x00" in text or "://" in text:
                continue
            if not (isinstance(value, os.PathLike) or _FILE_NAME.search(text)):
                continue
            try:
                if not os.path.lexists(text) and text not in out:
                    out.append(text)
            except (OSError, ValueError):
                continue
    return out


def existing_paths(values: Iterable[Any]) -> list[str]:
    """Existing files or folders named by the values (str, Path, or collections of them)."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for text in _candidates(value):
            if not text or len(text) > _MAX_PATH_LEN or "\n" in text or "\x00" in text or text in seen:
                continue
            seen.add(text)
            try:
                if os.path.exists(text) and not _too_broad(text):
                    out.append(text)
            except (OSError, ValueError):
                continue
    return out
