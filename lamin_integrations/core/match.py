"""Which registered artifact a file being saved is, among the rows with its hash.

One rule for every writer: `artifacts.save_artifacts` and the SQLAlchemy-free run report
and environment of `core/fasttrack.py` must pick the same row, or the two paths would
register the same file twice.
"""

from __future__ import annotations

from typing import Any

# A pipeline input this small ("4", "ok", a header line) is no fingerprint: the same few
# bytes written by an unrelated run elsewhere would make that run its producer.
DISTINCT_BYTES = 64


def existing_match(d: dict[str, Any], rows: list[Any]) -> Any:
    """The existing artifact this content is: same place for in-place files, else same hash."""
    tiny = d.get("n_files") == 0 or d.get("n_files") is None and (
        d.get("size") == 0 or d.get("_small_by_location") and (d.get("size") or 0) < DISTINCT_BYTES)
    if not rows or tiny:
        # Empty files and empty folders all share one hash (and tiny inputs may by chance):
        # identify them by location instead.
        return next((r for r in rows if r["key"] == d.get("key") and r["storage_id"] == d.get("storage_id")), None) if rows else None
    if d.get("_key_is_virtual") is False or d.get("_same_key_only"):
        # In-place files, and pipeline outputs: a file at another path is another artifact,
        # even with the same bytes (two jobs writing "ok" to their own logs).
        return next((r for r in rows if r["key"] == d.get("key") and r["storage_id"] == d.get("storage_id")), None)
    same_key = [r for r in rows if r["key"] == d.get("key")]
    return (same_key or [r for r in rows if r["_key_is_virtual"]] or [None])[0]
