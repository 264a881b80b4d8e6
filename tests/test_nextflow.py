"""Nextflow: trace / report / log / history / work-dir ingestion, the weblog receiver, nextflow-py.

Nextflow itself cannot run here; the fixtures in tests/data/nextflow are hand-written in
the real formats (see the engine notes): `run/` is one launch (launch dir with
`.nextflow.log`, `.nextflow/history`, `work/`, `results/pipeline_info/` trace + report),
`traces/` holds the trace variants, `weblog_*.jsonl` the events of two weblog versions.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import running_weblog

import lamin_integrations as ln
from lamin_integrations.cli import cli
from lamin_integrations.core.summary import find_record
from lamin_integrations.nextflow import ingest_trace
from lamin_integrations.nextflow.trace import TraceError, read_trace
from lamin_integrations.nextflow.weblog import Receiver, check_event

DATA = Path(__file__).parent / "data" / "nextflow"
TRACES = DATA / "traces"
STAMP = "2024-03-04_21-05-58"
UTC = dt.UTC


def launch_dir(tmp_path: Path, moved: bool = False) -> Path:
    """The sample launch under tmp_path, its absolute paths rewritten, with staged links and published results.

    `moved`: the launch folder as copied off the machine it ran on: its files and links still
    name /nf/launch, where it ran (the links dangle here)."""
    root = tmp_path / "launch"
    shutil.copytree(DATA / "run", root)
    ran_in = Path("/nf/launch") if moved else root
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and not moved:
            text = path.read_text()
            if "/nf/launch" in text:
                path.write_text(text.replace("/nf/launch", str(root)))
    work = root / "work"
    for run_file in work.glob("*/*/.command.run"):  # the links Nextflow leaves in each work dir
        from lamin_integrations.nextflow.workdir import staged_inputs

        for name, source in staged_inputs(str(run_file.parent)).items():
            (run_file.parent / name).symlink_to(source)
    results = root / "results"
    (results / "multiqc").mkdir()
    (results / "multiqc" / "multiqc_report.html").symlink_to(ran_in / "work" / "1b" / "2c3d4e5f60718293a4b5c6d7e8f9a0" / "multiqc_report.html")
    (results / "align").mkdir()
    shutil.copy(work / "5e" / "6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b" / "a.bam", results / "align" / "a.bam")
    return root


def trace_of(root: Path) -> Path:
    return root / "results" / "pipeline_info" / f"execution_trace_{STAMP}.txt"


def tasks_of(run) -> dict[str, ln.Run]:
    return {r.params["task_id"]: r for r in ln.Run.filter(initiated_by_run=run).order_by("id")}


# -- the parser ----------------------------------------------------------------------------------


def test_default_fields_are_normalised_to_ms_bytes_percent_and_utc():
    trace = read_trace(trace_of(DATA / "run"), tz=UTC)
    assert trace.columns[:3] == ["task_id", "hash", "native_id"]
    by_id = {t.fields["task_id"]: t.fields for t in trace.tasks}
    align_b = by_id["5"]
    assert align_b["realtime"] == (3600 + 3 * 60 + 2) * 1000  # "1h 3m 2s"
    assert align_b["pcpu"] == 2003.5  # "2003.5%" (over 100: many cores)
    assert align_b["peak_rss"] == round(1.5 * 1024**3)  # "1.5 GB", 1024-based
    assert by_id["1"]["wchar"] == 1016  # "1016 B"
    assert by_id["4"]["wchar"] == 0  # bare "0"
    assert by_id["1"]["realtime"] == 3500  # "3.5s"
    assert by_id["1"]["submit"] == dt.datetime(2024, 3, 4, 21, 6, 0, 112000, tzinfo=UTC)
    assert by_id["4"]["exit"] == 137 and by_id["4"]["status"] == "FAILED"
    assert by_id["6"]["process"] == "MULTIQC" and by_id["3"]["process"] == "ALIGN"


def test_timezone_option_turns_local_timestamps_into_utc():
    berlin = read_trace(trace_of(DATA / "run"), tz=__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert berlin.tasks[0].fields["submit"] == dt.datetime(2024, 3, 4, 20, 6, 0, 112000, tzinfo=UTC)


def test_raw_mode_gives_the_same_values_as_the_human_format():
    human = {t.fields["task_id"]: t.fields for t in read_trace(trace_of(DATA / "run"), tz=UTC).tasks}
    raw = {t.fields["task_id"]: t.fields for t in read_trace(TRACES / "raw.txt", tz=UTC).tasks}
    for task_id, fields in raw.items():
        assert fields["submit"] == human[task_id]["submit"]
        assert fields["realtime"] == pytest.approx(human[task_id]["realtime"], abs=500)  # human rounds
        assert fields["peak_rss"] == pytest.approx(human[task_id]["peak_rss"], rel=0.01)
    assert raw["3"]["memory"] == 6 * 1024**3 and raw["3"]["time"] == 4 * 3600_000 and raw["3"]["cpus"] == 8
    assert raw["3"]["workdir"].endswith("/work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b")


def test_custom_fields_without_hash_keep_unknown_columns_and_the_separator_is_detected():
    trace = read_trace(TRACES / "custom_nohash.txt", tz=UTC)
    assert trace.sep == ","
    first = trace.tasks[0].fields
    assert first["gpu_energy"] == "12.5 Wh"  # a column this parser does not know is kept as text
    assert first["accelerator"] == 0 and first["rss"] == 50 * 1024**2
    assert "hash" not in first and first["process"] == "FASTQC"


def test_the_pre_19_04_header_with_rss_and_vmem():
    trace = read_trace(TRACES / "old_header.txt", tz=UTC)
    assert "rss" in trace.columns and "peak_rss" not in trace.columns
    assert trace.tasks[2].fields["rss"] == round(1004.8 * 1024**2)


@pytest.mark.parametrize(("name", "message"), [
    ("not_a_trace.txt", ":1: not a Nextflow trace file"),
    ("truncated.txt", ":5: the last line is truncated"),
    ("no_final_newline.txt", ":5: the last line is incomplete (no newline at its end)"),  # wchar `10` of `1016 B`
    ("huge_duration.txt", ":3: field duration: '9999999999d' is out of range"),  # was: OverflowError, no line
    ("far_future_submit.txt", ":4: field submit: '9999-12-31 23:59:59.000' is out of range"),
    ("wrong_separator.txt", ":4: 1 field where the header has 14: wrong separator?"),
    ("multiline_script.txt", ":3: 1 fields where the header has 6: a multi-line script"),
    ("duplicate_task_id.txt", ":4: task_id 2 again (first on line 3)"),
    ("impossible_unit.txt", ":3: field peak_rss: expected a size such as '1004.8 MB'"),
])
def test_bad_input_is_one_clear_message_with_the_line_number_and_nothing_is_written(name, message, registry):
    with pytest.raises(TraceError) as e:
        ingest_trace(TRACES / name, discover_files=False, run_name="bad_input", timezone_name="UTC")
    assert message in str(e.value)
    assert ln.Run.filter().count() == 0 and ln.Transform.filter().count() == 0
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(TRACES / name), "--no-discover", "--run-name", "x"])
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1
    assert ln.Run.filter().count() == 0


# -- ingest: runs --------------------------------------------------------------------------------


def test_ingest_with_discovered_report_log_history_work_dir_and_outdir(registry, tmp_path):
    root = launch_dir(tmp_path)
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    # the pipeline run: names from the report / log, status from the report
    assert (run.name, run.reference, run.reference_type) == ("tender_turing", "tender_turing", "nextflow_id")
    assert run.status == "completed"
    assert run.transform.kind == "pipeline" and run.transform.key == "nf-demo/align"
    assert run.transform.version == "v1.2.0"
    assert run.params["session_id"] == "4e5a1f0c-2b7d-4c1e-9f3a-8d6b5c4a3e21"
    assert run.cli_args.startswith("nextflow run nf-demo/align -r v1.2.0")
    assert run.started_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 21, 5, 56, tzinfo=UTC)
    assert run.finished_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 22, 9, 21, tzinfo=UTC)
    # one child run per trace row (attempt), the report's extra fields merged in
    tasks = tasks_of(run)
    assert sorted(tasks) == ["1", "2", "3", "4", "5", "6"]
    failed, retry = tasks["4"], tasks["5"]
    assert failed.status == "errored" and failed._aux["exit"] == 137 and "RETRY" in failed._aux["error"]
    assert retry.status == "completed" and retry.params["attempt"] == 2 and retry.name == failed.name == "ALIGN (b)"
    assert retry.reference == "d4e5f60718293a4b5c6d7e8f9a0b1c2d" and retry.reference_type == "nextflow_task"
    assert retry.params["memory"] == 6 * 1024**3 and retry.params["hash"] == "d4/e5f607"
    assert "bwa mem" in retry.params["script"] and retry.params["env"].count("\n") == 2  # multi-line, from the report
    assert retry.started_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 21, 6, 7, 612000, tzinfo=UTC)
    assert retry.transform.key == "nf-demo/align:ALIGN" and retry.transform.kind == "step"
    # files: staged inputs and produced outputs link the tasks
    fastqc_a, align_a, multiqc = tasks["1"], tasks["3"], tasks["6"]
    out = fastqc_a.output_artifacts.one()
    assert out.key == "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt"
    assert multiqc in out.input_of_runs.to_list()
    assert {a.key for a in multiqc.input_artifacts} == {
        "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt", "work/7c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5/b_fastqc.txt",
        "work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/a.bam", "work/d4/e5f60718293a4b5c6d7e8f9a0b1c2d/b.bam"}
    assert {a.key for a in align_a.input_artifacts} == {"data/a.fastq", "data/ref.fa"}  # `ln -sfn` staging
    assert {a.key for a in retry.input_artifacts} == {"data/b.fastq", "data/ref.fa"}  # `cp -fRL` with quotes
    assert tasks["4"].output_artifacts.count() == 0
    # published results: outputs of the pipeline run, traced to their task
    published = {a.key: a for a in run.output_artifacts}
    assert set(published) == {"results/multiqc/multiqc_report.html", "results/align/a.bam"}
    assert published["results/multiqc/multiqc_report.html"]._aux["published_from"]["run"] == multiqc.uid
    assert published["results/align/a.bam"]._aux["published_from"] == {
        "run": align_a.uid, "artifact": align_a.output_artifacts.one().uid,
        "path": str(root / "work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/a.bam"), "how": "content hash"}
    # ... so lineage from a published file, found by its path, reaches the task and the task's inputs
    bam = root / "results/align/a.bam"
    assert find_record(str(bam)) == published["results/align/a.bam"]
    upstream = ln.lineage.upstream(published["results/align/a.bam"])
    assert align_a in upstream.runs and {"data/a.fastq", "data/ref.fa"} <= {a.key for a in upstream.artifacts}
    assert published["results/align/a.bam"] in align_a.recreated_artifacts.to_list()
    assert f"published from task run: {align_a.uid}" in find_record(str(bam)).describe(return_str=True)
    result = CliRunner().invoke(cli, ["lineage", os.path.relpath(bam)])
    assert result.exit_code == 0, result.output
    assert f"recreated by run nf-demo/align:ALIGN (ALIGN (a)) [{align_a.uid}" in result.output


def test_files_the_parameters_name_that_no_task_read_are_inputs_of_the_pipeline_run(registry, tmp_path):
    """nf-core pipelines read their samplesheet in the main process: no task stages it, yet every
    result comes from it. A named file a task read stays that task's input only (linked to the
    pipeline run too, every result would be downstream of one sample's reads). The execution
    report is the run's report, as nf-lamin keeps it."""
    root = launch_dir(tmp_path)
    (root / "samples.csv").write_text("sample,fastq\na,data/a.fastq\nb,data/b.fastq\n")  # --input on the command line
    (root / "assets").mkdir()
    (root / "assets" / "mqc.yml").write_text("title: demo\n")
    (root / "assets" / "extra.tsv").write_text("x\t1\n")
    (root / "results" / "pipeline_info" / f"params_{STAMP}.json").write_text(json.dumps({
        "input": "samples.csv", "outdir": "results", "multiqc_config": "assets/mqc.yml",
        "nested": {"extra": [str(root / "assets" / "extra.tsv")]},
        "fasta": "data/ref.fa", "reads": "data/a.fastq",  # staged into tasks: theirs
        # not files of this machine's launch dir, folders, globs, the launch's own outputs
        "missing": "nope.txt", "glob": "data/*.fastq", "igenomes_base": "s3://ngi-igenomes/igenomes", "data_dir": "data",
        "in_work": "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt", "in_results": "results/align/a.bam",
        "hostile": "../" * 40 + "etc/nonexistent"}))
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    inputs = {a.key: a for a in run.input_artifacts}
    assert set(inputs) == {"samples.csv", "assets/mqc.yml", "assets/extra.tsv"}
    assert run.report.kind == "__lamindb_run__" and run.report.description.startswith("Nextflow execution report")
    report = root / "results" / "pipeline_info" / f"execution_report_{STAMP}.html"
    assert Path(run.report.cache()).read_bytes() == report.read_bytes()
    assert run.report not in run.output_artifacts.to_list()
    # a published result's lineage reaches the samplesheet, and only the reads it came from
    published = run.output_artifacts.get(key="results/align/a.bam")
    up = {a.key for a in ln.lineage.upstream(published).artifacts}
    assert {"samples.csv", "data/a.fastq", "data/ref.fa"} <= up and "data/b.fastq" not in up
    assert run not in ln.lineage.downstream(ln.Artifact.get(key="data/b.fastq"), follow_initiated_by=False).runs
    before = (ln.Artifact.filter(kind="__lamindb_run__").count(), ln.Artifact.filter().count(), run.input_artifacts.count())
    again = ingest_trace(trace_of(root), timezone_name="UTC")
    assert again.id == run.id and again.report_id == run.report_id
    assert (ln.Artifact.filter(kind="__lamindb_run__").count(), ln.Artifact.filter().count(),
            again.input_artifacts.count()) == before == (1, before[1], 3)


