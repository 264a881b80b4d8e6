"""Nextflow's trace file (`-with-trace`): one row per task attempt, parsed and normalised.

Values are written for people unless `trace.raw = true`: `1h 3m 7s`, `1004.8 MB` (1024-based),
`741.1%`, local timestamps without an offset, and `-` for "no value". Every value is turned
into one unit whatever the mode: milliseconds, bytes, float percent, UTC datetimes. Columns
are mapped by the header (order and field set vary, `hash` may be missing, the pre-19.04 header
has `rss vmem`); unknown columns are kept as text. Anything that cannot be a trace row is a
`TraceError` naming the line, raised before anything is written.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import call
from typing import Any

from ..errors import ValidationError


class TraceError(ValidationError):
    """A trace file (or report / weblog record) that cannot be read as Nextflow wrote it."""


# TraceRecord.FIELDS types (Nextflow's own names); anything else is kept as text.
DATE_FIELDS = frozenset({"submit", "start", "complete"})
TIME_FIELDS = frozenset({"duration", "realtime", "time"})
PERC_FIELDS = frozenset({"%cpu", "%mem"})
MEM_FIELDS = frozenset({"rss", "vmem", "peak_rss", "peak_vmem", "rchar", "wchar", "read_bytes", "write_bytes",
                        "memory", "disk"})
NUM_FIELDS = frozenset({"syscr", "syscw", "attempt", "cpus", "vol_ctxt", "inv_ctxt", "accelerator"})
KNOWN_FIELDS = frozenset({"task_id", "hash", "native_id", "process", "module", "container", "tag", "name", "status",
                          "exit", "workdir", "script", "scratch", "queue", "env", "error_action", "hostname",
                          "cpu_model", "accelerator_type"}) | DATE_FIELDS | TIME_FIELDS | PERC_FIELDS | MEM_FIELDS | NUM_FIELDS
TYPE_NAMES = {"date": DATE_FIELDS, "time": TIME_FIELDS, "perc": PERC_FIELDS, "mem": MEM_FIELDS, "num": NUM_FIELDS}
# JSON-friendly names for the two fields whose names start with % (as `nextflow log` calls them).
RENAMED = {"%cpu": "pcpu", "%mem": "pmem"}
STATUSES = frozenset({"NEW", "SUBMITTED", "RUNNING", "COMPLETED", "FAILED", "ABORTED", "CACHED"})
NOT_FINISHED_EXIT = 2147483647  # Integer.MAX_VALUE: the weblog's exit before a task ends
MULTILINE_FIELDS = ("script", "env")

_MEM_UNITS = {"B": 0, "KB": 1, "MB": 2, "GB": 3, "TB": 4, "PB": 5, "EB": 6, "ZB": 7}
# ASCII digits only: `\d`, int() and float() also take other scripts' digits, which Nextflow never writes.
_MEM = re.compile(r"(\d+(?:\.\d+)?) ?([KMGTPEZ]?B)", re.ASCII)
_TIME_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_TIME_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}  # in the order Nextflow writes them
_TIME_ORDER = {unit: i for i, unit in enumerate(_TIME_MS)}
_INT = re.compile(r"-?\d+", re.ASCII)
_COUNT = re.compile(r"\d+", re.ASCII)  # bytes and milliseconds are never negative
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)
# Bounds that keep a task's end (submit + duration) a date Python can hold: what lies beyond is
# a garbled value, not a task, and is refused with its line instead of failing mid-ingest.
MAX_TIME_MS = 100 * 366 * 86_400_000  # a hundred years
MAX_YEAR = 2999
_HASH = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{6}$")
_WORKDIR_HASH = re.compile(r"([0-9a-f]{2})/([0-9a-f]{30})/?$")


@dataclass
class Task:
    """One task attempt: normalised trace fields by name (see `normalise`), and where it came from."""

    fields: dict[str, Any]
    line: int | None = None
    source: str = "trace"

    @property
    def key(self) -> tuple[str, str | None]:
        """Rows are identified by (task_id, short hash), never by name (names repeat)."""
        return str(self.fields.get("task_id")), self.fields.get("hash")

    @property
    def full_hash(self) -> str | None:
        return full_hash(self.fields.get("workdir"))


@dataclass
class Trace:
    path: str | None
    columns: list[str]
    tasks: list[Task] = field(default_factory=list)
    sep: str = "\t"
    head: str = ""  # the first complete lines read (up to HEAD_CHARS): which file this is, as it grows


def full_hash(workdir: str | None) -> str | None:
    """The 32-hex task hash from a work dir path (`.../work/e1/fc2d06...`), if it ends in one."""
    if not workdir:
        return None
    m = _WORKDIR_HASH.search(workdir.rstrip("/") + "/")
    return m.group(1) + m.group(2) if m else None


def short_hash(full: str) -> str:
    return f"{full[:2]}/{full[2:8]}"


# -- values -----------------------------------------------------------------------------------


def parse_mem(text: str) -> int:
    if _COUNT.fullmatch(text):
        return int(text)
    m = _MEM.fullmatch(text)
    if m is None or m.group(2) not in _MEM_UNITS:
        raise ValueError(f"expected a size such as '1004.8 MB' or a byte count, found {text!r}")
    return round(float(m.group(1)) * 1024 ** _MEM_UNITS[m.group(2)])


def parse_time(text: str) -> int:
    if _COUNT.fullmatch(text):
        return _bounded_time(int(text), text)
    parts = text.split(" ")
    total = 0.0
    last = -1
    for part in parts:
        m = _TIME_PART.fullmatch(part)
        if m is None or _TIME_ORDER[m.group(2)] <= last:  # each unit once, largest first: `1h 3m 7s`
            raise ValueError(f"expected a duration such as '1h 3m 7s', '5.8s' or '123ms', found {text!r}")
        last = _TIME_ORDER[m.group(2)]
        total += float(m.group(1)) * _TIME_MS[m.group(2)]
    return _bounded_time(round(total), text)


def _bounded_time(ms: int, text: str) -> int:
    if ms > MAX_TIME_MS:
        raise OverflowError(text)
    return ms


def parse_perc(text: str) -> float:
    body = text[:-1] if text.endswith("%") else text
    if not _FLOAT.fullmatch(body):
        raise ValueError(f"expected a percentage such as '741.1%', found {text!r}")
    return _finite(float(body), text)


def _finite(value: float, text: str) -> float:
    if not math.isfinite(value):
        raise OverflowError(text)
    return value


def parse_date(text: str, tz: dt.tzinfo | None) -> dt.datetime:
    if not text.isascii():
        raise ValueError(f"expected a timestamp such as '2021-03-04 21:06:07.625', found {text!r}")
    if _INT.fullmatch(text):  # raw mode and weblog: epoch milliseconds
        value = dt.datetime.fromtimestamp(int(text) / 1000, tz=dt.UTC)
        if value.year > MAX_YEAR:
            raise OverflowError(text)
        return value
    try:
        if len(text) == 23 and text[4] == "-" and text[10] == " " and text[19] == ".":
            naive = dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                                int(text[17:19]), int(text[20:23]) * 1000)
        else:
            naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        try:
            naive = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected a timestamp such as '2021-03-04 21:06:07.625', found {text!r}") from None
    if naive.year > MAX_YEAR:
        raise OverflowError(text)
    if naive.tzinfo is not None:
        return naive.astimezone(dt.UTC)
    return naive.replace(tzinfo=tz).astimezone(dt.UTC) if tz is not None else naive.astimezone(dt.UTC)


def parse_num(text: str) -> int | float:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return _finite(float(text), text)
    raise ValueError(f"expected a number, found {text!r}")


def _status(text: str) -> str:
    if text not in STATUSES:
        raise ValueError(f"expected one of {', '.join(sorted(STATUSES))}, found {text!r}")
    return text


def _hash(text: str) -> str:
    if not _HASH.match(text):
        raise ValueError(f"expected a short task hash such as 'e1/fc2d06', found {text!r}")
    return text


def _exit(text: str) -> int | str:
    return int(text) if _INT.fullmatch(text) else text


def _task_id(text: str) -> str:
    if not _FLOAT.fullmatch(text) or text.startswith("-"):
        raise ValueError(f"expected a task id (a number, as Nextflow counts tasks), found {text!r}")
    return str(int(float(text)))


def _text(text: str) -> str:
    return text


_BY_KIND = {"time": parse_time, "mem": parse_mem, "perc": parse_perc, "num": parse_num, "str": _text}
_BY_NAME = {"exit": _exit, "task_id": _task_id, "status": _status, "hash": _hash}


@functools.cache
def _converter(name: str, kind: str | None) -> Any:
    kind = kind or _kind(name)
    if kind == "date":
        return "date"
    if kind == "str":
        return _BY_NAME.get(name, _text)
    return _BY_KIND[kind]


def _value(name: str, value: Any, tz: dt.tzinfo | None, types: dict[str, str] | None) -> Any:
    """One value in fixed units (see `normalise`); raises ValueError naming the field."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if name not in MULTILINE_FIELDS:
        text = text.strip()
    if text == "-" or text == "" or (name == "exit" and text == "2147483647"):
        return None
    convert = _converter(name, types.get(name) if types else None)
    try:
        if convert == "date":
            return parse_date(text, tz) if text != "0" else None  # the weblog's "not yet"
        return convert(text)
    except ValueError as e:
        raise ValueError(f"field {name}: {e}") from None
    except (OverflowError, OSError):  # a number or an epoch beyond what a float or datetime holds
        raise ValueError(f"field {name}: {text[:40]!r}{'...' if len(text) > 40 else ''} is out of range") from None


