"""Artifacts: bytes in storage, hashing with a stat cache, dedup, versions, input tracking."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import python_env, race

import lamin_integrations as ln
from lamin_integrations.core import hashing, schema
from lamin_integrations.errors import InvalidKey, NotFoundOnDisk, ValidationError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_file_is_copied_into_storage_and_readable(registry, tmp_path):
    src = write(tmp_path / "work" / "table.csv", "a,b\n1,2\n3,4\n")
    artifact = ln.Artifact(src, key="results/table.csv", description="a table").save()
    assert artifact.uid.endswith("0000") and len(artifact.uid) == 20
    assert artifact.size == src.stat().st_size and artifact.suffix == ".csv"
    assert artifact.hash_type == "blake3" and len(artifact.hash) == 22
    stored = artifact.path
    assert stored.exists() and stored.read_bytes() == src.read_bytes()
    assert Path(registry.storage_root) in stored.parents
    assert artifact.load().equals(pd.DataFrame({"a": [1, 3], "b": [2, 4]}))
    assert artifact.open().to_table().to_pandas().equals(pd.DataFrame({"a": [1, 3], "b": [2, 4]}))  # lamindb: a pyarrow Dataset
    again = ln.Artifact.get(key="results/table.csv")
    assert again == artifact and again.hash == artifact.hash


def test_open_reads_tables_lazily_and_other_files_as_bytes(registry, tmp_path):
    """lamindb's `artifact.open()`: a pyarrow Dataset for table formats (read in batches,
    filtered before loading); other files as read-only file objects."""
    frame = pd.DataFrame({"gene": ["a", "b", "c"], "count": [1, 5, 9]})
    parquet = ln.Artifact.from_dataframe(frame, key="counts.parquet").save()
    dataset = parquet.open()
    assert type(dataset).__name__ == "FileSystemDataset" and dataset.count_rows() == 3
    import pyarrow.dataset as ds

    assert dataset.to_table(filter=ds.field("count") > 2).to_pandas()["gene"].tolist() == ["b", "c"]
    tsv = ln.Artifact(write(tmp_path / "t.tsv", "x\ty\n1\t2\n"), key="t.tsv").save()
    assert tsv.open().to_table().to_pydict() == {"x": [1], "y": [2]}
    notes = ln.Artifact(write(tmp_path / "notes.md", "# hi"), key="notes.md").save()
    with notes.open() as f:
        assert f.read() == b"# hi"
    with pytest.raises(ValidationError, match="engine 'pyarrow' or 'polars'"):
        parquet.open(engine="duckdb")
    with pytest.raises(ValidationError, match="read-only"):
        notes.open(mode="w")


def test_load_refuses_unknown_formats_and_names_alternatives(registry, tmp_path):
    artifact = ln.Artifact(write(tmp_path / "notes.md", "# hi"), key="notes.md").save()
    with pytest.raises(ValidationError, match=r"\.cache\(\).*\.open\(\)"):
        artifact.load()
    config = ln.Artifact(write(tmp_path / "config.json", '{"lr": 0.01, "layers": [64, 32]}'), key="config.json").save()
    assert config.load() == {"lr": 0.01, "layers": [64, 32]}
    params = ln.Artifact(write(tmp_path / "params.yaml", "genome: GRCh38\nreads: [a.fq, b.fq]\n"), key="params.yaml").save()
    assert params.load() == {"genome": "GRCh38", "reads": ["a.fq", "b.fq"]}
    # as lamindb: text as a str (a run's report too), a picture or page as its local path
    assert ln.Artifact(write(tmp_path / "log.txt", "done\n"), key="log.txt").save().load() == "done\n"
    assert ln.Artifact(write(tmp_path / "ref.fasta", ">chr1\nACGT\n"), key="ref.fasta").save().load() == ">chr1\nACGT\n"
    plot = ln.Artifact(write(tmp_path / "plot.svg", "<svg/>"), key="plot.svg").save()
    assert plot.load() == plot.cache() and plot.load().read_text() == "<svg/>"


def test_dataframe_is_saved_as_parquet(registry):
    df = pd.DataFrame({"gene": ["A", "B"], "count": [3, 5]})
    artifact = ln.Artifact(df, key="counts.parquet").save()
    assert artifact.suffix == ".parquet" and artifact.otype == "DataFrame"
    assert artifact.load().equals(df)
    assert artifact.n_observations == 2 and ln.Artifact.get(artifact.id).n_observations == 2


def test_same_content_returns_existing_and_records_recreation(registry, tmp_path):
    from lamin_integrations.core.context import reset_current_run, set_current_run

    src = write(tmp_path / "out.txt", "result\n")
    t = ln.Transform(key="producer.py", kind="script").save()
    producer = ln.Run(t, status="started").save()
    token = set_current_run(producer)
    original = ln.Artifact(src, key="out.txt").save()
    reset_current_run(token)
    assert original.run == producer

    rerun = ln.Run(t, status="started").save()
    token = set_current_run(rerun)
    try:
        again = ln.Artifact(src, key="out.txt").save()
    finally:
        reset_current_run(token)
    assert again.id == original.id and again.run == producer
    assert list(rerun.recreated_artifacts) == [original]
    assert list(rerun.output_artifacts) == []
    assert set(rerun.query_output_artifacts(include_recreated=True)) == {original}
    assert list(original.recreating_runs) == [rerun]
    assert ln.Artifact.filter().count() == 1


def test_new_content_under_a_key_is_a_new_version(registry, tmp_path):
    src = write(tmp_path / "model.txt", "v1")
    v1 = ln.Artifact(src, key="model.txt").save()
    write(src, "version two")
    v2 = ln.Artifact(src, key="model.txt").save()
    assert v2.uid[:16] == v1.uid[:16] and v2.uid.endswith("0001")
    v1.refresh_from_db()
    assert v2.is_latest and not v1.is_latest
    assert ln.Artifact.get(key="model.txt") == v2
    assert [a.uid for a in v2.versions] == [v2.uid, v1.uid]
    assert ln.Artifact.get(v1.uid[:16]) == v2  # a family stem gives the latest version
    assert v1.path.read_text() == "v1" and v2.path.read_text() == "version two"
    v3 = ln.Artifact(write(tmp_path / "other.txt", "three"), revises=v2).save()
    assert v3.key == "model.txt" and v3.is_latest and not v2.is_latest  # the object given, as the registry has it


def test_get_by_the_path_of_the_bytes(registry, tmp_path):
    copied = ln.Artifact(write(tmp_path / "a.txt", "a"), key="a.txt").save()
    inside = write(Path(registry.storage_root) / "results" / "b.txt", "b")
    in_place = ln.Artifact(inside).save()
    folder = write(tmp_path / "d" / "f.txt", "f").parent
    dir_v1 = ln.Artifact(folder, key="d").save()
    write(folder / "g.txt", "g")
    dir_v2 = ln.Artifact(folder, key="d").save()
    assert ln.Artifact.get(path=copied.path) == copied
    assert ln.Artifact.get(path=str(copied.path)) == copied
    assert ln.Artifact.get(path=inside) == in_place
    assert dir_v1.path == dir_v2.path and ln.Artifact.get(path=dir_v1.path) == dir_v2  # versions share the place
    with pytest.raises(ln.Artifact.DoesNotExist, match="no registered storage holds"):
        ln.Artifact.get(path=tmp_path / "a.txt")  # where it came from, not where it is stored
    with pytest.raises(ln.Artifact.DoesNotExist, match="no artifact is stored at"):
        ln.Artifact.get(path=Path(registry.storage_root) / "results" / "nothing.txt")


def test_changed_file_is_rehashed(registry, tmp_path):
    src = write(tmp_path / "x.txt", "aaaa")
    old = os.stat(src)
    os.utime(src, ns=(old.st_atime_ns - 10**10, old.st_mtime_ns - 10**10))  # not "racily clean"
    first = ln.Artifact(src, key="x.txt")
    h1 = first.hash
    src.write_text("bbbb")  # same size, new content and mtime
    assert ln.Artifact(src, key="x.txt").hash != h1


def test_stat_cache_reads_an_unchanged_file_once(registry, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    old = os.stat(src)
    os.utime(src, ns=(old.st_atime_ns - 10**10, old.st_mtime_ns - 10**10))
    before = hashing.reads
    a = ln.Artifact(src, key="big.bin").save()
    assert hashing.reads == before + 1
    b = ln.Artifact(src, key="big.bin").save()
    assert hashing.reads == before + 1, "an unchanged file must not be read again"
    assert a.id == b.id


def test_a_folder_hashed_again_in_one_process_is_answered_from_memory(registry, tmp_path, monkeypatch):
    """A folder passed to each of many tasks: its files' hashes come from memory the second
    time, without reading the files or asking the SQLite stat cache."""
    folder = tmp_path / "reference"
    for i in range(50):
        f = write(folder / f"chr{i}.fa", f">chr{i}\nACGT\n")
        os.utime(f, ns=(time.time_ns() - 10**10, time.time_ns() - 10**10))
    first = hashing.hash_dir(folder)
    cache = hashing.stat_cache()
    monkeypatch.setattr(cache, "_conn", lambda: pytest.fail("asked SQLite although the answer is in memory"))
    before = hashing.reads
    assert hashing.hash_dir(folder) == first and hashing.reads == before
    (folder / "chr0.fa").write_text(">chr0\nTTTT\n")  # changed: read again, a new folder hash
    monkeypatch.setattr(cache, "_conn", lambda: None)
    assert hashing.hash_dir(folder) != first and hashing.reads == before + 1


def test_folder_hash_covers_paths_and_counts_files(registry, tmp_path):
    folder = tmp_path / "run1"
    write(folder / "a.txt", "A")
    write(folder / "nested" / "deep" / "b.txt", "BB")
    artifact = ln.Artifact(folder, key="run1").save()
    assert artifact.n_files == 2 and artifact.size == 3 and artifact.hash_type == "blake3-dir"
    assert (artifact.path / "nested" / "deep" / "b.txt").read_text() == "BB"
    h = artifact.hash
    (folder / "a.txt").rename(folder / "renamed.txt")
    assert ln.Artifact(folder, key="run1").hash != h, "renaming a file changes the folder hash"


def test_from_dir_and_bulk_save_use_one_lookup(registry, tmp_path):
    folder = tmp_path / "many"
    for i in range(30):
        write(folder / f"f{i:02d}.txt", f"content {i}")
    artifacts = ln.Artifact.from_dir(folder, key="batch")
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    sa.event.listen(registry.engine, "before_cursor_execute", record)
    try:
        ln.save(artifacts)
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", record)
    lookups = [s for s in statements if s.startswith("SELECT") and "FROM artifact" in s and ".hash IN" in s]
    inserts = [s for s in statements if s.startswith("INSERT INTO artifact")]
    assert len(lookups) == 1, lookups
    assert len(inserts) == 1, f"expected one multi-row INSERT, got {len(inserts)}"
    assert ln.Artifact.filter(key__startswith="batch/").count() == 30
    assert sorted(a.key for a in artifacts)[0] == "batch/f00.txt"
    assert all(a.path.exists() for a in artifacts)


@pytest.mark.parametrize("key", ["../escape.txt", "/abs/path.txt", "a/../../b", "", "a//b", "C:/x", "x\x00y", ".lamindb/x"])
def test_hostile_keys_are_rejected_and_nothing_is_written(registry, tmp_path, key):
    src = write(tmp_path / "f.txt", "data")
    with pytest.raises(InvalidKey):
        ln.Artifact(src, key=key).save()
    assert ln.Artifact.filter().count() == 0
    assert not any(Path(registry.storage_root).rglob("*.txt"))


def test_missing_file_is_a_clear_error(registry, tmp_path):
    with pytest.raises(NotFoundOnDisk, match="no such file"):
        ln.Artifact(tmp_path / "missing.csv")
    assert ln.Artifact.filter().count() == 0


def test_a_named_pipe_is_never_opened(registry, tmp_path):
    """A FIFO (Snakemake's pipe()) holds no bytes: opening it would block until a writer came,
    or take the bytes its reader is waiting for. Alone it is refused; inside a folder, skipped."""
    fifo = tmp_path / "stream.pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotFoundOnDisk, match="not a file or folder"):
        ln.Artifact(fifo)
    folder = tmp_path / "out"
    write(folder / "a.txt", "A")
    os.mkfifo(folder / "inner.pipe")
    artifact = ln.Artifact(folder, key="out").save()  # would block forever reading inner.pipe
    assert artifact.n_files == 1 and artifact.size == 1
    assert sorted(p.name for p in artifact.path.iterdir()) == ["a.txt"]
    assert ln.Artifact.filter().count() == 1


UNREADABLE = textwrap.dedent("""
    import sys
    import lamin_integrations as ln
    from lamin_integrations.errors import NotFoundOnDisk
    ln.connect("sqlite:///" + sys.argv[1] + "/lineage.db", sys.argv[1] + "/storage")
    try:
        ln.Artifact(sys.argv[2], key="secret.txt").save()
    except NotFoundOnDisk as e:
        print("refused:", e)
    print("rows:", ln.Artifact.filter().count())
""")


def test_unreadable_file_is_a_clear_error_and_writes_nothing(tmp_path):
    """Permission denied must name the file and write nothing.

    Root reads any file, so as root the script runs in a user namespace (`unshare --user`),
    where root loses CAP_DAC_OVERRIDE and a mode-000 file is really unreadable.
    """
    import shutil

    secret = write(tmp_path / "secret.txt", "private")
    secret.chmod(0)
    script = tmp_path / "try.py"
    script.write_text(UNREADABLE)
    prefix: list[str] = []
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        assert unshare, "util-linux's unshare is needed to drop root's read override"
        prefix = [unshare, "--user"]
    env = python_env(LAMIN_INTEGRATIONS_HOME=str(tmp_path / "home"))
    try:
        proc = subprocess.run([*prefix, sys.executable, str(script), str(tmp_path), str(secret)], capture_output=True,
                              text=True, env=env, timeout=60)
    finally:
        secret.chmod(0o644)
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "permission denied" in proc.stdout and str(secret) in proc.stdout
    assert "rows: 0" in proc.stdout


def test_empty_files_are_distinct_artifacts_by_location(registry, tmp_path):
    a = ln.Artifact(write(tmp_path / "a.log", ""), key="logs/a.log").save()
    b = ln.Artifact(write(tmp_path / "b.log", ""), key="logs/b.log").save()
    assert a.size == 0 and a.id != b.id and a.hash == b.hash
    assert ln.Artifact(tmp_path / "a.log", key="logs/a.log").save().id == a.id


def test_file_inside_storage_is_registered_in_place(registry, tmp_path):
    inside = write(Path(registry.storage_root) / "results" / "sample1" / "counts.tsv", "g\tc\nA\t1\n")
    artifact = ln.Artifact(inside).save()
    assert artifact.key == "results/sample1/counts.tsv" and artifact._key_is_virtual is False
    assert artifact.path == inside
    assert not (Path(registry.storage_root) / ".lamindb").exists(), "no copy for in-place files"
    assert artifact.load().shape == (1, 2)


def test_failed_copy_leaves_no_row_and_a_retry_completes(registry, tmp_path, monkeypatch):
    from lamin_integrations.core import storage

    src = write(tmp_path / "flaky.txt", "payload")
    real_put = storage.put

    def broken_put(source, destination, is_dir):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "put", broken_put)
    with pytest.raises(NotFoundOnDisk, match="disk full"):
        ln.Artifact(src, key="flaky.txt").save()
    with registry.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.artifact)).scalar() == 0
    monkeypatch.setattr(storage, "put", real_put)
    artifact = ln.Artifact(src, key="flaky.txt").save()
    assert artifact.path.read_text() == "payload"


def test_a_file_rewritten_while_it_is_stored_is_not_kept_under_the_old_hash(registry, tmp_path, monkeypatch):
    """A log that a retried job appends to between our hashing and our copy: the copy would
    not have the recorded hash. Nothing is registered; saving again records the new bytes."""
    from lamin_integrations.core import hashing, storage

    src = write(tmp_path / "job.log", "attempt 1\n")
    real_put = storage.put

    def put_while_another_process_appends(source, destination, is_dir):
        with open(source, "a") as f:
            f.write("attempt 2\n")
        os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # a coarse clock still sees it
        real_put(source, destination, is_dir)

    monkeypatch.setattr(storage, "put", put_while_another_process_appends)
    with pytest.raises(NotFoundOnDisk, match="changed while it was being stored"):
        ln.Artifact(src, key="logs/job.log").save()
    assert ln.Artifact.filter().count() == 0
    assert not [p for p in Path(registry.storage_root).rglob("*") if p.is_file()], "no stray copy left"
    monkeypatch.setattr(storage, "put", real_put)
    artifact = ln.Artifact(src, key="logs/job.log").save()
    assert artifact.path.read_text() == "attempt 1\nattempt 2\n"
    assert artifact.hash == hashing.hash_file(artifact.path, registry.hash_mode)[0]


def test_row_left_in_flight_by_a_crash_is_completed_by_the_next_save(registry, tmp_path):
    src = write(tmp_path / "crash.txt", "bytes")
    first = ln.Artifact(src, key="crash.txt").save()
    first.path.unlink()  # as if the process died after inserting, before copying
    with registry.engine.begin() as conn:
        conn.execute(sa.update(schema.artifact).values(_storage_ongoing=True))
    assert ln.Artifact.filter(key="crash.txt").count() == 0, "in-flight rows are hidden"
    again = ln.Artifact(src, key="crash.txt").save()
    assert again.id == first.id and again.path.read_text() == "bytes"
    assert ln.Artifact.filter(key="crash.txt").count() == 1


def test_reading_tracks_inputs_but_get_does_not(registry, tmp_path):
    from lamin_integrations.core.context import reset_current_run, set_current_run

    t = ln.Transform(key="consumer.py", kind="script").save()
    producer = ln.Run(t, status="started").save()
    token = set_current_run(producer)
    artifact = ln.Artifact(write(tmp_path / "d.csv", "x\n1\n"), key="d.csv").save()
    artifact.load()  # a run never becomes an input of its own output
    reset_current_run(token)
    assert producer.input_artifacts.count() == 0

    consumer = ln.Run(t, status="started").save()
    token = set_current_run(consumer)
    try:
        fetched = ln.Artifact.get(key="d.csv")
        assert consumer.input_artifacts.count() == 0
        fetched.cache()
        fetched.load()
        fetched.open()  # a table: a pyarrow Dataset
    finally:
        reset_current_run(token)
    assert list(consumer.input_artifacts) == [artifact]
    assert list(artifact.input_of_runs) == [consumer]
    # ln.settings.track_run_inputs = False: only reads given is_run_input=True are inputs
    other = ln.Artifact(write(tmp_path / "e.csv", "x\n2\n"), key="e.csv").save()
    quiet = ln.Run(t, status="started").save()
    token = set_current_run(quiet)
    ln.settings.track_run_inputs = False
    try:
        artifact.load()
        other.load(is_run_input=True)
    finally:
        ln.settings.track_run_inputs = True
        reset_current_run(token)
    assert list(quiet.input_artifacts) == [other]
    # as lamindb: get(..., is_run_input=True) links what it fetches
    token = set_current_run(quiet)
    try:
        assert ln.Artifact.get(key="d.csv", is_run_input=True) == artifact
    finally:
        reset_current_run(token)
    assert set(quiet.input_artifacts) == {other, artifact}
    assert "track_run_inputs=True" in repr(ln.settings) and ln.settings.instance == registry.url


def test_settings_name_the_user_and_the_storage_root(registry):
    assert ln.settings.user == registry.user and ln.settings.user.handle
    assert ln.settings.storage == registry.storage_root == ln.settings.storage.root_as_str
    assert ln.settings.storage.root == Path(registry.storage_root)
    mine = ln.Artifact(key="mine.txt").save()
    assert ln.Artifact.filter(created_by=ln.settings.user).one() == mine
    assert ln.settings.verbosity == "warning"
    with pytest.raises(ValueError, match="verbosity"):
        ln.settings.verbosity = "loud"


SAVE_AS = """
    import lamin_integrations as ln
    print(ln.Artifact(sys.argv[1], key=sys.argv[2]).save().uid)
"""


def test_processes_saving_the_same_file_end_with_one_artifact(registry, tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(1024 * 1024))
    uids = race(tmp_path, SAVE_AS, [[str(src), "shared/data.bin"]] * 4)
    assert len(set(uids)) == 1
    assert ln.Artifact.filter(key="shared/data.bin").count() == 1
    assert ln.Artifact.get(key="shared/data.bin").path.read_bytes() == src.read_bytes()


def test_concurrent_new_versions_of_one_key_form_one_family(registry, tmp_path):
    sources = [write(tmp_path / f"model{i}.txt", f"content {i}") for i in range(4)]
    uids = race(tmp_path, SAVE_AS, [[str(src), "shared/model.txt"] for src in sources])
    versions = ln.Artifact.filter(key="shared/model.txt")
    assert versions.count() == 4
    assert len({u[:16] for u in uids}) == 1, "one version family"
    assert sorted(u[16:] for u in uids) == ["0000", "0001", "0002", "0003"]
    assert versions.filter(is_latest=True).count() == 1


def test_lamindb_compatible_hashes_are_chosen_per_registry(registry, tmp_path):
    import base64
    import hashlib

    ln.connect(registry._url.render_as_string(hide_password=False), registry.storage_root, hash_mode="lamindb")
    other_process = subprocess.run([sys.executable, "-c", "import lamin_integrations as ln; print(ln.instance.hash_mode)"],
                                   capture_output=True, text=True, env=python_env(), timeout=60)
    assert other_process.stdout.strip() == "lamindb", "the mode is stored in the registry, not the process"
    data = b"hello lamindb\n"
    artifact = ln.Artifact(write(tmp_path / "h.txt", data.decode()), key="h.txt").save()
    expected = base64.urlsafe_b64encode(hashlib.md5(data).digest()).decode().rstrip("=")[:22]
    assert (artifact.hash, artifact.hash_type) == (expected, "md5")
    with pytest.raises(ln.errors.InstanceError, match="only be chosen for an empty registry"):
        ln.instance.set_hash_mode("blake3")


def test_lamindb_sampled_hash_for_large_files(tmp_path, monkeypatch):
    import base64
    import hashlib

    monkeypatch.setenv("LAMIN_INTEGRATIONS_HOME", str(tmp_path / "home"))
    big = tmp_path / "big.bin"
    data = os.urandom(hashing.CHUNK + 1234)
    big.write_bytes(data)
    digest, hash_type = hashing.hash_file(big, "lamindb")
    inner = hashlib.sha1(data[: hashing.CHUNK]).digest() + hashlib.sha1(data[-hashing.CHUNK :]).digest()
    assert hash_type == "sha1-fl"
    assert digest == base64.urlsafe_b64encode(hashlib.sha1(inner).digest()).decode().rstrip("=")[:22]


def test_threads_storing_the_same_folder_at_once_all_succeed(tmp_path):
    """Mapped tasks reading one folder store it concurrently; each copy used one temporary name
    per process, so two threads collided ('File exists')."""
    from concurrent.futures import ThreadPoolExecutor

    from lamin_integrations.core import storage as st

    source = tmp_path / "results"
    source.mkdir()
    for i in range(30):
        (source / f"{i}.txt").write_text(f"{i}\n" * 200)
    dest = tmp_path / "storage" / ".lamindb" / "folder"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: st.put(str(source), str(dest), True), range(16)))
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{i}.txt" for i in range(30))
    assert not [p for p in dest.parent.iterdir() if ".part-" in p.name]


def test_get_of_several_records_is_ambiguous_but_of_one_family_is_its_latest(registry, tmp_path):
    for name in "abc":
        ln.Artifact(write(tmp_path / f"{name}.txt", name), key=f"raw/{name}.txt").save()
    newer = ln.Artifact(write(tmp_path / "a.txt", "a, second version"), key="raw/a.txt").save()
    assert ln.Artifact.get(key="raw/a.txt").id == newer.id  # two versions of one family: the latest
    with pytest.raises(ln.errors.MultipleResultsFound, match="more than one Artifact"):
        ln.Artifact.get(key__startswith="raw/")  # three families: lamindb refuses too


def test_none_as_data_is_refused(registry):
    with pytest.raises(ValidationError, match="got None"):
        ln.Artifact(None, key="results/x.txt")
    assert ln.Artifact.filter().count() == 0


def test_a_run_that_created_artifacts_is_not_deleted_for_good(registry, tmp_path):
    """lamindb's Artifact.run is PROTECT: removing the run would leave its outputs without
    their origin. Trashing it is fine; so is removing it once its artifacts are gone."""
    pipeline = ln.Run(ln.Transform(key="wf", kind="pipeline").save()).save()
    job = ln.Run(ln.Transform(key="wf:step", kind="step").save(), initiated_by_run=pipeline).save()
    out = ln.Artifact(write(tmp_path / "out.txt", "made by the job"), key="out.txt", run=job).save()
    for remove in (lambda: job.delete(permanent=True), lambda: pipeline.delete(permanent=True),
                   lambda: ln.Run.filter(id=pipeline.id).delete(permanent=True)):
        with pytest.raises(ln.errors.IntegrityError, match="created 1 artifact.*out.txt"):
            remove()
    assert ln.Run.filter(id__in=[pipeline.id, job.id]).count() == 2 and ln.Artifact.get(out.uid).run == job
    job.delete()  # to the trash: kept, with its link
    assert ln.Artifact.get(out.uid).run_id == job.id
    out.delete(permanent=True)
    ids = [pipeline.id, job.id]
    assert pipeline.delete(permanent=True) == (1, {"lamindb.Run": 1})
    assert ln.Run.filter(id__in=ids).count() == 0  # the job went with the run that initiated it


def test_a_key_names_the_same_kind_of_file_as_its_data(registry, tmp_path):
    with pytest.raises(ln.errors.InvalidArgument, match="must end in .parquet"):
        ln.Artifact(pd.DataFrame({"a": [1]}), key="results/counts.csv")
    with pytest.raises(ln.errors.InvalidArgument, match="'.txt' does not match the file's '.csv'"):
        ln.Artifact(write(tmp_path / "table.csv", "a,b\n"), key="results/table.txt")
    assert ln.Artifact.filter().count() == 0
    assert ln.Artifact(pd.DataFrame({"a": [1]}), key="results/counts.parquet").save().load().shape == (1, 1)
    ln.Artifact(write(tmp_path / "reads.fastq.gz", "@r\n"), key="raw/reads.FASTQ.GZ").save()  # case aside: the same
    ln.Artifact(write(tmp_path / "notes", "no suffix\n"), key="docs/notes.txt").save()  # a file without a suffix: any


def test_the_max_hash_setting_keeps_big_files_and_folders_out_of_storage(registry, tmp_path, monkeypatch):
    """LAMIN_INTEGRATIONS_MAX_HASH_MB: what adapters record above it is listed by path and size,
    neither hashed nor copied (a Prefect task's 1 GB output or a reference folder parameter)."""
    from lamin_integrations.core.pipeline import record_inputs, record_outputs

    monkeypatch.setenv("LAMIN_INTEGRATIONS_MAX_HASH_MB", "1")
    run = ln.Run(ln.Transform(key="flow", kind="pipeline").save()).save()
    big = tmp_path / "big.bam"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    ref = tmp_path / "reference"
    for i in range(3):
        (ref / f"chr{i}.fa").parent.mkdir(exist_ok=True)
        (ref / f"chr{i}.fa").write_bytes(os.urandom(512 * 1024))
    small = write(tmp_path / "small.txt", "small")
    [ref_artifact] = record_inputs(run, [ref], workdir=tmp_path)
    outs = {a.key: a for a in record_outputs(run, [big, small], workdir=tmp_path)}
    for artifact, size in ((outs["big.bam"], 2 * 1024 * 1024), (ref_artifact, 3 * 512 * 1024)):
        assert artifact.hash is None and artifact.size == size and artifact._aux["not_hashed"]
    assert outs["small.txt"].hash is not None and outs["small.txt"].path.read_text() == "small"
    stored = [p for p in Path(registry.storage_root).rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_text() == "small"


def test_a_tiny_input_is_not_taken_for_another_runs_output_with_the_same_bytes(registry, tmp_path):
    """A threshold file holding "4" is not the count another pipeline wrote: inputs of a few
    bytes are matched by location; longer content is still found wherever it was made."""
    from lamin_integrations.core.pipeline import record_inputs, record_outputs

    producer = ln.Run(ln.Transform(key="counting", kind="pipeline").save()).save()
    consumer = ln.Run(ln.Transform(key="filtering", kind="pipeline").save()).save()
    table = "sample,reads\n" + "".join(f"S{i},{i * 1000}\n" for i in range(10))
    record_outputs(producer, [write(tmp_path / "a" / "S1.n", "4\n"), write(tmp_path / "a" / "t.csv", table)], workdir=tmp_path / "a")
    inputs = {a.key: a for a in record_inputs(consumer, [write(tmp_path / "b" / "threshold.txt", "4\n"),
                                                          write(tmp_path / "b" / "copy.csv", table)], workdir=tmp_path / "b")}
    assert inputs["threshold.txt"].run is None  # its own record, made by no run
    assert inputs["t.csv"].run == producer  # the same table, copied: lineage crosses pipelines
    assert record_inputs(consumer, [tmp_path / "b" / "threshold.txt"], workdir=tmp_path / "b")[0] == inputs["threshold.txt"]
    # an empty folder (a results folder not written yet) is no other empty folder either
    (tmp_path / "a" / "plots").mkdir()
    (tmp_path / "b" / "tables").mkdir()
    [empty_a] = record_inputs(producer, [tmp_path / "a" / "plots"], workdir=tmp_path / "a")
    [empty_b] = record_inputs(consumer, [tmp_path / "b" / "tables"], workdir=tmp_path / "b")
    assert empty_a.n_files == 0 and (empty_a.key, empty_b.key) == ("plots", "tables")


def test_saving_known_content_under_another_key_says_the_existing_artifact_is_returned(registry, tmp_path, caplog):
    """lamindb's rule (one artifact per content) and its warning: the new key is not silently dropped."""
    first = ln.Artifact(write(tmp_path / "a.txt", "the same bytes in two files\n"), key="raw/data.txt").save()
    with caplog.at_level("WARNING", logger="lamin_integrations"):
        second = ln.Artifact(write(tmp_path / "b.txt", "the same bytes in two files\n"), key="other/dup.txt").save()
    assert second == first and second.key == "raw/data.txt"
    [message] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert first.uid in message and "'other/dup.txt'" in message and "not used" in message


# -- replace(): new content in the artifact's place, no new version (lamindb's replace) -----------


def artifact_row(registry, artifact) -> dict:
    with registry.read() as conn:
        return dict(conn.execute(sa.select(schema.artifact).where(schema.artifact.c.id == artifact.id)).mappings().one())


def test_replace_puts_new_content_in_the_artifacts_place_without_a_new_version(registry, tmp_path):
    artifact = ln.Artifact(write(tmp_path / "notes.txt", "first draft\n"), key="notes/summary.txt").save()
    uid, first_hash, place = artifact.uid, artifact.hash, artifact.path
    ln.track(transform=ln.Transform(key="edit.py", kind="script").save())
    artifact.replace(write(tmp_path / "better.txt", "second draft, longer\n"))
    assert artifact_row(registry, artifact)["hash"] == first_hash  # nothing stored before save()
    artifact.save()
    editor = ln.context.run
    ln.finish()
    again = ln.Artifact.get(key="notes/summary.txt")
    assert (again.uid, again.key, again.path) == (uid, "notes/summary.txt", place)
    assert again.hash != first_hash and again.size == len("second draft, longer\n")
    assert again.load() == "second draft, longer\n" and again.versions.count() == 1
    assert again.run == editor and editor.output_artifacts.to_list() == [again]
    assert again.hash == hashing.hash_file(place)[0]  # the row names the bytes that are there

    artifact.replace(pd.DataFrame({"x": [1, 2, 3]}))  # another format: the key's suffix follows it
    artifact.save()
    assert (artifact.key, artifact.suffix, artifact.n_observations) == ("notes/summary.parquet", ".parquet", 3)
    assert list(ln.Artifact.get(uid).load()["x"]) == [1, 2, 3]
    assert not place.exists() and artifact.path.exists()  # the old bytes went with the old name


def test_replace_refuses_what_it_cannot_do_and_changes_nothing(registry, tmp_path):
    v1 = ln.Artifact(write(tmp_path / "a.txt", "one\n"), key="data/a.txt").save()
    v2 = ln.Artifact(write(tmp_path / "a.txt", "two\n"), key="data/a.txt").save()
    folder = ln.Artifact(write(tmp_path / "dir" / "f.txt", "x").parent, key="data/dir").save()
    in_place = ln.Artifact(write(Path(registry.storage_root) / "kept.txt", "kept\n")).save()
    before = {a.uid: artifact_row(registry, a) for a in (v1, v2, folder, in_place)}
    unsaved = ln.Artifact(write(tmp_path / "new.txt", "new\n"), key="data/new.txt")
    cases = [
        (lambda: unsaved.replace(tmp_path / "a.txt"), ValidationError, "saved artifact"),
        (lambda: folder.replace(tmp_path / "a.txt"), ValidationError, "is a folder"),
        (lambda: in_place.replace(tmp_path / "a.txt"), ValidationError, "registered in place"),
        (lambda: v2.replace("s3://bucket/x.txt"), ValidationError, "local file, a DataFrame or an AnnData"),
        (lambda: v2.replace(tmp_path / "dir"), ValidationError, "a folder cannot replace"),
        (lambda: v2.replace(Path(registry.storage_root) / "kept.txt"), ValidationError, "in a registered storage"),
        (lambda: v2.replace(tmp_path / "missing.txt"), NotFoundOnDisk, "no such file"),
        (lambda: v2.replace(tmp_path / "a.txt", format="csv"), ValidationError, "format"),
    ]
    for attempt, error, message in cases:
        with pytest.raises(error, match=message):
            attempt()
    # the content of the key's first version: refused at save(), in the transaction
    v2.replace(write(tmp_path / "back.txt", "one\n"))
    with pytest.raises(ValidationError, match=f"already registered at key 'data/a.txt' as artifact {v1.uid}"):
        v2.save()
    # the new file gone before save(): the copy fails, the row is rolled back
    fresh = ln.Artifact.get(v2.id)
    fresh.replace(write(tmp_path / "gone.txt", "three\n"))
    (tmp_path / "gone.txt").unlink()
    with pytest.raises(NotFoundOnDisk, match="is unchanged"):
        fresh.save()
    assert {a.uid: artifact_row(registry, a) for a in (v1, v2, folder, in_place)} == before
    assert v2.path.read_text() == "two\n" and v1.path.read_text() == "one\n"


def test_an_anndata_is_stored_as_h5ad_and_loads_back(registry, tmp_path):
    """lamindb's single-cell format: `Artifact.from_anndata(adata, key=...)`, `Artifact(adata)`,
    a path to an .h5ad, and `load()` giving the AnnData back."""
    import anndata
    import numpy as np

    adata = anndata.AnnData(X=np.arange(6, dtype="float32").reshape(3, 2),
                            obs=pd.DataFrame({"cell_type": ["T", "B", "T"]}, index=["c1", "c2", "c3"]))
    artifact = ln.Artifact.from_anndata(adata, key="scrna/pbmc.h5ad", description="3 cells").save()
    assert (artifact.suffix, artifact.otype, artifact.kind, artifact.n_observations) == (".h5ad", "AnnData", "dataset", 3)
    back = ln.Artifact.get(key="scrna/pbmc.h5ad").load()
    assert list(back.obs["cell_type"]) == ["T", "B", "T"] and back.X.sum() == 15
    assert ln.Artifact(adata, key="scrna/pbmc.h5ad").save() == artifact  # the same content: the same artifact
    adata.write_h5ad(tmp_path / "other.h5ad")
    assert ln.Artifact.from_anndata(tmp_path / "other.h5ad", key="scrna/other.h5ad").save().otype == "AnnData"
    with pytest.raises(Exception, match="must end in .h5ad"):
        ln.Artifact.from_anndata(adata, key="scrna/pbmc.parquet")
    with pytest.raises(ValidationError, match="AnnData or the path of an .h5ad"):
        ln.Artifact.from_anndata(pd.DataFrame({"x": [1]}), key="x.h5ad")
    artifact.replace(adata[:2].copy())
    artifact.save()
    assert artifact.n_observations == 2 and ln.Artifact.get(artifact.uid).load().n_obs == 2
