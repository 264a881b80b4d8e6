"""The files a Nextflow launch leaves behind, other than the trace.

- the execution report (`-with-report`): `window.data = {"trace": [...], ...}` holds every
  trace field of every task (raw numbers), and the page shows run name, session, times,
  command line, outcome;
- `.nextflow.log`: run name, session id, task work dirs, the outcome;
- `.nextflow/history`: one line per launch (time, duration, run name, status, revision,
  session id, command).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from pathlib import Path
from typing import Any

from .launch import Launch
from .trace import Task, TraceError, full_hash, normalise

# -- execution report -----------------------------------------------------------------------

_DATA = re.compile(r"window\.data\s*=\s*")
_TAGS = re.compile(r"<[^>]+>")
_DT_DD = re.compile(r"<dt[^>]*>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", re.S)
_RUN_NAME = re.compile(r"\[([A-Za-z0-9_-]+)\]\s*Nextflow Workflow Report", re.I)
_REPORT_TIME = "%d-%b-%Y %H:%M:%S"


def _text(fragment: str) -> str:
    return html.unescape(_TAGS.sub("", fragment)).strip()


# A backslash and what follows it in a JavaScript string: JSON's escapes are kept, the others
# (`\'` from Java's escapeEcmaScript, `\xNN`, `\v`, `\0`, and `\q` meaning q) are made JSON's.
_JS_ESCAPE = re.compile(r'\\(?:(["\\/bfnrt]|u[0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|(.))')
_JS_ONLY = {"v": "\\u000b", "0": "\\u0000"}


def _json_escape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(0)
    if m.group(2) is not None:
        return "\\u00" + m.group(2)
    char = m.group(3)
    return _JS_ONLY.get(char) or json.dumps(char)[1:-1]


def _javascript_object(page: str, start: int) -> Any:
    """The object literal at `start`. Nextflow renders the report's data for a <script> with its
    strings escaped for JavaScript, not JSON: the quotes of a task script's `sed 's/a/b/'` come
    out backslash-escaped, which JSON refuses. Strict JSON is tried first (the common case, and
    fast), then the JavaScript-only escapes are rewritten as JSON's."""
    decoder = json.JSONDecoder()
    try:
        return decoder.raw_decode(page, start)[0]
    except ValueError:
        if "\\" not in page:
            raise
    return decoder.raw_decode(_JS_ESCAPE.sub(_json_escape, page[start:]))[0]


def read_report(path: str | os.PathLike, tz: dt.tzinfo | None = None) -> tuple[Launch, list[Task]]:
    """The launch facts and the per-task records embedded in an execution report."""
    where = os.fspath(path)
    try:
        page = Path(where).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        from ..errors import NotFoundOnDisk

        raise NotFoundOnDisk(f"no execution report at {where}") from None
    m = _DATA.search(page)
    if m is None:
        raise TraceError(f"{where}: not a Nextflow execution report (no `window.data = {{...}}` with the task records)")
    try:
        data = _javascript_object(page, m.end())
    except ValueError as e:
        line = page.count("\n", 0, m.end()) + 1
        raise TraceError(f"{where}:{line}: the report's embedded data is not a JavaScript object literal ({e})") from None
    records = (data or {}).get("trace") or []
    if not isinstance(records, list):
        raise TraceError(f"{where}: the report's window.data.trace is not a list of task records")
    tasks = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TraceError(f"{where}: task record {i} in the report is not an object")
        try:
            tasks.append(Task(normalise(record, tz), source="report"))
        except ValueError as e:
            raise TraceError(f"{where}: task record {i} (task_id {record.get('task_id')}): {e}") from None
    launch = Launch(sources=["report"])
    name = _RUN_NAME.search(page)
    if name:
        launch.run_name = name.group(1)
    pairs = {_text(k).lower(): v for k, v in _DT_DD.findall(page)}
    for label, value in pairs.items():
        text = _text(value)
        if label == "run times":
            launch.started_at, launch.finished_at = _report_times(value, tz)
        elif label in ("nextflow command", "command line"):
            launch.command_line = text
        elif label in ("workflow session", "session id"):
            launch.session_id = text
        elif label == "launch directory":
            launch.launch_dir = text
        elif label == "work directory":
            launch.work_dir = text
        elif label == "project directory":
            launch.project_dir = text
        elif label == "script id":
            launch.script_id = text
        elif label == "workflow profile":
            launch.profile = text
        elif label == "container":
            launch.container = text if text not in ("-", "") else None
        elif label == "nextflow version":
            launch.nextflow_version = text.split(",")[0].removeprefix("version ").strip()
        elif label == "workflow repository":
            repo = re.match(r"([^,\s]+)(?:,\s*revision\s+(\S+?))?(?:\s*\(commit hash\s+(\w+)\))?$", text)
            if repo:
                launch.pipeline = repo.group(1)
                launch.revision = repo.group(2) or repo.group(3)
    # the page's alert heading, not a task's script that echoes "completed successfully"
    shown = re.sub(r"window\.data\s*=.*?</script>", "", page, flags=re.S)
    outcome = re.search(r"Workflow execution completed (un)?successfully", shown)
    if outcome is not None and outcome.group(1) is None:
        launch.status = "completed"
    elif outcome is not None:
        launch.status = "errored"
        exit_code = re.search(r"fail was:\s*<code>(-?\d+)</code>", page)
        if exit_code:
            launch.exit_status = int(exit_code.group(1))
        error = re.search(r"The full error message was:\s*(?:</p>)?\s*<pre[^>]*>(.*?)</pre>", page, re.S)
        if error:
            launch.error = _text(error.group(1))
    return launch, tasks


