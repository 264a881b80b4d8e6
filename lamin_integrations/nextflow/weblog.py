"""Live recording from `nextflow run ... -with-weblog http://127.0.0.1:PORT`.

Nextflow POSTs one JSON event per state change: `started` / `completed` carry
`metadata` (`parameters`, or `params` before ~20.x, and `workflow`), `process_submitted` /
`process_started` / `process_completed` / `error` carry the raw `trace` record (epoch ms,
bytes, `exit` 2147483647 until the task ends). Each event goes through the same `Recorder`
as a trace ingest, so a later `nextflow ingest` of the same run completes these records
instead of duplicating them. CACHED tasks send no event (a later trace ingest adds them).

The receiver binds to loopback by default, checks an optional token (`?token=` in the URL
given to Nextflow, or an `Authorization: Bearer` header), limits the body size, and answers a
bad body with a 4xx that is logged; nothing a client sends stops the server.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ValidationError
from .ingest import Files, Recorder
from .launch import Launch
from .trace import Task, TraceError, normalise

logger = logging.getLogger("lamin_integrations")

EVENTS = ("started", "process_submitted", "process_started", "process_completed", "error", "completed")
MAX_BODY_BYTES = 4 * 1024 * 1024


def _iso(value: Any) -> dt.datetime | None:
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        try:
            return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise TraceError(f"expected a time in epoch milliseconds, found {value!r}") from None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _typed(container: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`container[name]` if it is None or of `kind`; else TraceError (a client's value, not our crash)."""
    value = container.get(name)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):  # JSON true is no number
        return value
    expected = " or ".join(k.__name__ for k in kinds)
    raise TraceError(f"{where}{name} must be {expected}, found {type(value).__name__}: {str(value)[:80]!r}")


def event_launch(event: dict[str, Any]) -> Launch:
    """The launch facts one event carries (run name and session always; workflow metadata on started/completed)."""
    launch = Launch(run_name=event["runName"], session_id=_typed(event, "runId", str, ""), sources=["weblog"])
    metadata = event.get("metadata") or {}
    workflow = _typed(metadata, "workflow", dict, "metadata.") or {}
    params = metadata.get("parameters", metadata.get("params"))
    if isinstance(params, dict):
        launch.params = params

    def text(name: str) -> str | None:
        return _typed(workflow, name, str, "metadata.workflow.")

    if workflow:
        launch.pipeline = text("repository") or text("projectName")
        launch.revision = text("revision") or text("commitId")
        launch.script_id = text("scriptId")
        launch.command_line = text("commandLine")
        launch.started_at = _iso(_typed(workflow, "start", (str, int, float), "metadata.workflow."))
        launch.launch_dir = text("launchDir")
        launch.work_dir = text("workDir")
        launch.project_dir = text("projectDir")
        launch.profile = text("profile")
        launch.nextflow_version = _typed(_typed(workflow, "nextflow", dict, "metadata.workflow.") or {}, "version", str,
                                         "metadata.workflow.nextflow.")
        launch.manifest = _typed(workflow, "manifest", dict, "metadata.workflow.") or None
        launch.stats = _typed(workflow, "stats", dict, "metadata.workflow.") or None
    if event["event"] == "completed":
        launch.finished_at = _iso(_typed(workflow, "complete", (str, int, float), "metadata.workflow.")) \
            or _iso(_typed(event, "utcTime", (str, int, float), ""))
        launch.exit_status = _typed(workflow, "exitStatus", int, "metadata.workflow.")
        success = workflow.get("success")
        launch.status = "completed" if success else "errored"
        launch.error = text("errorMessage") or text("errorReport") or None
    elif event["event"] == "error":
        trace = event.get("trace") or {}
        launch.error = f"task {trace.get('name') or '?'} failed (exit {trace.get('exit')})" if trace else "workflow error"
    return launch


