"""Run statuses and their codes (lamindb's `_status_code`), shared by the registry and core/fasttrack.py."""

from __future__ import annotations

from typing import Literal

STATUS_CODES: dict[str, int] = {
    "scheduled": -3, "restarted": -2, "started": -1, "completed": 0, "errored": 1, "aborted": 2,
}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
FINAL_STATUSES = ("completed", "errored", "aborted")
Status = Literal["scheduled", "restarted", "started", "completed", "errored", "aborted"]
