"""Exports (PROV, Provenance Run Crate, OpenLineage) and the live OpenLineage emitter.

Everything runs on lineage recorded by the real adapters: the Snakemake workflow with a
tracked `script:` rule, then a tracked analysis script (see test_lineage.record_workflow).
The live emitter is switched on through its entry point and environment variable in those
real processes: the Snakemake worker writes to a file transport, the analysis script POSTs
to an HTTP receiver on loopback.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import lamin_integrations as ln
from lamin_integrations.lineage import run_graph
from tests.conftest import _connected, python_env
from tests.test_lineage import record_workflow

pytest.importorskip("prov")
pytest.importorskip("rocrate")
pytest.importorskip("openlineage.client")

CLI = str(Path(sys.executable).with_name("lamin-integrations"))


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append({"path": self.path, "event": json.loads(self.rfile.read(length))})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("export")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    events_file = folder / "events.jsonl"
    try:
        record_workflow(folder, f"sqlite:///{folder / 'lineage.db'}", folder / "storage",
                        workflow_env={"LAMIN_INTEGRATIONS_OPENLINEAGE": f"file:{events_file}"},
                        script_env={"LAMIN_INTEGRATIONS_OPENLINEAGE": f"http://127.0.0.1:{server.server_port}/api/v1/lineage"})
    finally:
        server.shutdown()
        server.server_close()
    yield {"url": f"sqlite:///{folder / 'lineage.db'}", "storage": folder / "storage", "events_file": events_file,
           "posted": list(_Receiver.bodies)}


@pytest.fixture
def wf(recorded: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[ln.Run]:
    for _ in _connected(recorded["url"], recorded["storage"], monkeypatch):
        yield ln.Run.get(reference_type="snakemake_id")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=python_env(), timeout=120)


def test_prov_json_reads_back_with_the_same_counts(wf, tmp_path):
    from prov.model import (
        ProvActivity,
        ProvAgent,
        ProvAssociation,
        ProvCommunication,
        ProvDocument,
        ProvEntity,
        ProvGeneration,
        ProvUsage,
    )

    tree = run_graph(wf).data
    edges = Counter(e.kind for e in tree.edges)
    proc = cli("export", wf.uid, "--format", "prov-json", "-o", str(tmp_path / "run.json"))
    assert proc.returncode == 0, proc.stderr
    doc = ProvDocument.deserialize(str(tmp_path / "run.json"), format="json")
    records = Counter(type(r) for r in doc.get_records())
    assert records[ProvActivity] == len(tree.runs) == 7  # workflow, 4 jobs (count x2, summary, all), 2 tracked scripts
    assert records[ProvEntity] == len(tree.artifacts) + len(tree.transforms)  # artifacts + transforms as plans
    assert records[ProvUsage] == edges["used"] > 0 and records[ProvGeneration] == edges["generated"] > 0
    assert records[ProvCommunication] == edges["initiated"] == 6
    assert records[ProvAssociation] == len(tree.runs) and records[ProvAgent] == 1
    summary = ln.Artifact.get(key="results/summary.txt")
    generation = [r for r in doc.get_records(ProvGeneration) if str(r.args[0]).endswith(summary.uid)]
    assert len(generation) == 1 and str(generation[0].args[1]).endswith(summary.run.uid)
    proc = cli("export", wf.uid, "--format", "prov-n", "-o", str(tmp_path / "run.provn"))
    text = (tmp_path / "run.provn").read_text()
    assert proc.returncode == 0 and text.startswith("document") and text.count("\n  used(") == edges["used"]


def test_ro_crate_loads_back_as_a_provenance_run_crate(wf, tmp_path):
    from rocrate.rocrate import ROCrate

    tree = run_graph(wf).data
    proc = cli("export", wf.uid[:8], "--format", "ro-crate", "-o", str(tmp_path / "crate"))
    assert proc.returncode == 0, proc.stderr
    crate = ROCrate(tmp_path / "crate")
    actions = [e for e in crate.get_entities() if e.type == "CreateAction"]
    assert len(actions) == len(tree.runs)
    main = crate.mainEntity
    assert "ComputationalWorkflow" in main.type and (tmp_path / "crate" / main.id).read_text() == wf.transform.source_code
    [workflow_action] = [a for a in actions if a["instrument"].id == main.id]
    assert workflow_action["identifier"] == wf.uid
    status = workflow_action["actionStatus"]
    assert getattr(status, "id", status) == "http://schema.org/CompletedActionStatus"
    inputs = sorted(f["alternateName"] for f in workflow_action["object"])
    assert inputs == ["data/a.txt", "data/b.txt"]
    assert "results/summary.txt" in {f["alternateName"] for f in workflow_action["result"]}
    summary_job = ln.Run.get(reference_type="snakemake_job", name="summary")
    [step] = [a for a in actions if a["identifier"] == summary_job.uid]
    assert sorted(f["alternateName"] for f in step["object"]) == ["counts/a.txt", "counts/b.txt"]
    for f in step["object"] + step["result"]:
        data = (tmp_path / "crate" / f.id).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and int(f["contentSize"]) == len(data)
    controls = [e for e in crate.get_entities() if e.type == "ControlAction"]
    assert len(controls) == len(tree.runs) - 1 and any(e.type == "OrganizeAction" for e in crate.get_entities())



def test_ro_crate_passes_the_profile_validator(wf, tmp_path):
    services = pytest.importorskip("rocrate_validator.services")
    import urllib.request

    from rocrate_validator import models

    try:  # the validator resolves the crate's JSON-LD context on w3id.org
        urllib.request.urlopen("https://w3id.org/ro/crate/1.1/context", timeout=5).close()
    except OSError as e:
        pytest.skip(f"roc-validator needs the RO-Crate context from w3id.org, unreachable here: {e}")
    proc = cli("export", wf.uid, "--format", "ro-crate", "-o", str(tmp_path / "crate"))
    assert proc.returncode == 0, proc.stderr
    settings = services.ValidationSettings(rocrate_uri=str(tmp_path / "crate"), profile_identifier="provenance-run-crate-0.5",
                                           requirement_severity=models.Severity.REQUIRED)
    result = services.validate(settings)
    assert result.passed(), [f"{i.check.identifier}: {i.message}" for i in result.get_issues()]


def _events_by_run(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e["run"]["runId"], []).append(e)
    return out


def test_openlineage_export_has_start_and_end_per_run_with_parent_and_root(wf, tmp_path):
    from lamin_integrations.lineage.openlineage import run_id

    proc = cli("export", wf.uid, "--format", "openlineage", "-o", str(tmp_path / "events.jsonl"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    tree = run_graph(wf).data
    by_run = _events_by_run(events)
    assert set(by_run) == {run_id(r) for r in tree.runs.values()}
    for items in by_run.values():
        assert [e["eventType"] for e in items] == ["START", "COMPLETE"]
    tracked = ln.Run.filter(transform__key="count.py").first()
    [start, end] = by_run[run_id(tracked)]
    parent = end["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == run_id(tracked.initiated_by_run) and parent["job"]["name"] == "wf/Snakefile:count"
    assert parent["root"]["run"]["runId"] == run_id(wf) and parent["root"]["job"]["name"] == "wf/Snakefile"
    assert "parent" not in by_run[run_id(wf)][0]["run"]["facets"]
    summary_job = ln.Run.get(reference_type="snakemake_job", name="summary")
    end = by_run[run_id(summary_job)][1]
    summary = ln.Artifact.get(key="results/summary.txt")
    assert [o["namespace"] for o in end["outputs"]] == ["file"] and end["outputs"][0]["name"] == str(summary.path)
    assert sorted(Path(i["name"]).name for i in end["inputs"]) == sorted(Path(str(a.path)).name for a in summary_job.input_artifacts)
    assert end["job"]["facets"]["jobType"]["integration"] == "SNAKEMAKE"


def test_live_emitter_writes_events_from_the_snakemake_worker_and_posts_from_a_script(wf, recorded):
    from lamin_integrations.lineage.openlineage import run_id

    events = [json.loads(line) for line in recorded["events_file"].read_text().splitlines()]
    by_run = _events_by_run(events)
    workflow_runs = [r for r in ln.Run.filter() if r.transform.key != "analyze.py"]
    assert set(by_run) == {run_id(r) for r in workflow_runs}
    for items in by_run.values():  # exactly one START and one terminal event per run
        assert [e["eventType"] for e in items] == ["START", "COMPLETE"], items
    count_job = ln.Run.get(reference_type="snakemake_job", name="count[s=a]")
    end = by_run[run_id(count_job)][1]
    assert end["run"]["facets"]["parent"]["root"]["run"]["runId"] == run_id(wf)
    assert [Path(o["name"]).name for o in end["outputs"]] == [Path(str(count_job.output_artifacts.one().path)).name]

    posted = recorded["posted"]
    analyze = ln.Run.get(transform__key="analyze.py")
    assert [p["event"]["eventType"] for p in posted] == ["START", "COMPLETE"]
    assert {p["path"] for p in posted} == {"/api/v1/lineage"}
    complete = posted[1]["event"]
    assert complete["run"]["runId"] == run_id(analyze) and complete["job"]["name"] == "analyze.py"
    summary = ln.Artifact.get(key="results/summary.txt")
    assert [i["name"] for i in complete["inputs"]] == [str(summary.path)]
    assert [o["name"] for o in complete["outputs"]] == [str(ln.Artifact.get(key="analysis/report.txt").path)]


def test_emitter_is_off_without_configuration(tmp_path):
    proc = subprocess.run([CLI, "plugins"], capture_output=True, text=True, timeout=60,
                          env=python_env(LAMIN_INTEGRATIONS_HOME=str(tmp_path)))
    assert proc.returncode == 0 and "openlineage (lamin-integrations): no hooks" in proc.stdout
    proc = subprocess.run([CLI, "plugins"], capture_output=True, text=True, timeout=60,
                          env=python_env(LAMIN_INTEGRATIONS_HOME=str(tmp_path), LAMIN_INTEGRATIONS_OPENLINEAGE="console"))
    assert "openlineage (lamin-integrations): run_finished, run_started" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", "import sys, lamin_integrations; ln = lamin_integrations; "
                           "print('openlineage' in sys.modules or 'lamin_integrations.lineage' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, env=python_env())
    assert proc.stdout.strip() == "False"


def test_export_errors_are_one_line(wf, tmp_path):
    artifact = ln.Artifact.get(key="results/summary.txt")
    proc = cli("export", artifact.uid, "--format", "prov-json", "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 1 and "not a run" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_pipeline_keyed_by_its_repository_url_has_a_workflow_file(registry, tmp_path):
    from rocrate.rocrate import ROCrate

    pipeline = ln.Transform(key="https://github.com/nf-demo/align", kind="pipeline", version="1.2").save()
    run = ln.Run(pipeline, name="happy_turing", reference="happy_turing", reference_type="nextflow_id").save()
    proc = cli("export", run.uid, "--format", "ro-crate", "-o", str(tmp_path / "crate"))
    assert proc.returncode == 0, proc.stderr
    main = ROCrate(tmp_path / "crate").mainEntity
    # was `https` (the key cut at its first colon), with a file of that name
    assert main.id == "main.nf" and main["name"] == pipeline.key
    assert (tmp_path / "crate" / "main.nf").is_file() and not (tmp_path / "crate" / "https").exists()


def test_a_folder_is_a_dataset_with_its_files_in_the_crate(registry, tmp_path):
    from rocrate.rocrate import ROCrate

    folder = tmp_path / "counts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a\n")
    (folder / "sub" / "b.txt").write_text("b\n")
    run = ln.Run(ln.Transform(key="make_counts.py", kind="script", source_code="print(1)\n").save()).save()
    made = ln.Artifact(folder, key="results/counts", run=run).save()
    proc = cli("export", run.uid, "--format", "ro-crate", "-o", str(tmp_path / "crate"))
    assert proc.returncode == 0, proc.stderr
    crate = ROCrate(tmp_path / "crate")
    [dataset] = [e for e in crate.get_entities() if e.get("identifier") == made.uid]
    assert dataset.type == "Dataset" and dataset.id == f"data/{made.uid}/counts/"
    assert (tmp_path / "crate" / dataset.id / "sub" / "b.txt").read_text() == "b\n"
    assert "file://" not in (tmp_path / "crate" / "ro-crate-metadata.json").read_text()
