"""A tracked run never stays "started" by accident.

While a script's run is active: stdout and stderr are copied to a log that becomes the run's
report; an uncaught exception marks it errored (traceback in the report), Ctrl-C and SIGTERM
mark it aborted, and an interpreter exit without `finish()` finishes it (completed for exit
code 0, else errored). A heartbeat thread refreshes `heartbeat_at`, so `runs reap` can tell
a run on another host whose process died from one that is still going.

The handlers act only in the process that called `track()`: a forked child (a
multiprocessing worker stopped with SIGTERM, `os.fork()` then `sys.exit()`) inherits them but
does not end its parent's run.

Limits: `os._exit()` and SIGKILL bypass every handler (that is what the reaper is for); a
bare `raise SystemExit(3)` (and an `exit` imported from sys before `track()`) cannot be told
from exit code 0 at interpreter exit: `sys.exit(...)` and the builtin `exit(...)` / `quit(...)`
report their code.
"""

from __future__ import annotations

import atexit
import builtins
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .models import Run

logger = logging.getLogger("lamin_integrations")
HEARTBEAT_SECONDS = float(os.environ.get("LAMIN_INTEGRATIONS_HEARTBEAT", "30"))
# A database server that stops answering on an open connection (hung, or a partition that still
# acknowledges packets) would block the end of the run, and the script, forever.
END_TIMEOUT_SECONDS = float(os.environ.get("LAMIN_INTEGRATIONS_END_TIMEOUT", "60"))


