"""nextflow-py (PyPI `nextflowpy`, import name `nextflow`): record its Executions, or launch through it.

nextflow-py is GPL-3.0 and refuses to import without a `nextflow` executable on PATH, so it
is an optional extra (`lamin-integrations[nextflow]`) imported only in these functions.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import LaminIntegrationsError
from .ingest import Files, Recorder, ingest_trace, timezone
from .launch import Launch
from .trace import Task, short_hash


def _nextflowpy() -> Any:
    try:
        import nextflow
    except ImportError as e:
        raise LaminIntegrationsError(
            "launching from Python needs nextflow-py: pip install 'lamin-integrations[nextflow]' "
            f"(and a nextflow executable on PATH): {e}") from None
    except Exception as e:  # nextflow-py raises NextflowNotInstalledError on import without nextflow on PATH
        raise LaminIntegrationsError(f"nextflow-py cannot be used: {e}") from None
    return nextflow


_STATUS = {"OK": "completed", "ERROR": "errored"}


def _aware(value: dt.datetime | None, tz: dt.tzinfo | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=tz).astimezone(dt.UTC) if tz else value.astimezone(dt.UTC)


def ingest_execution(execution: Any, *, timezone_name: str | None = None, pipeline: str | None = None,
                     record_files: bool = True, max_hash_size: int | None = None) -> Any:
    """Record a finished `nextflow.Execution` (identifier, log, process executions, work dirs); returns the pipeline Run."""
    from .files import read_log

    tz = timezone(timezone_name)
    root = str(execution.path)
    launch = Launch(run_name=execution.identifier or None, session_id=execution.session_uuid or None,
                    command_line=execution.command or None, pipeline=pipeline, launch_dir=root,
                    started_at=_aware(execution.started, tz), finished_at=_aware(execution.finished, tz),
                    status=_STATUS.get(execution.status), sources=["nextflow-py"])
    log_path = os.path.join(root, ".nextflow.log")
    if os.path.exists(log_path):
        launch.merge(read_log(log_path, tz, launch.started_at))
    task_ids = {os.path.realpath(work): task_id for task_id, work in launch.work_dirs.items()}
    tasks = []
    for process in execution.process_executions:
        work = str(process.path) if process.path else None
        full = None
        if work:
            parts = Path(work).parts
            full = parts[-2] + parts[-1] if len(parts) >= 2 else None
        status = "CACHED" if process.cached else process.status if process.status in ("COMPLETED", "FAILED") else "RUNNING"
        code = str(process.return_code or "").strip()
        fields = {"task_id": task_ids.get(os.path.realpath(work)) if work else None, "hash": short_hash(full) if full else process.identifier,
                  "name": process.name, "process": process.process, "status": status,
                  "exit": int(code) if code.lstrip("-").isdigit() else None, "workdir": work,
                  "submit": _aware(process.submitted, tz), "start": _aware(process.started, tz),
                  "complete": _aware(process.finished, tz), "script": process.bash or None}
        fields["task_id"] = fields["task_id"] or fields["hash"]
        tasks.append(Task({k: v for k, v in fields.items() if v is not None}, source="nextflow-py"))
    files = Files(base=root, max_hash_size=max_hash_size)
    if record_files and os.path.isdir(os.path.join(root, "work")):
        files.work_dir = os.path.join(root, "work")
    return Recorder(files).record(launch, tasks, final=launch.status is not None)


def run(pipeline_path: str, *, run_path: str | None = None, params: dict[str, Any] | None = None, weblog: bool = True,
        timezone_name: str | None = None, outdir: str | None = None, record_files: bool = True, **kwargs: Any) -> Any:
    """Launch a pipeline through nextflow-py with trace, report and weblog on; ingest the result; returns the pipeline Run.

    The weblog events go to a receiver on a free loopback port in this process, so the runs
    appear while the pipeline runs; the trace, report, log and work dir are ingested at the
    end and merged with them. Other keyword arguments go to `nextflow.run` (profiles, configs,
    resume, version, ...).
    """
    nextflow = _nextflowpy()
    from .weblog import make_server

    run_path = os.path.abspath(run_path or os.getcwd())
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    trace = os.path.join("pipeline_info", f"execution_trace_{stamp}.txt")
    report = os.path.join("pipeline_info", f"execution_report_{stamp}.html")
    os.makedirs(os.path.join(run_path, "pipeline_info"), exist_ok=True)
    configs = list(kwargs.pop("configs", None) or [])
    server = thread = None
    events = 0
    with tempfile.TemporaryDirectory(prefix="lamin-nextflow-") as tmp:
        if weblog:
            server = make_server("127.0.0.1", 0)
            thread = threading.Thread(target=server.serve_forever, name="lamin-integrations-weblog", daemon=True)
            thread.start()
            config = Path(tmp) / "weblog.config"
            host = server.server_address[0]
            url = f"http://{host.decode() if isinstance(host, bytes) else host}:{server.server_address[1]}"
            config.write_text(f"weblog {{\n    enabled = true\n    url = '{url}'\n}}\n")
            configs.append(str(config))
        try:
            nextflow.run(pipeline_path, run_path=run_path, params={k: str(v) for k, v in (params or {}).items()},
                         configs=configs, trace=trace, report=report, **kwargs)
        finally:
            if server is not None and thread is not None:
                server.shutdown()
                server.server_close()
                thread.join(10)
                receiver = server.__dict__["receiver"]
                events = receiver.events
    pipeline_run = ingest_trace(os.path.join(run_path, trace), report=os.path.join(run_path, report),
                                log=os.path.join(run_path, ".nextflow.log"), timezone_name=timezone_name,
                                outdir=outdir, record_files=record_files, work_dir=os.path.join(run_path, "work"),
                                params=params)
    if weblog:
        pipeline_run.params = {**(pipeline_run.params or {}), "weblog_events": events}
        pipeline_run.save()
    return pipeline_run
