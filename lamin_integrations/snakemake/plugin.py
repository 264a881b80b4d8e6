"""The `lamin` logger plugin: Snakemake's log records in, runs and artifacts out.

Snakemake calls `emit` from one listener thread for every record; an exception there kills
that thread silently, so `emit` catches everything. It only translates the record (cheap)
and writes it to a worker process (`worker.py`) that does the hashing and registry writes.
`close()` is the end-of-workflow hook (there is no event for it) and is called twice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from snakemake_interface_logger_plugins.base import LogHandlerBase

from ..core.hashing import file_state
from .settings import LogHandlerSettings

__all__ = ["LogHandler", "LogHandlerSettings"]

# A failed job's log or a temp() output longer than this is not copied in Snakemake's thread (it
# would hold the scheduler up): it is read if the recorder gets to it before Snakemake deletes it.
MAX_KEPT_BYTES = 8 * 1024 * 1024
_REMOVING = "Removing temporary output "  # Snakemake logs this just before it deletes a temp() output


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        # Runs before Snakemake applies --directory / workdir:, and also for --list-rules:
        # resolve relative settings now, and leave the registry alone until a workflow starts.
        self._recorder: Any = None
        self._closed = False
        self._failed = False
        self._skip_warned = False
        self._kept: str | None = None  # the folder of files kept for the recorder (it removes each one it recorded)
        self._n_kept = 0
        self._copied: dict[str, Any] = {}  # temp() outputs copied at their job's end -> their FileState then
        self._config = _config(self.settings)
        # Snakemake prints its command line, `--logger-lamin-db URL` included, in its banner and log file.
        logging.getLogger("snakemake.logging").addFilter(_mask_command_line)
        logging.getLogger("snakemake.logging").addFilter(self._keep_files)

    def emit(self, record: Any) -> None:
        try:
            if self._closed or self._failed or getattr(self.common_settings, "dryrun", False):
                return
            from .events import translate

            try:
                event = translate(record)
            except Exception as e:  # one record of a shape we do not know: skip it, record the rest
                self._skipped(record, e)
                return
            if event is None:
                if getattr(record, "lamin_copies", None) and self._recorder is not None:  # a temp() output removed
                    self._recorder.put({"event": "temp_removed", "created": record.created, "copies": record.lamin_copies})
                return
            if event["event"] == "workflow_started":
                if event.get("touch"):  # --touch marks outputs up to date: nothing ran, nothing to record
                    self._closed = True
                    return
                self._start()
                event["launched_by"] = self._launched_by
            elif event["event"] in ("job_error", "job_finished"):
                event["copies"] = getattr(record, "lamin_copies", None) or {}
            if self._recorder is not None:
                self._recorder.put(event)
        except Exception as e:  # never let the listener thread die
            self._fail(e)

    def _start(self) -> None:
        from ..core.context import ENV_LAMINDB_RUN_UID, ENV_RUN_UID
        from ..core.uids import base62
        from .worker import Remote, remove_orphaned_kept

        if self._recorder is not None:
            return
        # A tracked script (or a job of another workflow) that started this Snakemake says so
        # in these variables: the workflow run becomes its child. They are put back at the end,
        # so a process that runs workflows through Snakemake's API does not adopt ours.
        self._launched_by = {k: os.environ[k] for k in (ENV_RUN_UID, ENV_LAMINDB_RUN_UID) if os.environ.get(k)}
        self._saved_env = {k: os.environ.get(k) for k in (ENV_RUN_UID, "LAMIN_INTEGRATIONS_DB", "LAMIN_INTEGRATIONS_STORAGE")}
        run_uid = base62(16)
        # Jobs inherit this, so a script calling ln.track() becomes a child of this workflow.
        os.environ[ENV_RUN_UID] = run_uid
        # ...and records into the same registry as the logger.
        if self._config.db:
            os.environ["LAMIN_INTEGRATIONS_DB"] = self._config.db
        if self._config.storage:
            os.environ["LAMIN_INTEGRATIONS_STORAGE"] = self._config.storage
        try:
            remove_orphaned_kept()
        except OSError:
            pass
        self._recorder = Remote(self._config, run_uid)
        self._kept = self._config.kept

    def _keep_files(self, record: Any) -> bool:
        """A logger filter, so it runs in Snakemake's thread as it reports a job's end (the
        listener thread that calls `emit` may come too late): copies for the recorder, which
        reads files later in another process, what Snakemake is about to delete. A failed job's
        logs: with --retries, Snakemake deletes them when the next attempt starts, and that
        attempt writes its own. A finished job's temp() outputs: Snakemake deletes them as soon
        as their last reader ends. (Copies, not hard links: a second link to a file makes tools
        such as gzip refuse it.) Snakemake reports a finished job only when it prints progress;
        under --quiet, a temp() output is copied when Snakemake says it removes it, which it
        logs just before, in every mode.
        """
        try:
            if self._recorder is None or self._closed:
                return True
            if getattr(record, "event", None) is not None:
                from .events import event_name, paths

                name = event_name(record)
                if name == "job_error":
                    record.lamin_copies = self._keep(paths(getattr(record, "log", None)), failed=True)
                elif name == "job_finished":
                    record.lamin_copies = self._keep(_temp_outputs(getattr(record, "job_id", None)))
            elif isinstance(record.msg, str) and record.msg.startswith(_REMOVING):
                path = os.path.abspath(record.msg[len(_REMOVING):].removesuffix("."))
                if self._copied.get(path, "not copied") != file_state(path):  # not copied at its job's end
                    record.lamin_copies = self._keep([path])
        except Exception:  # never in Snakemake's way
            pass
        return True

    def _keep(self, files: list[str], failed: bool = False) -> dict[str, Any]:
        """Copies of `files`, by path. A failed job's log too big to copy maps to its
        FileState: it is read later only if a retry has not written over it."""
        import shutil

        kept: dict[str, Any] = {}
        for path in files:
            try:
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                state = file_state(path)
                if state is None or state.size > MAX_KEPT_BYTES:
                    if failed and state is not None:
                        kept[path] = state  # a list in JSON
                    continue
                assert self._kept is not None
                os.makedirs(self._kept, exist_ok=True)
                self._n_kept += 1
                dest = os.path.join(self._kept, f"{self._n_kept}-{os.path.basename(path)}")  # the suffix kept whole
                shutil.copyfile(path, dest)
                kept[path] = dest
                if not failed:
                    self._copied[os.path.abspath(path)] = state
            except OSError:
                continue
        return kept

    def _skipped(self, record: Any, error: Exception) -> None:
        if not self._skip_warned:
            self._skip_warned = True
            from .events import event_name

            sys.stderr.write(f"lamin-integrations: skipped a Snakemake {event_name(record)} record it could not read: "
                             f"{type(error).__name__}: {error}\n")

    def _fail(self, error: Exception) -> None:
        if not self._failed:
            self._failed = True
            sys.stderr.write(f"lamin-integrations: the lamin logger stopped recording: {type(error).__name__}: {error}\n")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        logging.getLogger("snakemake.logging").removeFilter(self._keep_files)
        try:
            if self._recorder is not None:
                self._recorder.close()  # the recorder removes the copies folder when it is done
                for name, value in self._saved_env.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        except Exception as e:
            self._fail(e)
        finally:
            super().close()

    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True  # Snakemake's default filter would drop events under --quiet

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False


def _temp_outputs(jobid: Any) -> list[str]:
    """The temp() outputs of a job of the live workflow (private API, so guarded by the caller)."""
    from snakemake.io import is_flagged

    from .events import _live_job

    job = _live_job(int(jobid)) if jobid is not None else None
    return [str(f) for f in (job.output if job is not None else []) if is_flagged(f, "temp")]


def _mask_command_line(record: logging.LogRecord) -> bool:
    """A logger filter: the password of a registry URL in the workflow_started record's `cmd` is masked."""
    cmd = getattr(record, "cmd", None)
    if isinstance(cmd, str) and "@" in cmd:
        from ..core.instance import mask_text

        record.cmd = mask_text(cmd)
    return True


def _config(settings: Any) -> Any:
    from .recorder import DEFAULT_DRAIN_SECONDS, Config

    def get(name: str) -> Any:
        return getattr(settings, name, None) if settings is not None else None

    db, storage = get("db"), get("storage")
    # relative to where snakemake was started, not to its `-d` working directory
    if db and "://" not in db:
        db = "sqlite:///" + os.path.abspath(os.path.expanduser(db))
    elif db and db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        path, sep, query = db.removeprefix("sqlite:///").partition("?")
        if path and path != ":memory:":
            db = "sqlite:///" + os.path.abspath(os.path.expanduser(path)) + sep + query
    if storage and "://" not in storage:
        storage = os.path.abspath(os.path.expanduser(storage))
    max_mb = get("max_hash_mb")
    drain = get("drain_seconds")
    return Config(db=db, storage=storage, project=get("project"),
                  max_hash_bytes=int(max_mb) * 1024 * 1024 if max_mb is not None else None,
                  drain_seconds=float(drain) if drain is not None else DEFAULT_DRAIN_SECONDS,
                  record_inputs=not get("no_inputs"))
