"""Content hashes for files, folders and strings, with a stat cache.

Default: BLAKE3 over the full content, truncated to 128 bits and base64url-encoded (22
characters, the same width as lamindb's hashes). Why BLAKE3 rather than xxh3-128: xxh3 is
faster per core (about 13 vs 5 GiB/s here) but is not collision-resistant, and a content
hash is an identity that two users' pipelines trust to say "same data"; BLAKE3 is
cryptographic and still faster than disks deliver, so hashing stays I/O-bound. Files are
hashed through `update_mmap`, which keeps Python out of the inner loop.

lamindb-compatible mode (per instance, for users who compare hashes with lamindb): md5 of
the whole file up to 50 MiB, else `sha1-fl` (sha1 of the sha1s of the first and last
50 MiB), folders as lamindb's `md5-d`. That mode reproduces lamindb exactly, including its
weaknesses (large files are sampled, folder hashes ignore file names).

The stat cache remembers (absolute path, size, mtime_ns, inode) -> hash in a small SQLite
file per user, so an unchanged file is never read twice. A file modified in the same
second it was hashed is not cached (git's "racily clean" rule): its next change could keep
the same mtime.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

HASH_LENGTH = 22
CHUNK = 50 * 1024 * 1024  # lamindb's sampling unit
BLAKE3 = "blake3"
BLAKE3_DIR = "blake3-dir"
MODES = ("blake3", "lamindb")
_MT_THRESHOLD = 64 * 1024 * 1024  # below this, threads cost more than they save


class FileState(NamedTuple):
    """A file's content as far as a stat can tell: the stat cache's key. Adapters compare two
    of them to know whether a file changed between a job's start and its recording, without
    reading it; a list of the same three numbers (JSON) is `FileState(*seen)`."""

    size: int
    mtime_ns: int
    inode: int


def file_state(path: str | os.PathLike[str]) -> FileState | None:
    """None for a file that is not there (or not readable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileState(st.st_size, st.st_mtime_ns, st.st_ino)


def b64_digest(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:HASH_LENGTH]


def hash_string(text: str) -> str:
    """md5, base64url, 22 characters: lamindb's hash of source code."""
    return b64_digest(hashlib.md5(text.encode()).digest())


def hash_bytes(data: bytes, mode: str = "blake3") -> tuple[str, str]:
    if mode == "lamindb":
        return _lamindb_bytes(data)
    import blake3

    return b64_digest(blake3.blake3(data).digest(16)), BLAKE3


def _lamindb_bytes(data: bytes) -> tuple[str, str]:
    if len(data) <= CHUNK:
        return b64_digest(hashlib.md5(data).digest()), "md5"
    first = hashlib.sha1(data[:CHUNK]).digest()
    last = hashlib.sha1(data[-CHUNK:]).digest()
    return b64_digest(hashlib.sha1(first + last).digest()), "sha1-fl"


def _hash_file_uncached(path: Path, size: int, mode: str) -> tuple[str, str]:
    if mode == "lamindb":
        with open(path, "rb") as f:
            if size <= CHUNK:
                h = hashlib.md5()
                while block := f.read(8 * 1024 * 1024):
                    h.update(block)
                return b64_digest(h.digest()), "md5"
            first = hashlib.sha1(f.read(CHUNK)).digest()
            f.seek(-CHUNK, os.SEEK_END)
            last = hashlib.sha1(f.read(CHUNK)).digest()
        return b64_digest(hashlib.sha1(first + last).digest()), "sha1-fl"
    return _blake3_file(path, size), BLAKE3


def _blake3_file(path: Path, size: int) -> str:
    import blake3

    h = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= _MT_THRESHOLD else 1)
    if size:
        h.update_mmap(path)
    return b64_digest(h.digest(16))


