"""Task-run records written by a background thread, in batches.

A task run costs Prefect a few milliseconds; two registry transactions per task run in the
task's own thread (insert at start, update at end) nearly doubled that. The hooks now only
build the Run in memory and queue it; this thread inserts the queued runs in one statement,
records their files and closes them in one transaction per batch.

Three rules keep the records right:
- Only this thread touches a queued Run's fields until it is written (the hooks hand over
  end-of-run values instead of setting them), so no half-updated record is ever saved.
- Whoever needs a queued Run's id (code in the task body saving an artifact, `ln.track()`,
  a nested step) calls `flush()` through `core.context`, which waits for the write.
- A flow run's end flushes before it closes its children, so nothing is marked aborted
  that merely had not been written yet, and the process flushes at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger("lamin_integrations")


LINGER_SECONDS = 0.05  # gather a batch for this long after the first queued item
MAX_BATCH = 500
EXIT_FLUSH_SECONDS = 60.0


@dataclass
class Start:
    run: Any
    inputs: list[str] = field(default_factory=list)
    workdir: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # real path -> its FileState at the task's start

    def read(self) -> tuple[list[str], list[tuple[Any, Any]]]:
        """The inputs as the task found them: paths still as they were at its start, and for a
        file it has rewritten since (in place, before this thread got to it) the artifact of
        the content it read, when that content was hashed before; else it is left out rather
        than linked with content the task never read."""
        from ..core.hashing import file_state
        from ..core.pipeline import artifact_as_of

        same, read = [], []
        for path in self.inputs:
            full = os.path.join(self.workdir, path)
            before = self.stats.get(os.path.realpath(full))
            now = file_state(full)
            if before is None or now == before or os.path.isdir(full):
                same.append(path)
                continue
            artifact = artifact_as_of(full, before)
            if artifact is not None:
                read.append((self.run, artifact))
            else:
                logger.debug("input %s changed after its task started, before it was hashed: not linked", full)
        return same, read


@dataclass
class Update:
    """A retry: the run is `restarted` with new params."""

    run: Any
    params: dict[str, Any]


@dataclass
class End:
    run: Any
    status: str
    finished_at: datetime
    params: dict[str, Any]
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    workdir: str = ""


class Writer:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []
        self._busy = False
        self._urgent = False
        self._thread: threading.Thread | None = None
        self._reported: set[str] = set()

    def submit(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="lamin-prefect-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        if threading.current_thread() is self._thread:
            return True
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: not self._items and not self._busy, timeout)
            self._urgent = False
            return done

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items))
                deadline = time.monotonic() + LINGER_SECONDS
                while not self._urgent and len(self._items) < MAX_BATCH:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._items = self._items[:MAX_BATCH], self._items[MAX_BATCH:]
                self._busy = True
            try:
                from ..core.instance import write_budget
                from .hooks import WRITE_SECONDS, outage

                if outage.active():  # the registry was just found unavailable: to the journal
                    self._journal(batch)
                else:
                    with write_budget(WRITE_SECONDS):
                        self._write(batch)
            except Exception as e:  # a broken registry must not stop later batches
                from ..core.journal import is_unavailable
                from .hooks import outage

                if is_unavailable(e):
                    outage.begin(e)
                    self._journal(batch)
                else:
                    self._report(e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _journal(self, batch: list[Any]) -> None:
        try:
            from .offline import journal_batch

            journal_batch(batch)  # runs written before the failure are found by uid when replayed
        except Exception as e:
            self._report(e)

    def _report(self, e: Exception) -> None:
        signature = type(e).__name__
        if signature in self._reported:
            logger.debug("lamin-integrations: could not record task runs: %s", e)
            return
        self._reported.add(signature)
        logger.warning("lamin-integrations: could not record task runs (the flow is not affected): %s: %s",
                       type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
        logger.debug("lamin-integrations: could not record task runs", exc_info=e)

    def _write(self, batch: list[Any]) -> None:
        from ..core.bulk import save, update_all
        from ..core.pipeline import close_runs, record_files

        starts = [i for i in batch if isinstance(i, Start)]
        if starts:
            save([s.run for s in starts])
            for s in starts:
                s.run.__dict__.pop("_materialize", None)
            inputs, links = [], []
            for s in starts:
                if s.inputs:
                    same, read = s.read()
                    inputs += [(s.run, same, s.workdir)] if same else []
                    links += read
            if inputs or links:
                self._guard(record_files, inputs=inputs, links=links)
        updates = [i for i in batch if isinstance(i, Update)]
        for u in updates:
            u.run.status = "restarted"
            u.run.params = u.params
        if updates:
            update_all([u.run for u in updates])
        ends = [i for i in batch if isinstance(i, End)]
        if not ends:
            return
        outputs = [(e.run, e.outputs, e.workdir) for e in ends if e.outputs and e.status == "completed"]
        if outputs:
            self._guard(record_files, outputs=outputs)
        for e in ends:
            e.run.params = e.params
        close_runs([(e.run, e.status, e.finished_at, {"error": e.error}) for e in ends])

    def _guard(self, fn: Any, **kwargs: Any) -> None:
        """Files are recorded on their own: a failure there still lets the runs be closed (an
        outage, though, sends the whole batch to the journal, files included)."""
        try:
            fn(**kwargs)
        except Exception as e:
            from ..core.journal import is_unavailable

            if is_unavailable(e):
                raise
            self._report(e)


writer = Writer()
atexit.register(lambda: writer.flush(EXIT_FLUSH_SECONDS))
