"""Two nodes, one registry: PostgreSQL plus S3-compatible storage, both real servers on loopback.

Node A and node B are separate processes with separate working folders and separate
LAMIN_INTEGRATIONS_HOME (hash caches, downloads, run logs); they share only the registry
URL and the storage root. Node A runs a Snakemake workflow; its output reaches node B twice,
as a download from storage by a tracked script (`Artifact.get(key=...).cache()`) and as a
plain copy of the file into B's working folder that B's Snakemake workflow reads. The file
must be one artifact, and the lineage of B's final output must reach A's runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("snakemake")
pytest.importorskip("s3fs")

import lamin_integrations as ln  # noqa: E402
from lamin_integrations.core import instance as instance_module  # noqa: E402
from lamin_integrations.core import schema  # noqa: E402
from tests.conftest import python_env  # noqa: E402

NODE_A_WORKFLOW = textwrap.dedent("""
    rule all:
        input: "results/data.txt"

    rule make:
        input: "data/raw.txt"
        output: "results/data.txt"
        shell: "sort {input} > {output}"
""")

NODE_B_SCRIPT = textwrap.dedent("""
    from pathlib import Path

    import lamin_integrations as ln

    ln.track()
    data = ln.Artifact.get(key="results/data.txt")
    local = data.cache()
    print(local)
    Path("work").mkdir(exist_ok=True)
    Path("work/upper.txt").write_text(local.read_text().upper())
    ln.Artifact("work/upper.txt", key="work/upper.txt").save()
    ln.finish()
""")

NODE_B_WORKFLOW = textwrap.dedent("""
    rule all:
        input: "results/final.txt"

    rule final:
        input: data="results/data.txt", upper="work/upper.txt"
        output: "results/final.txt"
        shell: "cat {input.data} {input.upper} > {output}"
""")


def node(name: str, tmp_path: Path, shared: dict[str, str], *, registry_in_env: bool = True) -> tuple[Path, dict[str, str]]:
    """A node's working folder and environment: its own home (caches), the shared registry."""
    workdir, home = tmp_path / name / "work", tmp_path / name / "home"
    workdir.mkdir(parents=True)
    env = python_env(LAMIN_INTEGRATIONS_HOME=str(home), **shared)
    if not registry_in_env:
        env.pop("LAMIN_INTEGRATIONS_DB", None)
        env.pop("LAMIN_INTEGRATIONS_STORAGE", None)
    return workdir, env


