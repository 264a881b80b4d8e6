"""Library functions behind the CLI's `info`, `runs` and `show` (usable from Python alone)."""

from __future__ import annotations

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
    """The one record of any registry whose uid is `uid` or starts with it."""
    from . import models

    if not uid or not isinstance(uid, str):
        raise ValidationError("give a uid or uid prefix")
    matches = []
    for name in UID_REGISTRIES:
        model = getattr(models, name)
        matches += model.connect(instance).filter(uid__startswith=uid)[:2].to_list()
    if not matches:
        raise ObjectDoesNotExist(f"no record has a uid starting with {uid!r}")
    if len(matches) > 1:
        found = ", ".join(f"{type(m).__name__}({m.uid})" for m in matches[:5])
        raise MultipleResultsFound(f"uid prefix {uid!r} is ambiguous: {found}; give more characters")
    return matches[0]


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
