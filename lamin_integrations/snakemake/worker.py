"""The recording process: `python -m lamin_integrations.snakemake.worker`, fed by the logger.

Recording in Snakemake's own process would compete with its scheduler for the GIL (and
import SQLAlchemy there); a separate process uses the idle core instead. The logger writes
one JSON event per line to this process's stdin. If Snakemake dies without closing the
logger (SIGKILL, OOM), stdin reaches EOF early and the workflow is recorded as aborted
rather than left started. Ctrl-C in the terminal is Snakemake's to handle: this process
ignores SIGINT and finishes recording what Snakemake reports about it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from typing import IO, Any

from .recorder import Config, Recorder


class Remote:
    """The logger's end of the pipe: same `put` / `close` as a Recorder."""

    def __init__(self, config: Config, run_uid: str):
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lamin_integrations.snakemake.worker"], stdin=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1, start_new_session=True,
        )
        self.alive = True
        # one folder per workflow run, outside the project (which may be registered storage),
        # named by the process that removes it
        config.kept = kept_folder(self.proc.pid, run_uid)
        self._write({"config": asdict(config), "run_uid": run_uid})

    def _write(self, payload: dict[str, Any]) -> None:
        if not self.alive:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(payload, default=str) + "\n")
        except (BrokenPipeError, OSError, ValueError):
            self.alive = False  # the worker said why on stderr; the workflow goes on

    def put(self, event: dict[str, Any]) -> None:
        self._write(event)

    def close(self) -> None:
        self._write({"event": "close", "created": time.time()})
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(self.config.drain_seconds)
        except subprocess.TimeoutExpired:
            # (it moves its output to a file now: see `serve`)
            log = detached_log(self.proc.pid)
            sys.stderr.write(f"lamin-integrations: still recording after {self.config.drain_seconds:g} s; "
                             f"finishing in the background (pid {self.proc.pid}, messages in {log})\n")


KEPT_PREFIX = "lamin-integrations-kept-"


def kept_folder(pid: int, run_uid: str) -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"{KEPT_PREFIX}{pid}-{run_uid}")


def remove_orphaned_kept() -> None:
    """A recorder killed (SIGKILL, OOM, a cluster job's time limit) before it removed its folder
    of kept copies left it behind: removed once its process is gone, by the next workflow's
    logger, so temp() copies do not pile up in /tmp."""
    import glob
    import shutil
    import tempfile

    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{KEPT_PREFIX}*-*")):
        pid = os.path.basename(folder)[len(KEPT_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


def detached_log(pid: int) -> str:
    from ..core.settings import data_dir

    return str(data_dir() / "logs" / f"snakemake-recorder-{pid}.log")


def _detach() -> None:
    """Snakemake stopped waiting for this process: its output goes to a file from now on."""
    path = detached_log(os.getpid())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(stream: IO[str]) -> None:
    header = json.loads(stream.readline())
    recorder = Recorder(Config(**header["config"]), header["run_uid"])
    closed = False
    for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "close" and not closed:
            # Snakemake waits drain_seconds for us, then goes. Our stdout and stderr are its own:
            # a caller reading them to their end (`snakemake ... | tee log`, a CI step) would
            # wait for us too, so then they go to a file.
            left = float(event.get("created") or time.time()) + recorder.config.drain_seconds - time.time()
            timer = threading.Timer(max(0.0, left), _detach)
            timer.daemon = True
            timer.start()
            closed = True
        recorder.put(event)
    if not closed:
        recorder.put({"event": "lost", "created": time.time()})
    recorder.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin)
    except Exception as e:  # the pipeline must never see this fail; say why, once
        sys.stderr.write(f"lamin-integrations: the recorder stopped: {type(e).__name__}: {e}\n")
    finally:
        sys.stderr.flush()
        os._exit(0)  # do not wait for anything else at exit (Snakemake may be waiting on us)


if __name__ == "__main__":
    main()
