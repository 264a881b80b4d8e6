"""OpenLineage RunEvents for runs: START, then COMPLETE / FAIL / ABORT, with parent and root.

Used by `export --format openlineage` (every run of a pipeline, from the registry) and by
the live emitter plugin `lamin_integrations.openlineage` (one run as it starts and ends).

Mapping: a Run is an OpenLineage run (runId = a UUID derived from the run's uid, so START
and the terminal event always agree); its Transform is the job (name = transform key, in
one namespace); `initiated_by_run` gives the ParentRunFacet and `root_run` its `root`;
artifacts are datasets named by their storage URI (namespace `file` + absolute path for
local storage, `s3://bucket` + key for object stores, as in the OpenLineage naming spec).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

PRODUCER = "https://pypi.org/project/lamin-integrations/"
RUN_ID_NAMESPACE = uuid.UUID("6f1b8a5e-3c1d-5b7a-9a57-6c1a0f2d9e11")
TERMINAL = {"completed": "COMPLETE", "errored": "FAIL", "aborted": "ABORT"}
ENGINES = {"snakemake": "SNAKEMAKE", "prefect": "PREFECT", "nextflow": "NEXTFLOW"}


def namespace() -> str:
    """The job namespace: LAMIN_INTEGRATIONS_OPENLINEAGE_NAMESPACE, default `lamin-integrations`."""
    return os.environ.get("LAMIN_INTEGRATIONS_OPENLINEAGE_NAMESPACE", "lamin-integrations")


def run_id(run: Any) -> str:
    """A stable UUID for a run (OpenLineage wants UUIDs; ours are base62)."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, run.uid))


def _engine(run: Any) -> str:
    kind = (run.reference_type or "").split("_")[0]
    return ENGINES.get(kind, "LAMIN_INTEGRATIONS")


def _job(run: Any, transform: Any) -> Any:
    from openlineage.client.event_v2 import Job
    from openlineage.client.facet_v2 import job_type_job

    kind = (transform.kind if transform is not None else "run") or "run"
    facets: dict[str, Any] = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration=_engine(run),
                                                      jobType=kind.upper(), producer=PRODUCER)}
    return Job(namespace=namespace(), name=transform.key if transform is not None else run.uid, facets=facets)


def dataset_name(artifact: Any, root: str | None) -> tuple[str, str]:
    """(namespace, name) of an artifact by where its bytes are."""
    from ..core.artifacts import storage_location

    if root is None:
        return "lamin-integrations", artifact.key or artifact.uid
    location = storage_location(artifact, root)
    if "://" in location:
        scheme, rest = location.split("://", 1)
        authority, _, path = rest.partition("/")
        return f"{scheme}://{authority}", path
    return "file", location


def _datasets(artifacts: list[Any], roots: dict[int, str], output: bool) -> list[Any]:
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset

    out = []
    for a in artifacts:
        ns, name = dataset_name(a, roots.get(a.storage_id))
        facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=f"{a.hash_type}:{a.hash}" if a.hash else a.uid, producer=PRODUCER)} if a.hash or a.uid else {}
        cls = OutputDataset if output else InputDataset
        out.append(cls(namespace=ns, name=name, facets=facets))  # type: ignore[arg-type]
    return out


def _run_facets(run: Any, parent: Any, parent_transform: Any, root: Any, root_transform: Any,
                final: bool) -> dict[str, Any]:
    from openlineage.client.facet_v2 import error_message_run, parent_run

    facets: dict[str, Any] = {}
    if parent is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id(parent)),
            job=parent_run.Job(namespace=namespace(), name=parent_transform.key if parent_transform else parent.uid),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=run_id(root)),
                job=parent_run.RootJob(namespace=namespace(), name=root_transform.key if root_transform else root.uid),
            ),
            producer=PRODUCER,
        )
    from ..core.summary import run_error

    error = run_error(run)
    if final and run.status == "errored":
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=(error or "run errored")[:10_000], programmingLanguage="python" if _engine(run) in ("LAMIN_INTEGRATIONS", "PREFECT") else "shell",
            producer=PRODUCER)
    return facets


def _time(value: Any) -> str:
    from ..core.schema import now

    return (value or now()).isoformat()


def run_events(run: Any, *, transform: Any, parent: Any = None, parent_transform: Any = None, root: Any = None,
               root_transform: Any = None, inputs: list[Any] = (), outputs: list[Any] = (),  # type: ignore[assignment]
               roots: dict[int, str] | None = None, which: str = "all") -> list[Any]:
    """The events of one run: `which` is "start", "end" or "all" (START and, if finished, its end)."""
    from openlineage.client.event_v2 import Run, RunEvent, RunState

    roots = roots or {}
    root = root if root is not None else parent
    root_transform = root_transform if root is not None and root_transform is not None else parent_transform
    job = _job(run, transform)
    events = []
    if which in ("start", "all") and run.status != "scheduled":
        events.append(RunEvent(eventType=RunState.START, eventTime=_time(run.started_at), producer=PRODUCER,
                               run=Run(runId=run_id(run), facets=_run_facets(run, parent, parent_transform, root, root_transform, False)),
                               job=job, inputs=_datasets(list(inputs), roots, False), outputs=[]))
    if which in ("end", "all") and run.status in TERMINAL:
        events.append(RunEvent(eventType=getattr(RunState, TERMINAL[run.status]), eventTime=_time(run.finished_at),
                               producer=PRODUCER,
                               run=Run(runId=run_id(run), facets=_run_facets(run, parent, parent_transform, root, root_transform, True)),
                               job=job, inputs=_datasets(list(inputs), roots, False),
                               outputs=_datasets(list(outputs), roots, True)))
    return events


def tree_events(data: Any, instance: Any) -> list[Any]:
    """Events for every run of a loaded pipeline tree (`core.lineage.run_tree`), in time order."""
    from ..core.artifacts import registered_roots

    roots = dict(registered_roots(instance))
    inputs: dict[int, list[Any]] = {}
    outputs: dict[int, list[Any]] = {}
    for e in data.edges:
        if e.kind == "used":
            inputs.setdefault(e.target[1], []).append(data.artifacts[e.source[1]])
        elif e.kind in ("generated", "recreated"):
            outputs.setdefault(e.source[1], []).append(data.artifacts[e.target[1]])
    events = []
    for run in data.runs.values():
        parent = data.runs.get(run.initiated_by_run_id) if run.initiated_by_run_id else None
        if parent is None and run.initiated_by_run_id:  # the tree's root has a parent outside it
            parent = run.initiated_by_run
        root = None
        if parent is not None:
            root = data.runs.get(run.root_run_id) or run.root_run
        events += run_events(
            run, transform=data.transforms.get(run.transform_id), parent=parent,
            parent_transform=(data.transforms.get(parent.transform_id) or parent.transform) if parent is not None else None,
            root=root, root_transform=(data.transforms.get(root.transform_id) or root.transform) if root is not None else None,
            inputs=inputs.get(run.id, []), outputs=outputs.get(run.id, []), roots=roots)
    return sorted(events, key=lambda ev: (ev.eventTime, 0 if ev.eventType.name == "START" else 1))


def to_json(event: Any) -> str:
    from openlineage.client.serde import Serde

    return Serde.to_json(event)