def test_a_launch_folder_moved_off_the_machine_it_ran_on_keeps_its_task_files(registry, tmp_path, caplog):
    # the log, the staging commands and the links name /nf/launch, where it ran; it is here now
    root = launch_dir(tmp_path, moved=True)
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    tasks = tasks_of(run)
    fastqc_a, align_a, multiqc = tasks["1"], tasks["3"], tasks["6"]
    # were: no task inputs or outputs at all (the work dirs the log names are not here)
    assert fastqc_a.output_artifacts.one().key == "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt"
    assert {a.key for a in align_a.input_artifacts} == {"data/a.fastq", "data/ref.fa"}
    assert {a.key for a in multiqc.input_artifacts} == {
        "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt", "work/7c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5/b_fastqc.txt",
        "work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/a.bam", "work/d4/e5f60718293a4b5c6d7e8f9a0b1c2d/b.bam"}
    assert fastqc_a.params["workdir"] == "/nf/launch/work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f"  # as Nextflow recorded it
    bam = run.output_artifacts.get(key="results/align/a.bam")
    assert bam._aux["published_from"]["run"] == align_a.uid and align_a in ln.lineage.upstream(bam).runs
    # a published link into where the launch ran dangles here: said, not recorded
    assert run.output_artifacts.filter(key="results/multiqc/multiqc_report.html").count() == 0
    assert "results/multiqc/multiqc_report.html -> /nf/launch/work/1b/" in caplog.text


def test_ingesting_twice_adds_nothing_and_a_grown_trace_adds_only_new_rows(registry, tmp_path):
    root = launch_dir(tmp_path)
    trace = trace_of(root)
    full = trace.read_text().splitlines(keepends=True)
    trace.write_text("".join(full[:4]))  # header + 3 rows, while the run is going
    first = ingest_trace(trace, timezone_name="UTC", run_name="tender_turing", report=None, discover_files=False)
    assert first.status == "completed"  # no report/log given: inferred from the rows
    assert len(tasks_of(first)) == 3
    counts = (ln.Run.filter().count(), ln.Artifact.filter().count(), ln.Transform.filter().count())
    again = ingest_trace(trace, timezone_name="UTC", run_name="tender_turing", discover_files=False)
    assert again.id == first.id and again.__dict__["_ingest_counts"] == {"new": 0, "updated": 0, "cached": 0}
    assert (ln.Run.filter().count(), ln.Artifact.filter().count(), ln.Transform.filter().count()) == counts
    trace.write_text("".join(full))
    grown = ingest_trace(trace, timezone_name="UTC")  # now with everything discovered
    assert grown.id == first.id and grown.__dict__["_ingest_counts"]["new"] == 3
    assert len(tasks_of(grown)) == 6 and ln.Run.filter().count() == 7
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--timezone", "UTC", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["uid"] == first.uid and data["tasks_new"] == 0 and data["sources"]["log"].endswith(".nextflow.log")
    assert ln.Run.filter().count() == 7


def test_every_status_and_an_inferred_outcome(registry):
    run = ingest_trace(TRACES / "statuses.txt", discover_files=False, run_name="stopped_run", timezone_name="UTC")
    tasks = tasks_of(run)
    # RUNNING / SUBMITTED rows are flushed when a launch stops: the launch took those tasks down
    assert {k: t.status for k, t in tasks.items()} == {
        "1": "completed", "2": "completed", "3": "completed", "4": "errored", "5": "aborted", "6": "aborted", "7": "aborted"}
    assert (tasks["6"].params["status_in_trace"], tasks["7"].params["status_in_trace"]) == ("RUNNING", "SUBMITTED")
    assert tasks["7"].finished_at == run.finished_at and tasks["5"].params.get("exit") is None
    assert run.status == "aborted" and run._aux["status_source"] == "inferred from the trace rows"
    running = ingest_trace(TRACES / "statuses.txt", discover_files=False, run_name="going_run", timezone_name="UTC", final=False)
    assert {k: t.status for k, t in tasks_of(running).items() if k in "67"} == {"6": "started", "7": "scheduled"}


def test_a_failure_the_launch_went_on_after_was_ignored_when_the_trace_has_no_error_action(registry, tmp_path):
    """nf-core's default fields have no error_action: after a failure that ends a launch Nextflow
    submits nothing new, so a task submitted after it means `errorStrategy 'ignore'`."""
    header = "task_id\thash\tnative_id\tname\tstatus\texit\tsubmit\tduration\trealtime\n"
    rows = ["1\t3f/a1b2c3\t1\tFASTQC (a)\tFAILED\t1\t2024-03-04 21:06:00.000\t2s\t1s\n",
            "2\t7c/0d1e2f\t2\tFASTQC (b)\tCOMPLETED\t0\t2024-03-04 21:06:00.500\t9s\t8s\n",
            "3\t5e/6f7a8b\t3\tMULTIQC\tCOMPLETED\t0\t2024-03-04 21:06:30.000\t5s\t4s\n"]
    for name, lines, expected in (("ignored", rows, "completed"), ("ended", rows[:2], "errored")):
        trace = tmp_path / f"{name}.txt"
        trace.write_text(header + "".join(lines))
        run = ingest_trace(trace, discover_files=False, run_name=name, timezone_name="UTC")
        assert (run.status, tasks_of(run)["1"].status) == (expected, "errored"), name


def test_cached_rows_point_at_the_run_that_produced_them(registry, tmp_path):
    root = launch_dir(tmp_path)
    original = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    resumed = ingest_trace(TRACES / "resumed.txt", discover_files=False, run_name="sad_darwin", timezone_name="UTC")
    tasks = tasks_of(resumed)
    assert list(tasks) == ["5"]  # only MULTIQC ran again; the cache hits are not new executions
    cached = resumed._aux["cached_tasks"]
    by_hash = {r.params["hash"]: r.uid for r in tasks_of(original).values()}
    assert cached == {"1": by_hash["3f/a1b2c3"], "2": by_hash["7c/0d1e2f"], "3": by_hash["5e/6f7a8b"], "4": by_hash["d4/e5f607"]}


def test_cached_rows_without_an_original_are_recorded_once_as_cached(registry):
    first = ingest_trace(TRACES / "resumed.txt", discover_files=False, run_name="sad_darwin", timezone_name="UTC")
    tasks = tasks_of(first)
    assert len(tasks) == 5
    assert tasks["1"].params["cached"] is True and tasks["1"]._aux["cached"] is True and tasks["1"].status == "completed"
    second = ingest_trace(TRACES / "resumed.txt", discover_files=False, run_name="eager_bose", timezone_name="UTC")
    assert set(second._aux["cached_tasks"]) == {"1", "2", "3", "4"}
    assert set(tasks_of(second)) == {"5"}


def test_an_original_ingested_after_its_resume_is_what_the_cached_rows_came_from(registry, tmp_path):
    root = launch_dir(tmp_path)
    resumed = ingest_trace(TRACES / "resumed.txt", discover_files=False, run_name="sad_darwin", timezone_name="UTC")
    placeholders = tasks_of(resumed)
    assert all("cached_from" not in (placeholders[t]._aux or {}) for t in "1234")
    original = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    by_hash = {r.params["hash"]: r.uid for r in tasks_of(original).values()}
    placeholders = tasks_of(resumed)  # reloaded
    assert {t: placeholders[t]._aux.get("cached_from") for t in "1234"} == {
        "1": by_hash["3f/a1b2c3"], "2": by_hash["7c/0d1e2f"], "3": by_hash["5e/6f7a8b"], "4": by_hash["d4/e5f607"]}
    assert "cached_from" not in (placeholders["5"]._aux or {})  # MULTIQC ran again in the resume
    # a third launch resuming from the same cache points at the executions, not at the cached copies
    third = ingest_trace(TRACES / "resumed.txt", discover_files=False, run_name="eager_bose", timezone_name="UTC")
    assert third._aux["cached_tasks"] == {t: placeholders[t]._aux["cached_from"] for t in "1234"}
    # ingesting the original again changes nothing
    again = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    assert again.__dict__["_ingest_counts"] == {"new": 0, "updated": 0, "cached": 0}


def test_history_and_log_alone_give_name_session_and_outcome(registry, tmp_path):
    root = launch_dir(tmp_path)
    run = ingest_trace(TRACES / "old_header.txt", log=root / ".nextflow.log", history=root / ".nextflow" / "history",
                       discover_files=False, timezone_name="UTC")
    assert run.name == "tender_turing" and run.status == "completed"
    assert run.params["session_id"] == "4e5a1f0c-2b7d-4c1e-9f3a-8d6b5c4a3e21"
    assert run.transform.key == "nf-demo/align" and run.transform.version == "v1.2.0"
    assert run.params["nextflow_version"] == "23.10.1"
    from lamin_integrations.nextflow.files import read_history

    history = read_history(root / ".nextflow" / "history", UTC)
    assert [h.status for h in history] == ["errored", "completed"]
    assert history[1].finished_at - history[1].started_at == dt.timedelta(hours=1, minutes=3, seconds=25)


