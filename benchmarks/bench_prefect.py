"""Prefect adapter overhead: a flow of 200 task runs with our decorators vs plain Prefect.

Both flows run in this process against the same ephemeral Prefect server (started once,
untimed) and alternate, so server warm-up and machine noise hit both alike. Recording adds
two registry writes per task run (its Run started, then closed); the goal is that this
stays within 10 % of what Prefect itself spends on a task run.

The figure is wall time (median of alternating runs). The wall time of the same plain flow
swings between 1 s and 14 s here, driven by the ephemeral server's background services in
another process, so a second row gives what we add in CPU time of this process (the flow,
Prefect's client threads and our background writer), which that noise does not reach.

Run: .venv/bin/python benchmarks/bench_prefect.py [--json]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import Row, emit

TASK_RUNS = 200
REPEAT = 7


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ["LAMIN_INTEGRATIONS_HOME"] = str(tmp / "home")
    os.environ.pop("LAMIN_INTEGRATIONS_DB", None)
    os.environ.pop("LAMIN_INTEGRATIONS_STORAGE", None)
    os.chdir(tmp)

    import prefect

    import lamin_integrations as ln
    import lamin_integrations.prefect as lp

    def work(i: int) -> int:
        return i * i

    def body(step: object) -> int:
        return sum(step(i) for i in range(TASK_RUNS))  # type: ignore[operator]

    plain_step = prefect.task(work, name="step")
    ours_step = lp.task(work, name="step")
    plain_flow = prefect.flow(lambda: body(plain_step), name="plain-200")
    ours_flow = lp.flow(lambda: body(ours_step), name="lamin-200")

    plain_flow()  # starts the server, warms Prefect's caches
    ours_flow()  # creates the registry and the transforms
    plain, ours, plain_wall, ours_wall = [], [], [], []
    for _ in range(REPEAT):
        for fn, times, walls in ((plain_flow, plain, plain_wall), (ours_flow, ours, ours_wall)):
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            times.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - start)
    recorded = ln.Run.filter(reference_type="prefect_task_run").count()
    assert recorded == TASK_RUNS * (REPEAT + 1), recorded
    with_us, without = statistics.median(ours_wall), statistics.median(plain_wall)
    cpu_ours, cpu_plain = statistics.median(ours), statistics.median(plain)
    emit([
        Row(f"Prefect flow with {TASK_RUNS} task runs, lamin decorators", with_us, "s", without,
            "plain prefect decorators", "ratio <= 1.10", with_us / without <= 1.10),
        Row("  CPU time of the flow's process", cpu_ours, "s", cpu_plain, "plain prefect decorators", "informational"),
        Row("  added CPU per task run", (cpu_ours - cpu_plain) / TASK_RUNS * 1000, "ms", None, "", "informational"),
    ])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
