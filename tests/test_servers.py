"""The test servers themselves (tests/servers.py): real PostgreSQL and S3 on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path

import pytest
import servers
import sqlalchemy as sa


def _require_postgres() -> None:
    reason = servers.postgres_available()
    if reason:
        # A green CI run must have exercised the real server, so missing binaries fail there.
        if os.environ.get("CI"):
            pytest.fail(f"required test server unavailable in CI: {reason}")
        pytest.skip(reason)


def _read_rows(url: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text("SELECT id, name FROM thing ORDER BY id"))]
    finally:
        engine.dispose()


def test_postgres_data_survives_a_restart_on_the_same_port(tmp_path: Path) -> None:
    _require_postgres()
    with servers.start_postgres(tmp_path) as pg:
        root = pg.root
        assert pg.is_running()
        url = pg.create_database()
        assert url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/test_")
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE thing (id integer PRIMARY KEY, name text)"))
                conn.execute(sa.text("INSERT INTO thing VALUES (1, 'kept')"))
        finally:
            engine.dispose()
        assert _read_rows(url) == [(1, "kept")]

        port = pg.port
        # An open session must not make a fast stop wait for it.
        idle = sa.create_engine(url, poolclass=sa.NullPool).connect()
        pg.stop()
        assert not pg.is_running()
        with pytest.raises(sa.exc.OperationalError):
            _read_rows(url)
        idle.invalidate()

        pg.start()
        assert pg.is_running() and pg.port == port
        assert _read_rows(url) == [(1, "kept")]

        name = url.rsplit("/", 1)[1]
        pg.drop_database(url)
        with pg._connect() as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
        assert pg.create_database(name) == pg.url(name)
        pg.drop_database(name)
    assert not root.exists()


def test_postgres_survives_an_immediate_stop(tmp_path: Path) -> None:
    _require_postgres()
    with servers.start_postgres(tmp_path) as pg:
        url = pg.create_database()
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE thing (id integer PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO thing VALUES (1, 'committed')"))
        engine.dispose()
        # The crash-recovery path that fault-tolerance tests rely on.
        pg.stop("immediate")
        assert not pg.is_running()
        pg.start()
        assert _read_rows(url) == [(1, "committed")]


def test_s3_roundtrip_and_etag_is_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import s3fs

    with servers.start_s3() as s3:
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        assert s3.create_bucket(bucket) == bucket
        fs = s3fs.S3FileSystem(**s3.storage_options, skip_instance_cache=True)
        data = b"a small object\n"
        fs.pipe(f"{bucket}/dir/small.txt", data)
        assert fs.cat(f"{bucket}/dir/small.txt") == data
        assert fs.info(f"{bucket}/dir/small.txt")["ETag"].strip('"') == hashlib.md5(data).hexdigest()

        # The env alone must be enough for a client that is given nothing else.
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == ["dir/small.txt"]
        port = s3.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