@pytest.mark.parametrize(("command", "expected"), [
    ("nextflow run nf-core/rnaseq -r 3.14.0 -profile docker --outdir results", ("nf-core/rnaseq", "3.14.0")),
    ("nextflow run -profile test,docker -revision dev nf-core/sarek --input 'a b.csv'", ("nf-core/sarek", "dev")),
    ("nextflow -c my.config run -with-trace -resume main.nf", ("main.nf", None)),
    ("nextflow run -with-trace trace.txt main.nf", ("main.nf", None)),
    ("nextflow run -with-timeline main.nf", (None, None)),  # Nextflow too takes main.nf as the timeline file
    ("nextflow run -with-report -resume 4e5a1f0c-2b7d-4c1e-9f3a-8d6b5c4a3e21 main.nf --reads '*.fq'", ("main.nf", None)),
    ("nextflow run -w /scratch/work --skip_qc -bg main.nf", ("main.nf", None)),
    ("nextflow log", (None, None)),
])
def test_the_history_command_gives_the_pipeline_and_revision_as_nextflow_reads_them(command, expected):
    from lamin_integrations.nextflow.files import _run_command

    assert _run_command(command) == expected


def test_history_alone_gives_the_revision_of_the_command(registry, tmp_path):
    history = tmp_path / "history"
    history.write_text("2024-03-04 21:05:56\t1m 2s\tsick_curie\tOK\t1b8fe5b4e5\t4e5a1f0c-2b7d-4c1e-9f3a-8d6b5c4a3e21\t"
                       "nextflow run -profile docker nf-core/rnaseq -r 3.14.0 --outdir results\n")
    run = ingest_trace(TRACES / "old_header.txt", history=history, discover_files=False, timezone_name="UTC")
    assert run.name == "sick_curie"
    assert (run.transform.key, run.transform.version) == ("nf-core/rnaseq", "3.14.0")
    assert run.params["script_id"] == "1b8fe5b4e5"


def test_errored_and_aborted_launches_from_the_report_and_the_log(tmp_path):
    from lamin_integrations.nextflow.files import read_log, read_report

    report = (DATA / "run" / "results" / "pipeline_info" / f"execution_report_{STAMP}.html").read_text()
    failed = report.replace(
        '<div class="alert alert-success mb-4">\n  <h4 class="alert-heading">Workflow execution completed successfully!</h4>\n</div>',
        '<div class="alert alert-danger mb-4">\n  <h4 class="alert-heading">Workflow execution completed unsuccessfully!</h4>\n'
        '  <p>The exit status of the task that caused the workflow execution to fail was: <code>137</code>.</p>\n'
        '  <p>The full error message was:</p>\n  <pre class="card">Error executing process &gt; &#39;ALIGN (b)&#39;</pre>\n</div>')
    assert failed != report
    (tmp_path / "report.html").write_text(failed)
    launch, tasks = read_report(tmp_path / "report.html", UTC)
    assert (launch.status, launch.exit_status, launch.error) == ("errored", 137, "Error executing process > 'ALIGN (b)'")
    assert len(tasks) == 6 and launch.run_name == "tender_turing"
    # a task script that echoes "completed successfully" does not make the launch completed
    echoing = failed.replace("    bwa mem", '    echo \\"Workflow execution completed successfully!\\"; bwa mem', 1)
    assert echoing != failed
    (tmp_path / "echo.html").write_text(echoing)
    launch, tasks = read_report(tmp_path / "echo.html", UTC)
    assert launch.status == "errored" and any("completed successfully" in (t.fields.get("script") or "") for t in tasks)
    head = (DATA / "run" / ".nextflow.log").read_text().splitlines()[:8]
    (tmp_path / "errored.log").write_text("\n".join(head + [
        "Mar-04 21:06:09.400 [Task monitor] ERROR nextflow.processor.TaskProcessor - Error executing process > 'ALIGN (b)'",
        "Mar-04 21:06:09.500 [main] DEBUG nextflow.Session - Session aborted -- Cause: Process `ALIGN (b)` terminated with an error exit status (137)",
    ]) + "\n")
    (tmp_path / "aborted.log").write_text("\n".join(head + [
        "Mar-04 21:06:09.500 [SIGINT handler] DEBUG nextflow.Session - Session aborted -- Cause: SIGINT",
    ]) + "\n")
    (tmp_path / "running.log").write_text("\n".join(head) + "\n")
    assert read_log(tmp_path / "errored.log", UTC, 2024).status == "errored"
    aborted = read_log(tmp_path / "aborted.log", UTC, 2024)
    assert aborted.status == "aborted" and aborted.finished_at == dt.datetime(2024, 3, 4, 21, 6, 9, 500000, tzinfo=UTC)
    running = read_log(tmp_path / "running.log", UTC, 2024)
    assert running.status is None and running.run_name == "tender_turing" and running.work_dirs == {"1": "/nf/launch/work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f"}
    # grid executors (SLURM, LSF, PBS) log their handler with the job id and no ';' after the work dir
    (tmp_path / "grid.log").write_text("\n".join(head + [
        "Mar-04 21:06:19.100 [Task monitor] DEBUG n.processor.TaskPollingMonitor - Task completed > TaskHandler[jobId: 7443; "
        "id: 2; name: FASTQC (b); status: COMPLETED; exit: 0; error: -; workDir: /scratch/my work/7c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5 "
        "started: 1709586367625; exited: 2024-03-04T21:06:19.002Z; ]",
    ]) + "\n")
    assert read_log(tmp_path / "grid.log", UTC, 2024).work_dirs["2"] == "/scratch/my work/7c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5"
    with pytest.raises(TraceError, match="not a .nextflow.log"):
        read_log(TRACES / "raw.txt")


def test_params_file_and_explicit_options_win(registry, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"input": "samples.csv", "genome": "GRCh38"}))
    run = ingest_trace(TRACES / "custom_nohash.txt", discover_files=False, run_name="given_name", session_id="s-1",
                       pipeline="my/pipeline", revision="2.0", params=params, timezone_name="UTC")
    assert (run.name, run.transform.key, run.transform.version) == ("given_name", "my/pipeline", "2.0")
    assert run.params["params"] == {"input": "samples.csv", "genome": "GRCh38"} and run.params["session_id"] == "s-1"
    tasks = tasks_of(run)
    assert tasks["1"].reference is None and tasks["1"].params["gpu_energy"] == "12.5 Wh"  # no hash known


def test_a_failure_while_writing_records_nothing(registry, tmp_path):
    root = launch_dir(tmp_path)
    with pytest.raises(ln.errors.ValidationError):  # the pipeline transform is written before this fails
        ingest_trace(trace_of(root), timezone_name="UTC", params={"not json": object()})
    assert ln.Run.filter().count() == 0 and ln.Artifact.filter().count() == 0 and ln.Transform.filter().count() == 0


def registry_state(registry) -> tuple[dict[str, list[tuple]], set[str]]:
    """Every row of every table, and every file under the storage root."""
    import sqlalchemy as sa

    from lamin_integrations.core import schema

    with registry.read() as conn:
        tables = {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                  for t in schema.metadata.sorted_tables}
    root = Path(registry.storage_root)
    return tables, {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def _first_ingest_of_three_rows(root: Path) -> Path:
    trace = trace_of(root)
    full = trace.read_text()
    trace.write_text("".join(full.splitlines(keepends=True)[:4]))
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--work-dir", str(root / "work"),
                                      "--timezone", "UTC", "--run-name", "tender_turing", "--no-discover"])
    assert result.exit_code == 0, result.output
    trace.write_text(full)
    return trace


def test_ingest_with_files_of_a_broken_trace_fails_and_leaves_storage_and_tables_as_they_were(registry, tmp_path):
    root = launch_dir(tmp_path)
    trace = _first_ingest_of_three_rows(root)
    before = registry_state(registry)
    assert before[0]["artifact"] and before[1], "the first ingest stored files"
    trace.write_text(trace.read_text() + "7\tab/cdef01\t41500\tMULTIQC (2)\tCOMPLETED\n")  # a malformed last line
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--work-dir", str(root / "work"),
                                      "--outdir", str(root / "results"), "--timezone", "UTC"])
    assert result.exit_code == 1 and ":8: 5 fields where the header has 14" in result.output, result.output
    assert registry_state(registry) == before


def test_ingest_with_files_failing_midway_removes_the_files_it_had_copied(registry, tmp_path, monkeypatch):
    from lamin_integrations.core import storage

    root = launch_dir(tmp_path)
    trace = _first_ingest_of_three_rows(root)
    before = registry_state(registry)
    put = storage.put

    def disk_full_for_published(source, destination, is_dir):
        if source == str(root / "results" / "align" / "a.bam"):  # after the new tasks' files were copied
            raise OSError(28, "No space left on device")
        return put(source, destination, is_dir)

    monkeypatch.setattr(storage, "put", disk_full_for_published)
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--work-dir", str(root / "work"),
                                      "--outdir", str(root / "results"), "--timezone", "UTC"])
    assert result.exit_code == 1, result.output
    assert "could not store" in result.output and "No space left on device" in result.output
    assert registry_state(registry) == before, "no orphaned copies of the rolled-back rows"
    monkeypatch.setattr(storage, "put", put)
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--work-dir", str(root / "work"),
                                      "--outdir", str(root / "results"), "--timezone", "UTC"])
    assert result.exit_code == 0, result.output
    stored = registry_state(registry)[1]
    hidden = ln.Artifact.filter(kind="__lamindb_run__").count()  # the execution report, the run's report
    assert hidden == 1 and len(stored) == ln.Artifact.filter().count() + hidden > len(before[1]), "one copy per artifact"


# -- weblog ---------------------------------------------------------------------------------------


def _events(name: str) -> list[dict]:
    text = (DATA / name).read_text().replace("/nf/launch", "/tmp/nf-launch")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def server(registry):
    with running_weblog(max_body=64 * 1024) as srv:
        yield srv


def post(srv, body: bytes | dict, path: str = "/?token=s3cret", headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, payload


def test_serve_records_a_whole_run_posted_over_http_then_a_trace_ingest_merges(server, tmp_path):
    events = _events("weblog_23.jsonl")
    assert post(server, events[0])[0] == 200
    run = ln.Run.get(reference="tender_turing", reference_type="nextflow_id")
    assert run.status == "started" and run.params["params"]["genome"] == "ref.fa"
    for event in events[1:-1]:
        status, reply = post(server, event)
        assert status == 200, reply
    tasks = tasks_of(run)
    assert tasks["5"].status == "completed" and tasks["4"].status == "errored"
    assert tasks["5"].reference == "d4e5f60718293a4b5c6d7e8f9a0b1c2d" and tasks["5"].params["pcpu"] == 2003.5
    assert ln.Run.get(reference="tender_turing").status == "started"
    assert post(server, events[-1])[0] == 200
    run = ln.Run.get(reference="tender_turing", reference_type="nextflow_id")
    assert run.status == "completed" and run.params["stats"]["succeedCount"] == 5
    assert run.transform.key == "nf-demo/align" and run.transform.version == "v1.2.0"
    assert run.finished_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 22, 9, 21, tzinfo=UTC)
    # late or repeated events never move a task back
    assert post(server, events[1])[0] == 200
    assert tasks_of(run)["1"].status == "completed"
    assert ln.Run.filter().count() == 7
    # a later trace ingest of the same run completes the records instead of duplicating them
    root = launch_dir(tmp_path)
    merged = ingest_trace(trace_of(root), timezone_name="UTC")
    assert merged.id == run.id and ln.Run.filter().count() == 7
    assert merged.__dict__["_ingest_counts"]["new"] == 0
    tasks = tasks_of(merged)
    assert tasks["6"].input_artifacts.count() == 4  # the work dir's files, which the weblog does not carry
    assert tasks["6"]._aux["files_recorded"] is True
    counts = ln.Artifact.filter().count()
    ingest_trace(trace_of(root), timezone_name="UTC")
    assert ln.Artifact.filter().count() == counts


