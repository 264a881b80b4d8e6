"""Files of a launch: task work dirs (staged inputs, produced outputs) and published results.

A file staged into a task from another task's work dir is that task's output artifact, so
the two task runs are linked. Published files (`--outdir`) are outputs of the pipeline run;
the task that produced one is found by symlink target (publishDir's default mode) or by
content hash, and named in the artifact's `_aux["published_from"]`. The files the launch's
parameters name that none of its tasks read (a samplesheet the pipeline itself reads) are
inputs of the pipeline run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

from .trace import full_hash, short_hash
from .workdir import is_dir, published_files, real, scan

logger = logging.getLogger("lamin_integrations")

SKIP_PUBLISHED = ("pipeline_info",)  # Nextflow's own reports, not results


def record_task_files(files: Any, pipeline: Any, touched: list[tuple[Any, Any]], by_work_dir: dict[str, Any],
                      launch_hashes: set[str] | None = None, named: list[str] | None = None) -> None:
    """`launch_hashes`: the short hashes of this launch's tasks; a published link into the work
    dir of any other task was published by another launch (a resume of this one, ingested
    later or earlier), not by this one. `named`: the files the launch's parameters name."""
    from ..core.bulk import update_all
    from ..core.pipeline import given_path, link_recreated, record_files

    base = files.base
    produced: dict[str, Any] = {}  # realpath of an output -> its artifact
    producer_run: dict[str, Any] = {}  # realpath of an output -> the task run
    if files.work_dir:
        scans = []
        for task, run in touched:
            work = task.fields.get("workdir")
            if not work or not (run._aux or {}).get("files_recorded"):
                continue
            work = files.here(work)
            try:
                if is_dir(work):
                    scans.append((run, scan(work)))
            except Exception as e:  # an unreadable work dir (permissions, an object store's credentials)
                logger.warning("lamin-integrations: not recording the files of task %s in %s: %s", run.name, work, e)
        outputs = [(run, w.outputs, base) for run, w in scans if w.outputs]
        if outputs:
            for artifact in record_files(outputs=outputs, max_hash_size=files.max_hash_size)[0]:
                produced[real(given_path(artifact) or "")] = artifact
        for run, w in scans:
            for path in w.outputs:
                producer_run[real(path)] = run
        links, entries = [], []
        for run, w in scans:
            others = []
            for staged in w.inputs.values():
                staged = files.here(staged)
                known = real(staged)
                if known in produced:
                    links.append((run, produced[known]))
                elif "://" in staged or os.path.exists(staged):
                    others.append(staged)
            if others:
                entries.append((run, others, base))
        if links or entries:
            record_files(inputs=entries, links=links, max_hash_size=files.max_hash_size)
    named = _read_by_no_task([p for p in named or [] if not _inside(p, files.work_dir) and not _inside(p, files.outdir)],
                             pipeline, base, files.max_hash_size)
    if named:
        record_files(inputs=[(pipeline, named, base)], max_hash_size=files.max_hash_size)
    if files.outdir:
        try:
            published = published_files(files.outdir, SKIP_PUBLISHED) if is_dir(files.outdir) else []
        except Exception as e:
            logger.warning("lamin-integrations: not recording the published files in %s: %s", files.outdir, e)
            published = []
        dangling = [p for p in published if "://" not in p and os.path.islink(p) and not os.path.exists(p)]
        if dangling:
            logger.warning("lamin-integrations: not recording %d published file(s) whose links point where the launch ran, "
                           "not on this machine (e.g. %s -> %s): publish with mode 'copy' to keep results that move",
                           len(dangling), dangling[0], os.readlink(dangling[0]))
            skipped = set(dangling)
            published = [p for p in published if p not in skipped]
        if launch_hashes is not None:
            published = [p for p in published if _published_by(p, launch_hashes)]
        if files.next_launch_at is not None:
            published = _before(published, files.next_launch_at)
        later = _published_later(published, pipeline, files.max_hash_size)
        published = [p for p in published if p not in later]
        if not published:
            return
        # an outdir outside the launch dir (project space on a cluster): keys start with its name
        outdir_base = base if "://" in files.outdir or _under(files.outdir, base) else os.path.dirname(os.path.abspath(files.outdir))
        artifacts = record_files(outputs=[(pipeline, published, outdir_base)], max_hash_size=files.max_hash_size)[0]
        # the tasks that made each content, and by content and file name (built once: thousands
        # of published copies may share the bytes of an empty file)
        by_hash: dict[str, dict[int, tuple[Any, str, Any]]] = {}
        by_name: dict[tuple[str, str], dict[int, tuple[Any, str, Any]]] = {}
        for work_path, work_artifact in produced.items():
            task = producer_run.get(work_path)
            if work_artifact.hash and task is not None:
                entry = (task, work_path, work_artifact)
                by_hash.setdefault(work_artifact.hash, {}).setdefault(task.id, entry)
                by_name.setdefault((work_artifact.hash, os.path.basename(work_path)), {}).setdefault(task.id, entry)
        changed, made = [], []
        for artifact in artifacts:
            path = given_path(artifact) or ""
            target = real(path)
            source: dict[str, Any] | None = None
            run = None
            if os.path.islink(path):
                target = real(files.here(target))  # a link made where the launch ran
                run = producer_run.get(target) or _run_of(target, by_work_dir)
                if run is not None:
                    source = {"run": run.uid, "path": target, "how": "symlink"}
            if source is None and artifact.hash in by_hash:
                # several tasks made these bytes: the one whose file has the published name, else none
                tasks = by_hash[artifact.hash]
                tasks = tasks if len(tasks) == 1 else by_name.get((artifact.hash, os.path.basename(path)), {})
                found = next(iter(tasks.values())) if len(tasks) == 1 else None
                if found is not None:
                    run, work_path, work_artifact = found
                    source = {"run": run.uid, "artifact": work_artifact.uid, "path": work_path, "how": "content hash"}
            if source is not None:
                made.append((run, artifact))
            if source is not None and (artifact._aux or {}).get("published_from") != source:
                artifact._aux = {**(artifact._aux or {}), "published_from": source}
                changed.append(artifact)
        changed += [a for a in _made_after(made, pipeline) if a not in changed]
        if changed:
            update_all(changed)
        link_recreated(made)  # lineage from the published copy reaches its task


