"""`runs reap`: mark runs whose process is gone as aborted.

A run still "started" (or "restarted") is stale when it ran on this host and its process
no longer exists (or the pid now belongs to a newer process), or, for other hosts, when its
last heartbeat (or its start, if it never sent one) is older than a threshold.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from .instance import Instance


def _process_alive(pid: int, started_at: dt.datetime | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if started_at is not None and os.path.exists(f"/proc/{pid}/stat"):
        # A recycled pid: the process now holding it started after the run did.
        try:
            with open(f"/proc/{pid}/stat") as f:
                ticks = int(f.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
            age = uptime - ticks / os.sysconf("SC_CLK_TCK")
            process_start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
            return process_start <= started_at + dt.timedelta(seconds=5)
        except (OSError, ValueError, IndexError):
            return True
    return True


def stale_runs(stale_after: dt.timedelta = dt.timedelta(minutes=10), instance: Instance | None = None) -> list[tuple[Any, str]]:
    """(run, reason) for every run that should be marked aborted."""
    from .models import Run
    from .schema import now

    host = socket.gethostname()
    cutoff = now() - stale_after
    out = []
    for run in Run.connect(instance).filter(status__in=["started", "restarted"]).order_by("id"):
        if run.host == host and run.pid:
            if not _process_alive(run.pid, run.started_at):
                out.append((run, f"process {run.pid} on {host} is gone"))
        else:
            last = run.heartbeat_at or run.started_at
            if last is not None and last < cutoff:
                out.append((run, f"no heartbeat since {last.isoformat(timespec='seconds')} (host {run.host or 'unknown'})"))
    return out


def reap(dry_run: bool = False, stale_after: dt.timedelta = dt.timedelta(minutes=10), instance: Instance | None = None) -> list[tuple[Any, str]]:
    """Mark stale runs aborted (unless dry_run); returns what was (or would be) changed."""
    found = stale_runs(stale_after, instance)
    if not dry_run:
        for run, reason in found:
            run._aux = {**(run._aux or {}), "end_reason": f"reaped: {reason}"}
            run.status = "aborted"
            run.save()
    return found
