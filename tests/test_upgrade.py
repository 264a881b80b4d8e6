"""Schema upgrades: a registry created at the first migration, filled, upgrades with nothing lost.

Each test builds a registry at revision 0001 with plain SQL (the rows an old version wrote,
including the duplicate artifacts concurrent writers could create before 0002 made them
impossible), connects with the public API, which upgrades it to head, and reads everything
back: rows, links, params, lineage, and the features the newer revisions added.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import _connected

import lamin_integrations as ln
from lamin_integrations.core import hashing
from lamin_integrations.core.migrate import HEAD, current_revision, upgrade
from lamin_integrations.core.schema import JSONType, UTCDateTime
from lamin_integrations.errors import InstanceError

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)

# Every table of the 0001 schema, parents first.
TABLES_0001 = ("user", "storage", "project", "feature", "json_value", "transform", "project_transform", "run",
               "artifact", "project_run", "record", "project_record", "run_json_value", "project_artifact",
               "run_input_artifact", "run_recreated_artifact")
JSON_COLUMNS = ("params", "value", "_aux")

WF_PARAMS = {"genome": "GRCh38", "samples": ["a", "b"], "threads": 8, "trim": {"min_len": 20, "adapter": "AGATCGG"}}


def t(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def insert(conn: sa.Connection, table: str, **values: Any) -> int:
    """One plain INSERT ... RETURNING id; timestamps and JSON bound as the 0001 columns store them."""
    cols = ", ".join(f'"{c}"' for c in values)
    stmt = sa.text(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join(":" + c for c in values)}) RETURNING id')
    typed = [sa.bindparam(c, type_=UTCDateTime() if isinstance(v, dt.datetime) else JSONType)
             for c, v in values.items() if isinstance(v, dt.datetime) or c in JSON_COLUMNS]
    return conn.execute(stmt.bindparams(*typed), values).scalar_one()


def dump(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in conn.execute(sa.text(f'SELECT * FROM "{name}" ORDER BY id')).mappings()]
            for name in TABLES_0001}


def fill_0001(conn: sa.Connection, storage_root: str, files: dict[str, Path], duplicates: bool) -> dict[str, int]:
    """A small RNA-seq registry as version 0001 wrote it; returns ids by name."""
    ids: dict[str, int] = {}
    common = {"branch_id": 1, "is_locked": False}
    ids["alice"] = insert(conn, "user", uid="aLiCe001", handle="alice", name="Alice Smith", created_at=t(0), updated_at=t(0))
    by = {"created_by_id": ids["alice"]}
    ids["storage"] = insert(conn, "storage", uid="stor00000001", root=storage_root, type="local", region="node-1",
                            created_at=t(0), updated_at=t(0), **by, **common)
    ids["atlas"] = insert(conn, "project", uid="proj00000001", name="Atlas", abbr="ATL", created_at=t(1), updated_at=t(1),
                          **by, **common)
    ids["genome"] = insert(conn, "feature", uid="feat00000001", name="genome", dtype="str", created_at=t(1),
                           updated_at=t(1), **by, **common)
    ids["grch38"] = insert(conn, "json_value", feature_id=ids["genome"], value="GRCh38", hash="hv-grch38", created_at=t(1))

    def transform(name: str, uid: str, key: str, version: str | None, kind: str, latest: bool, minute: int) -> None:
        ids[name] = insert(conn, "transform", uid=uid, key=key, version=version, kind=kind, hash=f"th-{name}",
                           source_code=f"# {key} {version}\n", is_latest=latest, created_at=t(minute),
                           updated_at=t(minute), **by, **common)

    transform("wf1", "nfpipe0000010000", "rnaseq/main.nf", "1.0", "pipeline", False, 2)
    transform("wf2", "nfpipe0000010001", "rnaseq/main.nf", "2.0", "pipeline", True, 3)
    transform("align", "align00000010000", "align.py", None, "script", True, 3)
    transform("count", "count00000010000", "count.py", None, "script", True, 3)
    transform("report", "report0000010000", "report.ipynb", None, "notebook", True, 3)
    insert(conn, "project_transform", project_id=ids["atlas"], transform_id=ids["wf2"], created_at=t(3))

    def run(name: str, transform: str, minute: int, params: dict, parent: str | None = None, **extra: Any) -> None:
        chain = {"initiated_by_run_id": ids[parent], "root_run_id": ids[parent]} if parent else {}
        ids[name] = insert(conn, "run", uid=f"run{name:_<13}"[:16], name=name, transform_id=ids[transform],
                           started_at=t(minute), finished_at=t(minute + 5), params=params, _status_code=0,
                           host="node-1", pid=4000 + minute, created_at=t(minute), updated_at=t(minute + 5),
                           **chain, **extra, **by, **common)

    run("old_wf", "wf1", 5, {"genome": "GRCh37"})
    run("wf", "wf2", 10, WF_PARAMS, reference="nf-session-1", reference_type="nextflow_session",
        _aux={"git": {"commit": "0a1b2c3", "dirty": False}})
    run("align_a", "align", 11, {"sample": "a", "aligner": "star"}, "wf")
    run("align_a_retry", "align", 12, {"sample": "a", "aligner": "star", "attempt": 2}, "wf")
    run("count_a", "count", 13, {"sample": "a", "stranded": True}, "wf")
    run("count_a2", "count", 14, {"sample": "a", "stranded": True, "attempt": 2}, "wf")
    run("report_run", "report", 20, {"title": "QC report", "dpi": 150}, cli_args="--title 'QC report'")
    insert(conn, "project_run", project_id=ids["atlas"], run_id=ids["wf"], created_at=t(10))
    insert(conn, "run_json_value", run_id=ids["wf"], json_value_id=ids["grch38"], created_at=t(10))
    ids["sample_a"] = insert(conn, "record", uid="rec0000000000001", name="sample a", is_type=False, run_id=ids["wf"],
                             created_at=t(10), updated_at=t(10), **by, **common)
    insert(conn, "project_record", project_id=ids["atlas"], record_id=ids["sample_a"], created_at=t(10))

    def artifact(name: str, key: str | None, hash_: str | None, run: str | None, minute: int, suffix: str,
                 version: int = 0, stem: str | None = None, **extra: Any) -> None:
        stem = stem or f"art{name:_<13}"[:16]
        values = {"uid": f"{stem}{version:04d}", "key": key, "storage_id": ids["storage"], "suffix": suffix,
                  "size": 1000 + minute, "hash": hash_, "_hash_type": "blake3" if hash_ else None,
                  "run_id": ids[run] if run else None, "is_latest": True, "_key_is_virtual": True,
                  "_storage_ongoing": False, "created_at": t(minute), "updated_at": t(minute), **by, **common}
        ids[name] = insert(conn, "artifact", **{**values, **extra})

    bam_hash, table_hash = hashing.hash_file(files["bam"])[0], hashing.hash_file(files["table"])[0]
    artifact("raw_a", "raw/a.fastq", "hraw-a", None, 4, ".fastq", description="sample a, lane 1")
    artifact("raw_b", "raw/b.fastq", "hraw-b", None, 4, ".fastq")
    if duplicates:  # the same input registered by two processes at once, once from inside a run
        artifact("raw_a_2", "raw/a.fastq", "hraw-a", None, 4, ".fastq")
        artifact("raw_b_2", "raw/b.fastq", "hraw-b", "old_wf", 6, ".fastq")
    # A BAM written by the align step; its retry and a thread of the step itself saved it again.
    artifact("bam_1", "aligned/a.bam", bam_hash, "align_a", 11, ".bam", is_latest=not duplicates, n_observations=5000)
    if duplicates:
        artifact("bam_2", "aligned/a.bam", bam_hash, "align_a_retry", 12, ".bam", version=1, stem="artbam_1________",
                 description="retry output")
        artifact("bam_3", "aligned/a.bam", bam_hash, "align_a", 12, ".bam", is_latest=True)
    artifact("bam_trashed", "aligned/a.bam", bam_hash, "align_a", 9, ".bam", branch_id=-1, is_latest=False)
    artifact("bam_copy", "aligned/a.copy.bam", bam_hash, None, 15, ".bam")  # same bytes, another key: no duplicate
    artifact("log_1", "logs/a.log", None, "align_a", 11, ".log")  # not hashed: not covered by the indexes
    artifact("log_2", "logs/a.log", None, "align_a_retry", 12, ".log")
    artifact("counts_a", "counts/a.tsv", "hcounts-a", "count_a", 13, ".tsv")
    # A keyless DataFrame, saved by two concurrent counting runs.
    artifact("table_1", None, table_hash, "count_a", 13, ".parquet", kind="dataset", otype="DataFrame")
    if duplicates:
        artifact("table_2", None, table_hash, "count_a2", 14, ".parquet", kind="dataset", otype="DataFrame")
    artifact("env_1", None, "henv", None, 10, ".txt", kind="__lamindb_run__")  # environments are shared
    if duplicates:
        artifact("env_2", None, "henv", None, 20, ".txt", kind="__lamindb_run__")
    artifact("report_html", "results/report.html", "hreport", "report_run", 25, ".html", kind="report")
    if duplicates:  # an upload cut short left the first row flagged; the second one completed
        artifact("qc_1", "qc/multiqc.html", "hqc", None, 26, ".html", _storage_ongoing=True)
        artifact("qc_2", "qc/multiqc.html", "hqc", None, 27, ".html")

    def d(dup: str, orig: str) -> int:  # the duplicate row when there is one
        return ids[dup if duplicates else orig]

    conn.execute(sa.text("UPDATE run SET environment_id = :e WHERE id = :r"), {"e": ids["env_1"], "r": ids["wf"]})
    conn.execute(sa.text("UPDATE run SET environment_id = :e, report_id = :a WHERE id = :r"),
                 {"e": d("env_2", "env_1"), "a": ids["report_html"], "r": ids["report_run"]})
    for run_name, artifact_id, minute in [("align_a", ids["raw_a"], 11), ("align_a_retry", d("raw_a_2", "raw_a"), 12),
                                          ("count_a", d("bam_2", "bam_1"), 13), ("count_a2", d("bam_3", "bam_1"), 14),
                                          ("report_run", ids["counts_a"], 20), ("report_run", ids["table_1"], 20)]:
        insert(conn, "run_input_artifact", run_id=ids[run_name], artifact_id=artifact_id, created_at=t(minute))
    if duplicates:  # the report read the DataFrame through both of its rows
        insert(conn, "run_input_artifact", run_id=ids["report_run"], artifact_id=ids["table_2"], created_at=t(20))
    insert(conn, "run_recreated_artifact", run_id=ids["old_wf"], artifact_id=d("bam_2", "bam_1"), created_at=t(16))
    insert(conn, "project_artifact", project_id=ids["atlas"], artifact_id=ids["bam_1"], created_at=t(11))
    if duplicates:
        insert(conn, "project_artifact", project_id=ids["atlas"], artifact_id=ids["bam_2"], created_at=t(12))
    insert(conn, "project_artifact", project_id=ids["atlas"], artifact_id=ids["report_html"], created_at=t(25))
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "out").mkdir()
    bam, table = tmp_path / "out" / "a.bam", tmp_path / "out" / "table.parquet"
    bam.write_bytes(b"BAM\x01" + bytes(range(256)) * 8)
    table.write_bytes(b"PAR1 sample counts a=12 b=30 PAR1")
    return {"bam": bam, "table": table}


def build_old_registry(url: str, storage: Path, files: dict[str, Path], duplicates: bool) -> tuple[dict, dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            upgrade(conn, "0001")
            assert current_revision(conn) == "0001"
        with engine.begin() as conn:
            ids = fill_0001(conn, str(storage), files, duplicates)
        with engine.connect() as conn:
            return ids, dump(conn)
    finally:
        engine.dispose()


@contextlib.contextmanager
def connected(url: str, storage: Path, monkeypatch: pytest.MonkeyPatch):
    gen = _connected(url, storage, monkeypatch)
    try:
        yield next(gen)
    finally:
        gen.close()


def pairs(rows: list[dict], other: str) -> set[tuple[int, int]]:
    return {(r[other], r["artifact_id"]) for r in rows}


def test_upgrade_merges_duplicate_artifacts_and_loses_nothing(url, tmp_path, files, monkeypatch):
    storage = tmp_path / "storage"
    ids, before = build_old_registry(url, storage, files, duplicates=True)
    assert len(before["artifact"]) == 19 and len(before["run_input_artifact"]) == 7

    with connected(url, storage, monkeypatch) as instance:
        with instance.read() as conn:
            assert current_revision(conn) == HEAD
            after = dump(conn)

        # Untouched tables: every row identical, ids included.
        for name in ("user", "storage", "project", "feature", "json_value", "transform", "project_transform",
                     "project_run", "record", "project_record", "run_json_value"):
            assert after[name] == before[name], name

        # Runs: all there, unchanged but for an environment that pointed at a duplicate.
        expected_runs = [dict(r) for r in before["run"]]
        for r in expected_runs:
            if r["environment_id"] == ids["env_2"]:
                r["environment_id"] = ids["env_1"]
        assert after["run"] == expected_runs
        by_id = {r["id"]: r for r in after["run"]}
        assert by_id[ids["report_run"]]["environment_id"] == ids["env_1"]
        assert by_id[ids["report_run"]]["report_id"] == ids["report_html"]

        # Artifacts: no row deleted; duplicates trashed with all their fields; kept rows completed.
        dups = {"raw_a_2": "raw_a", "raw_b_2": "raw_b", "bam_2": "bam_1", "bam_3": "bam_1", "table_2": "table_1",
                "env_2": "env_1", "qc_1": "qc_2"}
        expected = {r["id"]: dict(r) for r in before["artifact"]}
        for dup in dups:
            expected[ids[dup]]["branch_id"] = -1
        expected[ids["bam_1"]]["is_latest"] = True  # its newer duplicate version was the latest
        expected[ids["raw_b"]]["run_id"] = ids["old_wf"]  # registered outside a run, then saved by old_wf
        assert {r["id"]: r for r in after["artifact"]} == expected
        assert sorted(r["id"] for r in after["artifact"] if r["branch_id"] == -1) == \
            sorted([ids[d] for d in dups] + [ids["bam_trashed"]])

        # Links: every link survives, moved to the kept row, never doubled.
        n = {name: ids[name] for name in ids}
        assert pairs(after["run_input_artifact"], "run_id") == {
            (n["align_a"], n["raw_a"]), (n["align_a_retry"], n["raw_a"]), (n["count_a"], n["bam_1"]),
            (n["count_a2"], n["bam_1"]), (n["report_run"], n["counts_a"]), (n["report_run"], n["table_1"])}
        assert len(after["run_input_artifact"]) == 6
        # The moved link keeps its row (id, created_at); the double one is gone.
        kept_link = next(r for r in after["run_input_artifact"] if r["run_id"] == n["count_a"])
        assert kept_link == {**next(r for r in before["run_input_artifact"] if r["run_id"] == n["count_a"]),
                             "artifact_id": n["bam_1"]}
        # The runs that created a duplicate are producers of the kept row: it recreated it.
        assert pairs(after["run_recreated_artifact"], "run_id") == {
            (n["old_wf"], n["bam_1"]), (n["align_a_retry"], n["bam_1"]), (n["count_a2"], n["table_1"])}
        assert pairs(after["project_artifact"], "project_id") == {(n["atlas"], n["bam_1"]), (n["atlas"], n["report_html"])}

        # The public API reads the same registry.
        assert ln.Run.filter().count() == 7 and ln.Transform.filter().count() == 5
        assert ln.Run.get(ids["wf"]).params == WF_PARAMS
        assert ln.Run.get(ids["wf"])._aux == {"git": {"commit": "0a1b2c3", "dirty": False}}
        assert {r.name: r.params for r in ln.Run.filter(initiated_by_run__name="wf")} == {
            "align_a": {"sample": "a", "aligner": "star"}, "align_a_retry": {"sample": "a", "aligner": "star", "attempt": 2},
            "count_a": {"sample": "a", "stranded": True}, "count_a2": {"sample": "a", "stranded": True, "attempt": 2}}
        bam = ln.Artifact.get(key="aligned/a.bam")
        assert bam.id == ids["bam_1"] and bam.is_latest and bam.n_observations == 5000
        assert bam.run.name == "align_a"
        assert sorted(r.name for r in bam.recreating_runs) == ["align_a_retry", "old_wf"]
        assert sorted(r.name for r in bam.input_of_runs) == ["count_a", "count_a2"]
        assert [p.name for p in bam.projects] == ["Atlas"]
        trashed = ln.Artifact.get(uid="artbam_1________0001")  # a duplicate's uid still resolves
        assert trashed.id == ids["bam_2"] and trashed.branch_id == -1 and trashed.description == "retry output"
        assert trashed.run.name == "align_a_retry"
        assert ln.Artifact.filter(key="aligned/a.bam").count() == 1
        assert ln.Artifact.filter(key="logs/a.log").count() == 2
        assert ln.Artifact.get(key="qc/multiqc.html").id == ids["qc_2"]  # the complete row is kept

        # Lineage from the final report reaches every producer, through the kept rows only.
        report = ln.Artifact.get(key="results/report.html")
        graph = ln.lineage.upstream(report)
        assert {r.uid for r in graph} == {
            *(ln.Artifact.get(ids[a]).uid for a in ("report_html", "counts_a", "table_1", "bam_1", "raw_a")),
            *(ln.Run.get(ids[r]).uid for r in ("report_run", "count_a", "count_a2", "align_a", "align_a_retry",
                                               "old_wf", "wf"))}
        edges = {(a.id, b.id, k) for a, b, k in graph.edges}
        assert (n["align_a_retry"], n["bam_1"], "recreated") in edges
        assert (n["count_a2"], n["table_1"], "recreated") in edges
        assert (n["bam_1"], n["count_a2"], "used") in edges
        assert (n["wf"], n["align_a"], "initiated") in edges
        down = ln.lineage.downstream(ln.Artifact.get(key="raw/a.fastq"))
        assert ln.Artifact.get(key="results/report.html") in down

        # What the newer revisions added works on the upgraded registry.
        again = ln.Artifact(files["bam"], key="aligned/a.bam").save()
        assert again.id == ids["bam_1"]
        table = ln.Artifact(files["table"]).save()
        assert table.id == ids["table_1"]
        assert ln.Artifact.filter(key="aligned/a.bam").count() == 1
        with instance.read() as conn:
            live = conn.execute(sa.text("SELECT count(*) FROM artifact WHERE hash = :h AND key IS NULL AND branch_id != -1"),
                                {"h": table.hash}).scalar()
        assert live == 1
        with pytest.raises(sa.exc.IntegrityError), instance.engine.begin() as conn:  # the index refuses a new duplicate
            conn.execute(sa.text("UPDATE artifact SET branch_id = 1 WHERE id = :i"), {"i": ids["bam_2"]})
        with pytest.raises(sa.exc.IntegrityError), instance.engine.begin() as conn:  # and a keyless one
            conn.execute(sa.text("UPDATE artifact SET branch_id = 1 WHERE id = :i"), {"i": ids["table_2"]})
        assert instance.hash_mode == "blake3"
        instance.set_setting("report_theme", "dark")
        assert instance.get_setting("report_theme") == "dark"
        with pytest.raises(InstanceError, match="hashed artifacts"):
            instance.set_hash_mode("lamindb")


def test_upgrade_without_duplicates_changes_no_row(url, tmp_path, files, monkeypatch):
    storage = tmp_path / "storage"
    ids, before = build_old_registry(url, storage, files, duplicates=False)
    assert len(before["artifact"]) == 11

    with connected(url, storage, monkeypatch) as instance:
        with instance.read() as conn:
            assert current_revision(conn) == HEAD
            assert dump(conn) == before  # every row of every table, ids and values unchanged
        graph = ln.lineage.upstream(ln.Artifact.get(key="results/report.html"))
        assert {(type(r).__name__, r.id) for r in graph} == {
            *(("Artifact", ids[a]) for a in ("report_html", "counts_a", "table_1", "bam_1", "raw_a")),
            *(("Run", ids[r]) for r in ("report_run", "count_a", "align_a", "old_wf", "wf"))}
        assert ln.Artifact(files["bam"], key="aligned/a.bam").save().id == ids["bam_1"]


def test_upgraded_registry_has_exactly_the_current_schema(url, tmp_path, files, monkeypatch):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lamin_integrations.core.schema import metadata

    storage = tmp_path / "storage"
    build_old_registry(url, storage, files, duplicates=True)
    with connected(url, storage, monkeypatch) as instance, instance.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
        assert diffs == [], f"the upgraded schema differs from schema.py: {diffs}"
        assert not sa.inspect(conn).has_table("_artifact_merge")