def test_a_bare_trace_of_a_launch_the_weblog_recorded_is_that_launch(server, tmp_path):
    """No report, log or name with the trace: its tasks' hashes name the launch they ran in."""
    for event in _events("weblog_23.jsonl"):
        assert post(server, event)[0] == 200
    run = ln.Run.get(reference="tender_turing", reference_type="nextflow_id")
    before = ln.Run.filter().count()
    merged = ingest_trace(trace_of(launch_dir(tmp_path)), discover_files=False, timezone_name="UTC")
    assert merged.id == run.id and ln.Run.filter().count() == before
    assert merged.status == "completed" and merged.transform.key == "nf-demo/align"


def test_serve_records_task_files_from_the_work_dir_the_run_reports(server, tmp_path):
    """No --work-dir: the `started` event names the work dir, readable on this machine."""
    root = launch_dir(tmp_path)
    text = (DATA / "weblog_23.jsonl").read_text().replace("/nf/launch", str(root))
    for event in [json.loads(line) for line in text.splitlines()]:
        status, reply = post(server, event)
        assert status == 200, reply
    tasks = tasks_of(ln.Run.get(reference="tender_turing", reference_type="nextflow_id"))
    out = tasks["1"].output_artifacts.one()
    assert out.key == "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt"
    assert tasks["6"] in out.input_of_runs.to_list() and tasks["6"].input_artifacts.count() == 4
    assert {a.key for a in tasks["3"].input_artifacts} == {"data/a.fastq", "data/ref.fa"}
    pipeline = ln.Run.get(reference="tender_turing", reference_type="nextflow_id")
    assert pipeline.input_artifacts.count() == 0  # its parameters name samples.csv and ref.fa, not there


def test_serve_without_files_or_an_unreadable_work_dir_records_runs_only(registry, tmp_path):
    root = launch_dir(tmp_path)
    text = (DATA / "weblog_23.jsonl").read_text()
    cases = [(text.replace("/nf/launch", str(root)), False), (text.replace("/nf/launch", str(tmp_path / "gone")), True)]
    for body, discover in cases:
        receiver = Receiver(discover=discover)
        for event in [json.loads(line) for line in body.splitlines()]:
            receiver.handle(check_event(json.dumps(event).encode()))
        assert ln.Run.get(reference="tender_turing", reference_type="nextflow_id").status == "completed"
        assert ln.Artifact.filter().count() == 0


def test_serve_old_weblog_payloads_with_params_and_an_error_event(server):
    for event in _events("weblog_19.jsonl"):
        status, reply = post(server, event)
        assert status == 200, reply
    run = ln.Run.get(reference="grave_curie", reference_type="nextflow_id")
    assert run.status == "errored" and run.params["params"] == {"reads": "data/*.fastq"}
    assert "ALIGN (b)" in run._aux["error"]
    assert {t.status for t in tasks_of(run).values()} == {"completed", "errored"}


def test_serve_rejects_bad_requests_with_4xx_and_keeps_serving(server):
    good = _events("weblog_23.jsonl")[0]
    assert post(server, good, path="/")[0] == 401
    assert post(server, good, path="/?token=wrong")[0] == 401
    assert post(server, good, path="/", headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert post(server, b"not json")[0] == 400
    assert post(server, b"[1, 2]")[0] == 400
    assert post(server, {**good, "event": "exploded"})[0] == 422
    assert post(server, {"event": "process_started", "runName": "x"})[0] == 422
    bad_trace = {**_events("weblog_23.jsonl")[1]}
    bad_trace["trace"] = {**bad_trace["trace"], "memory": "6 QB"}
    status, reply = post(server, bad_trace)
    assert status == 422 and "memory" in reply["message"]
    assert post(server, b"x" * (65 * 1024))[0] == 413
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.putrequest("POST", "/?token=s3cret")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    assert post(server, _events("weblog_23.jsonl")[1])[0] == 200  # still serving
    assert ln.Run.filter(reference_type="nextflow_task").count() == 1


def test_serve_command_binds_to_loopback_by_default(tmp_path):
    env = {**os.environ, "LAMIN_INTEGRATIONS_DB": f"sqlite:///{tmp_path / 'l.db'}",
           "LAMIN_INTEGRATIONS_STORAGE": str(tmp_path / "s")}
    proc = subprocess.Popen([sys.executable, "-m", "lamin_integrations.cli", "nextflow", "serve", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
    finally:
        proc.terminate()
        proc.wait(10)


# -- follow ---------------------------------------------------------------------------------------


def test_follow_records_rows_as_they_are_written_and_the_outcome_at_the_end(registry, tmp_path):
    from lamin_integrations.nextflow.ingest import follow_trace

    root = launch_dir(tmp_path)
    trace = trace_of(root)
    report = trace.with_name(f"execution_report_{STAMP}.html")
    report_text = report.read_text()
    report.unlink()  # written at the end of the run
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text(lines[0] + lines[1] + lines[2][:20])  # a row half written
    log = root / ".nextflow.log"
    log_lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(log_lines[:8]))
    seen: list[int] = []

    def grow(run):
        seen.append(len(tasks_of(run)))
        assert run.status == "started"
        if len(seen) == 1:
            trace.write_text("".join(lines[:4]))
        elif len(seen) == 2:
            trace.write_text("".join(lines))
            log.write_text("".join(log_lines))
            report.write_text(report_text)

    run = follow_trace(trace, poll_seconds=0.05, on_update=grow, timezone_name="UTC", record_files=False)
    assert seen == [1, 3]  # the last rows come with the report: recorded by the final ingest
    assert run.status == "completed" and len(tasks_of(run)) == 6


def test_follow_command_takes_the_idle_timeout_as_the_end(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    shutil.copy(TRACES / "old_header.txt", trace)
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--follow", "--idle-timeout", "0.3",
                                      "--poll-seconds", "0.1", "--run-name", "idle_run", "--timezone", "UTC"])
    assert result.exit_code == 0, result.output
    run = ln.Run.get(reference="idle_run")
    assert run.status == "completed" and len(tasks_of(run)) == 6
    assert ": 6 new task run(s)" in result.output  # the rows of every read, not of the last one (was: 0)
    # a launch killed while a row was half written: the idle end records the whole rows
    cut = tmp_path / "cut.txt"
    cut.write_text(trace.read_text()[:-25])
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(cut), "--follow", "--idle-timeout", "0.3",
                                      "--poll-seconds", "0.1", "--run-name", "cut_run", "--timezone", "UTC"])
    assert result.exit_code == 0, result.output
    assert len(tasks_of(ln.Run.get(reference="cut_run"))) == 5


