"""Exports of a pipeline run (the run, every run below it, their files) to shared formats.

- W3C PROV (PROV-JSON, PROV-N) through the `prov` package: runs are activities, artifacts
  entities; `used`, `wasGeneratedBy`, `wasInformedBy` (a run and the run that initiated
  it), `wasAssociatedWith` (the user, with the transform as plan).
- Workflow Run RO-Crate, Provenance Run Crate profile, through the `rocrate` package.
- OpenLineage RunEvents (JSON Lines), see `lineage.openlineage`.

The libraries come with the `[lineage]` extra and are imported only here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..core.lineage import LineageData
from ..errors import LaminIntegrationsError, ValidationError

FORMATS = ("prov-json", "prov-n", "ro-crate", "openlineage")
NS_URI = "https://lamin-integrations.readthedocs.io/ns#"


class MissingExtra(LaminIntegrationsError):
    """An export needs a library from the `[lineage]` extra."""


def _need(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this export needs {package}: pip install 'lamin-integrations[lineage]'") from None


def export_run(run: Any, fmt: str, path: str | os.PathLike) -> Path:
    """Write `run` and everything below it to `path` in format `fmt`; returns the path."""
    from ..core.lineage import run_tree

    if fmt not in FORMATS:
        raise ValidationError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = run_tree(run)
    out = Path(path)
    if fmt in ("prov-json", "prov-n"):
        doc = to_prov(data)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc.serialize(format="json", indent=2) if fmt == "prov-json" else doc.get_provn(), encoding="utf-8")
    elif fmt == "openlineage":
        from .openlineage import to_json, tree_events

        out.parent.mkdir(parents=True, exist_ok=True)
        _need("openlineage.client", "openlineage-python")
        out.write_text("".join(to_json(e) + "\n" for e in tree_events(data, run._db)), encoding="utf-8")
    else:
        write_crate(data, out)
    return out


# -- W3C PROV -------------------------------------------------------------------------------


def to_prov(data: LineageData) -> Any:
    """A `prov.model.ProvDocument` of the loaded runs and artifacts."""
    model = _need("prov.model", "prov")
    doc = model.ProvDocument()
    doc.add_namespace("lamin", NS_URI)
    doc.add_namespace("run", "urn:lamin-integrations:run:")
    doc.add_namespace("artifact", "urn:lamin-integrations:artifact:")
    doc.add_namespace("transform", "urn:lamin-integrations:transform:")
    doc.add_namespace("user", "urn:lamin-integrations:user:")
    users: dict[int, Any] = {}
    plans: dict[int, Any] = {}
    activities: dict[int, Any] = {}
    for t in data.transforms.values():
        plans[t.id] = doc.entity(f"transform:{t.uid}", {"prov:type": model.PROV["Plan"], "prov:label": t.key,
                                                       "lamin:kind": t.kind or "", "lamin:version": t.version or ""})
    for run in sorted(data.runs.values(), key=lambda r: r.id):
        attrs: dict[str, Any] = {"prov:label": run.name or (data.transforms[run.transform_id].key if run.transform_id in data.transforms else run.uid),
                 "lamin:status": run.status}
        if run.reference:
            attrs["lamin:reference"] = run.reference
            attrs["lamin:reference_type"] = run.reference_type or ""
        activities[run.id] = doc.activity(f"run:{run.uid}", run.started_at, run.finished_at, attrs)
        user_id = run.created_by_id
        if user_id is not None and user_id not in users:
            user = run.created_by
            users[user_id] = doc.agent(f"user:{user.handle}", {"prov:type": model.PROV["Person"], "prov:label": user.name or user.handle})
        agent = users.get(user_id)
        plan = plans.get(run.transform_id)
        if agent is not None:
            doc.wasAssociatedWith(activities[run.id], agent, plan)
        elif plan is not None:
            doc.wasAssociatedWith(activities[run.id], None, plan)
    entities = {}
    for a in sorted(data.artifacts.values(), key=lambda x: x.id):
        attrs = {"prov:label": a.key or a.description or a.uid}
        for name, value in (("lamin:key", a.key), ("lamin:hash", a.hash), ("lamin:hash_type", a.hash_type), ("lamin:size", a.size)):
            if value is not None:
                attrs[name] = value
        entities[a.id] = doc.entity(f"artifact:{a.uid}", attrs)
    for e in sorted(data.edges, key=lambda e: (e.kind, e.source, e.target)):
        if e.kind == "used":
            doc.used(activities[e.target[1]], entities[e.source[1]])
        elif e.kind == "generated":
            doc.wasGeneratedBy(entities[e.target[1]], activities[e.source[1]])
        elif e.kind == "recreated":  # PROV allows one generation per entity: a recreation is an influence
            doc.wasInfluencedBy(entities[e.target[1]], activities[e.source[1]], other_attributes={"prov:role": "lamin:recreated"})
        else:
            doc.wasInformedBy(activities[e.target[1]], activities[e.source[1]])
    return doc


# -- Workflow Run RO-Crate (Provenance Run Crate) -----------------------------------------------

PROFILES = {
    "process": "https://w3id.org/ro/wfrun/process/0.5",
    "workflow": "https://w3id.org/ro/wfrun/workflow/0.5",
    "provenance": "https://w3id.org/ro/wfrun/provenance/0.5",
    "wfcrate": "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
}
ACTION_STATUS = {"completed": "http://schema.org/CompletedActionStatus", "errored": "http://schema.org/FailedActionStatus",
                 "aborted": "http://schema.org/FailedActionStatus", "started": "http://schema.org/ActiveActionStatus",
                 "restarted": "http://schema.org/ActiveActionStatus", "scheduled": "http://schema.org/PotentialActionStatus"}
LANGUAGES = {"snakemake": ("snakemake", "Snakemake", "https://snakemake.readthedocs.io"),
             "prefect": ("prefect", "Prefect", "https://www.prefect.io"),
             "nextflow": ("nextflow", "Nextflow", "https://www.nextflow.io")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _local(artifact: Any) -> Path | None:
    """The artifact's local file or folder, if its bytes are here (object stores and
    metadata-only records are referenced)."""
    folder = artifact.n_files is not None
    if not folder and artifact.hash is None and artifact.size is None:
        return None
    try:
        path = artifact.path
    except Exception:
        return None
    if not isinstance(path, Path):
        return None
    return path if (path.is_dir() if folder else path.is_file()) else None



def workflow_file_name(key: str, engine: str) -> str:
    """The name of the workflow's source file in a crate, from its transform key: the last part
    of a path or repository URL (`wf/Snakefile`, `https://github.com/nf-core/rnaseq`) without a
    step's `:rule`. A Nextflow pipeline keyed by its repository gets its main script's name."""
    name = key.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0] or "workflow"
    if engine == "nextflow" and not name.endswith(".nf"):
        return "main.nf"
    return name


def write_crate(data: LineageData, out: Path, include_data: bool = True) -> Path:
    """A Provenance Run Crate for the tree in `data`: a folder, or a zip if `out` ends with .zip.

    The pipeline run is the workflow's CreateAction (instrument: the workflow, object: the
    pipeline's inputs, result: its outputs); each run below is a step CreateAction with its
    own object / result, tied to a HowToStep by a ControlAction; an OrganizeAction stands
    for the engine. Files carry sha256 and size; their bytes are copied into the crate.
    """
    _need("rocrate", "rocrate")
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    root_run = data.record(data.root)
    transforms = data.transforms
    main_t = transforms.get(root_run.transform_id) or root_run.transform
    crate = ROCrate(version="1.1")  # the RO-Crate version the Workflow Run profiles 0.5 are written for
    crate.root_dataset["conformsTo"] = [{"@id": PROFILES[k]} for k in ("process", "workflow", "provenance", "wfcrate")]
    crate.root_dataset["name"] = f"Run {root_run.uid} of {main_t.key}"
    crate.root_dataset["description"] = f"Provenance of run {root_run.uid} of {main_t.key}, exported by lamin-integrations"
    crate.root_dataset["license"] = "https://spdx.org/licenses/CC-BY-4.0"
    crate.root_dataset["datePublished"] = (root_run.finished_at or root_run.started_at).isoformat()
    for profile in PROFILES.values():
        crate.add(ContextEntity(crate, profile, properties={"@type": "CreativeWork", "name": profile.rsplit("/", 2)[-2],
                                                            "version": profile.rsplit("/", 1)[-1]}))

    engine_key = (root_run.reference_type or "").split("_")[0]
    lang_id, lang_name, lang_url = LANGUAGES.get(engine_key, ("python", "Python", "https://www.python.org"))
    from rocrate.model.computerlanguage import ComputerLanguage

    language = crate.add(ComputerLanguage(crate, f"#{lang_id}", properties={
        "name": lang_name, "identifier": {"@id": lang_url}, "url": {"@id": lang_url}}))
    engine = crate.add(ContextEntity(crate, "#engine", properties={"@type": "SoftwareApplication", "name": lang_name,
                                                                   "url": lang_url}))
    # The workflow itself: its source as stored with the transform (a Snakefile, a flow, a script).
    wf_name = workflow_file_name(main_t.key, engine_key)
    import tempfile

    tmp = tempfile.TemporaryDirectory()
    source = Path(tmp.name) / wf_name
    source.write_text(main_t.source_code or f"# source of {main_t.key} was not recorded\n", encoding="utf-8")
    workflow = crate.add_workflow(source, dest_path=wf_name, main=True, lang=language,
                                  properties={"name": main_t.key, "version": main_t.version or main_t.uid})
    crate.root_dataset["conformsTo"] = [{"@id": PROFILES[k]} for k in ("process", "workflow", "provenance", "wfcrate")]

    files: dict[int, Any] = {}

    def file_entity(a: Any) -> Any:
        if a.id in files:
            return files[a.id]
        props: dict[str, Any] = {"name": a.key or a.description or a.uid, "identifier": a.uid,
                                 "alternateName": a.key or a.uid}
        if a.size is not None:
            props["contentSize"] = str(a.size)
        here = _local(a) if include_data else None
        local, folder = (None, here) if a.n_files is not None else (here, None)
        if local is not None:
            props["sha256"] = _sha256(local)
            entity = crate.add_file(local, dest_path=f"data/{a.uid}/{Path(a.key or local.name).name}", properties=props)
        elif folder is not None:  # a Dataset with its files, as RO-Crate describes folders
            if a.hash:
                props["lamin:hash"] = f"{a.hash_type}:{a.hash}"
            entity = crate.add_dataset(folder, dest_path=f"data/{a.uid}/{Path(a.key or folder.name).name}/",
                                       properties=props)
        else:
            if a.hash:
                props["lamin:hash"] = f"{a.hash_type}:{a.hash}"
            ident = _artifact_uri(a)
            kind = "Dataset" if a.n_files is not None else "File"
            entity = crate.add_file(ident, fetch_remote=False, validate_url=False, properties=props) \
                if "://" in ident and kind == "File" else crate.add(ContextEntity(crate, ident, properties={"@type": kind, **props}))
        files[a.id] = entity
        return entity

    inputs: dict[int, list[Any]] = {}
    outputs: dict[int, list[Any]] = {}
    for e in sorted(data.edges, key=lambda e: (e.source, e.target)):
        if e.kind == "used":
            inputs.setdefault(e.target[1], []).append(data.artifacts[e.source[1]])
        elif e.kind in ("generated", "recreated"):
            outputs.setdefault(e.source[1], []).append(data.artifacts[e.target[1]])
    made_inside = {a.id for arts in outputs.values() for a in arts}
    read_inside = {a.id for arts in inputs.values() for a in arts}
    wf_inputs = sorted({a.id: a for arts in inputs.values() for a in arts if a.id not in made_inside}.items())
    wf_outputs = sorted({a.id: a for arts in outputs.values() for a in arts}.items())
    wf_outputs = [(i, a) for i, a in wf_outputs if i not in read_inside] or wf_outputs

    def action(run: Any, instrument: Any, objs: list[Any], results: list[Any]) -> Any:
        t = transforms.get(run.transform_id)
        props: dict[str, Any] = {"name": f"Run of {t.key if t else run.uid}" + (f" ({run.name})" if run.name else ""),
                                 "identifier": run.uid, "actionStatus": {"@id": ACTION_STATUS.get(run.status, ACTION_STATUS["scheduled"])}}
        if run.started_at:
            props["startTime"] = run.started_at.isoformat()
        if run.finished_at:
            props["endTime"] = run.finished_at.isoformat()
        from ..core.summary import run_error

        error = run_error(run)
        if error and run.status in ("errored", "aborted"):
            props["error"] = error[:10_000]
        return crate.add_action(instrument, identifier=f"#run-{run.uid}", object=objs, result=results, properties=props)

    wf_action = action(root_run, workflow, [file_entity(a) for _, a in wf_inputs], [file_entity(a) for _, a in wf_outputs])
    control_actions = []
    steps = sorted((r for r in data.runs.values() if r.id != root_run.id), key=lambda r: (r.started_at or r.created_at, r.id))
    step_entities: dict[int, Any] = {}
    tools: dict[int, Any] = {}
    for position, run in enumerate(steps):
        t = transforms.get(run.transform_id)
        if t is None:
            continue
        if t.id not in tools:
            tools[t.id] = crate.add(ContextEntity(crate, f"#tool-{t.uid}", properties={
                "@type": "SoftwareApplication", "name": t.key, "version": t.version or t.uid}))
            step_entities[t.id] = crate.add(ContextEntity(crate, f"#step-{t.uid}", properties={
                "@type": "HowToStep", "name": t.key, "position": str(position), "workExample": {"@id": tools[t.id].id}}))
        step_action = action(run, tools[t.id], [file_entity(a) for a in inputs.get(run.id, [])],
                             [file_entity(a) for a in outputs.get(run.id, [])])
        control_actions.append(crate.add(ContextEntity(crate, f"#control-{run.uid}", properties={
            "@type": "ControlAction", "name": f"orchestrate {t.key}", "instrument": {"@id": step_entities[t.id].id},
            "object": {"@id": step_action.id}})))
    if step_entities:
        workflow["step"] = list(step_entities.values())
        workflow["hasPart"] = list(tools.values())
    crate.add(ContextEntity(crate, "#organize", properties={
        "@type": "OrganizeAction", "name": f"{lang_name} run {root_run.uid}", "instrument": {"@id": engine.id},
        "object": [{"@id": c.id} for c in control_actions], "result": {"@id": wf_action.id},
        **({"startTime": root_run.started_at.isoformat()} if root_run.started_at else {}),
        **({"endTime": root_run.finished_at.isoformat()} if root_run.finished_at else {}),
    }))
    user = root_run.created_by
    if user is not None:
        person = crate.add(ContextEntity(crate, f"#user-{user.handle}", properties={"@type": "Person", "name": user.name or user.handle}))
        wf_action["agent"] = person
    if str(out).endswith(".zip"):
        crate.write_zip(out)
    else:
        crate.write(out)
    tmp.cleanup()
    return out


def _artifact_uri(artifact: Any) -> str:
    """A resolvable id for an artifact whose bytes are not copied into the crate."""
    from ..core.artifacts import storage_location

    try:
        location = storage_location(artifact, artifact.storage.root) if artifact.storage_id else None
    except Exception:
        location = None
    if location and "://" in location:
        return location
    if location:
        return Path(location).resolve().as_uri()
    return f"#artifact-{artifact.uid}"
