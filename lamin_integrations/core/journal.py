"""What could not be written: a local journal per registry, replayed by `lamin-integrations sync`.

When the registry is unavailable (server down, SQLite locked past the busy timeout, disk
full), the Snakemake logger and `ln.track()` / `ln.finish()` keep the pipeline running and
append what they could not write here instead: one JSON line per event, appended with
O_APPEND under an exclusive lock (so concurrent processes never interleave partial lines)
and fsync'd before the call returns.

One file per registry, `<data dir>/journal/<hash>.jsonl`, named by a hash of the registry URL
with its password masked (the masked URL is also stored in each line, the password never).
Lines are grouped by the run they belong to (`group`: the run's uid) and tagged by `kind`;
a replayer per kind (`REPLAYERS`) turns a group back into records, idempotently: records are
found by uid, so replaying a group that was already (partly) written adds nothing twice.
Replay is one transaction per group, and a group's lines leave the journal only after its
commit. A line that cannot be parsed is reported with its line number and left in place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .instance import Instance

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a single writer at a time is assumed there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("lamin_integrations")

# kind -> "module:function(entries) -> bool" (True: everything was already in the registry).
REPLAYERS: dict[str, str] = {
    "snakemake": "lamin_integrations.snakemake.recorder:replay",
    "track": "lamin_integrations.core.journal:replay_track",
    "prefect": "lamin_integrations.prefect.offline:replay",
}
# Streams are event-sourced: they are replayed whole, once their end is journaled (or their
# writer is gone). Other kinds are replayed as they are, and later lines update the records.
STREAMS = {"snakemake"}
# Workflows first (a script's run may point at a workflow run), then in the order they were
# journaled: a run's start is journaled after its parent's.
_ORDER = {"snakemake": 0, "track": 1, "prefect": 1}

_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "disk i/o error", "disk is full",
                       "unable to open database", "readonly database", "no space left")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means "the registry cannot be written now, try later" (not a bug)."""
    import sqlalchemy as sa

    from ..errors import RegistryUnavailable

    if isinstance(error, RegistryUnavailable | sa.exc.TimeoutError):
        return True
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False  # IntegrityError, ProgrammingError, ...: a bug or bad data, not an outage
    if type(error.orig).__module__.startswith("psycopg"):
        return True  # psycopg raises OperationalError only for connection, shutdown, disk, memory
    text = str(error.orig if error.orig is not None else error).lower()
    return any(marker in text for marker in _SQLITE_UNAVAILABLE)


def _registry(url: str) -> tuple[str, str]:
    """(masked URL, file-name hash) of a registry; SQLite paths are made absolute first."""
    import sqlalchemy as sa

    from .instance import mask_url

    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            parsed = parsed.set(database=os.path.abspath(os.path.expanduser(parsed.database)))
        masked = mask_url(parsed)
    except Exception:
        masked = mask_url(url)
    return masked, hashlib.sha256(masked.encode()).hexdigest()[:16]


UNAVAILABLE_SECONDS = 30