def test_a_launch_recorded_before_its_run_name_was_known_takes_the_name_later(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    shutil.copy(TRACES / "old_header.txt", trace)
    first = ingest_trace(trace, final=False, discover_files=False, timezone_name="UTC")  # no log, no report yet
    assert first.reference is None and first.status == "started"
    named = ingest_trace(trace, discover_files=False, run_name="tender_turing", timezone_name="UTC")
    assert named.id == first.id and (named.reference, named.name, named.status) == ("tender_turing", "tender_turing", "completed")
    assert ln.Run.filter(reference_type="nextflow_id").count() == 1 and len(tasks_of(named)) == 6


# -- nextflow-py ----------------------------------------------------------------------------------


STAND_IN = """#!{python}
# A stand-in for the nextflow launcher: writes what Nextflow writes, from the test fixtures.
import json, os, shutil, sys, urllib.request
args = sys.argv[1:]
src = {src!r}
def after(flag):
    return args[args.index(flag) + 1] if flag in args else None
if "-version" in args:
    print("nextflow version 23.10.1"); sys.exit(0)
launch = os.getcwd()
def copy(name, dest):
    text = open(os.path.join(src, name)).read().replace("/nf/launch", launch)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    open(dest, "w").write(text)
shutil.copytree(os.path.join(src, "run", "work"), os.path.join(launch, "work"), dirs_exist_ok=True)
for root, _, names in os.walk(os.path.join(launch, "work")):
    for n in names:
        p = os.path.join(root, n); t = open(p).read()
        open(p, "w").write(t.replace("/nf/launch", launch))
copy("run/.nextflow.log", os.path.join(launch, ".nextflow.log"))
trace, report = after("-with-trace"), after("-with-report")
if trace:
    copy("run/results/pipeline_info/execution_trace_{stamp}.txt", trace)
if report:
    copy("run/results/pipeline_info/execution_report_{stamp}.html", report)
config = after("-c")
if config:
    text = open(config.strip('"')).read()
    if "weblog" in text:
        url = text.split("url = '", 1)[1].split("'", 1)[0]
        for line in open(os.path.join(src, "weblog_23.jsonl")):
            req = urllib.request.Request(url, data=line.replace("/nf/launch", launch).encode(), headers={{"Content-Type": "application/json"}})
            urllib.request.urlopen(req, timeout=10).read()
print("N E X T F L O W  ~  version 23.10.1")
"""


@pytest.fixture
def nextflow_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nextflow"
    exe.write_text(STAND_IN.format(python=sys.executable, src=str(DATA), stamp=STAMP))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sys.modules.pop("nextflow", None)
    pytest.importorskip("nextflow")
    yield exe
    sys.modules.pop("nextflow", None)


def test_run_launches_through_nextflowpy_with_trace_report_and_weblog_and_ingests(registry, tmp_path, nextflow_on_path):
    from lamin_integrations.nextflow import run as nf_run

    launch = tmp_path / "launch"
    launch.mkdir()
    pipeline = tmp_path / "main.nf"
    pipeline.write_text("workflow { }\n")
    run = nf_run(str(pipeline), run_path=str(launch), params={"genome": "ref.fa"}, timezone_name="UTC", sleep=0.05)
    assert run.name == "tender_turing" and run.status == "completed"
    assert run.params["weblog_events"] == 20  # the live events were received and merged
    tasks = tasks_of(run)
    assert len(tasks) == 6 and ln.Run.filter().count() == 7
    assert tasks["6"].input_artifacts.count() == 4


def test_ingest_execution_records_a_finished_nextflowpy_execution(registry, tmp_path, nextflow_on_path):
    import nextflow

    from lamin_integrations.nextflow import ingest_execution

    launch = tmp_path / "launch"
    launch.mkdir()
    (tmp_path / "main.nf").write_text("workflow { }\n")
    execution = nextflow.run(str(tmp_path / "main.nf"), run_path=str(launch), sleep=0.05)
    assert execution.identifier == "tender_turing"
    run = ingest_execution(execution, timezone_name="UTC")
    assert run.name == "tender_turing" and run.params["session_id"] == execution.session_uuid
    tasks = tasks_of(run)
    assert len(tasks) == 6 and tasks["4"].status == "errored"
    assert tasks["6"].reference == "1b2c3d4e5f60718293a4b5c6d7e8f9a0"
    assert tasks["6"].input_artifacts.count() == 4


def test_default_fields_only_trace_gets_end_times_from_submit_and_duration(sqlite_registry, tmp_path):
    """nf-core's default trace has no start/complete columns: a task ended at submit + duration,
    CACHED rows (times of an earlier launch) do not stretch this launch, ABORTED rows make it aborted."""
    folder = tmp_path / "launch" / "results" / "pipeline_info"
    folder.mkdir(parents=True)
    header = "task_id\thash\tnative_id\tname\tstatus\texit\tsubmit\tduration\trealtime\t%cpu\tpeak_rss\tpeak_vmem\trchar\twchar\n"
    rows = [
        "1\te5/f6a7b8\t12346\tNFCORE_X:FASTQC (s1)\tCOMPLETED\t0\t2024-05-01 10:00:05.456\t1m 3s\t58.2s\t180.0%\t301.5 MB\t3.1 GB\t250 MB\t12 MB",
        "2\t7e/8f9a0b\t-\tNFCORE_X:MULTIQC\tCACHED\t0\t2024-04-30 09:00:00.000\t30s\t25s\t100.0%\t500 MB\t1 GB\t10 MB\t5 MB",
        "3\t1c/2d3e4f\t-\tNFCORE_X:SALMON (s1)\tABORTED\t-\t2024-05-01 10:02:00.000\t-\t-\t-\t-\t-\t-\t-",
    ]
    trace = folder / "execution_trace_2024-05-01_10-00-00.txt"
    trace.write_text(header + "\n".join(rows) + "\n")
    from lamin_integrations.nextflow import ingest_trace

    launch = ingest_trace(trace, timezone_name="UTC")
    assert launch.transform.key == "launch" and launch.status == "aborted"
    assert launch.started_at.isoformat().startswith("2024-05-01T10:00:05")
    tasks = {r.name: r for r in ln.Run.filter(initiated_by_run=launch)}
    fastqc = tasks["NFCORE_X:FASTQC (s1)"]
    assert (fastqc.finished_at - fastqc.started_at).total_seconds() == 63
    salmon = tasks["NFCORE_X:SALMON (s1)"]
    assert salmon.status == "aborted" and salmon.finished_at == salmon.started_at


# -- a work dir and results in object storage (AWS Batch: -w s3://bucket/work) -------------------


def _command_run(*downloads: str) -> bytes:
    """`.command.run`'s staging as cloud executors write it: queued downloads run by nxf_parallel."""
    queued = "".join(f'    downloads+=("{d}")\n' for d in downloads)
    return f"nxf_stage() {{\n    true\n    # stage input files\n    downloads=(true)\n{queued}" \
           '    nxf_parallel "${downloads[@]}"\n}\n'.encode()


def test_a_work_dir_and_published_results_in_s3(registry, s3_server, tmp_path, monkeypatch):
    import uuid

    import s3fs

    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = f"nf-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    fastqc, multiqc = f"{bucket}/work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f", f"{bucket}/work/1b/2c3d4e5f60718293a4b5c6d7e8f9a0"
    report = b"<html>2 samples</html>"
    fs.pipe({
        f"{bucket}/data/a b.fastq": b"@r1\nACGT\n+\nIIII\n",
        f"{fastqc}/.command.run": _command_run(f"nxf_s3_download s3://{bucket}/data/a\\ b.fastq a\\ b.fastq"),
        f"{fastqc}/.exitcode": b"0",
        f"{fastqc}/a_fastqc.txt": b"PASS a\n",
        f"{multiqc}/.command.run": _command_run(f"nxf_cp_retry nxf_s3_download s3://{fastqc}/a_fastqc.txt a_fastqc.txt"),
        f"{multiqc}/multiqc_report.html": report,
        f"{bucket}/results/multiqc/multiqc_report.html": report,  # publishDir copies: found by content
        f"{bucket}/results/pipeline_info/execution_trace.txt": b"not a result",
    })
    trace = tmp_path / "execution_trace.txt"  # the default fields: no workdir column
    trace.write_text("task_id\thash\tnative_id\tname\tstatus\texit\tsubmit\tduration\trealtime\t%cpu\tpeak_rss\tpeak_vmem\trchar\twchar\n"
                     "1\t3f/a1b2c3\tarn:aws:batch:1\tFASTQC (a)\tCOMPLETED\t0\t2024-03-04 21:06:07.625\t12.3s\t5.1s\t98.5%\t100 MB\t2 GB\t12 KB\t1016 B\n"
                     "2\t1b/2c3d4e\tarn:aws:batch:2\tMULTIQC\tCOMPLETED\t0\t2024-03-04 21:06:30.000\t1m 2s\t50s\t100.0%\t200 MB\t2 GB\t12 KB\t1016 B\n")
    run = ingest_trace(trace, work_dir=f"s3://{bucket}/work", outdir=f"s3://{bucket}/results", discover_files=False,
                       run_name="cloudy_turing", timezone_name="UTC")
    fq, mq = tasks_of(run)["1"], tasks_of(run)["2"]
    assert fq.reference == "3fa1b2c3d4e5f60718293a4b5c6d7e8f" and fq.params["workdir"] == f"s3://{fastqc}"
    (read,) = fq.input_artifacts
    assert read.key == "data/a b.fastq" and read.storage.root == f"s3://{bucket}"  # registered in place, not copied
    out = fq.output_artifacts.one()
    assert out.key == "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt" and out.hash_type == "md5"  # the ETag
    assert mq.input_artifacts.one() == out  # the staged download of another task's output links the two
    (published,) = run.output_artifacts
    assert published.key == "results/multiqc/multiqc_report.html"
    assert published._aux["published_from"]["run"] == mq.uid and published in mq.recreated_artifacts.to_list()
    assert fq in ln.lineage.upstream(published).runs
    counts = (ln.Run.filter().count(), ln.Artifact.filter().count())
    again = ingest_trace(trace, work_dir=f"s3://{bucket}/work", outdir=f"s3://{bucket}/results", discover_files=False,
                         run_name="cloudy_turing", timezone_name="UTC")
    assert again.id == run.id and (ln.Run.filter().count(), ln.Artifact.filter().count()) == counts


def test_an_unreachable_object_store_work_dir_records_the_runs_and_says_why(registry, tmp_path, monkeypatch, caplog):
    import socket

    with socket.socket() as free:  # a port nothing listens on: connections are refused
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    trace = tmp_path / "execution_trace.txt"
    trace.write_text("task_id\thash\tname\tstatus\texit\tworkdir\n"
                     "1\t3f/a1b2c3\tFASTQC (a)\tCOMPLETED\t0\ts3://bucket/work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f\n")
    with caplog.at_level("WARNING", logger="lamin_integrations"):
        run = ingest_trace(trace, work_dir="s3://bucket/work", outdir="s3://bucket/results",
                           discover_files=False, timezone_name="UTC")
    assert run.status == "completed" and len(tasks_of(run)) == 1 and ln.Artifact.filter().count() == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("not recording the files of task FASTQC (a) in s3://bucket/work/3f/" in w for w in warnings), warnings
    assert any("not recording the published files in s3://bucket/results" in w for w in warnings), warnings


def test_inputs_staged_into_a_subfolder_link_their_producers(registry, tmp_path):
    # nf-core's `path('fastqc/*')`: `mkdir -p fastqc && ln -s SRC fastqc/NAME`, one command line per input
    root = launch_dir(tmp_path)
    (stage,) = root.glob("work/1b/*/.command.stage")
    work = stage.parent
    lines = []
    for line in stage.read_text().splitlines():
        if "_fastqc.txt" in line:
            name = line.split()[-1]
            line = line.replace(f"rm -f {name}", f"rm -f fastqc/{name}").replace(f" {name}", f" fastqc/{name}") \
                if line.startswith("rm") else f"mkdir -p fastqc && {line.rsplit(' ', 1)[0]} fastqc/{name}"
        lines.append(line)
    stage.write_text("\n".join(lines) + "\n")
    (work / "fastqc").mkdir()
    for name in ("a_fastqc.txt", "b_fastqc.txt"):  # the staged links, where this staging puts them
        if os.path.lexists(work / name):
            (work / name).rename(work / "fastqc" / name)
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    multiqc = tasks_of(run)["6"]
    assert {a.key for a in multiqc.input_artifacts} >= {
        "work/3f/a1b2c3d4e5f60718293a4b5c6d7e8f/a_fastqc.txt", "work/7c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5/b_fastqc.txt"}
    assert "fastqc" not in {Path(a.key).name for a in multiqc.output_artifacts}  # the staging folder is no output


def test_a_byte_order_mark_and_bad_params_files(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_bytes(b"\xef\xbb\xbf" + (TRACES / "old_header.txt").read_bytes())
    first = ingest_trace(trace, discover_files=False, timezone_name="UTC", run_name="bom_run")
    assert all("task_id" in r.params for r in ln.Run.filter(initiated_by_run=first))
    again = ingest_trace(trace, discover_files=False, timezone_name="UTC", run_name="bom_run")
    assert again.__dict__["_ingest_counts"]["new"] == 0  # the same rows, not new ones
    (tmp_path / "bad.yaml").write_text("genome: [GRCh38\n")
    for params, message in ((tmp_path / "bad.yaml", "params must be a YAML mapping"), (tmp_path / "nope.json", "no such params file")):
        result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--no-discover", "--params", str(params)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output


def test_a_weblog_event_that_fails_leaves_no_stale_step_behind(registry):
    started, submitted = (json.loads(line) for line in (DATA / "weblog_23.jsonl").read_text().splitlines()[:2])
    receiver = Receiver(discover=False)
    receiver.handle(check_event(json.dumps(started).encode()))
    bad = json.loads(json.dumps(submitted))
    bad["trace"].update(process="NEWPROC", name="NEWPROC (a)", task_id=90, hash="90/909090", workdir=None, script="a\x00b")
    with pytest.raises(ln.errors.ValidationError):
        receiver.handle(check_event(json.dumps(bad).encode()))  # rolled back, its step transform too
    good = json.loads(json.dumps(bad))
    good["trace"]["script"] = "echo ok"
    run = receiver.handle(check_event(json.dumps(good).encode()))
    (task,) = ln.Run.filter(initiated_by_run=run, name="NEWPROC (a)")
    assert task.transform.key.endswith(":NEWPROC") and task.transform.kind == "step"


def test_a_published_folder_link_and_a_later_source_that_knows_less(registry, tmp_path):
    root = launch_dir(tmp_path)
    (align,) = root.glob("work/5e/*")
    (align / "qc_data").mkdir()
    (align / "qc_data" / "stats.txt").write_text("mapped 99%\n")
    (root / "results" / "qc").mkdir()
    (root / "results" / "qc" / "qc_data").symlink_to(align / "qc_data")  # publishDir's default mode: symlink
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    published = {a.key: a for a in run.output_artifacts}
    folder = published["results/qc/qc_data"]
    assert folder.n_files == 1 and folder._aux["published_from"]["run"] == tasks_of(run)["3"].uid
    # the same launch's trace again, named by hand, without the report's pipeline facts: the same steps
    pipelines = ln.Transform.filter(kind="pipeline").count()
    again = ingest_trace(trace_of(root), run_name="tender_turing", discover_files=False, timezone_name="UTC")
    assert again.id == run.id and again.transform == run.transform
    assert ln.Transform.filter(kind="pipeline").count() == pipelines


def test_the_reports_exact_times_win_over_the_traces_zone_less_text(registry, tmp_path):
    root = launch_dir(tmp_path)
    run = ingest_trace(trace_of(root), timezone_name="America/New_York", record_files=False)  # a wrong zone given
    retry = tasks_of(run)["5"]
    assert retry.started_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 21, 6, 7, 612000, tzinfo=UTC)
    assert retry.params["submit"].startswith("2024-03-04T21:06")  # from the report's epoch milliseconds


@pytest.mark.parametrize("here", ["America/New_York", "Asia/Tokyo"])
def test_a_launch_ingested_in_another_zone_reads_its_text_times_in_the_zone_the_report_reveals(
        registry, tmp_path, monkeypatch, caplog, here):
    """The sample ran on a machine in UTC; this machine is elsewhere and no --timezone is given.
    The report's epoch milliseconds and the trace's text for the same tasks reveal the zone the
    text was written in: the pipeline's times (report text, log, history) agree with its tasks'."""
    import time

    root = launch_dir(tmp_path)
    truth = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    expected = (truth.started_at, truth.finished_at)
    truth.delete(permanent=True)
    monkeypatch.setenv("TZ", here)
    time.tzset()
    try:
        with caplog.at_level("WARNING", logger="lamin_integrations"):
            run = ingest_trace(trace_of(root), record_files=False)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (run.started_at, run.finished_at) == expected
    tasks = tasks_of(run).values()
    assert run.started_at <= min(t.started_at for t in tasks if t.started_at)
    assert run.finished_at >= max(t.finished_at for t in tasks if t.finished_at)
    assert any("the report's exact times say so" in r.getMessage() for r in caplog.records)


def test_a_task_without_any_time_is_not_given_the_time_of_ingest(registry, tmp_path):
    trace = tmp_path / "trace.txt"  # an ABORTED row of a task stopped before it was submitted: every time is '-'
    trace.write_text("task_id\thash\tnative_id\tname\tstatus\texit\tsubmit\tduration\trealtime\n"
                     "1\t3f/a1b2c3\t1\tFASTQC (a)\tCOMPLETED\t0\t2024-03-04 21:06:00.000\t10s\t9s\n"
                     "2\t7c/0d1e2f\t-\tMULTIQC\tABORTED\t-\t-\t-\t-\n")
    run = ingest_trace(trace, discover_files=False, timezone_name="UTC", run_name="stopped_run")
    done, aborted = tasks_of(run)["1"], tasks_of(run)["2"]
    assert done.started_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 21, 6, tzinfo=UTC)
    assert aborted.status == "aborted" and aborted.started_at is None and aborted.finished_at is None
    assert run.status == "aborted" and run.started_at.year == 2024


