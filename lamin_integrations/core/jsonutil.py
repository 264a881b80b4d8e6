"""Checking that values are plain JSON before they are stored (params, features, _aux)."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ValidationError

MAX_DEPTH = 64


def check_json(value: Any, where: str, _depth: int = 0) -> None:
    """Raise ValidationError naming the offending key if `value` is not plain JSON."""
    if _depth > MAX_DEPTH:
        raise ValidationError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError(f"{where}: strings cannot contain NUL bytes")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{where} is {value}, which JSON cannot store")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{where} has a non-string key {key!r}; JSON keys are strings")
            if "\x00" in key:
                raise ValidationError(f"{where} has a key with a NUL byte: {key!r}")
            check_json(item, f"{where}[{key!r}]", _depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", _depth + 1)
        return
    raise ValidationError(
        f"{where} is a {type(value).__name__} ({value!r:.80}), which is not a JSON value; "
        "pass str, int, float, bool, None, or lists / dicts of them"
    )