def check_event(body: bytes) -> dict[str, Any]:
    """The event in a request body, or TraceError saying what is wrong with it."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise TraceError(f"the body is not JSON ({e})") from None
    if not isinstance(event, dict):
        raise TraceError("the body is not a JSON object")
    if event.get("event") not in EVENTS:
        raise TraceError(f"unknown event {event.get('event')!r}; expected one of {', '.join(EVENTS)}")
    if not isinstance(event.get("runName"), str) or not event["runName"]:
        raise TraceError("the event has no runName")
    trace = event.get("trace")
    if event["event"].startswith("process_") and not isinstance(trace, dict):
        raise TraceError(f"a {event['event']} event needs a trace object")
    if trace is not None and not isinstance(trace, dict):
        raise TraceError("trace must be an object")
    if event.get("metadata") is not None and not isinstance(event["metadata"], dict):
        raise TraceError("metadata must be an object")
    return event


class Receiver:
    """Records events in arrival order (one at a time: the registry sees a consistent launch).

    Task files: with `files` given, from there; otherwise (`discover`) from the work dir the
    `started` event names (`metadata.workflow.workDir`) when this machine can read it, which
    is the usual case for a receiver on loopback next to `nextflow run`.
    """

    def __init__(self, files: Files | None = None, discover: bool = True):
        self.files = files
        self.discover = discover
        self.recorder = Recorder(files)
        self.lock = threading.Lock()
        self.launches: dict[tuple[str, str], Launch] = {}
        self.events = 0  # recorded so far

    def handle(self, event: dict[str, Any]) -> Any:
        launch = event_launch(event)
        tasks = []
        trace = event.get("trace")
        if isinstance(trace, dict) and trace:
            try:
                fields = normalise({k: v for k, v in trace.items() if not isinstance(v, (list, dict))}, dt.UTC)
            except ValueError as e:
                raise TraceError(f"trace of {event['event']}: {e}") from None
            if fields.get("task_id") is None:
                raise TraceError(f"trace of {event['event']} has no task_id")
            tasks.append(Task(fields, source="weblog"))
        # Run names are unique within a launch dir only: another project's launch may share one
        key = (launch.run_name or "", launch.session_id or "")
        with self.lock:
            known = self.launches.get(key)
            if known is not None:  # later events carry less: keep what `started` told us
                launch = launch.merge(known)
            if event["event"] != "completed":
                launch.status = None
            self.launches[key] = launch
            self.recorder.files = self._files_for(launch)
            run = self.recorder.record(launch, tasks, final=event["event"] == "completed")
            self.events += 1
            return run

    def _files_for(self, launch: Launch) -> Files:
        if self.files is not None or not self.discover:
            return self.files or Files()
        work = launch.work_dir
        if work and os.path.isabs(work) and os.path.isdir(work):
            return Files(work_dir=work, base=launch.launch_dir)
        return Files()


def make_server(host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                max_body: int = MAX_BODY_BYTES, files: Files | None = None, discover_files: bool = True) -> ThreadingHTTPServer:
    """A ready HTTP server (not yet serving): `server.serve_forever()`, `server.server_address`."""
    receiver = Receiver(files, discover_files)

    class Handler(BaseHTTPRequestHandler):
        server_version = "lamin-integrations-weblog"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("weblog %s: " + format, self.address_string(), *args)

        def _reply(self, code: int, message: str) -> None:
            body = json.dumps({"status": "ok" if code < 300 else "error", "message": message}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if code >= 400:
                logger.warning("weblog: %s %s from %s: %s", code, self.path, self.client_address[0], message)

        def do_GET(self) -> None:
            self._reply(200, "lamin-integrations weblog receiver: POST Nextflow events here")

        def do_POST(self) -> None:
            if token is not None:
                parts = urlsplit(self.path)
                given = (parse_qs(parts.query).get("token") or [""])[0]
                header = self.headers.get("Authorization", "")
                given = given or header.removeprefix("Bearer ").strip() or parts.path.strip("/")
                if not hmac.compare_digest(given.encode(), token.encode()):
                    self._reply(401, "missing or wrong token")
                    return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(411, "a Content-Length header is required")
                return
            if int(length) > max_body:
                self._reply(413, f"body of {length} bytes exceeds the limit of {max_body}")
                self.close_connection = True
                return
            body = self.rfile.read(int(length))
            try:
                event = check_event(body)
                run = receiver.handle(event)
            except TraceError as e:
                self._reply(422 if body.strip().startswith(b"{") else 400, str(e))
                return
            except ValidationError as e:  # a value the registry cannot store (too long, NUL, ...): the event's fault
                self._reply(422, str(e))
                return
            except Exception as e:  # a registry error: tell the client, keep serving
                logger.exception("weblog: could not record an event")
                self._reply(500, f"{type(e).__name__}: {e}")
                return
            self._reply(200, f"recorded {event['event']} of {event['runName']} as run {run.uid}")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.__dict__["receiver"] = receiver
    return server