def _read_by_no_task(paths: list[str], pipeline: Any, base: str | None, max_hash_size: int | None) -> list[str]:
    """The files among `paths` that no task of the launch (nor the run a cached task stands for)
    has as an input. A file a task read is that task's input: linked to the pipeline run too, it
    would put every result of the launch downstream of it (a genome, one sample's reads)."""
    if not paths:
        return []
    from ..core.hashing import hash_file
    from ..core.match import DISTINCT_BYTES
    from ..core.models import Artifact
    from ..core.pipeline import artifact_key

    used = Artifact.filter(input_of_runs__initiated_by_run_id=pipeline.id).to_list()
    originals = list(((pipeline._aux or {}).get("cached_tasks") or {}).values())
    if originals:
        used += Artifact.filter(input_of_runs__uid__in=originals).to_list()
    hashes, keys = {a.hash for a in used if a.hash}, {a.key for a in used if a.key}
    kept = []
    for path in paths:
        try:
            if artifact_key(path, base) in keys:
                continue
            size = os.path.getsize(path)  # a few bytes are no fingerprint: such a file is matched by its key only
            if size >= DISTINCT_BYTES and (max_hash_size is None or size <= max_hash_size) \
                    and hash_file(path, pipeline._db.hash_mode)[0] in hashes:
                continue
        except (OSError, ValueError):
            continue
        kept.append(path)
    return kept


