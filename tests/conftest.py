"""Shared fixtures: a real registry per test on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session on loopback (tests/servers.py). In CI
(CI=true) a missing server is a failure, not a skip: a green run must have tested both.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lamin_integrations as ln  # noqa: E402
from lamin_integrations.core import context as context_module  # noqa: E402
from lamin_integrations.core import instance as instance_module  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Prefect reads its settings when first imported: a throw-away home before any test module
# imports it. Its server is started only by modules that use `prefect_api`.
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)  # one per session, not left in /tmp
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect ephemeral server for the session (10-20 s to start on 2 cores); its API URL."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect_home")
    settings = {PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}
    with temporary_settings(updates=settings), prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        assert url, "the harness set no API URL"
        yield url


@pytest.fixture(scope="session")
def s3_server() -> Iterator:
    """One S3-compatible server (moto, on loopback) for the session; use unique bucket names."""
    import servers

    with servers.start_s3() as server:
        yield server


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"required test server unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the user's real embedded registry or inherit a parent run."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LAMIN_INTEGRATIONS_HOME", str(home))
    for var in ("LAMIN_INTEGRATIONS_DB", "LAMIN_INTEGRATIONS_STORAGE", context_module.ENV_RUN_UID,
                context_module.ENV_LAMINDB_RUN_UID):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    import servers

    reason = servers.postgres_available()
    if reason:
        _unavailable(reason)
    server = servers.start_postgres()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()


def _reset_process_state() -> None:
    ctx = context_module.context
    ctx._run = ctx._transform = ctx._project = None
    context_module._current_run.set(None)
    os.environ.pop(context_module.ENV_RUN_UID, None)


def _connected(url: str, storage: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[instance_module.Instance]:
    monkeypatch.setenv("LAMIN_INTEGRATIONS_DB", url)
    monkeypatch.setenv("LAMIN_INTEGRATIONS_STORAGE", str(storage))
    _reset_process_state()
    instance = ln.connect(url, str(storage))
    try:
        yield instance
    finally:
        _reset_process_state()
        instance.dispose()
        instance_module._current = None


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[instance_module.Instance]:
    """A connected, empty registry (database + storage folder), on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lineage.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from _connected(url, tmp_path / "storage", monkeypatch)


@pytest.fixture
def sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[instance_module.Instance]:
    """An embedded registry only, for tests about SQLite itself."""
    yield from _connected(f"sqlite:///{tmp_path / 'lineage.db'}", tmp_path / "storage", monkeypatch)


def file_and_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A small CSV and a folder holding one file: what the storage rollback tests save."""
    src = tmp_path / "table.csv"
    src.write_text("a,b\n1,2\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    return src, folder


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that should see the same registry as the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop(context_module.ENV_RUN_UID, None)
    env.update(extra)
    return env


_BARRIER = textwrap.dedent("""
    import os, sys, time
    import lamin_integrations.core.models  # the slow import happens before the start line
    ready, go = sys.argv[-2], sys.argv[-1]
    open(os.path.join(ready, str(os.getpid())), "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    sys.argv = sys.argv[:-2]
""")


def race(tmp_path: Path, body: str, argvs: list[list[str]], timeout: float = 120) -> list[str]:
    """Run `body` in one process per argv, all released at once; returns their stdouts.

    Each process signals that it is ready (after its imports) and waits for a start file,
    so the interesting part really runs concurrently, without fixed sleeps.
    """
    tag = uuid.uuid4().hex[:8]
    script = tmp_path / f"race_{tag}.py"
    script.write_text(_BARRIER + textwrap.dedent(body))
    ready, go = tmp_path / f"ready_{tag}", tmp_path / f"go_{tag}"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, str(script), *argv, str(ready), str(go)], env=python_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    deadline = time.monotonic() + timeout
    while len(list(ready.iterdir())) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            errors = [p.communicate()[1] for p in procs]
            raise AssertionError(f"racers did not all start: {errors}")
        time.sleep(0.01)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


@pytest.fixture
def work(sqlite_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder as the current directory, on a SQLite registry (engine tests)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@contextlib.contextmanager
def running_weblog(max_body: int) -> Iterator:
    """A Nextflow weblog receiver (token "s3cret") serving on loopback in a thread."""
    from lamin_integrations.nextflow.weblog import make_server

    srv = make_server("127.0.0.1", 0, token="s3cret", max_body=max_body)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