class _Tee:
    """A text stream that also copies what is written to the run's log file."""

    def __init__(self, stream: TextIO, log: TextIO):
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        try:
            self._log.write(text)
        except (ValueError, OSError):
            pass  # the log was closed: never break the program's own output
        return n

    def flush(self) -> None:
        self._stream.flush()
        try:
            self._log.flush()
        except (ValueError, OSError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _rearm_interrupt_exit() -> None:
    """Keep Python's exit status for Ctrl-C (killed by SIGINT, 130 in a shell).

    CPython 3.11 exits that way after an unhandled KeyboardInterrupt only if no code object
    ran since it was raised; recording the run's end imports modules (running their code),
    which turned the status into 1. A KeyboardInterrupt raised in executed code sets the
    interpreter's flag again. Harmless where the flag works otherwise: the exit stays 1.
    """
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


class _Quitter:
    """The builtin `exit` / `quit`, noting the exit code for the run before exiting."""

    def __init__(self, wrapped: Any, guard: RunGuard):
        self.wrapped, self.guard = wrapped, guard

    def __call__(self, code: Any = None) -> None:
        self.guard.note_exit(code)
        self.wrapped(code)

    def __repr__(self) -> str:
        return repr(self.wrapped)


class RunGuard:
    """Installs the handlers for one run and removes them when the run ends."""

    def __init__(self, run: Run, log_path: Path, journal: Any = None):
        self.run = run
        self.journal = journal  # set: the registry is unavailable, the run's end goes to the journal
        self.log_path = log_path
        self.exit_code: int = 0
        self.done = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._saved: dict[str, Any] = {}
        self.pid = os.getpid()  # a forked child inherits the handlers, not the run

    # -- installing ------------------------------------------------------------------------

    def install(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Open for the run's lifetime and closed in uninstall(), so no context manager.
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        self._saved["stdout"], self._saved["stderr"] = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, self._log)  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, self._log)  # type: ignore[assignment]
        self._saved["excepthook"] = sys.excepthook
        sys.excepthook = self._excepthook
        self._saved["exit"] = sys.exit
        sys.exit = self._sys_exit  # type: ignore[assignment]
        for name in ("exit", "quit"):  # the site module's Quitter objects raise SystemExit themselves
            quitter = getattr(builtins, name, None)
            if quitter is not None and callable(quitter):
                self._saved["builtin_" + name] = quitter
                setattr(builtins, name, _Quitter(quitter, self))
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous in (signal.SIG_DFL, None):
                # Only when nobody handles SIGTERM: a program's own handler keeps control.
                self._saved["sigterm"] = previous
                signal.signal(signal.SIGTERM, self._on_sigterm)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=self._forget_in_child)
        atexit.register(self._at_exit)
        if HEARTBEAT_SECONDS > 0 and self.journal is None:
            threading.Thread(target=self._heartbeat, name="lamin-heartbeat", daemon=True).start()

    def uninstall(self) -> None:
        if "stdout" in self._saved:
            sys.stdout, sys.stderr = self._saved.pop("stdout"), self._saved.pop("stderr")
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._saved.get("excepthook", sys.__excepthook__)
        if sys.exit == self._sys_exit:
            sys.exit = self._saved["exit"]
        for name in ("exit", "quit"):
            current = getattr(builtins, name, None)
            if isinstance(current, _Quitter) and current.guard is self:
                setattr(builtins, name, self._saved.pop("builtin_" + name))
        if "sigterm" in self._saved and threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signal.SIGTERM, self._saved.pop("sigterm") or signal.SIG_DFL)
            except ValueError:
                pass
        atexit.unregister(self._at_exit)
        self._stop.set()
        try:
            self._log.close()
        except (AttributeError, OSError):
            pass

    # -- events ------------------------------------------------------------------------------

    def _sys_exit(self, code: Any = 0) -> None:
        self.note_exit(code)
        self._saved["exit"](code)

    def note_exit(self, code: Any) -> None:
        if os.getpid() == self.pid:
            self.exit_code = code if isinstance(code, int) else (0 if code is None else 1)

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        previous = self._saved.get("excepthook", sys.__excepthook__)
        previous(exc_type, exc, tb)  # prints the traceback, which the log captures
        if os.getpid() != self.pid:
            return
        status = "aborted" if issubclass(exc_type, KeyboardInterrupt) else "errored"
        self.end(status, reason=f"{exc_type.__name__}: {exc}")
        if issubclass(exc_type, KeyboardInterrupt):
            _rearm_interrupt_exit()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() == self.pid:
            from .storage import remove_partial_copies

            remove_partial_copies()  # the default action below kills the process before any cleanup
            self.end("aborted", reason="SIGTERM")
        # A forked child (a Pool's worker, terminated when the pool closes) does nothing here:
        # the partial copies are its parent's, and an import in a child forked from a threaded
        # parent can wait forever on a lock another thread held at the fork.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _forget_in_child(self) -> None:
        """A forked child does not own the run: SIGTERM ends it as it would without us. (With
        a Python-level SIGTERM handler, a Pool's workers can hang `Pool.terminate()` under load:
        CPython's own race, seen with a bare handler too.)"""
        try:
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):
            pass

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child exiting: its parent's run goes on
        self.end("completed" if self.exit_code == 0 else "errored",
                 reason=None if self.exit_code == 0 else f"exit code {self.exit_code}")

    def _heartbeat(self) -> None:
        from . import fasttrack

        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if type(self.run) is fasttrack.LiteRun:
                    fasttrack.heartbeat(self.run)
                    continue
                from .models import Run
                from .schema import now

                Run.connect(self.run._db).filter(id=self.run.id).update(heartbeat_at=now())
            except Exception as e:  # a missed heartbeat is harmless; a crash here is not
                logger.debug("heartbeat failed: %s", e)

    # -- ending ------------------------------------------------------------------------------

    def end(self, status: str, reason: str | None = None) -> None:
        """Record the final status and the report, once, whatever path got here first."""
        with self._lock:
            if self.done:
                return
            self.done = True
        self.uninstall()
        from . import fasttrack

        run = self.run
        if type(run) is fasttrack.LiteRun:
            if fasttrack.end(run, status, reason, self.log_path):
                return
            run._become_run()  # and the full path below tries again
        from .journal import Journal, track_end
        from .schema import now

        if reason:
            run._aux = {**(run._aux or {}), "end_reason": reason[:1000]}
        run.status = status  # type: ignore[assignment]
        if self.journal is None:
            if self._within_timeout(lambda: self._record_end(status, reason)):
                return
            self.journal = Journal.of(run._db)
        try:
            self.journal.append("track", run.uid, [track_end(status, run.finished_at or now(), reason)])
        except Exception as e:
            logger.warning("could not record or journal the end of run %s (%s): %s", run.uid, status, e)

    def _within_timeout(self, record: Any) -> bool:
        """`record()` on a database server, given END_TIMEOUT_SECONDS: a server that does not answer
        is given up on (the end is journaled, `sync` records it later), the script goes on."""
        if self.run._db.dialect == "sqlite":
            return bool(record())  # a local file: SQLite's own busy timeout bounds the wait
        result: list[bool] = []
        worker = threading.Thread(target=lambda: result.append(record()), name="lamin-end", daemon=True)
        worker.start()
        worker.join(END_TIMEOUT_SECONDS)
        if worker.is_alive():
            sys.stderr.write(f"lamin-integrations: the registry did not answer within {END_TIMEOUT_SECONDS:g} s; the end of "
                             f"run {self.run.uid} is journaled (`lamin-integrations sync` records it)\n")
            return False
        return bool(result and result[0])

    def _record_end(self, status: str, reason: str | None) -> bool:
        """Save the report and the run's end; False when the registry is unavailable (journal it)."""
        from .journal import is_unavailable

        run = self.run
        try:
            from .models import Artifact

            report = Artifact(self.log_path, description=f"log streams of run {run.uid}", kind="__lamindb_run__")
            report.__dict__["_no_lineage"] = True
            run.report = report.save()
        except Exception as e:
            if is_unavailable(e):
                return False  # the report is lost; the end is not
            logger.warning("could not save the log of run %s: %s", run.uid, e)
        try:
            run.save()
        except Exception as e:
            if is_unavailable(e):
                return False
            if not self._end_without_changes(status, reason, e):
                logger.warning("could not record the end of run %s (%s): %s", run.uid, status, e)
        return True

    def _end_without_changes(self, status: str, reason: str | None, error: Exception) -> bool:
        """The run's own fields could not be saved (an invalid value set on `ln.context.run`):
        record its end on the stored run, so it is not left started, and say what was dropped."""
        run = self.run
        try:
            from .models import Run

            stored = Run.connect(run._db).filter(id=run.id).one_or_none() if run.id is not None else None
            if stored is None:
                return False
            first_line = (str(error).splitlines() or [""])[0][:500]
            aux = {**(stored._aux or {}), "unsaved_changes": f"{type(error).__name__}: {first_line}"}
            if reason:
                aux["end_reason"] = reason[:1000]
            stored._aux = aux
            stored.status = status  # type: ignore[assignment]
            if run.__dict__.get("report_id") is not None:
                stored.report = run.report
            stored.save()
            run.__dict__.update(status=stored.status, finished_at=stored.finished_at)
            sys.stderr.write(f"lamin-integrations: the changes to run {run.uid} were not saved ({type(error).__name__}: "
                             f"{first_line}); its end ({status}) is recorded\n")
            return True
        except Exception as e:
            logger.debug("recording the end of run %s without its changes failed", run.uid, exc_info=e)
            return False