def _derived(out: dict[str, Any]) -> dict[str, Any]:
    if out.get("hash") is None and out.get("workdir"):
        full = full_hash(out["workdir"])
        if full:
            out["hash"] = short_hash(full)
    if out.get("process") is None and out.get("name"):
        out["process"] = process_of(out["name"])
    return out


def normalise(raw: dict[str, Any], tz: dt.tzinfo | None, types: dict[str, str] | None = None) -> dict[str, Any]:
    """One record's values in fixed units: ms, bytes, float percent, UTC datetimes; None for `-`.

    Accepts the human format, raw mode (numbers) and JSON values (report, weblog). Raises
    ValueError naming the field for a value in an impossible unit.
    """
    return _derived({RENAMED.get(name, name): _value(name, value, tz, types) for name, value in raw.items()})


def _kind(name: str) -> str:
    for kind, names in TYPE_NAMES.items():
        if name in names:
            return kind
    return "str"


def process_of(name: str) -> str:
    """`FASTQC (sample1)` -> `FASTQC` (the trace's `name` is the process plus a tag or index)."""
    return name.split(" (", 1)[0] if name.endswith(")") and " (" in name else name


# -- the file ---------------------------------------------------------------------------------

SEPARATORS = ("\t", ",", ";", "|")
HEAD_CHARS = 64 * 1024


