"""The `lamin-integrations` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import python_env

import lamin_integrations as ln

CLI = str(Path(sys.executable).with_name("lamin-integrations"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=python_env(), timeout=60)


def _pipeline() -> tuple[ln.Run, ln.Run]:
    t = ln.Transform(key="wf/Snakefile", kind="pipeline").save()
    step = ln.Transform(key="wf/Snakefile:align", kind="step").save()
    top = ln.Run(t, name="top", status="started", reference="abc", reference_type="snakemake_id").save()
    child = ln.Run(step, name="align[sample=A]", initiated_by_run=top, reference_type="snakemake_job").save()
    child.status = "errored"
    child.save()
    return top, child


def test_info_shows_counts_and_schema(registry):
    _pipeline()
    proc = cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["counts"]["Run"] == 2 and data["counts"]["Transform"] == 2
    assert data["schema_revision"] and data["dialect"] == registry.dialect
    assert data["db"] == registry.url


def test_runs_lists_and_filters(registry):
    top, child = _pipeline()
    proc = cli("runs", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["uid"] for r in json.loads(proc.stdout)} == {top.uid, child.uid}
    errored = json.loads(cli("runs", "--status", "errored", "--json").stdout)
    assert [r["uid"] for r in errored] == [child.uid]
    assert errored[0]["initiated_by_run"] == top.uid
    by_type = json.loads(cli("runs", "--reference-type", "snakemake_id", "--json").stdout)
    assert [r["uid"] for r in by_type] == [top.uid]
    by_transform = json.loads(cli("runs", "--transform", "wf/Snakefile:align", "--json").stdout)
    assert [r["uid"] for r in by_transform] == [child.uid]
    table = cli("runs")
    assert top.uid in table.stdout and "errored" in table.stdout
    assert len(json.loads(cli("runs", "--limit", "1", "--json").stdout)) == 1


def test_show_describes_by_uid_prefix(registry):
    top, child = _pipeline()
    proc = cli("show", child.uid[:10])
    assert proc.returncode == 0, proc.stderr
    assert f"Run {child.uid}" in proc.stdout and "errored" in proc.stdout
    assert top.uid in proc.stdout  # the parent run
    transform = cli("show", child.transform.uid)
    assert "wf/Snakefile:align" in transform.stdout


def test_errors_are_one_line_with_nonzero_exit(registry):
    _pipeline()
    for args, needle in [(("show", "doesnotexist"), "no record"),
                         (("runs", "--status", "bogus"), "unknown run status"),
                         (("runs", "--limit", "0"), "Invalid value")]:
        proc = cli(*args)
        assert proc.returncode != 0, args
        assert needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [os.urandom(8192), b"SQLite format 3\x00" + os.urandom(8192)],
                         ids=["not-sqlite", "torn-header"])
def test_a_corrupt_registry_file_is_one_line_and_left_alone(tmp_path, content):
    db = tmp_path / "lineage.db"
    db.write_bytes(content)
    for args in (("runs",), ("info",), ("show", "abc")):
        proc = subprocess.run([CLI, "--db", f"sqlite:///{db}", *args], capture_output=True, text=True,
                              env=python_env(), timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "is not a usable SQLite database" in proc.stderr and str(db) in proc.stderr
        assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lineage.db"]  # no -wal, lock or journal beside it


def test_show_and_lineage_take_a_file_path_or_an_artifact_key(registry, tmp_path):
    t = ln.Transform(key="make.py", kind="script").save()
    run = ln.Run(t, name="make").save()
    data = tmp_path / "out" / "counts.tsv"
    data.parent.mkdir()
    data.write_text("gene\tn\nA\t3\n")
    artifact = ln.Artifact(str(data), key="results/counts.tsv", run=run).save()
    same = tmp_path / "copy.tsv"  # the same bytes elsewhere, e.g. a published copy: found by content
    same.write_bytes(data.read_bytes())
    for given in (str(data), str(same), "results/counts.tsv", "./results/counts.tsv"):
        proc = cli("show", given)
        assert proc.returncode == 0 and f"Artifact results/counts.tsv {artifact.uid}" in proc.stdout, (given, proc.stderr)
    proc = cli("lineage", str(same), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert {n["uid"] for n in json.loads(proc.stdout)["nodes"]} == {artifact.uid, run.uid}
    data.write_text("changed\n")  # other content, no such key: not this artifact
    proc = cli("show", str(data))
    assert proc.returncode == 1 and "no artifact has that key or the content of that file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_whose_bytes_are_not_registered_is_shown_by_its_key_with_a_note_and_a_link_as_itself(
        registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ln.Run(ln.Transform(key="wf", kind="pipeline").save()).save()
    out = tmp_path / "results" / "out.txt"
    out.parent.mkdir()
    out.write_text("recorded\n")
    recorded = ln.Artifact(out, key="results/out.txt", run=run).save()
    out.write_text("rewritten by a run nobody recorded\n")
    proc = subprocess.run([CLI, "show", "results/out.txt"], capture_output=True, text=True, env=python_env(), timeout=60)
    assert proc.returncode == 0 and recorded.uid in proc.stdout
    assert "is not registered" in proc.stderr and "holds other bytes" in proc.stderr, proc.stderr
    # a published link into a work dir: the published artifact, not the work file with its bytes
    work = tmp_path / "work" / "ab" / "cdef"
    work.mkdir(parents=True)
    (work / "x.bam").write_text("bam\n")
    in_work = ln.Artifact(work / "x.bam", key="work/ab/cdef/x.bam", run=run).save()
    (tmp_path / "results" / "x.bam").symlink_to(work / "x.bam")
    from lamin_integrations.core.pipeline import record_outputs

    [published] = record_outputs(run, ["results/x.bam"], workdir=tmp_path)  # as pipelines record their files
    assert published.key == "results/x.bam" and published.hash == in_work.hash
    for given, expected in (("results/x.bam", published), ("work/ab/cdef/x.bam", in_work)):
        proc = subprocess.run([CLI, "show", given], capture_output=True, text=True, env=python_env(), timeout=60)
        assert proc.returncode == 0 and expected.uid in proc.stdout and not proc.stderr, (given, proc.stderr)


def test_show_with_ambiguous_prefix_says_so(registry):
    v1 = ln.Transform(key="x", version="1").save()
    v2 = ln.Transform(key="x", version="2").save()
    assert v1.uid[:12] == v2.uid[:12]
    proc = cli("show", v1.uid[:12])
    assert proc.returncode == 1 and "ambiguous" in proc.stderr
    assert cli("show", v2.uid).returncode == 0


def test_show_prints_keys_and_values_that_look_like_markup_as_they_are(registry, tmp_path):
    run = ln.Run(ln.Transform(key="brackets.py", kind="script", version="[v1]").save(),
                 params={"label": "[bold]ünï[/bold]"}).save()
    for key in ("exp/[rep1]/counts.txt", "exp/counts[/b].txt"):
        path = tmp_path / key.replace("/", "_")
        path.write_text(key)
        ln.Artifact(path, key=key, run=run).save()
    proc = cli("show", run.uid)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    for text in ("exp/[rep1]/counts.txt", "exp/counts[/b].txt", "[v1]", '"[bold]ünï[/bold]"'):
        assert text in proc.stdout, (text, proc.stdout)


def test_bad_numbers_and_unwritable_outputs_are_one_line(registry, tmp_path):
    top, _ = _pipeline()
    (tmp_path / "afile").write_text("a file, not a folder")
    for args in (("runs", "--limit", "99999999999999999999"), ("lineage", top.uid, "--depth", "99999999999999999999"),
                 ("export", top.uid, "--format", "prov-json", "-o", str(tmp_path / "afile" / "out.json")),
                 ("report", top.uid, "-o", str(tmp_path / "afile" / "report.html")),
                 ("export", top.uid, "--format", "openlineage", "-o", "/proc/ol.jsonl")):
        proc = cli(*args)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 4 and "Error:" in proc.stderr, (args, proc.stderr)


def test_reading_commands_do_not_create_a_registry_at_a_mistyped_path(tmp_path):
    typo = tmp_path / "typo_dir" / "lineage.db"
    for args in (("runs",), ("info",), ("show", "abc"), ("lineage", "abc")):
        proc = subprocess.run([CLI, "--db", f"sqlite:///{typo}", *args], capture_output=True, text=True,
                              env=python_env(), timeout=60)
        assert proc.returncode == 1 and f"no registry at {typo}" in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "typo_dir").exists()


def test_a_registry_given_as_a_plain_file_path_is_that_sqlite_file(tmp_path):
    """As `--logger-lamin-db reg.sqlite` takes it, so do `--db` and LAMIN_INTEGRATIONS_DB."""
    script = tmp_path / "job.py"
    script.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
    env = python_env(LAMIN_INTEGRATIONS_DB="reg.sqlite")
    env.pop("LAMIN_INTEGRATIONS_STORAGE", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "reg.sqlite").is_file()
    listed = subprocess.run([CLI, "--db", str(tmp_path / "reg.sqlite"), "runs"], capture_output=True, text=True,
                            env=python_env(), timeout=60)
    assert listed.returncode == 0 and "job.py" in listed.stdout, listed.stderr


def test_lineage_of_a_file_inside_a_recorded_folder_and_of_a_copy(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "many").mkdir()
    for i in range(3):
        (tmp_path / "many" / f"f_{i}.txt").write_text(f"{i}\n")
    run = ln.Run(ln.Transform(key="wf", kind="pipeline").save()).save()
    folder = ln.Artifact(tmp_path / "many", key="many", run=run).save()
    inside = subprocess.run([CLI, "show", "many/f_1.txt"], capture_output=True, text=True, env=python_env(),
                            cwd=tmp_path, timeout=60)
    assert inside.returncode == 0 and folder.uid in inside.stdout and "inside the recorded folder" in inside.stderr
    (tmp_path / "copy.txt").write_text("1\n")  # the bytes of many/f_1.txt, under another name
    ln.Artifact(tmp_path / "many" / "f_1.txt", key="f_1.txt").save()
    copy = subprocess.run([CLI, "show", "copy.txt"], capture_output=True, text=True, env=python_env(),
                          cwd=tmp_path, timeout=60)
    assert copy.returncode == 0 and "f_1.txt" in copy.stdout and "same content" in copy.stderr
