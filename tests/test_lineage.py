"""Lineage queries and views on lineage recorded by the real adapters, plus cycles and long chains.

The shared scenario (`record_workflow`): a Snakemake workflow (`--logger lamin`) whose
`script:` rule calls `ln.track()`, followed by a separately tracked script that reads the
workflow's summary from the registry and saves a report. Upstream of that report must reach
the workflow's raw inputs, across the two processes and the two ways of recording.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.errors import IntegrityError, ValidationError
from tests.conftest import _connected, python_env

CLI = str(Path(sys.executable).with_name("lamin-integrations"))

SNAKEFILE = textwrap.dedent("""
    SAMPLES = ["a", "b"]

    rule all:
        input: "results/summary.txt"

    rule count:
        input: "data/{s}.txt"
        output: "counts/{s}.txt"
        script: "scripts/count.py"

    rule summary:
        input: expand("counts/{s}.txt", s=SAMPLES)
        output: "results/summary.txt"
        shell: "cat {input} > {output}"
""")

COUNT = textwrap.dedent("""
    import lamin_integrations as ln
    ln.track()
    words = open(snakemake.input[0]).read().split()
    with open(snakemake.output[0], "w") as f:
        f.write(f"{snakemake.wildcards.s}\\t{len(words)}\\n")
    ln.finish()
""")

ANALYZE = textwrap.dedent("""
    import lamin_integrations as ln
    ln.track()
    summary = ln.Artifact.get(key="results/summary.txt")
    text = summary.cache().read_text()
    with open("report.txt", "w") as f:
        f.write(text.upper())
    ln.Artifact("report.txt", key="analysis/report.txt").save()
    ln.finish()