def run(cmd: list[str], workdir: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "lamin-integrations:" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def test_two_nodes_share_one_registry_on_postgres_and_s3(postgres_url, s3_server, tmp_path, monkeypatch):
    bucket = s3_server.create_bucket(f"cluster-{uuid.uuid4().hex[:12]}")
    storage = f"s3://{bucket}/lamin"
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    shared = {**s3_server.env, "LAMIN_INTEGRATIONS_DB": postgres_url, "LAMIN_INTEGRATIONS_STORAGE": storage}

    # Node A: a Snakemake workflow, the registry given through the environment.
    work_a, env_a = node("node_a", tmp_path, shared)
    (work_a / "data").mkdir()
    (work_a / "data" / "raw.txt").write_text("gamma\nalpha\nbeta\n")
    (work_a / "Snakefile").write_text(NODE_A_WORKFLOW)
    run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin"], work_a, env_a)

    # Node B: a tracked script that downloads A's file from storage ...
    work_b, env_b = node("node_b", tmp_path, shared)
    (work_b / "analyse.py").write_text(NODE_B_SCRIPT)
    downloaded = Path(run([sys.executable, "analyse.py"], work_b, env_b).strip().splitlines()[-1])
    assert downloaded.is_relative_to(tmp_path / "node_b" / "home"), "B downloads into its own cache"
    # ... and a Snakemake workflow reading a plain copy of it (rsync, a shared disk, ...),
    # pointed at the registry by its --logger-lamin-* flags rather than the environment.
    (work_b / "results").mkdir()
    shutil.copy2(work_a / "results" / "data.txt", work_b / "results" / "data.txt")
    (work_b / "Snakefile").write_text(NODE_B_WORKFLOW)
    _, env_flags = node("node_b_flags", tmp_path, s3_server.env, registry_in_env=False)
    run([sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "lamin",
         "--logger-lamin-db", postgres_url, "--logger-lamin-storage", storage], work_b, env_flags)

    instance = ln.connect(postgres_url, storage)
    try:
        a = schema.artifact
        with instance.read() as conn:
            rows = conn.execute(sa.select(a.c.id, a.c.hash, a.c._storage_ongoing)
                                .where(a.c.key == "results/data.txt")).all()
        [(data_id, data_hash, ongoing)] = rows
        assert not ongoing
        assert ln.Artifact.filter(hash=data_hash).count() == 1, "the file produced on A and used on B is one artifact"
        data = ln.Artifact.get(data_id)
        assert str(data.path).startswith(f"{storage}/.lamindb/")
        assert data.cache().read_bytes() == (work_a / "results" / "data.txt").read_bytes()

        # A's runs: the workflow and its job that made the file.
        make = data.run
        wf_a = make.initiated_by_run
        assert make.name == "make" and wf_a.reference_type == "snakemake_id" and wf_a.status == "completed"
        assert {x.key for x in make.input_artifacts} == {"data/raw.txt"}

        # B's script read it from storage; B's workflow job read the copy: the same artifact.
        script_run = ln.Run.get(transform__key="analyse.py")
        assert script_run.status == "completed"
        assert [x.id for x in script_run.input_artifacts] == [data_id]
        final = ln.Artifact.get(key="results/final.txt")
        job_b = final.run
        wf_b = job_b.initiated_by_run
        assert job_b.name == "final" and wf_b.reference_type == "snakemake_id" and wf_b.id != wf_a.id
        inputs = {x.key: x for x in job_b.input_artifacts}
        assert inputs["results/data.txt"].id == data_id
        assert inputs["work/upper.txt"].run.id == script_run.id

        # The lineage of B's final output reaches node A's runs and A's raw input.
        up = ln.lineage.upstream(final)
        run_ids = {r.id for r in up.runs}
        assert {job_b.id, script_run.id, make.id, wf_a.id} <= run_ids
        assert {"data/raw.txt", "results/data.txt", "work/upper.txt"} <= {x.key for x in up.artifacts}
        # No run was left open on either node.
        assert ln.Run.filter(status__in=["started", "restarted"]).count() == 0
    finally:
        instance.dispose()
        instance_module._current = None


def test_an_interrupted_download_is_never_served_from_the_cache(s3_server, tmp_path, monkeypatch):
    """A node killed while `cache()` downloads a folder must not leave a partial folder that
    later calls take for the whole artifact (a file is caught by its size; a folder was not)."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.create_bucket(f"cache-{uuid.uuid4().hex[:12]}")
    instance = ln.connect(f"sqlite:///{tmp_path / 'lineage.db'}", f"s3://{bucket}/lamin")
    try:
        folder = tmp_path / "plots"
        folder.mkdir()
        for i in range(3):
            (folder / f"{i}.txt").write_text(f"plot {i}\n")
        artifact = ln.Artifact(folder, key="plots").save()

        from lamin_integrations.core.storage import filesystem

        fs, _ = filesystem(str(artifact.path))  # fsspec hands out this same instance again
        real_get = fs.get

        def dies_halfway(rpath, lpath, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            real_get(rpath, lpath, *args, **kwargs)
            for written in sorted(Path(lpath).rglob("*.txt"))[1:]:
                written.unlink()  # as if the process died after the first file
            raise OSError("connection lost")

        monkeypatch.setattr(fs, "get", dies_halfway)
        with pytest.raises(OSError, match="connection lost"):
            artifact.cache()
        monkeypatch.setattr(fs, "get", real_get)
        local = artifact.cache()
        assert sorted(p.name for p in local.iterdir()) == ["0.txt", "1.txt", "2.txt"]
        assert (local / "2.txt").read_text() == "plot 2\n"
    finally:
        instance.dispose()
        instance_module._current = None