class Journal:
    """The journal of one registry (a file that may not exist yet)."""

    def __init__(self, url: str):
        from .instance import data_dir

        self.registry, digest = _registry(url)
        folder = data_dir() / "journal"
        self.path = folder / f"{digest}.jsonl"
        self._lock_path = folder / f"{digest}.lock"
        self._sync_lock_path = folder / f"{digest}.sync-lock"
        self._down_path = folder / f"{digest}.unavailable"

    @classmethod
    def of(cls, instance: Instance | None = None) -> Journal:
        from .instance import current

        return cls((instance or current()).url)

    def __repr__(self) -> str:
        return f"Journal({self.registry!r}, path={str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self, path: Path | None = None, blocking: bool = True) -> Iterator[bool]:
        path = path or self._lock_path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, kind: str, group: str, events: list[dict[str, Any]]) -> None:
        """Append one line per event of run `group`, durably (fsync) and atomically per call."""
        self.append_groups(kind, [(group, event) for event in events])

    def append_groups(self, kind: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Append (group, event) lines, durably (fsync) and atomically per call."""
        if not events:
            return
        head = {"v": 1, "kind": kind, "registry": self.registry, "host": socket.gethostname(),
                "pid": os.getpid(), "at": dt.datetime.now(dt.UTC).isoformat()}
        from .instance import mask_text

        # A password in any URL of an event (a command line naming the registry) never reaches the disk.
        data = "".join(mask_text(json.dumps({**head, "group": group, **event}, default=str, ensure_ascii=False)) + "\n"
                       for group, event in events)
        with self._locked():
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if not created and os.fstat(fd).st_size and not _ends_with_newline(self.path):
                    data = "\n" + data  # a writer died mid-line: keep its fragment on a line of its own
                payload = data.encode()
                while payload:
                    payload = payload[os.write(fd, payload):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)

    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return []

    # A server that does not answer costs each process the connect timeout (10 s): the processes
    # started soon after one found it unavailable (a workflow's jobs) journal at once instead.
    def mark_unavailable(self, reason: str) -> None:
        with contextlib.suppress(OSError):
            self._down_path.parent.mkdir(parents=True, exist_ok=True)
            self._down_path.write_text(reason[:500], encoding="utf-8")

    def recently_unavailable(self) -> str | None:
        """Why the registry was found unavailable in the last UNAVAILABLE_SECONDS, else None."""
        import time

        try:
            age = time.time() - self._down_path.stat().st_mtime
            if not 0 <= age <= UNAVAILABLE_SECONDS:
                return None
            reason = self._down_path.read_text(encoding="utf-8", errors="replace").strip() or "unavailable"
        except OSError:
            return None
        return f"{reason} ({age:.0f} s ago, by another process; tried again after {UNAVAILABLE_SECONDS} s)"

    def clear_unavailable(self) -> None:
        with contextlib.suppress(OSError):
            self._down_path.unlink()

    def pending_count(self) -> int:
        """How many events wait to be written to the registry."""
        with self._locked():
            return sum(1 for line in self._lines() if line.strip())

    def _rewrite(self, lines: list[bytes], consumed: int) -> None:
        """Replace the first `consumed` bytes of the file by `lines` (what appenders added since stays)."""
        with self._locked():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                data = b""
            content = b"".join(lines) + data[consumed:]
            if not content:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                return
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pending_count(instance: Instance | None = None) -> int:
    """Events journaled for the registry `instance` (default: the current one) not yet written."""
    return Journal.of(instance).pending_count()


# -- replay --------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What `sync()` did, in journal lines (events) and runs."""

    journal: str
    replayed: int = 0  # events written to the registry now
    present: int = 0  # events whose records were already in the registry (removed from the journal)
    waiting: int = 0  # events of workflows still running (left for a later sync)
    runs: int = 0  # runs written now
    errors: list[str] = field(default_factory=list)  # lines or runs that could not be replayed (left in place)
    busy: bool = False  # another sync of this journal is running
    dry_run: bool = False


@dataclass
class _Group:
    kind: str
    uid: str
    lines: list[int] = field(default_factory=list)  # 0-based indexes into the snapshot
    entries: list[dict[str, Any]] = field(default_factory=list)


def sync(instance: Instance | None = None, *, dry_run: bool = False, only: str | None = None) -> SyncResult:
    """Write what the journal of `instance` holds to the registry; returns what was done.

    `only` restricts the replay to one run uid (an adapter syncing its own workflow at its
    end). Raises RegistryUnavailable when the registry is still unavailable (what was
    replayed until then stays replayed).
    """
    from .instance import current

    instance = instance or current()
    journal = Journal.of(instance)
    result = SyncResult(journal=str(journal.path), dry_run=dry_run)

    with journal._locked(journal._sync_lock_path, blocking=False) as acquired:
        if not acquired:
            result.busy = True
            return result
        with journal._locked():
            lines = journal._lines()
        consumed = sum(len(line) for line in lines)  # the file's prefix that this sync read
        groups = _parse(lines, result)
        removed: set[int] = set()
        written: set[str] = set()  # runs written now
        for group in sorted(groups.values(), key=lambda g: (_ORDER.get(g.kind, 9), g.lines[0])):
            if only is not None and run_uid(group.uid) != only:
                continue
            n = len(group.lines)
            if group.kind in STREAMS and not _ended(group):
                result.waiting += n
                continue
            if dry_run:
                result.replayed += n
                continue
            try:
                present = _replay(instance, group)
            except Exception as e:
                if is_unavailable(e):
                    raise
                where = f"lines {group.lines[0] + 1}-{group.lines[-1] + 1}" if n > 1 else f"line {group.lines[0] + 1}"
                result.errors.append(f"{group.kind} run {group.uid} ({where}): {type(e).__name__}: {e}")
                logger.debug("replaying %s %s failed", group.kind, group.uid, exc_info=e)
                continue
            if present:
                result.present += n
            else:
                result.replayed += n
                if run_uid(group.uid) not in written:
                    written.add(run_uid(group.uid))
                    result.runs += 1
            # Only after the commit: a crash before this line replays the group again, harmlessly.
            removed.update(group.lines)
            kept = [line for i, line in enumerate(lines) if i not in removed]
            journal._rewrite(kept, consumed)
            consumed = sum(len(line) for line in kept)
    if not dry_run and not result.busy:
        journal.clear_unavailable()  # synced: the processes started from now on try the registry again
    return result


def run_uid(group: str) -> str:
    """The run a group belongs to: a group is a run (`uid`) or one event of it (`uid/n`, Prefect:
    replayed in the order they happened, so a task's end is written before the next task's start)."""
    return group.split("/", 1)[0]


def _parse(lines: list[bytes], result: SyncResult) -> dict[tuple[str, str], _Group]:
    groups: dict[tuple[str, str], _Group] = {}
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("the line is incomplete (its writer stopped mid-line)")
            entry = json.loads(raw)
            kind, uid = entry["kind"], entry["group"]
            if kind not in REPLAYERS or not isinstance(uid, str):
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as e:
            result.errors.append(f"line {i + 1}: cannot be read ({type(e).__name__}: {str(e)[:200]}); left in the journal")
            continue
        group = groups.setdefault((kind, uid), _Group(kind, uid))
        group.lines.append(i)
        group.entries.append(entry)
    return groups


def _ended(group: _Group) -> bool:
    """A stream is complete once its end is journaled, or once the process writing it is gone."""
    if any(entry.get("end") for entry in group.entries):
        return True
    last = group.entries[-1]
    return not (last.get("host") == socket.gethostname() and _alive(last.get("pid")))


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _replay(instance: Instance, group: _Group) -> bool:
    module, name = REPLAYERS[group.kind].split(":")
    replayer: Callable[[list[dict[str, Any]]], bool] = getattr(importlib.import_module(module), name)
    with instance.transaction():
        present = replayer(group.entries)
    from ..errors import IntegrityError
    from .models import Run

    # A replayer logs and skips what it cannot record, like the live adapter; if that left a
    # PostgreSQL transaction failed, the commit silently rolled back: check before forgetting.
    run = Run.connect(instance).filter(uid=run_uid(group.uid)).one_or_none()
    if run is None or (group.kind in STREAMS and run.status == "started"):
        raise IntegrityError(f"run {group.uid} is not recorded after its replay; its lines stay in the journal")
    return present


# -- ln.track() / ln.finish() --------------------------------------------------------------------


def track_start(transform: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The journal event of a run that `ln.track()` could not write."""
    return {"event": "start", "transform": transform, "run": run}


def track_end(status: str, finished_at: dt.datetime, reason: str | None) -> dict[str, Any]:
    """The journal event of a run's end that could not be written."""
    return {"event": "end", "status": status, "finished_at": finished_at.isoformat(), "reason": reason}


def replay_track(entries: list[dict[str, Any]]) -> bool:
    """Create (by uid) the run of journaled `ln.track()` events and apply its end."""
    from ..errors import ObjectDoesNotExist
    from .models import Run

    uid = entries[0]["group"]
    run = Run.filter(uid=uid).one_or_none()
    ends = [e for e in entries if e.get("event") == "end"]
    if run is not None and (not ends or run.status == ends[-1]["status"]):
        return True
    if run is None:
        start = next((e for e in entries if e.get("event") == "start"), None)
        if start is None:
            raise ObjectDoesNotExist(f"run {uid} is neither in the registry nor started in the journal")
        run = _create_tracked_run(uid, start["transform"], start["run"])
    for end in ends:
        run.status = end["status"]
        run.finished_at = dt.datetime.fromisoformat(end["finished_at"])
        if end.get("reason"):
            run._aux = {**(run._aux or {}), "end_reason": end["reason"][:1000]}
    if ends:
        run.save()
    return False


def _create_tracked_run(uid: str, transform: dict[str, Any], fields: dict[str, Any]) -> Any:
    from .context import context
    from .models import Project, Run, Transform

    source, key = transform.get("source_code"), transform["key"]
    if transform.get("uid"):
        record = context._transform_by_uid(transform["uid"], key, source)
    else:
        record = Transform(key=key, kind=transform.get("kind") or "script", source_code=source,
                           reference=transform.get("reference"), reference_type=transform.get("reference_type")).save()
    parent_uid = fields.get("parent_uid")
    parent = Run.filter(uid=parent_uid).one_or_none() if parent_uid else None
    started_at = dt.datetime.fromisoformat(fields["started_at"])
    hint = fields.get("parent_hint")
    if parent is not None and isinstance(hint, dict) and isinstance(hint.get("name"), str):
        # the run this process belonged to below its parent (a Snakemake job): its latest
        # attempt started before this run
        candidates = [r for r in Run.filter(initiated_by_run=parent, reference_type=str(hint.get("reference_type")),
                                            name=hint["name"])
                      if r.started_at is not None and r.started_at <= started_at]
        if candidates:
            parent = max(candidates, key=lambda r: r.started_at)
    aux: dict[str, Any] = {"journaled": True}
    if fields.get("git"):
        aux["git"] = fields["git"]
    if parent_uid and parent is None:
        aux["initiated_by_run_uid"] = parent_uid  # not in this registry: say who it was
    run = Run(record, params=fields.get("params"), initiated_by_run=parent, status="started", uid=uid)
    run.started_at = started_at
    run.cli_args, run.host, run.pid = fields.get("cli_args"), fields.get("host"), fields.get("pid")
    run._aux = aux
    project = Project.filter(name=fields["project"]).first() if fields.get("project") else None
    previous = context._project
    context._project = project  # label the run like the live track() would have
    try:
        run.save()
    finally:
        context._project = previous
    if fields.get("project") and project is None:
        run._aux = {**aux, "project": fields["project"]}
        run.save()
    return run
