"""Artifacts on a real S3-compatible server (moto's threaded server on loopback)."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pandas as pd
import pytest
from conftest import file_and_folder

import lamin_integrations as ln
from lamin_integrations.core import instance as instance_module


@pytest.fixture
def s3_registry(s3_server, tmp_path, monkeypatch):
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = f"lamin-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    instance = ln.connect(f"sqlite:///{tmp_path / 'lineage.db'}", f"s3://{bucket}/lamin")
    yield instance, bucket
    instance.dispose()
    instance_module._current = None


def _s3fs(s3_server):
    import s3fs

    return s3fs.S3FileSystem(**s3_server.storage_options)


def md5_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.md5(data).digest()).decode().rstrip("=")[:22]


def test_local_file_is_uploaded(s3_registry, s3_server, tmp_path):
    _, bucket = s3_registry
    src = tmp_path / "table.csv"
    src.write_text("a,b\n1,2\n")
    artifact = ln.Artifact(src, key="results/table.csv").save()
    assert str(artifact.path).startswith(f"s3://{bucket}/lamin/.lamindb/{artifact.uid}")
    assert _s3fs(s3_server).cat(str(artifact.path)) == src.read_bytes()
    assert artifact.hash_type == "blake3"
    assert artifact.load().shape == (1, 2)


def test_object_under_storage_is_registered_in_place_by_checksum(s3_registry, s3_server):
    _, bucket = s3_registry
    fs = _s3fs(s3_server)
    data = b"gene,count\nA,1\n"
    fs.pipe(f"{bucket}/lamin/raw/counts.csv", data)
    artifact = ln.Artifact(f"s3://{bucket}/lamin/raw/counts.csv").save()
    assert artifact.key == "raw/counts.csv" and artifact._key_is_virtual is False
    assert (artifact.hash, artifact.hash_type) == (md5_b64(data), "md5"), "hash from the ETag, not the bytes"
    assert artifact.size == len(data)
    assert not fs.exists(f"{bucket}/lamin/.lamindb"), "nothing copied"
    assert ln.Artifact(f"s3://{bucket}/lamin/raw/counts.csv").save().id == artifact.id


def test_object_outside_storage_registers_its_bucket(s3_registry, s3_server):
    other = f"other-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(other)
    _s3fs(s3_server).pipe(f"{other}/data/x.txt", b"xyz")
    artifact = ln.Artifact(f"s3://{other}/data/x.txt").save()
    assert artifact.storage.root == f"s3://{other}" and artifact.key == "data/x.txt"
    assert ln.Storage.filter(root=f"s3://{other}").count() == 1


def test_cache_downloads_once(s3_registry, s3_server, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"0123456789" * 1000)
    artifact = ln.Artifact(src, key="blob.bin").save()
    local = artifact.cache()
    assert local.read_bytes() == src.read_bytes()
    mtime = local.stat().st_mtime_ns
    assert artifact.cache() == local and local.stat().st_mtime_ns == mtime, "second cache() must not download again"
    with artifact.open() as f:
        assert f.read(10) == b"0123456789"
    table = ln.Artifact.from_dataframe(pd.DataFrame({"a": [1, 2]}), key="t.parquet").save()
    assert table.open().to_table().to_pydict() == {"a": [1, 2]}  # a pyarrow Dataset read through fsspec


def test_missing_object_is_a_clear_error(s3_registry):
    _, bucket = s3_registry
    with pytest.raises(ln.errors.NotFoundOnDisk, match="no object"):
        ln.Artifact(f"s3://{bucket}/lamin/nope.txt")


def test_a_rolled_back_transaction_deletes_its_uploads_and_keeps_the_rest(s3_registry, s3_server, tmp_path):
    instance, bucket = s3_registry
    fs = _s3fs(s3_server)
    kept_src = tmp_path / "kept.csv"
    kept_src.write_text("a\n1\n")
    kept = ln.Artifact(kept_src, key="kept.csv").save()  # committed before the block
    fs.pipe(f"{bucket}/lamin/raw/counts.csv", b"gene,count\nA,1\n")  # the user's own object
    before = sorted(fs.find(bucket))
    src, folder = file_and_folder(tmp_path)
    with pytest.raises(RuntimeError), instance.transaction():
        uploaded = ln.Artifact(src, key="results/table.csv").save()
        ln.Artifact(folder, key="results/folder").save()
        assert ln.Artifact(kept_src, key="kept.csv").save().id == kept.id  # re-used, not uploaded
        ln.Artifact(f"s3://{bucket}/lamin/raw/counts.csv").save()  # registered in place
        fs.invalidate_cache()
        assert fs.exists(str(uploaded.path)) and len(fs.find(bucket)) == len(before) + 2
        raise RuntimeError("boom")
    fs.invalidate_cache()
    assert sorted(fs.find(bucket)) == before
    assert fs.cat(str(kept.path)) == b"a\n1\n"
    assert [a.id for a in ln.Artifact.filter()] == [kept.id]
