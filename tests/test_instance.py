"""Where records live: zero-setup default, URL overrides, migrations, concurrency, secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import python_env, race

import lamin_integrations as ln
from lamin_integrations.core import instance as instance_module
from lamin_integrations.core.migrate import HEAD, alembic_config, current_revision
from lamin_integrations.core.schema import metadata
from lamin_integrations.errors import InstanceError

RACER = """
    import os
    import lamin_integrations as ln
    t = ln.Transform(key="shared-pipeline", version="1.0", kind="pipeline").save()
    run = ln.Run(t, name=f"racer-{os.getpid()}").save()
    print(t.uid, run.uid)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_eight_processes_on_a_fresh_database_do_not_race(backend, tmp_path, request, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fresh.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.setenv("LAMIN_INTEGRATIONS_DB", url)
    monkeypatch.setenv("LAMIN_INTEGRATIONS_STORAGE", str(tmp_path / "storage"))
    outs = race(tmp_path, RACER, [[]] * 8)
    transform_uids = {line.split()[0] for line in outs}
    assert len(transform_uids) == 1, "concurrent creation of one transform must give one row"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        assert conn.execute(sa.text("SELECT count(*) FROM transform")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM run")).scalar() == 8
        assert conn.execute(sa.text("SELECT count(*) FROM \"user\"")).scalar() == 1
    engine.dispose()


def test_migrations_build_exactly_the_current_schema(registry):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with registry.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diffs == [], f"schema.py and the migrations disagree: {diffs}"


def test_head_constant_matches_the_migration_scripts():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_embedded_default_needs_no_setup(tmp_path):
    home = tmp_path / "home"
    code = "import lamin_integrations as ln; t = ln.Transform(key='x').save(); print(ln.instance.url); print(ln.instance.storage_root)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=python_env(LAMIN_INTEGRATIONS_HOME=str(home)), timeout=60)
    assert proc.returncode == 0, proc.stderr
    url, storage = proc.stdout.split()
    assert url == f"sqlite:///{home / 'lineage.db'}"
    assert (home / "lineage.db").exists()
    assert storage == str(home / "storage")


def test_sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys(sqlite_registry):
    with sqlite_registry.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_password_never_appears_in_errors_or_reprs(tmp_path):
    url = "postgresql+psycopg://alice:s3cr3t-pw@127.0.0.1:1/lineage"
    with pytest.raises(InstanceError) as exc:
        ln.connect(url, str(tmp_path))
    assert "s3cr3t-pw" not in str(exc.value)
    assert "alice:***@127.0.0.1:1" in str(exc.value)
    inst = instance_module.Instance(url, str(tmp_path))
    assert "s3cr3t-pw" not in repr(inst) and "s3cr3t-pw" not in inst.url


def test_cli_info_masks_password_and_fails_cleanly_when_unreachable(tmp_path):
    cli = Path(sys.executable).with_name("lamin-integrations")
    proc = subprocess.run([str(cli), "info"], capture_output=True, text=True, timeout=60,
                          env=python_env(LAMIN_INTEGRATIONS_DB="postgresql+psycopg://bob:hunter2@127.0.0.1:1/x"))
    assert proc.returncode == 1
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "cannot reach the registry" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_database_url_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for wrong in ("not a url", "account/instance"):  # a lamindb instance slug is no file either
        with pytest.raises(InstanceError, match="SQLAlchemy URL"):
            ln.connect(wrong, str(tmp_path / "storage"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made in the working folder


def test_registry_newer_than_the_package_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'future.db'}"
    ln.connect(url, str(tmp_path / "s")).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(InstanceError, match="upgrade the package"):
        ln.connect(url, str(tmp_path / "s"))
    instance_module._current = None


def test_connect_switches_and_other_instances_can_be_queried(tmp_path):
    a = ln.connect(f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "sa"))
    ln.Transform(key="only-in-a").save()
    b_url = f"sqlite:///{tmp_path / 'b.db'}"
    ln.connect(b_url, str(tmp_path / "sb"))
    assert ln.Transform.filter(key="only-in-a").count() == 0
    assert ln.Transform.connect(a).filter(key="only-in-a").count() == 1
    assert ln.Transform.connect(f"sqlite:///{tmp_path / 'a.db'}").filter(key="only-in-a").count() == 1
    instance_module.current().dispose()
    instance_module._current = None


@pytest.mark.parametrize("kwargs", [{"reference_type": "x" * 26}, {"name": 5}, {"params": {"x": float("nan")}}])
def test_invalid_field_values_are_rejected_before_writing(registry, kwargs):
    from lamin_integrations.errors import ValidationError

    t = ln.Transform(key="k").save()
    with pytest.raises(ValidationError):
        ln.Run(t, **kwargs).save()
    assert ln.Run.filter().count() == 0


def test_assigned_params_are_checked_at_save(registry):
    from lamin_integrations.errors import FieldError, ValidationError

    run = ln.Run(ln.Transform(key="k").save()).save()
    run.params = {"ok": 1, "bad": object()}
    with pytest.raises(ValidationError, match=r"params\['bad'\]"):
        run.save()
    assert ln.Run.get(run.uid).params is None
    with pytest.raises(FieldError, match="reference_type"):  # the message lists valid fields
        ln.Run(run.transform, bogus=1)