def test_the_log_of_a_later_launch_in_the_same_dir_is_not_taken_for_this_ones(registry, tmp_path, caplog):
    root = launch_dir(tmp_path)
    trace_of(root).with_name(f"execution_report_{STAMP}.html").unlink()  # the log alone names the launch
    log = root / ".nextflow.log"
    log.rename(root / ".nextflow.log.1")  # Nextflow rotates the log when the next launch starts
    log.write_text("Mar-05 09:00:00.001 [main] DEBUG nextflow.cli.Launcher - $> nextflow run nf-demo/align -resume\n"
                   "Mar-05 09:00:01.000 [main] DEBUG nextflow.Session - Run name: hopeful_fermi\n"
                   "Mar-05 09:00:02.000 [Task submitter] INFO  nextflow.Session - [ab/cdef01] Submitted process > ALIGN (c)\n"
                   "Mar-05 09:00:09.000 [main] DEBUG nextflow.script.ScriptRunner - > Execution complete -- Goodbye\n")
    run = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    assert run.name == "tender_turing" and run.__dict__["_ingest_sources"].log.endswith(".nextflow.log.1")
    (root / ".nextflow.log.1").unlink()  # no log of this launch left: none is used, and that is said
    with caplog.at_level("WARNING", logger="lamin_integrations"):
        again = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    assert again.id == run.id and again.name == "tender_turing"  # from the history, by the first submit time
    assert any("log of another launch" in r.getMessage() for r in caplog.records)
    assert not ln.Run.filter(reference="hopeful_fermi").exists()


def test_a_cached_row_may_share_its_task_id_with_a_task_of_the_resume(registry, tmp_path):
    # a CACHED row is the record stored by the launch that ran the task: its task_id can be one
    # this launch gave another task; with another hash it is not a duplicate row
    lines = (TRACES / "resumed.txt").read_text().splitlines(keepends=True)
    trace = tmp_path / "trace.txt"
    trace.write_text("".join(lines[:5]) + lines[5].replace("5\te0/f1a2b3", "2\te0/f1a2b3", 1))
    run = ingest_trace(trace, discover_files=False, run_name="sad_darwin", timezone_name="UTC")
    tasks = ln.Run.filter(initiated_by_run=run)
    assert sorted((r.params["task_id"], r.params["hash"], r.status) for r in tasks if r.params["task_id"] == "2") == [
        ("2", "7c/0d1e2f", "completed"), ("2", "e0/f1a2b3", "completed")]
    assert ingest_trace(trace, discover_files=False, run_name="sad_darwin", timezone_name="UTC").__dict__["_ingest_counts"]["new"] == 0


def test_a_result_another_launch_published_is_not_an_output_of_this_one(registry, tmp_path):
    """An errored launch ingested after its resume: the resume re-published results as links
    into the work dirs of its own tasks; those are not outputs of the launch being ingested."""
    root = launch_dir(tmp_path)
    other = root / "work" / "ee" / ("e" * 30)  # a task of the resume, not in this trace
    other.mkdir(parents=True)
    (other / "late.txt").write_text("published by the resume\n")
    (root / "results" / "late.txt").symlink_to(other / "late.txt")
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    keys = {a.key for a in run.output_artifacts}
    assert "results/late.txt" not in keys
    assert any(k.startswith("results/") for k in keys)  # this launch's own results still are


def _resume_beside(root: Path) -> Path:
    """A `-resume` of the sample launch in its launch dir, as Nextflow leaves it: the earlier
    log rotated, the resume's own log and history line, its trace (with a stamp of its own)
    beside the earlier launch's trace and report, and no report of its own (still running, or killed)."""
    info = root / "results" / "pipeline_info"
    trace = info / "execution_trace_2024-03-05_09-00-00.txt"
    shutil.copy(TRACES / "resumed.txt", trace)
    (root / ".nextflow.log").rename(root / ".nextflow.log.1")
    cached = [line.split("\t")[1:4:2] for line in trace.read_text().splitlines()[1:] if "\tCACHED\t" in line]
    (root / ".nextflow.log").write_text(
        "Mar-05 09:00:00.001 [main] DEBUG nextflow.cli.Launcher - $> nextflow run nf-demo/align -r v1.2.0 -resume\n"
        "Mar-05 09:00:01.000 [main] DEBUG nextflow.Session - Run name: sad_darwin\n"
        + "".join(f"Mar-05 09:00:02.000 [Actor Thread 3] INFO  nextflow.processor.TaskProcessor - [{h}] Cached process > {n}\n"
                  for h, n in cached)
        + "Mar-05 09:00:03.000 [Task submitter] INFO  nextflow.Session - [e0/f1a2b3] Submitted process > MULTIQC\n")
    with open(root / ".nextflow" / "history", "a") as f:
        f.write("2024-03-05 09:00:00\t-\tsad_darwin\t-\t1b8fe5b4e5\t4e5a1f0c-2b7d-4c1e-9f3a-8d6b5c4a3e21\t"
                "nextflow run nf-demo/align -r v1.2.0 -resume\n")
    return trace


@pytest.mark.parametrize("resume_first", [False, True])
def test_a_resume_beside_the_earlier_launch_is_not_merged_into_it(registry, tmp_path, resume_first):
    """Its own log and history line name it, not the earlier launch's report (another stamp) or
    the earlier log's lines; the earlier launch's log is found rotated. In either order."""
    root = launch_dir(tmp_path)
    resume = _resume_beside(root)
    order = [resume, trace_of(root)] if resume_first else [trace_of(root), resume]
    runs = {}
    for trace in order:
        run = ingest_trace(trace, timezone_name="UTC", record_files=False)
        runs[trace] = run
    original, resumed = runs[trace_of(root)], runs[resume]
    assert (original.name, resumed.name) == ("tender_turing", "sad_darwin")
    sources = resumed.__dict__["_ingest_sources"]
    assert sources.report is None and sources.log == str(root / ".nextflow.log")
    assert original.__dict__["_ingest_sources"].log == str(root / ".nextflow.log.1")
    # the earlier launch's executions stay executions: no CACHED copy overwrote them
    rows = len(trace_of(root).read_text().splitlines()) - 1
    assert all(not r.params.get("cached") for r in tasks_of(original).values()) and len(tasks_of(original)) == rows
    assert "e0/f1a2b3" in {r.params["hash"] for r in tasks_of(resumed).values()}
    assert resumed.started_at.date() == dt.date(2024, 3, 5)  # its own rows' times, not the cached rows'


def test_an_original_ingested_after_its_resume_made_what_the_resumes_cached_rows_stand_for(registry, tmp_path):
    """Ingest order does not decide who made a file. The resume, ingested first, recorded its
    CACHED rows' work files and the published copies; the original launch, which ran those
    tasks, is then their creator, and the resume's cached rows re-creators."""
    root = launch_dir(tmp_path)
    resume = _resume_beside(root)
    resumed = ingest_trace(resume, timezone_name="UTC")
    original = ingest_trace(trace_of(root), timezone_name="UTC")
    align = next(r for r in tasks_of(original).values() if r.params["hash"] == "5e/6f7a8b")
    cached = next(r for r in tasks_of(resumed).values() if r.params["hash"] == "5e/6f7a8b")
    bam = ln.Artifact.get(key="work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/a.bam")
    assert bam.run_id == align.id and cached in bam.recreating_runs.to_list()
    assert bam in align.output_artifacts.to_list()
    published = ln.Artifact.get(key="results/align/a.bam")
    assert published.run_id == original.id and published._aux["published_from"]["run"] == align.uid
    assert resumed in published.recreating_runs.to_list() and original not in published.recreating_runs.to_list()


@pytest.mark.parametrize("own_times", [True, False])
def test_a_published_file_written_after_a_later_launch_began_is_not_this_launchs_output(registry, tmp_path, own_times):
    """Launches share results/: a file there written after the next launch in this launch dir
    (its history line) began is that launch's, even before it is ingested. Unless the file times
    are not the launches' own (the trace too is newer: the folder was copied), which say nothing."""
    root = launch_dir(tmp_path)
    _resume_beside(root)
    late = root / "results" / "late.txt"
    late.write_text("written by the resume\n")
    if own_times:  # as Nextflow left them
        then = dt.datetime(2024, 3, 4, 22, 10, tzinfo=UTC).timestamp()
        for path in [trace_of(root), *(root / "results").rglob("*")]:
            os.utime(path, (then, then), follow_symlinks=False)
        later = dt.datetime(2024, 3, 5, 9, 30, tzinfo=UTC).timestamp()  # after the resume began (09:00)
        os.utime(late, (later, later))
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    keys = {a.key for a in run.output_artifacts}
    assert ("results/late.txt" not in keys) is own_times and "results/align/a.bam" in keys