def _header(line: str, sep: str | None, where: str) -> tuple[list[str], dict[str, str], str]:
    candidates = [sep] if sep else list(SEPARATORS)
    best: tuple[int, str] | None = None
    for s in candidates:
        names = [c.strip().split(":", 1)[0] for c in line.split(s)]
        known = sum(1 for n in names if n in KNOWN_FIELDS)
        if best is None or known > best[0]:
            best = (known, s)
    assert best is not None
    known, chosen = best
    columns = [c.strip() for c in line.split(chosen)]
    names = [c.split(":", 1)[0] for c in columns]
    if known < 2 or not ({"task_id", "hash", "name"} & set(names)):
        shown = line if len(line) < 120 else line[:117] + "..."
        raise TraceError(
            f"{where}:1: not a Nextflow trace file: the first line should be a header of trace fields "
            f"(task_id, hash, name, status, ...) separated by tabs (or trace.sep: give it with --sep), found {shown!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise TraceError(f"{where}:1: the header names column {dup!r} twice")
    types = {n: c.split(":", 1)[1] for n, c in zip(names, columns, strict=True) if ":" in c}
    for n, t in types.items():
        if t not in (*TYPE_NAMES, "str"):
            raise TraceError(f"{where}:1: column {n!r} has an unknown type {t!r} (Nextflow knows {', '.join([*TYPE_NAMES, 'str'])})")
    return names, types, chosen


class _Memo(dict):
    """A column's converted values by their text: traces repeat statuses, units and sizes a lot."""

    def __init__(self, name: str, tz: dt.tzinfo | None, types: dict[str, str] | None):
        super().__init__()
        self.name, self.tz, self.types = name, tz, types

    def __missing__(self, text: str) -> Any:
        value = _value(self.name, text, self.tz, self.types)
        if len(self) < 50_000:
            self[text] = value
        return value


def _cell_converter(name: str, tz: dt.tzinfo | None, types: dict[str, str] | None) -> Any:
    """A function text -> value equal to `_value(name, text, tz, types)`, chosen once per column.

    The common shapes take a short path; anything else (and every error) goes through `_value`.
    """
    convert = _converter(name, types.get(name) if types else None)

    def slow(text: str) -> Any:
        return _value(name, text, tz, types)

    if convert is _text:
        if name in MULTILINE_FIELDS:
            return lambda text: None if text == "-" or text == "" else text

        def text_cell(text: str) -> Any:
            text = text.strip()
            return None if text == "-" or text == "" else text

        return text_cell
    if convert == "date":
        utc = dt.UTC
        fromisoformat = dt.datetime.fromisoformat
        # a fixed zone (UTC, +02:00) is appended to the text: one C call instead of replace + astimezone
        offset = tz.utcoffset(None) if isinstance(tz, dt.timezone) else None
        suffix = None if offset is None else "+00:00" if not offset else dt.datetime(2000, 1, 1, tzinfo=tz).isoformat()[19:]

        def date_cell(text: str) -> Any:
            # the human format, '2024-03-04 21:06:07.625', in ASCII digits: what parse_date reads by slicing
            if len(text) == 23 and text[10] == " " and text[19] == "." and text.isascii() \
                    and text[0] in "12" and text[:4].isdigit() and text[20:].isdigit():  # years up to MAX_YEAR
                if suffix == "+00:00":
                    return fromisoformat(text + suffix)  # already in datetime.UTC
                if suffix is not None:
                    return fromisoformat(text + suffix).astimezone(utc)
                naive = fromisoformat(text)
                if naive.tzinfo is not None:
                    return naive.astimezone(utc)
                return naive.replace(tzinfo=tz).astimezone(utc) if tz is not None else naive.astimezone(utc)
            return slow(text)

        return date_cell
    if convert is _task_id:
        def task_id_cell(text: str) -> Any:
            if text.isascii() and text.isdigit() and len(text) < 16 and (text[0] != "0" or len(text) == 1):
                return text
            return slow(text)

        return task_id_cell
    if convert is _hash:
        match = _HASH.match

        def hash_cell(text: str) -> Any:
            return text if len(text) == 9 and match(text) else slow(text)

        return hash_cell
    return _Memo(name, tz, types).__getitem__


def _row_converter(columns: list[str], tz: dt.tzinfo | None, types: dict[str, str] | None) -> Any:
    """values of one line -> `normalise(dict(zip(columns, values)), tz, types)`, column by column."""
    keys = [RENAMED.get(name, name) for name in columns]
    if len(set(keys)) != len(keys):  # `%cpu` and `pcpu` both: let normalise decide, as always
        return lambda values: normalise(dict(zip(columns, values, strict=True)), tz, types)
    cells = [_cell_converter(name, tz, types) for name in columns]
    # `_derived` of a row without workdir and process columns: only the process from the name
    named = "workdir" not in keys and "process" not in keys
    derived = _derived

    def row(values: list[str]) -> dict[str, Any]:
        try:
            out = dict(zip(keys, map(call, cells, values), strict=True))
        except Exception:
            # whatever the short paths refused: the exact value or error of normalise
            return normalise(dict(zip(columns, values, strict=True)), tz, types)
        if named:
            name = out.get("name")
            if name:
                out["process"] = name.split(" (", 1)[0] if name.endswith(")") and " (" in name else name
            return out
        return derived(out)

    return row


def parse_lines(lines: Iterable[str], *, path: str | None = None, tz: dt.tzinfo | None = None,
                sep: str | None = None, partial_tail: bool = False) -> Trace:
    """Parse trace text given as lines that keep their line endings.

    `partial_tail`: a last line without its newline is left unread (a trace being written)
    instead of being an error.
    """
    where = path or "<trace>"
    trace: Trace | None = None
    seen: dict[str, int] = {}  # task_id -> index in tasks of its first row
    lines = list(lines)
    n = len(lines)
    i = 0
    while trace is None and i < n:  # the header
        line = lines[i]
        i += 1
        complete = line.endswith("\n")
        if not complete and partial_tail:
            break
        text = line.rstrip("\r\n").lstrip("\ufeff")  # a byte order mark left by an editor
        if not complete and i == n and not text.strip():
            break
        names, types, chosen = _header(text, sep, where)
        trace = Trace(path, names, sep=chosen)
        trace.__dict__["types"] = types
    if trace is None:
        raise TraceError(f"{where}: empty file: not a Nextflow trace (expected a header line of trace fields)")
    trace.head = _head(lines)
    trace_sep, width, tasks = trace.sep, len(trace.columns), trace.tasks
    row = _row_converter(trace.columns, tz, trace.__dict__.get("types"))
    for number, line in enumerate(lines[i:], i + 1):  # 1-based line numbers of the rows
        complete = line.endswith("\n")
        if not complete and partial_tail:
            break
        text = line.rstrip("\r\n")
        if not text or text.isspace():
            continue
        if "\x00" in text:  # no text Nextflow writes holds one, and the registry cannot keep it
            raise TraceError(f"{where}:{number}: a NUL byte (column {text[:text.index(chr(0))].count(trace_sep) + 1}): "
                             "not a text trace, or a damaged one")
        values = text.split(trace_sep)
        if len(values) != width:
            raise TraceError(_column_message(where, number, values, trace, complete, number == n))
        if not complete:  # Nextflow ends every row with a newline: its last value may be cut short
            raise TraceError(f"{where}:{number}: the last line is incomplete (no newline at its end): the trace is "
                             "still being written or was cut; wait for the run to end or use --follow")
        try:
            fields = row(values)
        except ValueError as e:
            raise TraceError(f"{where}:{number}: {e}") from None
        task_id = fields.get("task_id")
        if task_id is None and fields.get("hash") is None:
            raise TraceError(f"{where}:{number}: a row with neither task_id nor hash cannot be told apart from the others")
        if not task_id:
            fields["task_id"] = None
        task_id = str(task_id or fields.get("hash"))
        first = seen.get(task_id)
        if first is None:
            seen[task_id] = len(tasks)
        elif not _cached_copy(fields, tasks[first].fields):
            raise TraceError(f"{where}:{number}: task_id {task_id} again (first on line {tasks[first].line}); "
                             "a trace has one row per task attempt, so this file mixes two runs or was edited")
        tasks.append(Task(fields, line=number))
    return trace


def _head(lines: list[str]) -> str:
    """The first complete lines, up to HEAD_CHARS characters."""
    out: list[str] = []
    size = 0
    for line in lines:
        if size >= HEAD_CHARS or not line.endswith("\n"):
            break
        out.append(line)
        size += len(line)
    return "".join(out)[:HEAD_CHARS]


def _cached_copy(fields: dict[str, Any], other: dict[str, Any]) -> bool:
    """A CACHED row is the record stored by the launch that ran the task, task_id included: in a
    resume it may share its id with a task of this launch (another hash). Not a duplicate."""
    return "CACHED" in (fields.get("status"), other.get("status")) and fields.get("hash") != other.get("hash")


def _column_message(where: str, number: int, values: list[str], trace: Trace, complete: bool, last: bool) -> str:
    found, expected = len(values), len(trace.columns)
    multiline = [f for f in MULTILINE_FIELDS if f in trace.columns]
    if last and not complete and found < expected:
        return (f"{where}:{number}: the last line is truncated ({found} of {expected} fields, no newline): "
                "the trace is still being written or was cut; wait for the run to end or use --follow")
    if multiline and (found < expected or found == 1):
        return (f"{where}:{number}: {found} fields where the header has {expected}: a multi-line "
                f"{'/'.join(multiline)} value (Nextflow does not escape newlines in the trace); remove "
                f"{'/'.join(multiline)} from trace.fields, or ingest the execution report, which keeps them intact")
    if found == 1 and expected > 1:
        return (f"{where}:{number}: 1 field where the header has {expected}: wrong separator? "
                f"the header is separated by {trace.sep!r} and this line is not")
    return f"{where}:{number}: {found} fields where the header has {expected} (wrong separator or a stray {trace.sep!r}?)"


def read_trace(path: str | os.PathLike, *, tz: dt.tzinfo | None = None, sep: str | None = None,
               partial_tail: bool = False) -> Trace:
    """Parse a trace file; see the module docstring for what is accepted."""
    text_path = os.fspath(path)
    try:
        with open(text_path, encoding="utf-8", errors="replace", newline="") as f:
            lines = f.readlines()
    except FileNotFoundError:
        from ..errors import NotFoundOnDisk

        raise NotFoundOnDisk(f"no trace file at {text_path}") from None
    except IsADirectoryError:
        raise TraceError(f"{text_path} is a folder; give the trace file (e.g. pipeline_info/execution_trace_*.txt)") from None
    return parse_lines(lines, path=text_path, tz=tz, sep=sep, partial_tail=partial_tail)
