"""Registry figures: import time, bulk-inserting 10,000 runs with parents, and queries over them.

Run: .venv/bin/python benchmarks/bench_registry.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Row, emit, median_time

N_PARENTS, N_CHILDREN = 100, 10_000


def import_times(repeat: int = 9) -> list[Row]:
    def spawn(code: str) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    base = spawn("pass")
    plain = spawn("import lamin_integrations")
    first_use = spawn("import lamin_integrations as ln; ln.Run")
    return [
        Row("import lamin_integrations", plain * 1000, "ms", base * 1000, "python -c pass", "ratio <= 1.5", plain / base <= 1.5),
        Row("import + first use (ln.Run: SQLAlchemy)", first_use * 1000, "ms", base * 1000, "python -c pass", "informational"),
    ]


def registry_rows(tmp: Path) -> list[Row]:
    os.environ["LAMIN_INTEGRATIONS_HOME"] = str(tmp / "home")
    import lamin_integrations as ln

    ln.connect(f"sqlite:///{tmp / 'lineage.db'}", str(tmp / "storage"))
    transform = ln.Transform(key="k", kind="pipeline").save()
    parents = ln.save([ln.Run(transform, name=f"p{i}") for i in range(N_PARENTS)])
    children = [ln.Run(transform, name=f"c{i}", params={"idx": i, "lr": 0.01}, initiated_by_run=parents[i % N_PARENTS], status="started")
                for i in range(N_CHILDREN)]
    start = time.perf_counter()
    ln.save(children)
    ours = time.perf_counter() - start

    # Baseline: the same rows with plain sqlite3 executemany into one table (WAL, one transaction).
    conn = sqlite3.connect(tmp / "baseline.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, uid TEXT UNIQUE, name TEXT, transform_id INTEGER, params TEXT, "
                 "initiated_by_run_id INTEGER, root_run_id INTEGER, started_at TEXT, created_at TEXT, status INTEGER)")
    conn.execute("CREATE INDEX ix_parent ON run (initiated_by_run_id)")
    rows = [(r.uid, r.name, 1, json.dumps(r.params), r.initiated_by_run_id, r.root_run_id, r.started_at.isoformat(),
             r.created_at.isoformat(), -1) for r in children]
    start = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO run (uid, name, transform_id, params, initiated_by_run_id, root_run_id, started_at, "
                         "created_at, status) VALUES (?,?,?,?,?,?,?,?,?)", rows)
    base = time.perf_counter() - start

    one_by_one = [ln.Run(transform, name=f"s{i}", initiated_by_run=parents[0]) for i in range(300)]
    start = time.perf_counter()
    for r in one_by_one:
        r.save()
    single = (time.perf_counter() - start) / len(one_by_one)

    parent = parents[7]
    queries = [
        ("Run.filter(initiated_by_run=p).count()", lambda: ln.Run.filter(initiated_by_run=parent).count(),
         "SELECT count(*) FROM run WHERE initiated_by_run_id = ?", (parent.id,)),
        ("Run.filter(params__idx__gt=5000).count()", lambda: ln.Run.filter(params__idx__gt=5000).count(),
         "SELECT count(*) FROM run WHERE json_extract(params, '$.idx') > ?", (5000,)),
        ("Run.filter(transform__key=, status=).to_list() (10k rows)",
         lambda: ln.Run.filter(transform__key="k", status="started").to_list(),
         "SELECT * FROM run WHERE transform_id = ? AND status = ?", (1, -1)),
    ]
    out = [
        Row(f"ln.save({N_CHILDREN:,} runs with parents)", ours * 1000, "ms", base * 1000, "sqlite3 executemany", "ratio <= 10", ours / base <= 10),
        Row("run.save() one by one, per run", single * 1000, "ms", None, "", "informational"),
    ]
    for label, ours_fn, sql, args in queries:
        t_ours = median_time(ours_fn, 7)
        t_base = median_time(lambda sql=sql, args=args: conn.execute(sql, args).fetchall(), 7)
        out.append(Row(label, t_ours * 1000, "ms", t_base * 1000, "raw sqlite3", "informational"))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = import_times() + registry_rows(Path(tmp))
    emit(rows)


if __name__ == "__main__":
    main()