def _report_times(fragment: str, tz: dt.tzinfo | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    out = []
    for span in ("workflow_start", "workflow_complete"):
        m = re.search(rf'id="{span}"[^>]*>([^<]*)<', fragment)
        value = None
        if m and m.group(1).strip():
            try:
                value = _local(dt.datetime.strptime(m.group(1).strip(), _REPORT_TIME), tz)
            except ValueError:
                value = None
        out.append(value)
    return out[0], out[1]


def _local(naive: dt.datetime, tz: dt.tzinfo | None) -> dt.datetime:
    return naive.replace(tzinfo=tz).astimezone(dt.UTC) if tz is not None else naive.astimezone(dt.UTC)


# -- .nextflow.log ---------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^([A-Z][a-z]{2})-(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\.(\d{3}) \[([^\]]*)\] (\w+)\s+(\S+) - (.*)$")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_LAUNCHING = re.compile(r"Launching `([^`]+)` \[([^\]]+)\](?: DSL\d)? - revision: (\w+)(?: \[([^\]]+)\])?")
_HANDLER = re.compile(r"Task completed > \w*TaskHandler\[(.*)\]\s*$")
_WORK_DIR = re.compile(r"workDir: (.+?)(?:;| started: | exited: |$)")


def read_log(path: str | os.PathLike, tz: dt.tzinfo | None = None, year: int | dt.datetime | None = None) -> Launch:
    """Run name, session id, version, task work dirs and the outcome from a `.nextflow.log`.

    Log timestamps have no year: `year` is the year of the first line, or a time within the
    launch (its first task's submit) whose nearest `Mmm-dd` the first line is, else the file's
    modification year. A month that goes backwards (`Dec-31`, then `Jan-01`) is the next year.
    """
    where = os.fspath(path)
    try:
        lines = Path(where).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        from ..errors import NotFoundOnDisk

        raise NotFoundOnDisk(f"no .nextflow.log at {where}") from None
    near = year if isinstance(year, dt.datetime) else None
    this_year = year if isinstance(year, int) else dt.datetime.fromtimestamp(os.path.getmtime(where)).year
    month = 0
    launch = Launch(sources=["log"])
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    errors: list[str] = []
    goodbye = aborted = False
    parsed = 0
    for line in lines:
        m = _LOG_LINE.match(line)
        if m is None:
            continue
        parsed += 1
        mon, day, hh, mm, ss, ms, _thread, level, _logger, message = m.groups()
        if mon not in _MONTHS:
            continue
        if near is not None:
            this_year = _nearest_year(_MONTHS[mon], int(day), near.astimezone(tz).replace(tzinfo=None))
            near = None
        elif _MONTHS[mon] < month:
            this_year += 1
        month = _MONTHS[mon]
        try:
            when = _local(dt.datetime(this_year, month, int(day), int(hh), int(mm), int(ss), int(ms) * 1000), tz)
        except ValueError:
            continue
        first = first or when
        last = when
        if message.startswith("Session UUID: "):
            launch.session_id = message.split(": ", 1)[1].strip()
        elif message.startswith("Run name: "):
            launch.run_name = message.split(": ", 1)[1].strip()
        elif message.startswith("$> "):
            launch.command_line = message[3:].strip()
        elif "N E X T F L O W" in message:
            v = re.search(r"version\s+(\S+)", message)
            launch.nextflow_version = v.group(1) if v else None
        elif message.startswith("Launching `"):
            launching = _LAUNCHING.search(message)
            if launching:
                launch.pipeline = launch.pipeline or launching.group(1)
                launch.run_name = launch.run_name or launching.group(2)
                launch.script_id = launching.group(3)
                if launching.group(4):  # `revision: abc [main]` for a repository
                    launch.revision = launching.group(4)
        elif message.startswith("Work-dir: "):
            launch.work_dir = message.split(": ", 1)[1].split(" [", 1)[0].strip()
        elif (handler := _HANDLER.search(message)) is not None:
            facts = dict(part.split(": ", 1) for part in handler.group(1).split("; ") if ": " in part)
            # the grid executors' handler writes `workDir: /x/work/e1/fc2d06... started: 1709586367625;`
            work = _WORK_DIR.search(handler.group(1))
            if facts.get("id") and work is not None and full_hash(work.group(1)):
                launch.work_dirs[facts["id"].strip()] = work.group(1)
        elif "Execution complete -- Goodbye" in message:
            goodbye = True
        elif level == "ERROR":
            errors.append(message.removeprefix("~ ").strip())
        elif "Session aborted" in message or "Execution aborted" in message or "Received SIG" in message:
            aborted = True
            errors.append(message.strip())
    if parsed == 0:
        raise TraceError(f"{where}: not a .nextflow.log (no line starts with a timestamp such as 'Mar-04 21:05:58.012 [main] DEBUG ...')")
    launch.started_at = first
    if errors:
        launch.status = "aborted" if aborted and not any("Error executing process" in e for e in errors) else "errored"
        launch.error = "\n".join(errors)
        launch.finished_at = last
    elif goodbye:
        launch.status = "completed"
        launch.finished_at = last
    return launch


def _nearest_year(month: int, day: int, near: dt.datetime) -> int:
    """The year in which `month`-`day` is nearest to `near` (a log that began on Dec-31 for a first
    task submitted on Jan-01 began the year before)."""
    def distance(year: int) -> float:
        try:
            return abs((dt.datetime(year, month, day) - near).total_seconds())
        except ValueError:  # Feb-29 of a year that has none
            return float("inf")

    return min((near.year - 1, near.year, near.year + 1), key=distance)


_TASK_LINE = re.compile(r"\[([0-9a-f]{2}/[0-9a-f]{6})\] (Submitted|Cached|Re-submitted) process")


def log_task_hashes(path: str | os.PathLike) -> tuple[set[str], set[str]]:
    """The short hashes of the tasks a `.nextflow.log` ran (`[3f/a1b2c3] Submitted process > ...`)
    and of those it found in the cache (`Cached process >`)."""
    ran: set[str] = set()
    cached: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "process >" in line and (m := _TASK_LINE.search(line)):
                (cached if m.group(2) == "Cached" else ran).add(m.group(1))
    return ran, cached


def log_of_launch(path: str, ran: set[str], cached: set[str] = frozenset()) -> str | None:  # type: ignore[assignment]
    """The discovered `.nextflow.log`, or the rotated `.nextflow.log.N` of an earlier launch, whose
    tasks are the trace's (`ran`: hashes of rows that ran, `cached`: of CACHED rows): the launch
    dir's current log belongs to its latest launch (a resume, say) and would name the wrong run.
    A resume's log names the earlier launch's tasks too, as cached: a log matches by what it ran
    as the trace ran it. None when no log names any of these tasks so."""
    if not ran and not cached:
        return path
    best, score = None, 0
    for candidate in [path, *(f"{path}.{i}" for i in range(1, 10))]:
        if os.path.exists(candidate):
            log_ran, log_cached = log_task_hashes(candidate)
            matched = len(log_ran & ran) + len(log_cached & cached)
            if matched > score:
                best, score = candidate, matched
    return best


# -- .nextflow/history ------------------------------------------------------------------------

_HISTORY_STATUS = {"OK": "completed", "ERR": "errored"}


def read_history(path: str | os.PathLike, tz: dt.tzinfo | None = None) -> list[Launch]:
    """Every launch listed in `.nextflow/history`, oldest first."""
    from .trace import parse_time

    where = os.fspath(path)
    try:
        lines = Path(where).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        from ..errors import NotFoundOnDisk

        raise NotFoundOnDisk(f"no history file at {where}") from None
    launches = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 7:
            raise TraceError(f"{where}:{number}: a .nextflow/history line has 7 tab-separated columns "
                             f"(time, duration, run name, status, revision, session id, command); found {len(parts)}")
        when, duration, name, status, revision, session, command = parts[:6] + ["\t".join(parts[6:])]
        try:
            started = _local(dt.datetime.strptime(when.strip(), "%Y-%m-%d %H:%M:%S"), tz)
        except ValueError:
            raise TraceError(f"{where}:{number}: expected a time such as '2021-03-04 21:05:59', found {when!r}") from None
        launch = Launch(run_name=name.strip() or None, session_id=session.strip() or None, script_id=revision.strip() or None,
                        command_line=command.strip() or None, started_at=started, sources=["history"])
        launch.status = _HISTORY_STATUS.get(status.strip())
        if duration.strip() not in ("", "-") and launch.status is not None:
            try:
                launch.finished_at = started + dt.timedelta(milliseconds=parse_time(duration.strip()))
            except ValueError:
                pass
        launch.pipeline, launch.revision = _run_command(launch.command_line)
        launches.append(launch)
    return launches


# `nextflow run` options that take the next word as their value, and those that take it only
# when it does not start with "-" (Nextflow's Launcher.normalizeArgs inserts a default otherwise).
_VALUE_OPTIONS = frozenset({
    "-r", "-revision", "-profile", "-params-file", "-w", "-work-dir", "-c", "-config", "-name", "-entry",
    "-bucket-dir", "-cache", "-hub", "-user", "-main-script", "-plugins", "-qs", "-queue-size", "-ansi-log"})
_OPTIONAL_VALUE = frozenset({
    "-with-trace", "-with-report", "-with-timeline", "-with-dag", "-with-weblog", "-with-tower", "-with-wave",
    "-with-fusion", "-with-docker", "-with-podman", "-with-singularity", "-with-apptainer", "-with-charliecloud",
    "-with-conda", "-with-spack", "-with-notification", "-N", "-with-cloudcache", "-dump-hashes", "-dump-channels"})
_SESSION = re.compile(r"^(last|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def _run_command(command: str | None) -> tuple[str | None, str | None]:
    """(pipeline, revision) of a `nextflow [options] run <pipeline> [options]` command line.

    Options are skipped with their values as Nextflow reads them, so `run -profile docker
    nf-core/rnaseq -r 3.14.0` gives ("nf-core/rnaseq", "3.14.0"), not the profile's name.
    """
    pipeline, revision, _ = parse_run_command(command)
    return pipeline, revision


def parse_run_command(command: str | None) -> tuple[str | None, str | None, dict[str, str]]:
    """(pipeline, revision, the pipeline parameters given as `--name value` or `--name=value`)."""
    params: dict[str, str] = {}
    if not command:
        return None, None, params
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if "run" not in words:
        return None, None, params
    pipeline = revision = None
    rest = words[words.index("run") + 1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        i += 1
        has_next = i < len(rest)
        if word in ("-r", "-revision") and has_next:
            revision = rest[i]
        if word.startswith("--") and "=" in word:
            name, _, value = word[2:].partition("=")
            params[name] = value
        elif word in _VALUE_OPTIONS or word.startswith("--"):
            # a pipeline parameter `--name value` (or a flag when another option follows)
            if has_next and (word in _VALUE_OPTIONS or not rest[i].startswith("-")):
                if word.startswith("--"):
                    params[word[2:]] = rest[i]
                i += 1
        elif word in _OPTIONAL_VALUE:
            if has_next and not rest[i].startswith("-"):
                i += 1
        elif word == "-resume":
            if has_next and _SESSION.match(rest[i]):
                i += 1
        elif not word.startswith("-") and pipeline is None:
            pipeline = word
    return pipeline, revision, params


def pick_history(launches: list[Launch], run_name: str | None, session_id: str | None,
                 first_submit: dt.datetime | None) -> Launch | None:
    """The history line of this launch: by run name, else session, else the last one started before the first task."""
    if run_name:
        return next((h for h in reversed(launches) if h.run_name == run_name), None)
    candidates = [h for h in launches if h.session_id == session_id] if session_id else launches
    if first_submit is not None:
        before = [h for h in candidates if h.started_at is not None and h.started_at <= first_submit]
        candidates = before or candidates
    return candidates[-1] if candidates else None


def params_file(path: str | os.PathLike) -> dict[str, Any]:
    """`--params params.json` (or YAML if PyYAML is installed)."""
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{where}: no such params file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{where}: cannot read the params file ({e})") from None
    if where.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise TraceError(f"{where}: a YAML params file needs PyYAML (pip install pyyaml), or give JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TraceError(f"{where}: params must be a YAML mapping ({str(e).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise TraceError(f"{where}: params must be a JSON object ({e})") from None
    if not isinstance(data, dict):
        raise TraceError(f"{where}: params must be a JSON object of name: value")
    return data