def named_files(params: dict[str, Any] | None, command_line: str | None, launch_dir: str | None) -> list[str]:
    """The local files the launch's parameters name (`--input samplesheet.csv`, a params file's
    `fasta`), relative to the launch dir as Nextflow reads them. Folders, URLs and globs are
    left out: a folder may be a whole reference, a remote file would be fetched to be hashed."""
    from .files import parse_run_command

    values: list[str] = []

    def collect(value: Any, depth: int = 0) -> None:
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, dict) and depth < 3:
            for v in value.values():
                collect(v, depth + 1)
        elif isinstance(value, list) and depth < 3:
            for v in value:
                collect(v, depth + 1)

    collect(params or {})
    collect(parse_run_command(command_line)[2])
    found: dict[str, str] = {}
    for value in values[:10_000]:
        if not value or len(value) > 4096 or "://" in value or "\n" in value or "\0" in value or any(c in value for c in "*?{["):
            continue
        path = value if os.path.isabs(value) or not launch_dir else os.path.join(launch_dir, value)
        try:
            if os.path.isfile(path):
                found.setdefault(os.path.realpath(path), os.path.normpath(path))
        except (OSError, ValueError):
            continue
    return list(found.values())


def record_report(path: str, pipeline: Any) -> None:
    """The execution report becomes the pipeline run's `report`, as nf-lamin does (a hidden
    `__lamindb_run__` artifact, not an output): unless the run has another report already."""
    from ..core.models import Artifact

    current = pipeline.report
    if current is not None and not (current.description or "").startswith("Nextflow execution report"):
        return
    try:
        artifact = Artifact(path, description=f"Nextflow execution report of run {pipeline.uid}", kind="__lamindb_run__")
    except OSError as e:
        logger.warning("lamin-integrations: not keeping the execution report %s: %s", path, e)
        return
    artifact.__dict__["_no_lineage"] = True  # about the run, not an output of it
    artifact.save()
    if pipeline.report_id != artifact.id:
        pipeline.report = artifact
        pipeline.save()


def adopt_cached(pairs: list[tuple[Any, Any]], pipeline: Any) -> None:
    """(cached row of a resume ingested first, this launch's task run that ran it): the files the
    cached rows were recorded as making (their task's work files, and the copies their launch
    published) were made by this launch. They become its outputs; the resume's runs stay their
    re-creators. Ingest order then does not decide who made a file."""
    from ..core.bulk import update_all
    from ..core.models import Artifact
    from ..core.pipeline import link_recreated

    originals = {placeholder.id: (placeholder, original) for placeholder, original in pairs}
    by_uid = {placeholder.uid: (placeholder, original) for placeholder, original in pairs}
    moved, recreated = [], []
    for artifact in Artifact.filter(run_id__in=list(originals)):
        placeholder, original = originals[artifact.run_id]
        artifact.run = original
        moved.append(artifact)
        recreated.append((placeholder, artifact))
    resumes = {placeholder.initiated_by_run_id for placeholder, _ in pairs} - {None, pipeline.id}
    for artifact in Artifact.filter(run_id__in=list(resumes)):  # the copies those launches published
        source = (artifact._aux or {}).get("published_from") or {}
        if source.get("run") in by_uid:
            placeholder, original = by_uid[source["run"]]
            recreated.append((artifact.run, artifact))
            artifact.run = pipeline
            artifact._aux = {**artifact._aux, "published_from": {**source, "run": original.uid}}
            moved.append(artifact)
    if moved:
        update_all(moved)
        link_recreated(recreated)


