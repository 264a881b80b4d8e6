"""`lamin-integrations nextflow ingest | serve`: parses options, calls the library, prints."""

from __future__ import annotations

import json
from typing import Any

import click


def _summary(run: Any) -> dict[str, Any]:
    counts = run.__dict__.get("_ingest_counts") or {}
    sources = run.__dict__.get("_ingest_sources")
    return {"uid": run.uid, "name": run.name, "status": run.status, "reference": run.reference,
            "transform": run.transform.key, "version": run.transform.version,
            "tasks_new": counts.get("new", 0), "tasks_updated": counts.get("updated", 0),
            "tasks_cached_elsewhere": counts.get("cached", 0),
            "sources": {k: v for k, v in vars(sources).items() if v} if sources is not None else None}


@click.group()
def nextflow() -> None:
    """Record Nextflow runs: from trace / report / log files, or live from -with-weblog."""


@nextflow.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--report", type=click.Path(dir_okay=False), help="Execution report HTML (-with-report).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), help="The launch's .nextflow.log.")
@click.option("--history", type=click.Path(dir_okay=False), help="The launch dir's .nextflow/history.")
@click.option("--work-dir", type=click.Path(file_okay=False), help="Base work dir: record staged inputs and produced files.")
@click.option("--outdir", type=click.Path(file_okay=False), help="Published results: outputs of the pipeline run.")
@click.option("--run-name", help="Nextflow's runName (e.g. tender_turing); the trace does not contain it.")
@click.option("--session-id", help="Nextflow's session id.")
@click.option("--pipeline", help="Pipeline key (default: repository or project name).")
@click.option("--revision", help="Pipeline version (revision, tag or commit).")
@click.option("--params", "params_path", type=click.Path(dir_okay=False), help="Pipeline parameters (JSON or YAML file).")
@click.option("--sep", help="The trace's separator (trace.sep; '\\t' for a tab); found from the header if not given.")
@click.option("--timezone", "timezone_name", help="Zone of the trace's timestamps (e.g. Europe/Berlin, UTC); default: this machine's.")
@click.option("--no-discover", is_flag=True, help="Use only the files given, do not look next to the trace.")
@click.option("--no-files", is_flag=True, help="Record runs only, no work-dir or published artifacts.")
@click.option("--max-hash-mb", type=click.FloatRange(min=0), help="Record files above this size by name and size only.")
@click.option("--follow", is_flag=True, help="Keep reading a trace that is still being written until the launch ends.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="With --follow: how often to look.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), help="With --follow: stop after this many seconds without a new row.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ingest(trace: str, report: str | None, log_file: str | None, history: str | None, work_dir: str | None,
           outdir: str | None, run_name: str | None, session_id: str | None, pipeline: str | None, revision: str | None,
           params_path: str | None, sep: str | None, timezone_name: str | None, no_discover: bool, no_files: bool,
           max_hash_mb: float | None, follow: bool, poll_seconds: float, idle_timeout: float | None, as_json: bool) -> None:
    """Record a launch from its TRACE file (execution_trace_*.txt), plus what is found next to it."""
    from .ingest import follow_trace, ingest_trace

    options: dict[str, Any] = dict(report=report, log=log_file, history=history, work_dir=work_dir, outdir=outdir, run_name=run_name,
                   session_id=session_id, pipeline=pipeline, revision=revision, params=params_path,
                   timezone_name=timezone_name, sep={"\\t": "\t"}.get(sep or "", sep) or None,
                   discover_files=not no_discover, record_files=not no_files,
                   max_hash_size=int(max_hash_mb * 1024 * 1024) if max_hash_mb is not None else None)
    if follow:
        def progress(run: Any) -> None:
            if not as_json:
                counts = run.__dict__.get("_ingest_counts") or {}
                click.echo(f"{run.name}: +{counts.get('new', 0)} task(s), {counts.get('updated', 0)} updated", err=True)

        run = follow_trace(trace, poll_seconds=poll_seconds, idle_timeout=idle_timeout, on_update=progress, **options)
    else:
        run = ingest_trace(trace, **options)
    data = _summary(run)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"{data['status']} pipeline run {data['uid']} ({data['transform']}"
               f"{' ' + data['version'] if data['version'] else ''}, {data['name']}): "
               f"{data['tasks_new']} new task run(s), {data['tasks_updated']} updated"
               + (f", {data['tasks_cached_elsewhere']} cached from earlier runs" if data["tasks_cached_elsewhere"] else ""))
    for kind, path in (data["sources"] or {}).items():
        if kind != "trace":
            click.echo(f"  {kind}: {path}")


@nextflow.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8765, show_default=True)
@click.option("--token", envvar="LAMIN_INTEGRATIONS_WEBLOG_TOKEN", help="Require ?token=T in the weblog URL (or a Bearer header).")
@click.option("--max-body-kb", type=click.IntRange(min=1), default=4096, show_default=True, help="Reject larger request bodies (413).")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Base work dir: record task files as tasks complete (default: the one the run reports, if readable here).")
@click.option("--no-files", is_flag=True, help="Record runs only, no work-dir artifacts.")
def serve(host: str, port: int, token: str | None, max_body_kb: int, work_dir: str | None, no_files: bool) -> None:
    """Receive `nextflow run ... -with-weblog http://HOST:PORT` events and record runs live."""
    from .ingest import Files
    from .weblog import make_server

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        click.echo("warning: listening beyond loopback without --token: anyone who can reach the port can write records", err=True)
    server = make_server(host, port, token=token, max_body=max_body_kb * 1024,
                         files=Files(work_dir=work_dir) if work_dir else None, discover_files=not no_files)
    bound_host, bound_port = str(server.server_address[0]), server.server_address[1]
    url = f"http://{bound_host}:{bound_port}" + (f"/?token={token}" if token else "")
    click.echo(f"listening on {url} (Ctrl-C to stop); run: nextflow run ... -with-weblog '{url}'", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
