"""One table for every benchmark: figure, value, baseline measured in the same run, ratio, goal.

The machine is shared and noisy, so absolute times drift; a ratio against a baseline taken
in the same run is what the goals are about. Scripts print their rows; `--json` prints the
same rows for `run_all.py` to collect.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    goal: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.3f}" if abs(x) < 1000 else f"{x:,.0f}"


def render(rows: list[Row]) -> str:
    header = ["figure", "value", "baseline (same run)", "ratio", "goal", "met"]
    table = [header]
    for r in rows:
        base = f"{fmt(r.baseline)} {r.unit} ({r.baseline_label})" if r.baseline is not None else "-"
        met = "-" if r.ok is None else ("yes" if r.ok else "NO")
        table.append([r.figure, f"{fmt(r.value)} {r.unit}", base, fmt(r.ratio), r.goal, met])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(rows: list[Row]) -> None:
    if "--json" in sys.argv:
        print(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows]))
    else:
        print(render(rows))