def _made_after(made: list[tuple[Any, Any]], pipeline: Any) -> list[Any]:
    """Published files recorded as another launch's outputs whose content this launch's task made
    after that launch ended: the earlier launch was ingested after its resume wrote them over the
    shared `results/` (`_published_later` keeps them out when the resume is ingested first). They
    become this launch's outputs, and the pipeline run is not also their re-creator. Returns them."""
    taken = []
    for task, artifact in made:
        if artifact.run_id in (None, pipeline.id) or task.initiated_by_run_id != pipeline.id or task.started_at is None:
            continue
        owner = artifact.run
        if owner.reference_type == pipeline.reference_type and owner.finished_at is not None \
                and _utc(owner.finished_at) < _utc(task.started_at):
            artifact.run = pipeline
            artifact.recreating_runs.remove(pipeline)
            taken.append(artifact)
    return taken


def _utc(value: Any) -> Any:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _published_by(path: str, launch_hashes: set[str]) -> bool:
    """False for a link into the work dir of a task that is not one of this launch's."""
    if "://" in path or not os.path.islink(path):
        return True  # a copy: whose it is, its content tells (below), not its path
    target = real(path)
    folder = target
    while folder and folder != os.path.dirname(folder):
        found = full_hash(folder)
        if found:
            return short_hash(found) in launch_hashes
        folder = os.path.dirname(folder)
    return True  # not into a work dir


def _before(paths: list[str], next_launch_at: dt.datetime) -> list[str]:
    """Launches in one launch dir share its results folder, and do not overlap (Nextflow locks
    the dir): a file published (its link or copy written) after the next launch there began is
    that launch's, whether it is ingested yet or not."""
    limit = _utc(next_launch_at).timestamp()
    kept: list[str] = []
    later: list[str] = []
    for path in paths:
        try:
            (later if "://" not in path and os.lstat(path).st_mtime > limit else kept).append(path)
        except OSError:
            kept.append(path)
    if later:
        logger.warning("lamin-integrations: %d published file(s) written after the next launch in this launch dir "
                       "began (%s) are not this launch's outputs, e.g. %s", len(later), _utc(next_launch_at).isoformat(),
                       later[0])
    return kept


def _published_later(paths: list[str], pipeline: Any, max_hash_size: int | None) -> set[str]:
    """Copies (publishDir `mode: 'copy'`) whose content a task of another launch made after this
    launch ended: that launch published them into the shared results folder (this launch is
    ingested after it), so they are not this launch's outputs."""
    end = pipeline.finished_at
    copies = [p for p in paths if "://" not in p and not os.path.islink(p) and os.path.isfile(p)]
    if end is None or not copies:
        return set()
    from ..core.hashing import hash_file
    from ..core.models import Artifact

    mode = pipeline._db.hash_mode
    by_hash: dict[str, list[str]] = {}
    for path in copies:
        try:
            if max_hash_size is None or os.path.getsize(path) <= max_hash_size:
                by_hash.setdefault(hash_file(path, mode)[0], []).append(path)  # cached: recording reuses it
        except OSError:
            continue
    later: set[str] = set()
    if not by_hash:
        return later
    for artifact in Artifact.filter(hash__in=list(by_hash), run__reference_type="nextflow_task"):
        run = artifact.run
        if run.initiated_by_run_id != pipeline.id and run.started_at is not None and run.started_at > end:
            later.update(by_hash[artifact.hash])
    return later


def _under(path: str, folder: str | None) -> bool:
    if not folder or "://" in folder:
        return False
    inside = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return inside == os.curdir or not inside.startswith(os.pardir)


def _inside(path: str, folder: str | None) -> bool:
    """Is `path` in `folder` (both URLs, or local paths compared where links lead)?"""
    if not folder:
        return False
    if "://" in folder or "://" in path:
        return path.startswith(folder.rstrip("/") + "/")
    return _under(os.path.realpath(path), os.path.realpath(folder))


def _run_of(path: str, by_work_dir: dict[str, Any]) -> Any:
    """The task whose work dir contains `path` (a publish symlink into a task recorded earlier)."""
    folder = os.path.dirname(path)
    while folder and folder != os.path.dirname(folder):
        if folder in by_work_dir:
            return by_work_dir[folder]
        folder = os.path.dirname(folder)
    return None
