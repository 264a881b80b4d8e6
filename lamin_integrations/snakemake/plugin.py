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

from .settings import LogHandlerSettings

__all__ = ["LogHandler", "LogHandlerSettings"]

MAX_LOG_COPY_BYTES = 8 * 1024 * 1024  # a failed job's log longer than this is read when the recorder gets to it


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        # Runs before Snakemake applies --directory / workdir:, and also for --list-rules:
        # resolve relative settings now, and leave the registry alone until a workflow starts.
        self._recorder: Any = None
        self._closed = False
        self._failed = False
        self._skip_warned = False
        self._log_copies: str | None = None  # the folder of failed jobs' log copies (the recorder removes them)
        self._n_copies = 0
        self._config = _config(self.settings)
        # Snakemake prints its command line, `--logger-lamin-db URL` included, in its banner and log file.
        logging.getLogger("snakemake.logging").addFilter(_mask_command_line)
        logging.getLogger("snakemake.logging").addFilter(self._copy_failed_logs)

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
                return
            if event["event"] == "workflow_started":
                if event.get("touch"):  # --touch marks outputs up to date: nothing ran, nothing to record
                    self._closed = True
                    return
                self._start()
                event["launched_by"] = self._launched_by
            elif event["event"] == "job_error":
                event["log_copies"] = getattr(record, "lamin_log_copies", None) or {}
            if self._recorder is not None:
                self._recorder.put(event)
        except Exception as e:  # never let the listener thread die
            self._fail(e)

    def _start(self) -> None:
        from ..core.context import ENV_LAMINDB_RUN_UID, ENV_RUN_UID
        from ..core.uids import base62
        from .worker import Remote

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
        self._recorder = Remote(self._config, run_uid)

    def _copy_failed_logs(self, record: Any) -> bool:
        """A logger filter: copies of a failed job's logs, taken in Snakemake's thread as it
        reports the failure (the listener thread that calls `emit` may come too late). With
        --retries, Snakemake deletes the logs when the next attempt starts, and that attempt
        writes its own, all before the recorder reads them."""
        try:
            if getattr(record, "event", None) is not None and self._recorder is not None and not self._closed:
                from .events import event_name, paths

                if event_name(record) == "job_error":
                    record.lamin_log_copies = self._snapshot_logs(paths(getattr(record, "log", None)))
        except Exception:  # never in Snakemake's way
            pass
        return True

    def _snapshot_logs(self, logs: list[str]) -> dict[str, str]:
        import shutil
        import tempfile

        copies: dict[str, str] = {}
        for path in logs:
            try:
                if not os.path.isfile(path) or os.path.getsize(path) > MAX_LOG_COPY_BYTES:
                    continue
                if self._log_copies is None:
                    self._log_copies = tempfile.mkdtemp(prefix="lamin-integrations-logs-")
                os.makedirs(self._log_copies, exist_ok=True)  # the recorder removes it when it empties it
                self._n_copies += 1
                copy = os.path.join(self._log_copies, f"{self._n_copies}{os.path.splitext(path)[1]}")
                shutil.copyfile(path, copy)
                copies[path] = copy
            except OSError:
                continue
        return copies

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
        logging.getLogger("snakemake.logging").removeFilter(self._copy_failed_logs)
        try:
            if self._recorder is not None:
                self._recorder.close()
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