""")


def record_workflow(folder: Path, url: str, storage: Path, workflow_env: dict | None = None,
                    script_env: dict | None = None) -> None:
    """Snakemake with a tracked script: rule, then a tracked analysis script, into one registry."""
    wd = folder / "wf"
    (wd / "data").mkdir(parents=True)
    (wd / "scripts").mkdir()
    (wd / "data" / "a.txt").write_text("alpha beta gamma\n")
    (wd / "data" / "b.txt").write_text("delta\n")
    (wd / "Snakefile").write_text(SNAKEFILE)
    (wd / "scripts" / "count.py").write_text(COUNT)
    (folder / "analyze.py").write_text(ANALYZE)
    env = python_env(LAMIN_INTEGRATIONS_DB=url, LAMIN_INTEGRATIONS_STORAGE=str(storage),
                     LAMIN_INTEGRATIONS_HOME=str(folder / "home"),
                     PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for var in ("LAMIN_INTEGRATIONS_RUN_UID", "LAMIN_INITIATED_BY_RUN_UID"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], cwd=wd,
                          capture_output=True, text=True, env={**env, **(workflow_env or {})}, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, str(folder / "analyze.py")], cwd=folder, capture_output=True, text=True,
                          env={**env, **(script_env or {})}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(f"lineage_{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'lineage.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    record_workflow(folder, url, folder / "storage")
    return url, folder / "storage"


@pytest.fixture
def scenario(recorded: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    url, storage = recorded
    for instance in _connected(url, storage, monkeypatch):
        [wf] = ln.Run.filter(reference_type="snakemake_id").to_list()
        jobs = {r.name: r for r in ln.Run.filter(initiated_by_run=wf, reference_type="snakemake_job")}
        yield {
            "wf": wf, "jobs": jobs,
            "report": ln.Artifact.get(key="analysis/report.txt"),
            "summary": ln.Artifact.get(key="results/summary.txt"),
            "analyze": ln.Run.get(transform__key="analyze.py"),
            "data": {s: ln.Artifact.get(key=f"data/{s}.txt") for s in "ab"},
            "counts": {s: ln.Artifact.get(key=f"counts/{s}.txt") for s in "ab"},
            "tracked": {r.initiated_by_run.name: r for r in ln.Run.filter(transform__key="count.py")},
            "instance": instance,
        }


def uids(records) -> set[str]:
    return {r.uid for r in records}


def test_upstream_of_a_report_reaches_the_workflow_inputs_across_processes(scenario):
    s = scenario
    graph = ln.lineage.upstream(s["report"])
    expected = {s["report"], s["analyze"], s["summary"], s["jobs"]["summary"], *s["counts"].values(),
                s["jobs"]["count[s=a]"], s["jobs"]["count[s=b]"], *s["data"].values(), s["wf"]}
    assert uids(graph) == uids(expected)
    assert not uids(graph) & uids(s["tracked"].values())  # children that produced nothing are not upstream
    depth = {r.uid: graph.depth_of(r) for r in graph}
    assert depth[s["report"].uid] == 0 and depth[s["analyze"].uid] == 1 and depth[s["summary"].uid] == 2
    assert depth[s["jobs"]["summary"].uid] == 3 and depth[s["data"]["a"].uid] == 6
    assert depth[s["wf"].uid] == 4  # the workflow run initiated the summary job
    assert [r.uid for r in graph][:2] == [s["report"].uid, s["analyze"].uid]  # nearest first
    kinds = {(a.uid, b.uid, k) for a, b, k in graph.edges}
    assert (s["summary"].uid, s["analyze"].uid, "used") in kinds
    assert (s["jobs"]["summary"].uid, s["summary"].uid, "generated") in kinds
    assert (s["wf"].uid, s["jobs"]["count[s=a]"].uid, "initiated") in kinds
    df = graph.to_dataframe()
    assert len(df) == len(expected) and set(df["type"]) == {"run", "artifact"}
    assert df.loc[s["summary"].uid, "depth"] == 2 and df.loc[s["analyze"].uid, "status"] == "completed"


def test_downstream_of_one_input_follows_only_its_branch(scenario):
    s = scenario
    graph = ln.lineage.downstream(s["data"]["a"])
    expected = {s["data"]["a"], s["jobs"]["count[s=a]"], s["tracked"]["count[s=a]"], s["counts"]["a"],
                s["jobs"]["summary"], s["summary"], s["jobs"]["all"], s["analyze"], s["report"]}
    assert uids(graph) == uids(expected)
    assert s["counts"]["b"] not in graph and s["wf"] not in graph


def test_depth_bound_and_initiated_by_switch(scenario):
    s = scenario
    assert uids(ln.lineage.upstream(s["report"], depth=2)) == uids([s["report"], s["analyze"], s["summary"]])
    assert uids(ln.lineage.upstream(s["report"], depth=0)) == {s["report"].uid}
    without_chain = ln.lineage.upstream(s["report"], follow_initiated_by=False)
    assert s["wf"] not in without_chain and s["data"]["b"] in without_chain
    # A run: upstream are its inputs and the run that initiated it; downstream its children and outputs.
    up = ln.lineage.upstream(s["jobs"]["count[s=a]"], depth=1)
    assert uids(up) == uids([s["jobs"]["count[s=a]"], s["data"]["a"], s["wf"]])
    down = ln.lineage.downstream(s["wf"], depth=1)
    assert uids(down) == uids([s["wf"], *s["jobs"].values()])
    with pytest.raises(ValidationError):
        ln.lineage.upstream(s["report"], depth=-1)
    with pytest.raises(ValidationError):
        ln.lineage.upstream(s["wf"].transform)


def test_view_lineage_renders_as_text_and_graph_formats(scenario):
    s = scenario
    view = s["counts"]["a"].view_lineage()
    text = str(view)
    assert text.splitlines()[0].startswith("artifact counts/a.txt")
    assert "upstream:" in text and "downstream:" in text
    assert "generated by run wf/Snakefile:count (count[s=a])" in text and "used artifact data/a.txt" in text
    assert "used by run wf/Snakefile:summary" in text
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"] == text
    dot = view.to_dot()
    assert dot.startswith("digraph lineage") and dot.count("->") == len(view.data.edges)
    assert view.to_mermaid().startswith("flowchart LR")
    if os.environ.get("CI") or __import__("shutil").which("dot"):
        svg = view.to_svg()
        assert "<svg" in svg and "counts/a.txt" in svg and "image/svg+xml" in bundle
    data = json.loads(view.to_json())
    assert {n["uid"] for n in data["nodes"]} == uids(view)
    run_view = s["analyze"].view_lineage(direction="upstream", depth=1)
    assert uids(run_view) == uids([s["analyze"], s["summary"]])
    upstream_only = s["counts"]["a"].view_lineage(with_children=False, return_graph=True)  # lamindb's arguments
    assert "generated by run wf/Snakefile:count" in str(upstream_only) and "used by run" not in str(upstream_only)
    assert uids(upstream_only) < uids(view)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=python_env(), timeout=120)


def test_lineage_command_prints_a_tree_and_machine_formats(scenario):
    s = scenario
    proc = cli("lineage", s["report"].uid[:10])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("artifact analysis/report.txt")
    assert "generated by run analyze.py" in proc.stdout and "data/b.txt" in proc.stdout
    proc = cli("lineage", s["data"]["a"].uid, "--downstream", "--depth", "2", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {n["uid"] for n in data["nodes"]} == uids([s["data"]["a"], s["jobs"]["count[s=a]"], s["tracked"]["count[s=a]"],
                                                      s["counts"]["a"]])
    assert data["direction"] == "downstream" and data["depth"] == 2
    proc = cli("lineage", s["data"]["a"].uid)  # a raw input: nothing upstream, and the way to what used it said
    assert proc.returncode == 0 and "(no lineage recorded)" in proc.stdout and "see --downstream" in proc.stderr
    assert "see --downstream" not in cli("lineage", s["report"].uid).stderr
    for fmt, marker in (("dot", "digraph lineage"), ("mermaid", "flowchart LR"), ("svg", "<svg")):
        proc = cli("lineage", s["wf"].uid, "--downstream", "--format", fmt)
        if fmt == "svg" and proc.returncode != 0 and "graphviz" in proc.stderr and not os.environ.get("CI"):
            continue
        assert proc.returncode == 0 and marker in proc.stdout, proc.stderr
    for args, message in ((("lineage", "zzzzzzzz"), "no record"), (("lineage", s["wf"].transform.uid), "Transform")):
        proc = cli(*args)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_walk_is_one_query_whatever_its_length(registry):
    transform = ln.Transform(key="chain", kind="pipeline").save()
    previous = None
    for i in range(60):
        run = ln.Run(transform, name=f"s{i}").save()
        if previous is not None:
            run.input_artifacts.add(previous)
        previous = ln.Artifact(key=f"chain/{i}.txt", run=run).save()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        statements.append(statement)

    engine = registry.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        graph = ln.lineage.upstream(previous)
        short = len(statements)
        statements.clear()
        ln.lineage.upstream(previous, depth=3)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(graph) == 120 and graph.depth_of(graph.runs[-1]) == 119
    assert sum("RECURSIVE" in s for s in statements) == 1
    assert short <= 8  # one walk, then a fixed number of loads, not one per hop
    text = graph.to_text()
    assert len(text.splitlines()) == 120 and "chain (s0)" in text.splitlines()[-1]


def test_cycles_cannot_be_created_through_the_api(registry):
    transform = ln.Transform(key="t", kind="pipeline").save()
    maker, other = ln.Run(transform).save(), ln.Run(transform).save()
    made = ln.Artifact(key="made.txt", run=maker).save()
    recreated = ln.Artifact(key="recreated.txt", run=other).save()
    maker.recreated_artifacts.add(recreated)
    for attempt in (lambda: maker.input_artifacts.add(made), lambda: made.input_of_runs.add(maker),
                    lambda: maker.input_artifacts.set([made]), lambda: maker.input_artifacts.add(recreated)):
        with pytest.raises(IntegrityError, match="cycle"):
            attempt()
    assert maker.input_artifacts.count() == 0
    other.input_artifacts.add(made)  # another run may read it
    assert [a.uid for a in other.input_artifacts] == [made.uid]
    # cache()/load() inside the creating run never link it (the adapters' path): no error, no link
    from lamin_integrations.core.artifacts import track_input

    track_input(made, maker)
    assert maker.input_artifacts.count() == 0


def test_queries_terminate_on_cycles_in_old_data(registry):
    transform = ln.Transform(key="t", kind="pipeline").save()
    a_run, b_run = ln.Run(transform, name="a").save(), ln.Run(transform, name="b").save()
    x = ln.Artifact(key="x.txt", run=a_run).save()
    y = ln.Artifact(key="y.txt", run=b_run).save()
    b_run.input_artifacts.add(x)
    a_run.input_artifacts.add(y)  # a loop over two runs: allowed to write, must not hang a query
    from lamin_integrations.core import schema
    from lamin_integrations.core.record import link

    # Old data written before cycles were refused: a run that used its own output.
    registry.write(lambda conn: link(conn, schema.run_input_artifact, [{"run_id": a_run.id, "artifact_id": x.id}]))
    for fn in (ln.lineage.upstream, ln.lineage.downstream):
        for depth in (None, 50):
            graph = fn(x, depth=depth)
            assert uids(graph) == uids([a_run, b_run, x, y])
    assert "(see above)" in str(x.view_lineage())


def test_trashed_records_are_left_out(registry):
    transform = ln.Transform(key="t", kind="pipeline").save()
    first, second = ln.Run(transform).save(), ln.Run(transform).save()
    middle = ln.Artifact(key="middle.txt", run=first).save()
    second.input_artifacts.add(middle)
    end = ln.Artifact(key="end.txt", run=second).save()
    assert middle in ln.lineage.upstream(end)
    middle.delete()
    graph = ln.lineage.upstream(end)
    assert middle not in graph and uids(graph) >= {end.uid, second.uid}


def test_lineage_of_a_nextflow_ingest_joins_tasks_by_their_files(registry, tmp_path):
    from lamin_integrations.nextflow import ingest_trace
    from tests.test_nextflow import launch_dir, trace_of

    pipeline = ingest_trace(trace_of(launch_dir(tmp_path)), timezone_name="UTC")
    tasks = {r.params["task_id"]: r for r in ln.Run.filter(initiated_by_run=pipeline)}
    fastqc_a, fastqc_b, align_a, align_b_failed, align_b, multiqc = (tasks[str(i)] for i in range(1, 7))
    report = ln.Artifact.get(key=next(a.key for a in multiqc.output_artifacts if a.key.endswith("multiqc_report.html")))
    up = ln.lineage.upstream(report)
    assert {fastqc_a, fastqc_b, align_a, align_b, multiqc, pipeline} <= set(up.runs)
    assert align_b_failed not in up  # the failed attempt made nothing that was used
    assert {"data/a.fastq", "data/b.fastq", "data/ref.fa"} <= {a.key for a in up.artifacts}
    assert up.depth_of(multiqc) == 1 and up.depth_of(ln.Artifact.get(key="data/ref.fa")) == 4
    down = ln.lineage.downstream(ln.Artifact.get(key="data/b.fastq"), follow_initiated_by=False)
    assert {fastqc_b, align_b, multiqc} <= set(down.runs) and fastqc_a not in down and align_a not in down
    from lamin_integrations.lineage.export import export_run

    export_run(pipeline, "openlineage", tmp_path / "events.jsonl")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    terminal = {e["job"]["name"].rsplit(":", 1)[-1] + e["run"]["runId"]: e["eventType"] for e in events if e["eventType"] != "START"}
    assert sorted(terminal.values()).count("FAIL") == 1 and len(events) == 2 * len(tasks) + 2
    assert {e["job"]["facets"]["jobType"]["integration"] for e in events} == {"NEXTFLOW"}
