"""Live OpenLineage events: a plugin on the registry's hooks, off unless configured.

Set `LAMIN_INTEGRATIONS_OPENLINEAGE` and every run that starts or finishes, in any process
that records (a tracked script, the Snakemake worker, a Prefect flow), sends its RunEvent:

    console                      print events to the log (OpenLineage's console transport)
    file:/path/events.jsonl      append one JSON event per line
    http://host:5000             POST to a server (Marquez: /api/v1/lineage; a path in the URL replaces it)
    auto                         OpenLineage's own configuration (openlineage.yml, OPENLINEAGE_URL, ...)

Unset, the entry point registers an object without hooks: nothing is imported and no
hook call is added. In code: `manager().register(OpenLineageEmitter(transport))`.
Events are built by `lamin_integrations.lineage.openlineage` (also used by `export`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .core.hookspecs import hookimpl

ENV = "LAMIN_INTEGRATIONS_OPENLINEAGE"
logger = logging.getLogger("lamin_integrations")


class OpenLineageEmitter:
    """Sends START when a run starts and COMPLETE / FAIL / ABORT (with inputs and outputs) when it ends."""

    def __init__(self, transport: Any = None, client: Any = None):
        from openlineage.client import OpenLineageClient

        self.client = client or (OpenLineageClient(transport=transport) if transport is not None else OpenLineageClient())

    def _emit(self, run: Any, which: str) -> None:
        from .core.artifacts import registered_roots
        from .lineage.openlineage import run_events

        parent = run.initiated_by_run if run.initiated_by_run_id else None
        root = (run.root_run if run.root_run_id and run.root_run_id != run.id else None) if parent is not None else None
        inputs = list(run.input_artifacts) if run.id is not None else []
        outputs = list(run.query_output_artifacts()) if which == "end" else []
        events = run_events(run, transform=run.transform, parent=parent,
                            parent_transform=parent.transform if parent is not None else None,
                            root=root or parent, root_transform=(root or parent).transform if parent is not None else None,
                            inputs=inputs, outputs=outputs, roots=dict(registered_roots(run._db)), which=which)
        for event in events:
            self.client.emit(event)

    @hookimpl
    def run_started(self, run: Any) -> None:
        self._emit(run, "start")

    @hookimpl
    def run_finished(self, run: Any, status: str) -> None:
        self._emit(run, "end")


class _Off:
    """What the entry point registers when no transport is configured: no hooks, no cost."""

    def __repr__(self) -> str:
        return f"<OpenLineage emitter: off (set {ENV} to turn it on)>"


def _from_environment() -> Any:
    value = os.environ.get(ENV, "").strip()
    if not value:
        return _Off()
    try:
        return OpenLineageEmitter(make_transport(value))
    except Exception as e:  # a bad setting must not stop the registry
        logger.warning("OpenLineage emitter not started (%s=%r): %s: %s", ENV, value, type(e).__name__, e)
        return _Off()


def make_transport(value: str) -> Any:
    """console | file:PATH | http(s)://host[:port][/endpoint] | auto (None: the client's own config)."""
    from .errors import ValidationError

    if value == "auto":
        return None
    if value == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        return ConsoleTransport(ConsoleConfig())
    if value.startswith("file:"):
        from openlineage.client.transport.file import FileConfig, FileTransport

        return FileTransport(FileConfig(log_file_path=value[len("file:"):], append=True))
    if value.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        from openlineage.client.transport.http import HttpConfig, HttpTransport

        parts = urlsplit(value)
        base = f"{parts.scheme}://{parts.netloc}"
        endpoint = parts.path.lstrip("/") or "api/v1/lineage"
        return HttpTransport(HttpConfig(url=base, endpoint=endpoint, timeout=5.0, retry={"total": 1, "backoff_factor": 0.1,
                                                                                          "allowed_methods": ["POST"]}))
    raise ValidationError(f"{ENV} is console, file:PATH, an http(s) URL or auto; got {value!r}")


def __getattr__(name: str) -> Any:
    # The entry point names `lamin_integrations.openlineage:plugin`; it is built when the
    # plugin manager loads entry points, from the environment of that moment.
    if name == "plugin":
        return _from_environment()
    raise AttributeError(name)