class StatCache:
    """(path, size, mtime_ns, inode) -> hash, in SQLite; safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        # The same answers in memory for this process: a folder passed to each of 30 tasks
        # is 30 x 3,000 lookups, and a dict is ~100x cheaper than an SQLite query.
        self._memory: dict[tuple, tuple[str, str]] = {}

    def _remember(self, key: tuple, value: tuple[str, str]) -> None:
        if len(self._memory) >= MEMORY_ENTRIES:
            self._memory.clear()
        self._memory[key] = value

    def _conn(self) -> sqlite3.Connection | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # a lost cache entry only costs a re-hash
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS stat_hash (path TEXT, hash_type TEXT, size INTEGER, "
                    "mtime_ns INTEGER, inode INTEGER, hash TEXT, PRIMARY KEY (path, hash_type))"
                )
            except sqlite3.Error:
                return None  # the cache is an optimisation; never fail a hash over it
            self._local.conn = conn
        return conn

    def get(self, path: str, st: os.stat_result, mode: str) -> tuple[str, str] | None:
        key = (path, _types(mode)[0], st.st_size, st.st_mtime_ns, st.st_ino)
        found = self._memory.get(key)
        if found is not None:
            return found
        conn = self._conn()
        if conn is None:
            return None
        try:
            row = conn.execute(
                "SELECT hash, hash_type FROM stat_hash WHERE path = ? AND hash_type IN (?, ?, ?) "
                "AND size = ? AND mtime_ns = ? AND inode = ?",
                (path, *_types(mode), st.st_size, st.st_mtime_ns, st.st_ino),
            ).fetchone()
        except (sqlite3.Error, UnicodeEncodeError):  # a path that is not UTF-8: not cached
            return None
        if not row:
            return None
        self._remember(key, (row[0], row[1]))
        return (row[0], row[1])

    def put(self, path: str, st: os.stat_result, digest: str, hash_type: str) -> None:
        if time.time_ns() - st.st_mtime_ns < 2_000_000_000:
            return  # racily clean: a change within the same tick could go unnoticed
        group = "md5" if hash_type in ("md5", "sha1-fl") else BLAKE3  # as _types(mode)[0] names it
        self._remember((path, group, st.st_size, st.st_mtime_ns, st.st_ino), (digest, hash_type))
        conn = self._conn()
        if conn is None:
            return
        try:
            conn.execute(
                "INSERT OR REPLACE INTO stat_hash VALUES (?, ?, ?, ?, ?, ?)",
                (path, hash_type, st.st_size, st.st_mtime_ns, st.st_ino, digest),
            )
        except (sqlite3.Error, UnicodeEncodeError):
            pass


MEMORY_ENTRIES = 200_000


def _types(mode: str) -> tuple[str, str, str]:
    return ("md5", "sha1-fl", "sha1-fl") if mode == "lamindb" else (BLAKE3, BLAKE3, BLAKE3)


_cache: StatCache | None = None
_cache_lock = threading.Lock()
reads = 0  # files actually read (not served from the cache): lets tests and benchmarks see it


def stat_cache() -> StatCache:
    global _cache
    with _cache_lock:
        from .settings import data_dir

        path = data_dir() / "hash-cache.sqlite"
        if _cache is None or _cache.path != path:
            _cache = StatCache(path)
        return _cache


def hash_file(path: str | Path, mode: str = "blake3", st: os.stat_result | None = None) -> tuple[str, str]:
    """(hash, hash_type) of a local file, from the stat cache when it has not changed."""
    global reads
    path = Path(path).absolute()
    st = st or path.stat()
    cache = stat_cache()
    key = str(path)
    cached = cache.get(key, st, mode)
    if cached is not None:
        return cached
    digest, hash_type = _hash_file_uncached(path, st.st_size, mode)
    reads += 1
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
        cache.put(key, st, digest, hash_type)
    return digest, hash_type


def list_files(folder: Path) -> list[tuple[str, Path, os.stat_result]]:
    """Every regular file below `folder` as (relative posix path, path, stat), sorted by path."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in files:
            p = Path(root) / name
            try:
                st = p.stat()
            except FileNotFoundError:
                if p.is_symlink():
                    continue  # a dangling link holds no bytes (the copy into storage skips it too)
                raise
            if not stat.S_ISREG(st.st_mode):
                continue  # a named pipe, socket or device: reading it would block or consume its data
            out.append((p.relative_to(folder).as_posix(), p, st))
    out.sort(key=lambda item: item[0])
    return out


def hash_files(paths: Iterable[tuple[Path, os.stat_result]], mode: str = "blake3", workers: int | None = None) -> list[tuple[str, str]]:
    """Hash many files in a thread pool (hashing releases the GIL); order is preserved."""
    items = list(paths)
    if len(items) <= 1:
        return [hash_file(p, mode, st) for p, st in items]
    cache = stat_cache()
    out: list[tuple[str, str] | None] = [cache.get(str(Path(p).absolute()), st, mode) for p, st in items]
    missing = [i for i, found in enumerate(out) if found is None]  # only these go to the pool
    if missing:
        workers = workers or min(32, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(max_workers=min(workers, len(missing))) as pool:
            for i, result in zip(missing, pool.map(lambda i: hash_file(items[i][0], mode, items[i][1]), missing),
                                 strict=True):
                out[i] = result
    return out  # type: ignore[return-value]


def hash_dir(folder: str | Path, mode: str = "blake3") -> tuple[str, str, int, int]:
    """(hash, hash_type, total size, n_files) of a folder.

    The default hash covers each file's relative path and content, so renaming or moving a
    file changes the folder's hash.
    """
    folder = Path(folder)
    files = list_files(folder)
    hashes = hash_files([(p, st) for _, p, st in files], mode)
    size = sum(st.st_size for _, _, st in files)
    if mode == "lamindb":
        digests = b"".join(hashlib.md5(h.encode()).digest() for h, _ in sorted(hashes))
        return b64_digest(hashlib.md5(digests).digest()), "md5-d", size, len(files)
    import blake3

    h = blake3.blake3()
    for (rel, _, _), (digest, _) in zip(files, hashes, strict=True):
        h.update(rel.encode() + b"\0" + digest.encode() + b"\n")
    return b64_digest(h.digest(16)), BLAKE3_DIR, size, len(files)
