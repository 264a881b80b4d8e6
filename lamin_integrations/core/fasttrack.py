"""`ln.track()` / `ln.finish()` on the embedded SQLite registry without importing SQLAlchemy.

Why: importing SQLAlchemy and building the registry's tables takes ~270 ms, nearly three
times what tracking may add to a script (< 100 ms). The usual case is a script run again,
unchanged, in an unchanged environment, against the local SQLite registry: its transform,
user, storage and environment artifact exist, so tracking is a few indexed lookups and two
short write transactions, which `sqlite3` does in milliseconds.

Anything else makes `start()` return None and the caller takes the full path through the
registry API: PostgreSQL or object storage, a schema to migrate, a new script version or a
new environment (the first run), projects, `new_run=False`, a run passed in, plugins that
want events, a Snakemake `script:` job, any database error. The rows are the same either
way (tests/test_fasttrack.py compares them column by column).

The run handed back is a `LiteRun`: `id` and `uid` are plain attributes; any other use (an
attribute, an `isinstance` check, a comparison) loads the real `Run` and turns the object
into it, so code holding it sees a Run and pays the import only when it needs one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from .settings import (
    SCHEMA_HEAD,
    SQLITE_BUSY_TIMEOUT_MS,
    data_dir,
    mask_text,
    resolve,
    sqlite_file,
    user_handle,
)
from .status import STATUS_CODES
from .uids import base62

logger = logging.getLogger("lamin_integrations")
OUR_PLUGINS = ("openlineage = lamin_integrations.openlineage:plugin",)
RUN_KIND = "__lamindb_run__"  # lamindb's kind for a run's report and environment


class TransformRow:
    """What `ln.context` shows of the transform until someone asks for the record."""

    __slots__ = ("description", "id", "key", "uid", "version")

    def __init__(self, id: int, uid: str, version: str | None, description: str | None, key: str | None = None):
        self.id, self.uid, self.version, self.description, self.key = id, uid, version, description, key


class _State:
    """What finishing the run needs, found while starting it (plain class: a dataclass costs ms to build)."""

    __slots__ = ("aux", "database", "params", "root_run_id", "storage_id", "storage_root", "user_id")

    def __init__(self, database: str, storage_root: str, storage_id: int, user_id: int, aux: dict | None,
                 root_run_id: int | None, params: dict | None):
        self.database, self.storage_root, self.storage_id = database, storage_root, storage_id
        self.user_id, self.aux, self.root_run_id, self.params = user_id, aux, root_run_id, params


def eligible(new_run: bool | None, project: Any, initiated_by_run: Any) -> bool:
    """Cheap checks first: whatever needs the registry API (or is already paid for) is not ours."""
    if "sqlalchemy" in sys.modules or "lamin_integrations.core.plugins" in sys.modules:
        return False  # the import is paid for (or plugins are live): the full path costs nothing more
    if initiated_by_run is not None or project is not None or new_run is False:
        return False
    if os.environ.get("LAMIN_INTEGRATIONS_OPENLINEAGE"):
        return False
    # A Snakemake job (a `script:`'s injected object, or any code in a Snakemake process such
    # as a `run:` block): its parent run and transform come from a plugin.
    return getattr(sys.modules.get("__main__"), "snakemake", None) is None and "snakemake.workflow" not in sys.modules


def start(transform: str | None, params: dict | None, path: str | None) -> tuple[LiteRun, TransformRow] | None:
    """Record a started run of the calling script, or None to let the full path do it."""
    try:
        return _start(transform, params, path)
    except Exception as e:  # the full path does it, or explains what is wrong
        logger.debug("fast track declined: %s: %s", type(e).__name__, e)
        return None


def _start(transform: str | None, params: dict | None, path: str | None) -> tuple[LiteRun, TransformRow] | None:
    from .context import ENV_LAMINDB_RUN_UID, ENV_RUN_UID, _caller_file, _current_run, script_key
    from .environment import plugin_entry_points, requirements_file
    from .gitinfo import git_state
    from .hashing import hash_file, hash_string

    db, storage_root = resolve()
    database = sqlite_file(db)
    if database is None or "://" in storage_root:
        return None
    # Absolute, so that finishing after an os.chdir() reaches the same file; no `~` expansion,
    # as SQLAlchemy opens the path as written.
    database = os.path.abspath(database)
    if not os.path.isfile(database):
        return None  # a new registry: the full path creates it
    cache = data_dir() / "cache"
    if [p for p in plugin_entry_points(cache) if p not in OUR_PLUGINS]:
        return None
    script = Path(path).expanduser().resolve() if path else _caller_file()
    source = key = None
    if script is not None and script.exists():
        from .settings import redact_source

        source = redact_source(script.read_text(errors="replace"))  # as Transform() stores it
        key = script_key(script)
    elif transform is None:
        return None
    environment = requirements_file(cache)
    env_stat = environment.stat()
    env_hash, _ = hash_file(environment, "blake3", env_stat)
    conn = _connect(database)
    try:
        if _scalar(conn, "SELECT version_num FROM alembic_version") != SCHEMA_HEAD:
            return None
        if _scalar(conn, "SELECT value FROM setting WHERE key = 'hash_mode'") not in (None, "blake3"):
            return None
        user_id = _scalar(conn, 'SELECT id FROM "user" WHERE handle = ?', (user_handle()[:64],))
        storage_id = _scalar(conn, "SELECT id FROM storage WHERE root = ?", (storage_root,))
        roots = [r for (r,) in conn.execute("SELECT root FROM storage")]
        if user_id is None or storage_id is None or _in_storage(environment, roots) or _in_storage(cache, roots):
            return None
        found = _find_transform(conn, transform, key, source, hash_string)
        if found is None:
            return None
        environment_row = _existing_artifact(conn, env_hash, env_stat.st_size, storage_id)
        if environment_row is None or environment_row[1]:
            return None
        parent: tuple[int, int | None] | None = None
        current = _current_run.get()
        if current is not None:
            if type(current) is not LiteRun:
                return None
            parent = (current.id, current._lite.root_run_id)
        else:
            uid = os.environ.get(ENV_RUN_UID) or os.environ.get(ENV_LAMINDB_RUN_UID)
            if uid:
                row = conn.execute("SELECT id, root_run_id FROM run WHERE uid = ?", (uid,)).fetchone()
                if row is None:
                    return None  # not written yet, or another registry: the full path waits and says so
                parent = (row[0], row[1])
        git = git_state(script) if script is not None else None
        aux = {"git": git} if git else None
        run_uid = base62(16)
        now = _timestamp()
        root = (parent[1] or parent[0]) if parent else None
        values = {
            "uid": run_uid, "name": None, "description": None, "entrypoint": None, "transform_id": found.id,
            "started_at": now, "finished_at": None, "params": _json(params), "reference": None,
            "reference_type": None, "cli_args": mask_text(" ".join(sys.argv[1:]))[:4096] or None,
            "report_id": None, "environment_id": environment_row[0], "plan_id": None,
            "initiated_by_run_id": parent[0] if parent else None, "root_run_id": root,
            "_status_code": STATUS_CODES["started"], "host": _hostname(), "pid": os.getpid(),
            "heartbeat_at": None, "_is_consecutive": None, "created_at": now, "updated_at": now,
            "created_by_id": user_id, "branch_id": 1, "is_locked": False, "_aux": _json(aux),
        }
        conn.execute("BEGIN IMMEDIATE")
        try:
            run_id: int = conn.execute(_insert_sql("run", values), tuple(values.values())).lastrowid  # type: ignore[assignment]
            if root is None:
                root = run_id
                conn.execute("UPDATE run SET root_run_id = ? WHERE id = ?", (run_id, run_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    run = LiteRun(run_id, run_uid, _State(database, storage_root, storage_id, user_id, aux, root, params))
    return run, found


def _find_transform(conn: sqlite3.Connection, uid: str | None, key: str | None, source: str | None,
                    hash_string: Any) -> TransformRow | None:
    """The existing transform the full path would pick (context._resolve_transform); None to create one."""
    columns = "id, uid, version, description, branch_id, hash, key"
    digest = hash_string(source) if source is not None else None
    if uid is None:
        row = conn.execute(f"SELECT {columns} FROM transform WHERE key = ? AND hash = ? ORDER BY id DESC LIMIT 1",
                           (key, digest)).fetchone()
    elif len(uid) == 16:
        row = conn.execute(f"SELECT {columns} FROM transform WHERE uid = ?", (uid,)).fetchone()
        if row is not None and digest is not None and row[5] is not None and row[5] != digest:
            return None  # the full path explains that the pinned version's source changed
    elif len(uid) == 12 and uid.isalnum() and uid.isascii():
        stem = uid + "%"
        if digest is not None:
            row = conn.execute(f"SELECT {columns} FROM transform WHERE uid LIKE ? AND hash = ? ORDER BY id LIMIT 1",
                               (stem, digest)).fetchone()
        else:
            row = conn.execute(f"SELECT {columns} FROM transform WHERE uid LIKE ? ORDER BY id DESC LIMIT 1", (stem,)).fetchone()
    else:
        return None
    if row is None or row[4] == -1:
        return None  # new, or in the trash: the full path creates or restores it
    return TransformRow(row[0], row[1], row[2], row[3], row[6])


def _existing_artifact(conn: sqlite3.Connection, digest: str, size: int, storage_id: int) -> tuple[int, bool] | None:
    """(id, storage ongoing) of the artifact a keyless file with this content is."""
    from .match import existing_match

    cursor = conn.execute("SELECT id, key, storage_id, _key_is_virtual, _storage_ongoing FROM artifact "
                          "WHERE hash = ? AND branch_id != -1", (digest,))
    names = [c[0] for c in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    found = existing_match({"key": None, "size": size, "storage_id": storage_id, "n_files": None}, rows)
    return (found["id"], bool(found["_storage_ongoing"])) if found is not None else None


def end(run: LiteRun, status: str, reason: str | None, log_path: Path) -> bool:
    """Record the run's end and its log as the report; False lets the full path do it."""
    from . import storage as st
    from .hashing import hash_file

    state = run._lite
    try:
        conn = _connect(state.database)
    except Exception as e:
        logger.debug("fast finish declined: %s", e)
        return False
    try:
        if _in_storage(log_path, [r for (r,) in conn.execute("SELECT root FROM storage")]):
            return False
        log_stat = log_path.stat()
        digest, hash_type = hash_file(log_path, "blake3", log_stat)
        existing = _existing_artifact(conn, digest, log_stat.st_size, state.storage_id)
        new_report = None
        if existing is not None:
            if existing[1]:
                return False  # bytes still being stored by someone: the full path completes them
            report_id = existing[0]
        else:
            new_report = _insert_report(conn, run, state, digest, hash_type, log_stat.st_size)
            report_id = new_report[0]
            try:
                st.put(str(log_path), st.join(state.storage_root, f".lamindb/{new_report[1]}.txt"), False)
            except Exception:
                _write(conn, "DELETE FROM artifact WHERE id = ? AND _storage_ongoing = 1", (report_id,))
                raise
        aux = dict(state.aux or {})
        if reason:
            aux["end_reason"] = reason[:1000]
        now = _timestamp()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if new_report is not None:
                conn.execute("UPDATE artifact SET _storage_ongoing = 0 WHERE id = ?", (report_id,))
            conn.execute("UPDATE run SET _status_code = ?, finished_at = ?, report_id = ?, _aux = ?, updated_at = ? "
                         "WHERE id = ?", (STATUS_CODES[status], now, report_id, _json(aux or state.aux), now, run.id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True
    except Exception as e:
        logger.debug("fast finish declined: %s: %s", type(e).__name__, e)
        return False
    finally:
        conn.close()


def _insert_report(conn: sqlite3.Connection, run: LiteRun, state: _State, digest: str, hash_type: str,
                   size: int) -> tuple[int, str]:
    """The report's row, flagged until its bytes are stored (as artifacts.save_artifacts does)."""
    uid = base62(16) + "0000"
    now = _timestamp()
    values = {
        "uid": uid, "key": None, "description": f"log streams of run {run.uid}", "storage_id": state.storage_id,
        "suffix": ".txt", "kind": RUN_KIND, "otype": None, "size": size, "hash": digest, "_hash_type": hash_type,
        "n_files": None, "n_observations": None, "run_id": None, "version": None, "is_latest": True,
        "_key_is_virtual": True, "_storage_ongoing": True, "created_at": now, "updated_at": now,
        "created_by_id": state.user_id, "branch_id": 1, "is_locked": False, "_aux": "null",
    }
    return _write(conn, _insert_sql("artifact", values), tuple(values.values())), uid


def heartbeat(run: LiteRun) -> None:
    conn = _connect(run._lite.database)
    try:
        _write(conn, "UPDATE run SET heartbeat_at = ? WHERE id = ?", (_timestamp(), run.id))
    finally:
        conn.close()


# -- the run handed to the script ------------------------------------------------------------

_CLASS_SLOT = object.__dict__["__class__"]
_materialize_lock = threading.RLock()


class LiteRun:
    """A started run known by id and uid; becomes the registry's `Run` on first real use."""

    def __init__(self, id: int, uid: str, state: _State):
        object.__getattribute__(self, "__dict__").update(id=id, uid=uid, _lite=state)

    def _become_run(self) -> type:
        """Load the Run row and turn this object into that Run (same identity for every holder)."""
        with _materialize_lock:
            if type(self) is LiteRun:
                from .models import Run

                d = object.__getattribute__(self, "__dict__")
                state: _State = d["_lite"]
                real = Run.connect(registry_of(state)).filter(id=d["id"]).one()
                if state.params is not None:
                    real.__dict__["params"] = state.params  # the caller's dict, as Run(params=...) keeps it
                _CLASS_SLOT.__set__(self, Run)
                d = self.__dict__
                d.clear()
                d.update(real.__dict__)
        return type(self)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(run, Run) asks this when the type itself does not match. The object must
        # not change its type here: isinstance compares the answer with the type after the call.
        from .models import Run

        return Run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_lite":
            raise AttributeError(name)
        self._become_run()
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._become_run()
        setattr(self, name, value)

    def __repr__(self) -> str:
        self._become_run()
        return repr(self)

    def __eq__(self, other: object) -> bool:
        self._become_run()
        return self == other

    def __hash__(self) -> int:
        self._become_run()
        return hash(self)


def registry_of(state: _State) -> Any:
    """The registry the run was recorded in (an `Instance`), also after an os.chdir() or an
    `ln.connect()` to another registry: the process's current one when it is that database."""
    from . import instance

    url = f"sqlite:///{state.database}"
    with instance._current_lock:
        current = instance._current
        if current is None:
            current = instance._current = instance.Instance(url, state.storage_root)
            return current
    database = current._url.database if current.dialect == "sqlite" else None
    if database and os.path.abspath(database) == state.database:
        return current
    return instance.Instance(url, state.storage_root)


# -- small helpers ----------------------------------------------------------------------------


def _connect(database: str) -> sqlite3.Connection:
    # The same settings as the registry's engine (instance._configure_sqlite); the journal
    # mode is a property of the database file, set when the engine created it. Read-write,
    # never create: a registry that vanished is an error, not a new empty file.
    from urllib.parse import quote

    conn = sqlite3.connect(f"file:{quote(database)}?mode=rw", uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                           isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA case_sensitive_like = ON")
    return conn


def _write(conn: sqlite3.Connection, sql: str, args: tuple) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        row_id = conn.execute(sql, args).lastrowid
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return row_id or 0


def _scalar(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> Any:
    row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


def _insert_sql(table: str, values: dict[str, Any]) -> str:
    return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"


def _json(value: Any) -> str:
    # What the registry's engine stores for a JSON column (instance._json_dumps; None is 'null').
    return json.dumps(value, ensure_ascii=False)


def _timestamp() -> str:
    # SQLAlchemy's text form of a UTC datetime in SQLite (schema.UTCDateTime stores UTC, naive).
    return f"{dt.datetime.now(dt.UTC).replace(tzinfo=None):%Y-%m-%d %H:%M:%S.%f}"


def _in_storage(path: Path, roots: list[str]) -> bool:
    """A file under a registered root is registered in place by the full path, not copied."""
    text = str(path.resolve())
    return any(text == r.rstrip("/") or text.startswith(r.rstrip("/") + "/") for r in roots if "://" not in r)


def _hostname() -> str:
    import socket

    return socket.gethostname()[:255]