def test_nf_core_params_file_is_found_beside_the_trace_with_secrets_masked(registry, tmp_path):
    root = launch_dir(tmp_path)
    info = root / "results" / "pipeline_info"
    (info / f"params_{STAMP}.json").write_text(json.dumps({"input": "samples.csv", "github_token": "ghp_abc"}))
    (info / "params_2024-01-01_00-00-00.json").write_text(json.dumps({"input": "another launch"}))
    run = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    assert run.params["params"] == {"input": "samples.csv", "github_token": "***"}
    (info / f"params_{STAMP}.json").write_text("{not json")  # found, not given: a warning, not a failure
    assert ingest_trace(trace_of(root), timezone_name="UTC", record_files=False).id == run.id


def test_a_given_log_or_report_of_another_launch_is_an_error_and_the_rotated_log_of_this_one_is_used(
        registry, tmp_path, caplog):
    """`--log .nextflow.log` after a -resume names the resume's log: this launch's is the rotated
    copy, used with a warning; a log or report that names none of the trace's tasks is refused."""
    root = launch_dir(tmp_path)
    resume = _resume_beside(root)
    info = root / "results" / "pipeline_info"
    (info / f"params_{STAMP}.json").write_text(json.dumps({"input": "samples.csv"}))
    report = trace_of(root).with_name(f"execution_report_{STAMP}.html")
    with caplog.at_level("WARNING", logger="lamin_integrations"):
        run = ingest_trace(trace_of(root), log=root / ".nextflow.log", report=report, timezone_name="UTC",
                           record_files=False)
    assert run.name == "tender_turing" and run.__dict__["_ingest_sources"].log == str(root / ".nextflow.log.1")
    assert any("the log of this trace's launch" in r.getMessage() for r in caplog.records)
    assert run.params["params"] == {"input": "samples.csv"}  # found beside the trace, report given or not
    before = registry_state(registry)
    with pytest.raises(TraceError, match=r"--report .*execution_report_.*another launch"):
        ingest_trace(resume, report=report, timezone_name="UTC", record_files=False)
    (root / ".nextflow.log.1").unlink()
    other = tmp_path / "other.log"  # another project's log: its tasks are none of these
    other.write_text("Mar-05 09:00:01.000 [main] DEBUG nextflow.Session - Run name: mad_curie\n"
                     "Mar-05 09:00:03.000 [Task submitter] INFO  nextflow.Session - [12/345678] Submitted process > X\n")
    with pytest.raises(TraceError, match=r"--log .*other.log: it names none of this trace's tasks"):
        ingest_trace(trace_of(root), log=other, timezone_name="UTC", record_files=False)
    assert registry_state(registry) == before
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace_of(root)), "--log", str(other), "--timezone", "UTC"])
    assert result.exit_code == 1 and "another launch" in result.output, result.output


def test_launches_of_two_projects_that_share_a_run_name_are_two_runs(registry, server):
    """Nextflow keeps run names unique within a launch dir only: the same name in another project
    (another session) is another launch, from a trace or over the weblog; a -resume keeps the session
    but has a name of its own, so one name and one session is one launch."""
    trace = TRACES / "statuses.txt"
    alice = ingest_trace(trace, discover_files=False, run_name="mad_curie", session_id="aaaa-1",
                         pipeline="nf-core/rnaseq", timezone_name="UTC")
    bob = ingest_trace(trace, discover_files=False, run_name="mad_curie", session_id="bbbb-2",
                       pipeline="org/pipe", timezone_name="UTC")
    assert alice.id != bob.id and (alice.transform.key, bob.transform.key) == ("nf-core/rnaseq", "org/pipe")
    assert len(tasks_of(alice)) == len(tasks_of(bob)) > 0
    assert all(r.transform.key.startswith("nf-core/rnaseq:") for r in ln.Run.filter(initiated_by_run=alice))
    again = ingest_trace(trace, discover_files=False, run_name="mad_curie", session_id="aaaa-1", timezone_name="UTC")
    assert again.id == alice.id and again.__dict__["_ingest_counts"]["new"] == 0
    started = _events("weblog_23.jsonl")[0]
    for session in ("cccc-3", "dddd-4"):
        assert post(server, {**started, "runName": "mad_curie", "runId": session})[0] == 200
    runs = ln.Run.filter(reference="mad_curie", reference_type="nextflow_id")
    assert sorted(r.params["session_id"] for r in runs) == ["aaaa-1", "bbbb-2", "cccc-3", "dddd-4"]


def test_published_copies_with_the_same_bytes_are_credited_to_the_task_whose_file_has_their_name(registry, tmp_path):
    """Two samples' reports with identical bytes (a "no reads trimmed" log, an empty file):
    each published copy is the task's whose work file it is by name; a copy whose name tells
    nothing either is credited to no task rather than to a guess."""
    root = launch_dir(tmp_path)
    same = "FastQC: PASS\n"
    a = root / "work" / "3f" / "a1b2c3d4e5f60718293a4b5c6d7e8f" / "a_fastqc.txt"
    b = root / "work" / "7c" / "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5" / "b_fastqc.txt"
    a.write_text(same)
    b.write_text(same)
    (root / "results" / "fastqc").mkdir()
    for name in ("a_fastqc.txt", "b_fastqc.txt", "summary.txt"):
        (root / "results" / "fastqc" / name).write_text(same)
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    tasks = tasks_of(run)
    published = {a.key: a for a in run.output_artifacts if a.key.startswith("results/fastqc/")}
    assert set(published) == {"results/fastqc/a_fastqc.txt", "results/fastqc/b_fastqc.txt", "results/fastqc/summary.txt"}
    credited = {k: (a._aux or {}).get("published_from", {}).get("run") for k, a in published.items()}
    assert credited == {"results/fastqc/a_fastqc.txt": tasks["1"].uid, "results/fastqc/b_fastqc.txt": tasks["2"].uid,
                        "results/fastqc/summary.txt": None}
    assert tasks["1"] in ln.lineage.upstream(published["results/fastqc/a_fastqc.txt"]).runs
    assert tasks["2"] not in ln.lineage.upstream(published["results/fastqc/a_fastqc.txt"]).runs


def test_an_outdir_outside_the_launch_dir_finds_the_log_history_and_work_dir_the_report_names(registry, tmp_path):
    """On a cluster --outdir is often project space, not under the launch dir: the report's launch
    directory (when it is on this machine) gives the log, history and work dir."""
    root = launch_dir(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    shutil.move(root / "results", project / "results")
    trace = project / "results" / "pipeline_info" / trace_of(root).name
    run = ingest_trace(trace, timezone_name="UTC")
    sources = run.__dict__["_ingest_sources"]
    assert (sources.launch_dir, sources.work_dir) == (str(root), str(root / "work"))
    assert sources.log == str(root / ".nextflow.log") and sources.history == str(root / ".nextflow" / "history")
    align_a = tasks_of(run)["3"]
    assert {a.key for a in align_a.input_artifacts} >= {"data/a.fastq", "data/ref.fa"}
    [bam] = [a for a in run.output_artifacts if a.key.endswith("a.bam")]
    assert bam.key == "results/align/a.bam" and bam._aux["published_from"]["run"] == align_a.uid


def test_results_copied_off_the_launch_machine_get_keys_under_their_own_folder(registry, tmp_path):
    root = launch_dir(tmp_path)  # its report names this launch dir, which still holds the originals
    copied = tmp_path / "laptop" / "project"
    shutil.copytree(root / "results", copied / "results", symlinks=False)
    run = ingest_trace(copied / "results" / "pipeline_info" / f"execution_trace_{STAMP}.txt", timezone_name="UTC")
    keys = {a.key for a in run.output_artifacts}
    assert keys and all(k.startswith("results/") for k in keys), keys


def _resume_multiqc_work(root):
    """The work dir of the resume's MULTIQC, run again (its files are written by each test)."""
    work = root / "work" / "e0" / ("f1a2b3" + "c" * 26)
    work.mkdir(parents=True)
    (work / ".command.run").write_text("#!/bin/bash\n")
    return work


def test_results_a_later_launch_copied_into_the_shared_outdir_are_not_an_earlier_ones(registry, tmp_path):
    """nf-core reuses `results/` across resumes and publishes by copy: an earlier launch
    ingested after its resume does not claim the files the resume's own tasks made later."""
    root = launch_dir(tmp_path)
    resume = _resume_beside(root)
    work = _resume_multiqc_work(root)
    (work / "multiqc_data.json").write_text('{"report": "made by the resume, one day later"}\n')
    shutil.copy(work / "multiqc_data.json", root / "results" / "multiqc" / "multiqc_data.json")
    resumed = ingest_trace(resume, timezone_name="UTC")
    made = ln.Artifact.get(key="results/multiqc/multiqc_data.json")
    assert made in resumed.output_artifacts.to_list() or made in resumed.recreated_artifacts.to_list()
    original = ingest_trace(trace_of(root), timezone_name="UTC")
    keys = {a.key for a in original.output_artifacts} | {a.key for a in original.recreated_artifacts}
    assert "results/multiqc/multiqc_data.json" not in keys
    assert "results/align/a.bam" in keys  # its own copied result still is


# -- files as Nextflow really writes them ------------------------------------------------------


def test_a_report_with_javascript_string_escapes_is_read_and_a_found_unreadable_one_is_skipped(registry, tmp_path, caplog):
    """Nextflow escapes the report's embedded strings for JavaScript (Java's escapeEcmaScript):
    nf-core module scripts hold `sed '/FastQC v/!d'`, written `sed \\'\\/FastQC v\\/!d\\'`."""
    root = launch_dir(tmp_path)
    report = root / "results" / "pipeline_info" / f"execution_report_{STAMP}.html"
    page = report.read_text()
    escaped = r"fastqc --version | sed \'\/FastQC v\/!d; s\/.*v\/\/\' \x41\v"
    report.write_text(page.replace("fastqc --threads 2 a.fastq > a_fastqc.txt", escaped, 1))
    run = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    script = tasks_of(run)["1"].params["script"]
    assert "fastqc --version | sed '/FastQC v/!d; s/.*v//' A\x0b" in script
    # found next to the trace but unreadable: a warning, the launch is recorded from the other files
    report.write_text(page.replace('"script": "', '"script": \'', 1))
    again = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    assert again.id == run.id and f"not using {report}" in caplog.text
    # given explicitly: an error naming the file and line, nothing written
    before = ln.Run.filter().count()
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace_of(root)), "--report", str(report), "--run-name", "x"])
    assert result.exit_code == 1 and f"{report}:49: the report's embedded data" in result.output
    assert ln.Run.filter().count() == before


def test_a_moved_launch_folder_without_a_report_is_placed_by_the_work_dir_its_log_names(registry, tmp_path):
    root = launch_dir(tmp_path, moved=True)  # its log says `Work-dir: /nf/launch/work`
    (root / "results" / "pipeline_info" / f"execution_report_{STAMP}.html").unlink()
    run = ingest_trace(trace_of(root), timezone_name="UTC")
    tasks = tasks_of(run)
    # were: no staged inputs (only the report's "Launch directory" said where the launch ran)
    assert {a.key for a in tasks["3"].input_artifacts} == {"data/a.fastq", "data/ref.fa"}
    assert "work/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/a.bam" in {a.key for a in tasks["6"].input_artifacts}
    assert run.params["launch_dir"] == "/nf/launch"


