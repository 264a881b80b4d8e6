"""Checking that values are plain JSON before they are stored (params, features, _aux)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import sys
from typing import Any

from ..errors import ValidationError

logger = logging.getLogger("lamin_integrations")

MAX_DEPTH = 64
# A parameter of a job or task is stored with every run of it: a list of 100,000 samples
# passed to 200 jobs would be 200 copies (and converting them slows the engine's own
# process). Bigger values are summarised; a workflow's config is stored whole, once.
MAX_PARAM_ITEMS = 1_000
MAX_PARAM_TEXT = 10_000


def check_json(value: Any, where: str, _depth: int = 0) -> None:
    """Raise ValidationError naming the offending key if `value` is not plain JSON."""
    if _depth > MAX_DEPTH:
        raise ValidationError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            check_text(where, value)
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
            check_text(f"{where} key", key)
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


def run_params(params: dict[str, Any]) -> dict[str, Any]:
    """`ln.track(params=...)` as lamindb stores it: records as `"Artifact[uid]"`, paths as text,
    numpy scalars and dates as plain values, secret-looking keys redacted. A parameter that is
    still not JSON is left out with a warning naming it, as lamindb does: a tracking call must
    not stop the analysis it records."""

    from .settings import SECRET_NAME

    def convert(value: Any, depth: int) -> Any:
        if _is_record(value):
            return f"{value.__class__.__name__}[{value.uid}]"  # __class__: a run not yet loaded says Run
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)) and getattr(value, "ndim", 1) == 0:
            return value.item()
        if type(value).__module__ == "datetime" and callable(getattr(value, "isoformat", None)):
            return value.isoformat()
        if depth < MAX_DEPTH and isinstance(value, dict):
            return {k: "***" if isinstance(k, str) and SECRET_NAME.search(k) and isinstance(v, str) and v
                    else convert(v, depth + 1) for k, v in value.items()}
        if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
            return [convert(v, depth + 1) for v in value]
        return value

    out = {}
    for key, value in convert(params, 0).items():
        try:
            check_json({key: value}, "params")
            out[key] = value
        except ValidationError as e:  # as lamindb: the script goes on, without this parameter
            logger.warning("skipping param %r: %s", key, e)
    return out


def check_text(where: str, value: str) -> None:
    """Text both databases can store: no NUL byte, no lone surrogate."""
    if "\x00" in value:
        raise ValidationError(f"{where}: strings cannot contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: typically os.fsdecode() of a file name that is not UTF-8.
        raise ValidationError(f"{where}: {value[:80]!r} is not valid Unicode (a lone surrogate, e.g. from a "
                              "file name that is not UTF-8); databases store UTF-8 text only") from None


def too_big(value: Any) -> str | None:
    """A short description instead of a parameter value too big to store with every run."""
    if isinstance(value, str) and len(value) > MAX_PARAM_TEXT:
        return value[:MAX_PARAM_TEXT] + f"... ({len(value):,} characters, cut)"
    if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > MAX_PARAM_ITEMS:
        return f"<{type(value).__name__} of {len(value):,} items: too many to record>"
    return None


def masked(value: Any) -> Any:
    """`value` with the text under secret-looking keys (password, token, api_key, ...) as
    `***`, at any depth, and passwords inside text hidden (`postgresql://u:***@h/db`, the repr
    of an object with `password='...'`): what adapters store from configs and parameters."""
    from .settings import SECRET_NAME, mask_text

    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and SECRET_NAME.search(k) and isinstance(v, str) and v else masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def param_json(params: Any) -> dict[str, Any]:
    """An engine's parameters (a mapping) as stored on a job, task or step run: plain JSON,
    secrets masked, values too big to store with every run summarised (at any depth)."""
    return masked({_clean(str(k)): to_json(v, summarise=True) for k, v in list(params.items())})


def to_json(value: Any, _depth: int = 0, *, summarise: bool = False) -> Any:
    """A plain-JSON copy of an engine's value: what is not JSON becomes its readable repr.

    Adapters store what engines hand them (configs, parameters, resources, return values)
    and must never fail on an odd type, so unlike `check_json` this converts instead of
    refusing. Records are named by uid, pydantic models and dataclasses (typed parameters)
    by their fields, so secrets among them are masked by name. `summarise`: values too big
    to store with every run become a description (a workflow's config is stored whole).
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if summarise and (summary := too_big(value)) is not None:
        return summary
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DEPTH:
        return _repr(value, summarise)

    def deeper(item: Any) -> Any:
        return to_json(item, _depth + 1, summarise=summarise)

    if isinstance(value, dict):
        return {_clean(str(k)): deeper(v) for k, v in list(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        return [deeper(v) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (dt.date, dt.time)):  # a date parameter is found by its ISO text
        return value.isoformat()
    if isinstance(value, type):
        return _repr(value, summarise)
    if _is_record(value):
        return f"{value.__class__.__name__}[{value.uid}]"  # __class__: a run not yet loaded says Run
    dump = getattr(value, "model_dump", None)  # a pydantic model (typed flow parameters): its fields
    if callable(dump):
        try:
            return deeper(dump(mode="json"))
        except Exception:
            pass
    fields = getattr(value, "__dataclass_fields__", None)
    if isinstance(fields, dict):  # a config dataclass: its fields, each masked by name
        return {_clean(str(name)): deeper(getattr(value, name, None)) for name in fields}
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)) and getattr(value, "ndim", 1) == 0:
        return deeper(value.item())
    return _repr(value, summarise)


def _is_record(value: Any) -> bool:
    """A registry record or lite run, without importing the models to find out."""
    record = getattr(sys.modules.get("lamin_integrations.core.record"), "SQLRecord", None)
    lite = getattr(sys.modules.get("lamin_integrations.core.fasttrack"), "LiteRun", None)
    return (record is not None and isinstance(value, record)) or (lite is not None and isinstance(value, lite))


MAX_PARAM_REPR = 200  # an object's repr, stored with every run of a job or task


def _repr(value: Any, short: bool = False) -> str:
    try:
        text = repr(value)
    except Exception as e:  # a broken __repr__ must not break recording
        text = f"<{type(value).__name__}: repr failed: {e}>"
    limit = MAX_PARAM_REPR if short else 10_000
    return _clean(text if len(text) <= limit else text[:limit - 3] + "...")


def _clean(text: str) -> str:
    """Storable text: NUL dropped, lone surrogates (undecodable file names) spelled as escapes."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
