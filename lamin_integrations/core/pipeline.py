"""What every engine adapter does with files and runs, in one place.

Adapters see paths (a Snakemake job's input list, a Prefect task's arguments, a Nextflow
work dir) and need the same answers: which key a path gets, which files are new, which are
the same content as an artifact some earlier run produced, and how to close a run with the
engine's own verdict. Keeping this here means the three engines agree on keys and lineage,
and adapters never touch SQL.

Keys: a path inside the working directory is keyed by its relative path (`results/a.csv`);
a path outside it by its absolute location without the leading slash
(`data/ref/genome.fa` for `/data/ref/genome.fa`). A file already inside a registered storage
keeps that storage's key and is not copied (core's in-place rule).
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LaminIntegrationsError, NotFoundOnDisk

if TYPE_CHECKING:
    from .hashing import FileState
    from .models import Artifact, Run

logger = logging.getLogger("lamin_integrations")


def artifact_key(path: str | os.PathLike, workdir: str | os.PathLike | None = None) -> str:
    """The key a pipeline file is registered under (see the module docstring)."""
    text = os.fspath(path)
    if "://" in text:
        return text.split("://", 1)[1].split("/", 1)[-1]
    absolute = Path(os.path.abspath(os.path.expanduser(text)))
    base = Path(os.path.abspath(os.fspath(workdir))) if workdir is not None else Path.cwd()
    try:
        rel = absolute.relative_to(base).as_posix()
    except ValueError:
        rel = absolute.as_posix().lstrip("/")
    if rel in ("", "."):
        rel = absolute.name or "root"
    return posixpath.normpath(rel)


def _artifacts(paths: Iterable[str | os.PathLike], workdir: Any, run: Run | None, *, max_hash_size: int | None,
               kind: str | None, as_input: bool, own_files_by_path: bool = False,
               copies: Mapping[str, str] | None = None) -> list[Artifact]:
    from . import storage as st
    from .artifacts import registered_roots
    from .instance import current
    from .models import Artifact

    roots = [root for _, root in registered_roots(run._db if run is not None else current())]
    out: list[Artifact] = []
    seen: set[str] = set()
    for path in paths:
        text = os.fspath(path)
        if text in seen:
            continue
        seen.add(text)
        given, text = text, (copies or {}).get(text, text)
        try:
            location = text if "://" in text else os.path.realpath(text)
        except ValueError as e:  # an embedded NUL byte: no file can have this path
            logger.info("lamin-integrations: not recording %r: %s", text, e)
            continue
        in_place = any(st.relative_to_root(location, root) is not None for root in roots)
        key = None if in_place else artifact_key(given, workdir)  # in place: the storage's own key
        try:
            if "://" not in text and max_hash_size is not None:
                size = _size(text)
                if size > max_hash_size:
                    unhashed = _unhashed(given, key or artifact_key(given, workdir), size, run, kind, as_input)
                    unhashed.__dict__["_given_path"] = given
                    out.append(unhashed)
                    continue
            artifact = Artifact(text, key=key, kind=kind, run=None if as_input else run)
        except (NotFoundOnDisk, FileNotFoundError) as e:
            logger.info("lamin-integrations: not recording %s: %s", text, e)  # engines report missing files
            continue
        except (LaminIntegrationsError, OSError) as e:
            logger.warning("lamin-integrations: not recording %s: %s", text, e)
            continue
        artifact.__dict__["_given_path"] = given  # lets callers map results back to their paths
        if as_input:
            artifact.__dict__["_no_lineage"] = True  # an input is not an output of this run
            artifact.__dict__["_small_by_location"] = True  # see match.DISTINCT_BYTES
            if own_files_by_path and run is not None and run.id is not None:
                # A file with the bytes of another file this pipeline run made (a `cp` job's
                # input, a part of a checkpoint folder) is itself, not that other file.
                artifact.__dict__["_own_root"] = run.root_run_id or run.id
        else:
            artifact.__dict__["_same_key_only"] = True  # an output is the file at its path
        out.append(artifact)
    return out


def _size(path: str) -> int:
    """Bytes of a file, or of the files below a folder (links not followed, as hashing does)."""
    if not os.path.isdir(path):
        return os.stat(path).st_size
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _unhashed(path: str, key: str, size: int, run: Run | None, kind: str | None, as_input: bool) -> Artifact:
    """A metadata-only record for a file too large to hash (the switch adapters offer)."""
    from .models import Artifact

    artifact = Artifact(key=key, kind=kind, run=None if as_input else run)
    artifact.__dict__.update(size=size, suffix=_suffix(key), _key_is_virtual=False,
                             _aux={"not_hashed": True, "path": os.path.abspath(path)})
    return artifact


def _suffix(key: str) -> str:
    from .storage import suffix_of

    return suffix_of(key)


def given_path(artifact: Artifact) -> str | None:
    """The path string an artifact returned by `record_inputs` / `record_outputs` was made from."""
    return artifact.__dict__.get("_given_path")


Files = Iterable[str | os.PathLike]


def record_files(outputs: Iterable[tuple[Run, Files, Any]] = (), inputs: Iterable[tuple[Run, Files, Any]] = (),
                 links: Iterable[tuple[Run, Artifact]] = (), *, max_hash_size: int | None = None,
                 kind: str | None = None, own_files_by_path: bool = False,
                 copies: Mapping[str, str] | None = None) -> tuple[list[Artifact], list[Artifact]]:
    """Record the files of many runs at once: (run, paths, workdir) triples for outputs and inputs.

    An adapter that sees many jobs finish together records them all with one hashing pool,
    one lookup and one insert per kind, and one statement for every input link, instead of
    a few transactions per job. `links` are (run, artifact) pairs already saved (an input
    the adapter recorded earlier as some job's output). Returns (output artifacts, input
    artifacts); `given_path(artifact)` maps each back to the path it came from.
    `own_files_by_path`: an input is found by content only among files that other pipeline
    runs made (or at its own path), for engines that record every file of a run at its path.
    `copies` maps an output's path to a copy of the content it had when the engine reported
    it: the path gives the key, the copy the bytes (a failed attempt's log, before a retry
    replaced it).
    """
    from .artifacts import save_artifacts
    from .settings import max_hash_bytes

    if max_hash_size is None:
        max_hash_size = max_hash_bytes()  # LAMIN_INTEGRATIONS_MAX_HASH_MB: every adapter
    outs = [a for run, paths, workdir in outputs
            for a in _artifacts(paths, workdir, run, max_hash_size=max_hash_size, kind=kind, as_input=False,
                                copies=copies)]
    ins, pairs = [], list(links)
    for run, paths, workdir in inputs:
        found = _artifacts(paths, workdir, run, max_hash_size=max_hash_size, kind=None, as_input=True,
                           own_files_by_path=own_files_by_path)
        ins += found
        pairs += [(run, a) for a in found]
    for group in (outs, ins):
        hashed = [a for a in group if not (a._aux or {}).get("not_hashed")]
        if hashed:
            save_artifacts(hashed)
        for a in group:
            if a.id is None:
                a.save()
    _link_inputs(pairs + _enclosing_folders(pairs))
    return outs, ins


def _enclosing_folders(pairs: list[tuple[Run, Artifact]]) -> list[tuple[Run, Artifact]]:
    """A run that reads a file inside a folder some run produced (Snakemake `directory()`,
    a checkpoint's output) also used that folder: link it, so lineage reaches its producer."""
    from .models import Artifact

    wanted: dict[str, list[Run]] = {}
    for run, artifact in pairs:
        parts = (artifact.key or "").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            wanted.setdefault("/".join(parts[:i]), []).append(run)
    if not wanted:
        return []
    keys, found = sorted(wanted), []
    for start in range(0, len(keys), 500):
        found += list(Artifact.filter(key__in=keys[start:start + 500], n_files__isnull=False, run__isnull=False,
                                      is_latest=True))
    return [(run, folder) for folder in found for run in dict.fromkeys(wanted[folder.key])]


def record_outputs(run: Run, paths: Files, *, workdir: str | os.PathLike | None = None,
                   max_hash_size: int | None = None, kind: str | None = None) -> list[Artifact]:
    """Register files or folders written by `run`; returns their artifacts (see `given_path`).

    Content that already exists at the same key is the existing artifact, recorded as
    recreated by this run (the same bytes at another path are another artifact). Missing or
    unreadable paths are logged and skipped: a pipeline's missing output is the engine's
    error to report, not ours. Files larger than `max_hash_size` bytes get a metadata-only
    record (key, size, `_aux.not_hashed`).
    """
    return record_files(outputs=[(run, paths, workdir)], max_hash_size=max_hash_size, kind=kind)[0]


def record_inputs(run: Run, paths: Files, *, workdir: str | os.PathLike | None = None,
                  max_hash_size: int | None = None) -> list[Artifact]:
    """Link files or folders read by `run` as its inputs; returns their artifacts.

    A file some earlier run produced is found by content hash, so lineage crosses pipeline
    invocations and engines; an unknown file is registered without a creating run. An
    artifact that `run` itself created or recreated is never linked as its input.
    """
    return record_files(inputs=[(run, paths, workdir)], max_hash_size=max_hash_size)[1]


def artifact_as_of(path: str, state: FileState) -> Artifact | None:
    """The artifact of the content a file had in `state`, if that content was hashed then (the
    stat cache remembers it): for a reader that is recorded after the file was already
    rewritten."""
    from types import SimpleNamespace

    from .artifacts import hash_mode
    from .hashing import stat_cache
    from .instance import current
    from .models import Artifact

    then = SimpleNamespace(st_size=state.size, st_mtime_ns=state.mtime_ns, st_ino=state.inode)
    found = stat_cache().get(str(Path(path).absolute()), then, hash_mode(current()))  # type: ignore[arg-type]
    return Artifact.filter(hash=found[0]).order_by("-id").first() if found else None


def link_inputs(run: Run, artifacts: Iterable[Artifact]) -> int:
    """Link saved artifacts as inputs of `run` in one statement (idempotent)."""
    return _link_inputs([(run, a) for a in artifacts])


def _link_inputs(pairs: list[tuple[Run, Artifact]]) -> int:
    import sqlalchemy as sa

    from . import plugins, schema
    from .record import link

    chosen = [(r, a) for r, a in pairs if a.id is not None and r.id is not None and a.run_id != r.id]
    if not chosen:
        return 0
    run_ids = sorted({r.id for r, _ in chosen})  # type: ignore[type-var]
    artifact_ids = sorted({a.id for _, a in chosen})  # type: ignore[type-var]
    recreated = schema.run_recreated_artifact

    def write(conn: sa.Connection) -> int:
        mine = set(conn.execute(sa.select(recreated.c.run_id, recreated.c.artifact_id)
                                .where(recreated.c.run_id.in_(run_ids), recreated.c.artifact_id.in_(artifact_ids))).all())
        rows = {(r.id, a.id) for r, a in chosen} - {tuple(m) for m in mine}
        return link(conn, schema.run_input_artifact, [{"run_id": r, "artifact_id": a} for r, a in sorted(rows)])

    added = chosen[0][0]._db.write(write)
    if added and plugins.has_impls("run_inputs_linked"):
        by_run: dict[int, tuple[Run, list[Artifact]]] = {}
        for r, a in chosen:
            by_run.setdefault(r.id, (r, []))[1].append(a)  # type: ignore[arg-type]
        for r, arts in by_run.values():
            plugins.fire("run_inputs_linked", run=r, artifacts=arts)
    return added


def link_recreated(pairs: list[tuple[Run, Artifact]]) -> int:
    """Record that each run also produced an artifact saved by another run (the same content
    copied or linked elsewhere, e.g. a task's output published by its pipeline), so lineage
    from the copy reaches the run that made it. Idempotent; returns the links added."""
    import sqlalchemy as sa

    from . import schema
    from .record import link

    chosen = [(r, a) for r, a in pairs if r.id is not None and a.id is not None and a.run_id != r.id]
    if not chosen:
        return 0
    rows = [{"run_id": r, "artifact_id": a} for r, a in sorted({(r.id, a.id) for r, a in chosen})]

    def write(conn: sa.Connection) -> int:
        return link(conn, schema.run_recreated_artifact, rows)

    return chosen[0][0]._db.write(write)


def close_run(run: Run, status: str, *, finished_at: datetime | None = None, error: str | None = None,
              **aux: Any) -> Run:
    """End `run` with the engine's verdict (completed / errored / aborted), its end time and error text.

    The error text goes to `run._aux["error"]` (truncated to 10,000 characters); other
    engine facts without a field go to `run._aux` by name.
    """
    _set_end(run, status, finished_at, error, aux)
    run.save()
    return run


def close_runs(items: Iterable[tuple[Run, str, datetime | None, dict[str, Any]]]) -> None:
    """`close_run` for many runs in one transaction: (run, status, finished_at, aux incl. error)."""
    from .bulk import update_all

    runs = []
    for run, status, finished_at, aux in items:
        aux = dict(aux)
        _set_end(run, status, finished_at, aux.pop("error", None), aux)
        runs.append(run)
    update_all(runs)


def _set_end(run: Run, status: str, finished_at: datetime | None, error: str | None, aux: dict[str, Any]) -> None:
    from .schema import now

    run.status = status  # type: ignore[assignment]
    run.finished_at = finished_at or now()
    extra = {k: v for k, v in aux.items() if v is not None}
    if error:
        extra["error"] = error[:10_000]
    if extra:
        run._aux = {**(run._aux or {}), **extra}