def test_one_pipeline_is_one_transform_whichever_files_name_it(registry, tmp_path):
    """The report names the repository URL, the log and history `org/repo`: Nextflow's project name."""
    root = launch_dir(tmp_path)
    with_report = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)
    (root / "results" / "pipeline_info" / f"execution_report_{STAMP}.html").unlink()
    without = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False, run_name="other_launch")
    assert with_report.transform.key == without.transform.key == "nf-demo/align"
    assert ln.Transform.filter(kind="pipeline").count() == 1


def test_weblog_task_events_before_started_leave_no_transforms_named_after_the_servers_folder(registry):
    started, submitted, *_ = _events("weblog_23.jsonl")
    receiver = Receiver(discover=False)
    receiver.handle(check_event(json.dumps(submitted).encode()))  # before `started`: the pipeline is unknown
    run = receiver.handle(check_event(json.dumps(started).encode()))
    assert run.transform.key == "nf-demo/align"
    assert {t.key for t in ln.Transform.filter()} == {"nf-demo/align", "nf-demo/align:FASTQC"}
    assert tasks_of(run)["1"].transform.key == "nf-demo/align:FASTQC"


def test_the_same_trace_ingested_again_knowing_less_is_the_same_launch(registry, tmp_path):
    root = launch_dir(tmp_path)
    first = ingest_trace(trace_of(root), timezone_name="UTC", record_files=False)  # named by the report and log
    assert first.reference == "tender_turing"
    for options in ({"discover_files": False}, {"discover_files": False, "run_name": None}):
        again = ingest_trace(trace_of(root), timezone_name="UTC", **options)  # no name known now
        assert again.id == first.id and again.__dict__["_ingest_counts"] == {"new": 0, "updated": 0, "cached": 0}
    assert ln.Run.filter().count() == 7
    assert tasks_of(first)["1"].started_at.replace(tzinfo=UTC) == dt.datetime(2024, 3, 4, 21, 6, 0, 312000, tzinfo=UTC)  # the report's start


def test_a_trace_written_over_by_a_later_launch_is_another_launch(registry, tmp_path):
    """`trace.overwrite = true`, then `-resume`: the same path, another launch (no log or report names either)."""
    trace = tmp_path / "trace.txt"
    header = "task_id\thash\tname\tstatus\texit\tsubmit\tduration\n"
    trace.write_text(header + "1\t3f/a1b2c3\tFASTQC (a)\tCOMPLETED\t0\t2024-03-04 21:06:00.112\t3.8s\n"
                              "2\t4f/a1b2c3\tALIGN (a)\tFAILED\t1\t2024-03-04 21:06:10.112\t3.8s\n")
    first = ingest_trace(trace, timezone_name="UTC")
    trace.write_text(header + "1\t3f/a1b2c3\tFASTQC (a)\tCACHED\t0\t2024-03-04 21:06:00.112\t3.8s\n"
                              "2\t5a/a1b2c3\tALIGN (a)\tCOMPLETED\t0\t2024-03-05 09:06:10.112\t3.8s\n")
    resumed = ingest_trace(trace, timezone_name="UTC")
    assert resumed.id != first.id and resumed.status == "completed"
    first = ln.Run.get(first.id)
    assert first.status == "errored" and [r.status for r in tasks_of(first).values()] == ["completed", "errored"]
    assert resumed._aux["cached_tasks"] == {"1": tasks_of(first)["1"].uid}
    with trace.open("a") as f:  # the resume's trace grows: still the resume
        f.write("3\t6b/a1b2c3\tMULTIQC\tCOMPLETED\t0\t2024-03-05 09:07:10.112\t3.8s\n")
    assert ingest_trace(trace, timezone_name="UTC").id == resumed.id


def test_custom_fields_without_task_id_are_keyed_by_hash_on_every_ingest(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_text("hash\tname\tstatus\texit\trealtime\n3f/a1b2c3\tA (1)\tCOMPLETED\t0\t1s\n4f/a1b2c3\tA (2)\tFAILED\t1\t1s\n")
    run = ingest_trace(trace, discover_files=False)
    with trace.open("a") as f:
        f.write("5f/a1b2c3\tA (2)\tCOMPLETED\t0\t2s\n")
    for _ in range(2):
        again = ingest_trace(trace, discover_files=False)
    assert again.id == run.id and ln.Run.filter(initiated_by_run=run).count() == 3
    assert again.__dict__["_ingest_counts"] == {"new": 0, "updated": 0, "cached": 0}


def test_a_trace_without_time_columns_ingested_again_changes_nothing(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_text("task_id\thash\tname\tstatus\texit\n1\t3f/a1b2c3\tA (1)\tCOMPLETED\t0\n2\t4f/a1b2c3\tA (2)\tFAILED\t1\n")
    run = ingest_trace(trace, discover_files=False)
    again = ingest_trace(trace, discover_files=False)
    assert again.__dict__["_ingest_counts"] == {"new": 0, "updated": 0, "cached": 0}
    assert [r.finished_at for r in tasks_of(run).values()] == [None, None]  # was: the time of the second ingest


@pytest.mark.parametrize("first_submit", ["2023-12-31 23:59:00.112", "2024-01-01 00:00:30.112"])
def test_a_launch_across_new_year_gets_the_years_of_its_log_lines_right(registry, tmp_path, first_submit):
    """`.nextflow.log` timestamps have no year: `Dec-31` then `Jan-01` is the next year."""
    trace = tmp_path / "trace.txt"
    trace.write_text("task_id\thash\tname\tstatus\texit\tsubmit\tduration\n"
                     f"1\t3f/a1b2c3\tFASTQC (a)\tCOMPLETED\t0\t{first_submit}\t3.8s\n"
                     "2\t4f/a1b2c3\tALIGN (a)\tCOMPLETED\t0\t2024-01-01 00:05:10.112\t3.8s\n")
    (tmp_path / ".nextflow.log").write_text(
        "Dec-31 23:58:56.612 [main] DEBUG nextflow.Session - Run name: newyear_noether\n"
        "Jan-01 00:05:10.112 [Task submitter] INFO  nextflow.Session - [4f/a1b2c3] Submitted process > ALIGN (a)\n"
        "Jan-01 00:06:00.100 [main] DEBUG nextflow.script.ScriptRunner - > Execution complete -- Goodbye\n")
    run = ingest_trace(trace, timezone_name="UTC")
    assert run.name == "newyear_noether"
    assert run.started_at.replace(tzinfo=UTC) == dt.datetime(2023, 12, 31, 23, 58, 56, 612000, tzinfo=UTC)
    assert run.finished_at.replace(tzinfo=UTC) == dt.datetime(2024, 1, 1, 0, 6, 0, 100000, tzinfo=UTC)


def test_a_result_a_resume_wrote_over_is_its_output_even_when_the_earlier_launch_was_ingested_first(registry, tmp_path):
    """The earlier launch is ingested after its resume copied a new MULTIQC result over the shared
    `results/`: when the resume is ingested, the file its own task made is its output, not the earlier one's."""
    root = launch_dir(tmp_path)
    resume = _resume_beside(root)
    work = _resume_multiqc_work(root)
    (work / "multiqc_report.html").write_text("<html>made by the resume, one day later</html>\n")
    published = root / "results" / "multiqc" / "multiqc_report.html"
    published.unlink()
    shutil.copy(work / "multiqc_report.html", published)  # publishDir mode: 'copy', over the earlier result
    original = ingest_trace(trace_of(root), timezone_name="UTC")
    resumed = ingest_trace(resume, timezone_name="UTC")
    made = ln.Artifact.get(key="results/multiqc/multiqc_report.html")
    assert made.run == resumed and made not in original.output_artifacts.to_list()
    assert made._aux["published_from"]["run"] == tasks_of(resumed)["5"].uid
    assert {a.key for a in original.output_artifacts} == {"results/align/a.bam"}  # its own result still is


def test_given_folders_that_do_not_exist_and_a_nul_byte_are_errors_and_nothing_is_written(registry, tmp_path):
    for option in ("--work-dir", "--outdir"):
        result = CliRunner().invoke(cli, ["nextflow", "ingest", str(TRACES / "statuses.txt"), option, str(tmp_path / "nope"),
                                          "--run-name", "x"])
        assert result.exit_code == 1 and f"{option} {tmp_path / 'nope'}: no such folder" in result.output
    trace = tmp_path / "trace.txt"
    trace.write_text("task_id\thash\tname\tstatus\n1\t3f/a1b2c3\tFASTQC (a)\tCOMPLETED\n2\t4f/a1b2c3\tFAST\x00QC (b)\tCOMPLETED\n")
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--run-name", "x"])
    assert result.exit_code == 1 and f"{trace}:3: a NUL byte (column 3)" in result.output
    assert ln.Run.filter().count() == 0 and ln.Transform.filter().count() == 0


def test_a_weblog_task_first_seen_without_a_hash_gets_its_reference_from_a_later_event(registry):
    started, submitted, *_ = _events("weblog_23.jsonl")
    receiver = Receiver(discover=False)
    receiver.handle(check_event(json.dumps(started).encode()))
    bare = json.loads(json.dumps(submitted))
    bare["trace"].update(hash=None, workdir=None)
    run = receiver.handle(check_event(json.dumps(bare).encode()))
    assert tasks_of(run)["1"].reference is None
    submitted["trace"]["workdir"] = None
    receiver.handle(check_event(json.dumps(submitted).encode()))
    assert tasks_of(run)["1"].reference == "3f/a1b2c3"


@pytest.mark.parametrize(("column", "value"), [
    ("peak_rss", "-5"),  # a size is never negative
    ("realtime", "-5"),
    ("realtime", "1m 1m"),  # Nextflow writes each unit once, largest first
    ("realtime", "3s 1m"),
    ("realtime", "\u0665s"),  # Arabic-Indic digits: int() and float() take them, Nextflow never writes them
    ("peak_rss", "\u0665 MB"),
    ("attempt", "\u0661"),
    ("task_id", "\u0661"),
    ("submit", "\u0662\u0660\u0662\u0664-03-04 21:06:00.112"),
])
def test_values_nextflow_never_writes_are_refused_with_their_line(column, value, tmp_path):
    trace = tmp_path / "trace.txt"
    row = {"task_id": "1", "hash": "3f/a1b2c3", "name": "FASTQC (a)", "status": "COMPLETED", "submit": "2024-03-04 21:06:00.112",
           "realtime": "3.5s", "peak_rss": "50 MB", "attempt": "1", column: value}
    trace.write_text("\t".join(row) + "\n" + "\t".join(row.values()) + "\n", encoding="utf-8")
    with pytest.raises(TraceError, match=f"{trace}:2: field {column}: "):
        read_trace(trace, tz=UTC)


def test_a_trace_sep_that_is_not_found_from_the_header_is_given_with_sep(registry, tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_text("task_id~hash~name~status~exit\n1~3f/a1b2c3~FASTQC (a)~COMPLETED~0\n")
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--run-name", "tilde_run"])
    assert result.exit_code == 1 and "give it with --sep" in result.output
    result = CliRunner().invoke(cli, ["nextflow", "ingest", str(trace), "--run-name", "tilde_run", "--sep", "~"])
    assert result.exit_code == 0, result.output
    assert tasks_of(ln.Run.get(reference="tilde_run"))["1"].params["hash"] == "3f/a1b2c3"
