"""Library functions behind the CLI's `info`, `runs` and `show` (usable from Python alone)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MultipleResultsFound, ObjectDoesNotExist, ValidationError
from .instance import Instance, current

UID_REGISTRIES = ("Run", "Transform", "Artifact", "Project", "Feature", "Record", "Storage", "User")


def instance_info(instance: Instance | None = None) -> dict[str, Any]:
    """Where the registry is (password masked), its schema revision and what it holds."""
    from . import models
    from .migrate import current_revision

    instance = instance or current()
    with instance.read() as conn:
        revision = current_revision(conn)
    counts = {name: getattr(models, name).connect(instance).count() for name in ("Transform", "Run", "Artifact", "Project", "Feature", "Storage", "User")}
    from .journal import pending_count

    return {"db": instance.url, "dialect": instance.dialect, "storage": instance.storage_root,
            "schema_revision": revision, "hash_mode": instance.hash_mode, "counts": counts,
            "pending_journal_events": pending_count(instance)}


def find_record(uid: str, instance: Instance | None = None) -> Any:
    """The one record of any registry whose uid is `uid` or starts with it; or, when `uid` is
    no uid but a file or folder on disk or an artifact key, that artifact (see `find_artifact`)."""
    from . import models

    if not uid or not isinstance(uid, str):
        raise ValidationError("give a uid or uid prefix")
    matches = []
    if uid.isalnum():
        for name in UID_REGISTRIES:
            model = getattr(models, name)
            matches += model.connect(instance).filter(uid__startswith=uid)[:2].to_list()
    if not matches:
        found = find_artifact(uid, instance)
        if found is not None:
            return found
        raise ObjectDoesNotExist(f"no record has a uid starting with {uid!r}, and no artifact has that key"
                                 + (" or the content of that file" if os.path.exists(uid) else ""))
    if len(matches) > 1:
        found = ", ".join(f"{type(m).__name__}({m.uid})" for m in matches[:5])
        raise MultipleResultsFound(f"uid prefix {uid!r} is ambiguous: {found}; give more characters")
    return matches[0]


def find_artifact(path: str, instance: Instance | None = None) -> Any:
    """The artifact of a file or folder on disk, found by content hash, else the artifact with this key.

    "Which run made this file?" starts from a path, not a uid. The same bytes can be several
    artifacts (a task's output in its work dir and the published copy): the one whose key is
    the end of the path wins (the path as given before the file a link points to: a published
    link is the published file), else the newest. A file whose content no artifact has is
    answered by its key with a note: the artifact there holds other bytes. None if nothing matches.
    """
    import sys

    from . import hashing
    from .models import Artifact

    instance = instance or current()
    artifacts = Artifact.connect(instance)
    where = Path(path)
    try:
        on_disk = where.is_file() or where.is_dir()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        on_disk = False
    digest, found = None, []
    if on_disk:
        try:
            digest = (hashing.hash_file(where, instance.hash_mode)[0] if where.is_file()
                      else hashing.hash_dir(where, instance.hash_mode)[0])
        except OSError as e:
            raise ValidationError(f"cannot read {path}: {e.strerror or e}") from None
        found = [a for a in artifacts.filter(hash=digest).order_by("-id") if a.branch_id != -1]
        for full in dict.fromkeys((where.absolute().as_posix(), where.resolve().as_posix())):
            tails = [a for a in found if a.key and (full == a.key or full.endswith("/" + a.key))]
            if tails:
                return max(tails, key=lambda a: len(a.key))
    key = path.removeprefix("./")
    if found:
        sys.stderr.write(f"note: no artifact with the key {key!r} has this content; showing "
                         f"{found[0].key or found[0].uid!r}, which has the same content\n")
        return found[0]
    by_key = artifacts.filter(key=key).order_by("-id").first()
    if by_key is not None:
        if digest is not None and by_key.hash is not None and by_key.hash != digest:
            sys.stderr.write(f"note: the content of {path} is not registered (no artifact has its hash): showing "
                             f"what was last recorded with the key {key!r}, which holds other bytes\n")
        return by_key
    # a file inside a recorded folder (a Snakemake directory() output): that folder
    parent = Path(key).parent
    while str(parent) not in (".", "/", ""):
        folder = artifacts.filter(key=parent.as_posix(), n_files__isnull=False).order_by("-id").first()
        if folder is not None:
            sys.stderr.write(f"note: {key!r} is inside the recorded folder {folder.key!r}\n")
            return folder
        parent = parent.parent
    return None


def list_runs(status: str | None = None, transform: str | None = None, reference_type: str | None = None,
              limit: int | None = 20, instance: Instance | None = None) -> list[dict[str, Any]]:
    """Newest runs first, as plain dicts (one shape for tables and for --json)."""
    from .models import Run

    qs = Run.connect(instance)
    if status:
        qs = qs.filter(status=status)
    if transform:
        qs = qs.filter(transform__key=transform)
    if reference_type:
        qs = qs.filter(reference_type=reference_type)
    rows = []
    for run in qs.order_by("-started_at", "-id")[: limit or None]:
        t = run.transform
        duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
        rows.append({
            "uid": run.uid, "status": run.status, "transform": t.key if t else None, "kind": t.kind if t else None,
            "name": run.name, "started_at": run.started_at.isoformat() if run.started_at else None,
            "duration_s": round(duration, 3) if duration is not None else None,
            "reference_type": run.reference_type, "reference": run.reference,
            "initiated_by_run": run.initiated_by_run.uid if run.initiated_by_run_id else None,
        })
    return rows


def run_error(run: Any) -> str | None:
    """Why a run did not complete: the engine adapters' error text (`_aux.error`), else the
    reason its end was recorded with (`_aux.end_reason`: a script's exception, exit code or
    signal, a reaped run)."""
    aux = run._aux if isinstance(run._aux, dict) else {}
    error = aux.get("error")
    if not error and run.status != "completed":
        error = aux.get("end_reason")
    return str(error) if error else None
