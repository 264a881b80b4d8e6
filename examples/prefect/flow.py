"""A small Prefect pipeline recorded by lamin-integrations.

The only change from a plain Prefect flow is the import line. The flow writes a CSV of
measurements (standing in for raw data), cleans it, summarises each group in parallel
(`.map`), and a cached task writes the report. Every flow run, task run, input file and
output file lands in the registry named by LAMIN_INTEGRATIONS_DB / _STORAGE (or the
default one).

    python examples/prefect/flow.py [workdir]
    lamin-integrations runs --reference-type prefect_task_run
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import pandas as pd  # noqa: E402
from prefect import unmapped  # noqa: E402
from prefect.cache_policies import INPUTS  # noqa: E402

import lamin_integrations as ln  # noqa: E402
from lamin_integrations.prefect import flow, task  # noqa: E402  (instead of: from prefect import flow, task)


@task
def clean(raw: Path, out_dir: Path) -> Path:
    """Drop failed measurements; the raw file is linked as this run's input."""
    table = pd.read_csv(raw)
    table = table[table["value"].notna() & (table["qc"] == "pass")]
    out = out_dir / "clean.csv"
    table.to_csv(out, index=False)
    return out  # a returned path: registered as this run's output


@task
def summarise(clean_csv: Path, group: str, out_dir: Path) -> str:
    table = pd.read_csv(clean_csv)
    rows = table[table["group"] == group]
    out = out_dir / f"summary_{group}.json"
    out.write_text(json.dumps({"group": group, "n": len(rows), "mean": round(float(rows["value"].mean()), 4)}))
    return str(out)


@task(cache_policy=INPUTS, persist_result=True)
def report(summaries: list[str], out_dir: Path) -> Path:
    """Cached on its inputs: a second run of the flow is a cache hit, recorded as such."""
    lines = ["group\tn\tmean"]
    for path in summaries:
        s = json.loads(Path(path).read_text())
        lines.append(f"{s['group']}\t{s['n']}\t{s['mean']}")
    out = out_dir / "report.tsv"
    out.write_text("\n".join(lines) + "\n")
    # anything saved inside a task body belongs to that task's run
    ln.Artifact(out, key="example/prefect/report.tsv", description="per-group report").save()
    return out


@flow(name="measurements")
def measurements(raw: Path, out_dir: Path, groups: list[str]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    cleaned = clean(raw, out_dir)
    summaries = summarise.map(unmapped(cleaned), groups, out_dir=unmapped(out_dir)).result()
    return report(summaries, out_dir)


def write_raw(folder: Path) -> Path:
    raw = folder / "raw" / "measurements.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"sample": f"s{i}", "group": "abc"[i % 3], "value": (i * 7 % 11) / 3 if i % 5 else None,
             "qc": "fail" if i % 13 == 0 else "pass"} for i in range(60)]
    pd.DataFrame(rows).to_csv(raw, index=False)
    return raw


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    os.chdir(folder)
    raw = write_raw(folder)
    result = measurements(raw, folder / "results", ["a", "b", "c"])
    flow_run = ln.Run.filter(reference_type="prefect_flow_run", transform__key="measurements").order_by("-id").first()
    steps = ln.Run.filter(initiated_by_run=flow_run).order_by("id")
    print(f"flow run {flow_run.uid} ({flow_run.status}) wrote {Path(result).name}; task runs:")
    for run in steps:
        facts = run.params.get("prefect", {})
        print(f"  {run.transform.key:<24} {run.status:<10} cached={facts.get('cached')} map_index={facts.get('map_index')}"
              f" outputs={[a.key for a in run.query_output_artifacts()]}")
