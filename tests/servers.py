"""Real servers for the tests, on loopback: a throw-away PostgreSQL cluster and moto's S3.

Plain functions and context managers, so that tests/conftest.py can wrap them in session
fixtures. Nothing here mutates os.environ: the S3 server hands out the variables a client
needs and the caller decides where they go (monkeypatch, a subprocess env, ...).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

PG_USER = "postgres"  # the OS user that owns the cluster when we are root, and the superuser
STOP_MODES = ("smart", "fast", "immediate")
# sun_path holds 108 bytes including the NUL; the socket lives in the data directory.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers must tolerate a race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PostgreSQL


def _version_key(initdb: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(initdb).parents[1].name))


def pg_binaries() -> tuple[Path, Path] | None:
    """(initdb, pg_ctl) of the newest Debian-packaged server, else the ones on PATH."""
    packaged = [p for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if (Path(p).parent / "pg_ctl").exists()]
    if packaged:
        bindir = Path(max(packaged, key=_version_key)).parent
        return bindir / "initdb", bindir / "pg_ctl"
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb), Path(pg_ctl)
    return None


def postgres_available() -> str | None:
    """None when a PostgreSQL server can be started here, else the reason it cannot."""
    if pg_binaries() is None:
        return ("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, "
                "no initdb/pg_ctl on PATH): apt-get install postgresql")
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            return "running as root, but runuser (util-linux) is missing to drop to the postgres user"
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root, but there is no {PG_USER!r} OS user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'lamin-integrations[postgres]'"
    return None


def _reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether `uid` can traverse every directory down to `path` (root can, postgres may not)."""
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _cluster_base(preferred: Path | None, as_root: bool) -> Path:
    """Where the cluster folder goes: `preferred` if the postgres user can get there, else /tmp.

    pytest's tmp_path lives under /tmp/pytest-of-root (mode 700) when running as root; rather
    than loosening permissions on directories we do not own, the cluster moves elsewhere.
    """
    user = pwd.getpwnam(PG_USER) if as_root else None
    candidates = [preferred] if preferred is not None else []
    candidates += [Path(tempfile.gettempdir()), Path("/tmp")]
    for base in candidates:
        base = base.resolve()
        # mkdtemp adds ~20 characters, "/data" five more.
        if len(str(base)) + 30 > _MAX_SOCKET_DIR or not base.is_dir():
            continue
        if user and not _reachable_by(base, user.pw_uid, set(os.getgrouplist(PG_USER, user.pw_gid))):
            continue
        return base
    raise RuntimeError(f"no directory the {PG_USER} user can reach for the cluster among {candidates}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the pid now belongs to someone else's process, not our postmaster
    try:
        # A postmaster orphaned to a non-reaping PID 1 lingers as a zombie.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return True
    return state != "Z" and b"postgres" in cmdline


class _PortInUse(RuntimeError):
    pass


class PostgresServer:
    """A throw-away cluster: trust auth, superuser `postgres`, listening on 127.0.0.1 only.

    Use `start_postgres()` to get a running one. `stop()`/`start()` restart the same cluster on
    the same port (for fault-tolerance tests); `cleanup()`, or leaving the `with` block, stops it
    for good and deletes its files.
    """

    def __init__(self, tmpdir: Path | None = None, *, max_connections: int = 200) -> None:
        binaries = pg_binaries()
        if binaries is None:
            raise RuntimeError(postgres_available() or "PostgreSQL binaries not found")
        self.initdb, self.pg_ctl = binaries
        self.max_connections = max_connections
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="lamin-pg-", dir=_cluster_base(tmpdir, self.as_root)))
        if self.as_root:
            shutil.chown(self.root, PG_USER, PG_USER)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        # A crashed or interrupted test session must not leave a postmaster behind.
        atexit.register(self.cleanup)

    # -- processes

    def _command(self, *args: str) -> list[str]:
        # PostgreSQL refuses to run as root; runuser (unlike su) needs no PAM login or shell.
        return ["runuser", "-u", PG_USER, "--", *args] if self.as_root else list(args)

    def _env(self) -> dict[str, str]:
        # PGPORT, PGDATA, ... from the caller's shell would silently retarget the tools.
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def _run(self, *args: str, timeout: float) -> tuple[int, str]:
        cmd = self._command(*args)
        # Own session, so that on timeout runuser and its children die together.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=self.root, env=self._env(), start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return -1, f"timed out after {timeout}s: {' '.join(cmd)}\n{out}"
        return proc.returncode, out

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        return "\n".join(self._log_text().splitlines()[-lines:])

    # -- lifecycle

    def init(self) -> None:
        """Create the cluster (initdb) and its configuration; does not start it."""
        code, out = self._run(str(self.initdb), "-D", str(self.data), "-U", PG_USER, "--auth=trust",
                              "--encoding=UTF8", "--no-locale", "--no-sync", timeout=120)
        if code != 0:
            raise RuntimeError(f"initdb failed in {self.data}:\n{out}")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\ninclude 'lamin_test.conf'\n")
        self._write_conf()

    def _write_conf(self) -> None:
        data = str(self.data).replace("'", "''")
        conf = self.data / "lamin_test.conf"
        conf.write_text(
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{data}'\n"
            f"max_connections = {self.max_connections}\n"
            # Surviving an OS crash is worthless for a throw-away cluster; speed is not. But
            # synchronous_commit stays on: with it off, an immediate stop (the fault-tolerance
            # tests' crash) loses transactions that were already reported committed. With fsync
            # off, a synchronous commit is only a write into the OS page cache anyway.
            "fsync = off\n"
            "full_page_writes = off\n"
        )
        if self.as_root:
            shutil.chown(conf, PG_USER, PG_USER)

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart after `stop()`) on `self.port`; returns once it accepts connections."""
        if self.is_running():
            self._wait(timeout)
            return
        log_offset = len(self._log_text())
        code, out = self._run(str(self.pg_ctl), "start", "-D", str(self.data), "-l", str(self.log),
                              "-w", "-t", str(int(timeout)), timeout=timeout + 10)
        if code != 0:
            new_log = self._log_text()[log_offset:]
            error = _PortInUse if re.search(r"could not bind|Address already in use", new_log) else RuntimeError
            raise error(f"PostgreSQL failed to start on 127.0.0.1:{self.port}:\n{out}\n"
                        f"server log ({self.log}):\n{self.log_tail()}")
        self._wait(timeout)

    def _connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=dbname, **kwargs)

    def _wait(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connect(connect_timeout=2).close()
                return
            except psycopg.OperationalError as e:
                if not self.is_running() or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL does not accept connections on 127.0.0.1:{self.port}: {e}\n"
                                       f"server log ({self.log}):\n{self.log_tail()}") from None
                time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server; `mode` is pg_ctl's (smart, fast, immediate). Never hangs.

        If pg_ctl cannot stop it in time it escalates to an immediate shutdown, then SIGKILL.
        """
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, not {mode!r}")
        for attempt_mode, attempt_timeout in ((mode, timeout), ("immediate", 5.0)):
            if not self.is_running():
                return
            self._run(str(self.pg_ctl), "stop", "-D", str(self.data), "-m", attempt_mode, "-w",
                      "-t", str(int(attempt_timeout)), timeout=attempt_timeout + 10)
        pid = self.postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return
        # pg_ctl made the postmaster a session leader, so its group holds all the backends too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A killed postmaster leaves its lock files behind. PostgreSQL would ignore them if
        # their pid were gone, but an orphaned zombie (or a reused pid) still answers kill(pid, 0)
        # and blocks the next start with "lock file ... already exists".
        for lock in [self.data / "postmaster.pid", *self.data.glob(".s.PGSQL.*.lock")]:
            with contextlib.suppress(OSError):
                lock.unlink()

    def cleanup(self) -> None:
        """Stop for good and delete the cluster's files."""
        atexit.unregister(self.cleanup)
        try:
            if self.data.exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    # -- databases

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique random name by default) and return its URL."""
        from psycopg import sql

        name = name or f"test_{uuid.uuid4().hex[:16]}"
        with self._connect(autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database by name (or by the URL `create_database` returned), even if in use."""
        from psycopg import sql

        if "://" in name:
            from sqlalchemy.engine import make_url

            name = make_url(name).database or ""
        with self._connect(autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def start_postgres(tmpdir: Path | None = None, *, timeout: float = 30.0,
                   max_connections: int = 200) -> PostgresServer:
    """A fresh cluster, running on a free 127.0.0.1 port; `cleanup()` (or `with`) when done.

    The cluster goes under `tmpdir` when the server's OS user can reach it (and the socket path
    stays short enough), else under a fresh directory in /tmp.
    """
    server = PostgresServer(tmpdir, max_connections=max_connections)
    try:
        server.init()
        for attempt in range(3):
            try:
                server.start(timeout)
                return server
            except _PortInUse:
                # Someone took the port between free_port() and the bind.
                if attempt == 2:
                    raise
                server.port = free_port()
                server._write_conf()
    except BaseException:
        server.cleanup()
        raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- S3


class S3Server:
    """moto's S3 (in a thread of this process) on a free 127.0.0.1 port.

    moto keeps its state per process, shared by every moto server and mock in it, and it
    survives `stop()`: use unique bucket names, or `reset()`.
    """

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, timeout: float = 30.0) -> None:
        from moto.server import ThreadedMotoServer

        # Port 0: the OS picks while binding, so there is no window for another process to
        # steal it. A failed bind would otherwise hang start() forever (it waits on an event
        # that only a successful bind sets), hence the bounded wait in a helper thread.
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        starter = threading.Thread(target=self._server.start, daemon=True)
        starter.start()
        starter.join(timeout)
        if starter.is_alive():
            raise RuntimeError(f"moto's S3 server did not start within {timeout}s")
        host, self.port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point boto3/s3fs/the AWS CLI at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for s3fs.S3FileSystem / fsspec."""
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def create_bucket(self, name: str) -> str:
        """Create a bucket (boto3 rather than s3fs, so no s3fs listing cache sees a stale state)."""
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every bucket and object (all moto state of this process)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def start_s3(timeout: float = 30.0) -> Iterator[S3Server]:
    """moto's S3 on loopback for the duration of the `with` block."""
    server = S3Server(timeout)
    try:
        yield server
    finally:
        server.stop()
