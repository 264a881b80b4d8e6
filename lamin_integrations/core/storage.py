"""Bytes in storage: fsspec roots, where an artifact's bytes live, and moving them there.

A storage root is a local folder or any fsspec URL (`s3://bucket/prefix`, `gs://...`).
Copies of files from outside any registered root live under `<root>/.lamindb/` by uid (as
in lamindb); files already under a registered root are registered where they are, with
their real relative path as key.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import threading
from pathlib import Path
from typing import Any

from ..errors import InvalidKey

logger = logging.getLogger("lamin_integrations")

MAX_KEY_LENGTH = 1024
COMPOUND_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str | os.PathLike) -> Path:
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser().absolute()


def check_key(key: Any, *, reserved_ok: bool = False) -> str:
    """A key is a relative POSIX path that stays inside the storage root.

    `reserved_ok`: accept `.lamindb/...`, the key a registry-managed copy has when it is
    registered again in place.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"an artifact key is a string, got {type(key).__name__}: {key!r}")
    problem = None
    if not key or not key.strip():
        problem = "it is empty"
    elif "\x00" in key:
        problem = "it contains a NUL byte"
    elif not _is_unicode(key):
        problem = "it is not valid Unicode (a lone surrogate: a file name that is not UTF-8?)"
    elif len(key) > MAX_KEY_LENGTH:
        problem = f"it is longer than {MAX_KEY_LENGTH} characters"
    elif key.startswith(("/", "\\", "~")) or (len(key) > 1 and key[1] == ":"):
        problem = "it is absolute"
    elif "://" in key:
        problem = "it is a URL"
    else:
        parts = key.replace("\\", "/").split("/")
        if any(p == ".." for p in parts):
            problem = "it contains '..'"
        elif any(p in ("", ".") for p in parts[:-1]) or parts[-1] in ("", ".", ".lamindb"):
            problem = "it has empty or '.' segments"
        elif parts[0] == ".lamindb" and not reserved_ok:
            problem = "'.lamindb/' is reserved for copies managed by the registry"
    if problem is None and posixpath.normpath(key) != key:
        problem = "it is not a normalised path"
    if problem:
        raise InvalidKey(f"invalid artifact key {key!r}: {problem}; use a relative path such as 'results/table.csv'")
    return key


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def suffix_of(name: str) -> str:
    """The canonical suffix: `.csv`, `.tar.gz`, `.fastq.gz`, or "" for none."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    suffixes = Path(base).suffixes
    if not suffixes:
        return ""
    if len(suffixes) >= 2 and suffixes[-1].lower() in COMPOUND_SUFFIXES and len(suffixes[-2]) <= 10:
        return (suffixes[-2] + suffixes[-1])[:30]
    return suffixes[-1][:30]


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for a URL or local path."""
    import fsspec

    if not is_url(url):
        return fsspec.filesystem("file"), str(local_path(url))
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    return fs, path


def storage_options(url: str) -> dict[str, Any]:
    """Object-store options from the environment (endpoint for S3-compatible servers)."""
    if url.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def join(root: str, key: str) -> str:
    return root.rstrip("/") + "/" + key


def relative_to_root(path: str, root: str) -> str | None:
    """The key of `path` under `root`, or None when it lies outside."""
    root = root.rstrip("/")
    if path == root or not path.startswith(root + "/"):
        return None
    return path[len(root) + 1 :]


def root_of_url(url: str) -> str:
    """The bucket part of an object-store URL: what lamindb registers as a storage root."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def download(source: str, destination: Path, is_dir: bool) -> None:
    """Download a file or folder to a local path, whole or not at all.

    The bytes land beside the destination and are renamed into place, so a download cut
    short (a killed process, a lost connection) never leaves a partial copy that a later
    call would take for the whole (a folder has no size to check).
    """
    import uuid

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f"{destination.name}.part-{uuid.uuid4().hex[:12]}")
    fs, path = filesystem(source)
    try:
        fs.get(path, str(partial), recursive=is_dir)
        try:
            os.replace(partial, destination)
        except OSError:
            if not (is_dir and destination.is_dir()):
                raise
            # another process completed the same folder first: keep theirs
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def put(source: str, destination: str, is_dir: bool) -> None:
    """Copy or upload bytes; a partial copy is removed so no path holds half a file."""
    if not is_url(destination) and not is_url(source):
        dest = Path(destination)
        dest.parent.mkdir(parents=True, exist_ok=True)
        import uuid

        # Unique per call: threads of one process may store the same artifact at once.
        tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        _in_flight.add(tmp)
        try:
            if is_dir:
                # Links to folders are not part of the folder (hashing.list_files does not
                # follow them either); links to files are copied as the file's bytes.
                shutil.copytree(source, tmp, ignore=_linked_dirs)
                _replace_dir(tmp, dest)
            else:
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
        except BaseException:
            _remove_partial(tmp)
            raise
        finally:
            _in_flight.discard(tmp)
        return
    dest_fs, dest_path = filesystem(destination)
    if not is_url(source):
        dest_fs.put(str(source), dest_path, recursive=is_dir)
        return
    src_fs, src_path = filesystem(source)
    if type(src_fs) is type(dest_fs):
        src_fs.copy(src_path, dest_path, recursive=is_dir)
    else:
        with src_fs.open(src_path, "rb") as fin, dest_fs.open(dest_path, "wb") as fout:
            shutil.copyfileobj(fin, fout, 8 * 1024 * 1024)


_dir_locks: dict[str, threading.Lock] = {}
_dir_locks_guard = threading.Lock()


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move a copied folder into place; a folder cannot replace a non-empty one in one step.

    Threads of this process that store the same folder take turns (mapped tasks reading one
    folder store it at once). If another process puts the folder there between our removal
    and our move, it stored the same artifact at that moment: keep theirs, drop our copy.
    """
    with _dir_locks_guard:
        lock = _dir_locks.setdefault(str(dest), threading.Lock())
    with lock:
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)


_in_flight: set[Path] = set()  # partial copies being written by this process


def _remove_partial(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def remove_partial_copies() -> None:
    """Delete the partial copies this process is writing: it is about to be killed (SIGTERM
    from SLURM or Kubernetes), and the `except` that would clean them up will not run."""
    for tmp in list(_in_flight):
        try:
            _remove_partial(tmp)
        except OSError:
            pass


def _linked_dirs(folder: str, names: list[str]) -> set[str]:
    """What a folder's copy leaves out: links to folders, dangling links, and named pipes,
    sockets and devices (hashing.list_files skips them: opening a pipe would block, or take
    bytes from its reader). Dangling links are found here, not by copytree's
    `ignore_dangling_symlinks`, which resolves a relative link from the working folder and so
    drops good links like `ok -> real.txt`."""
    out = set()
    for n in names:
        path = os.path.join(folder, n)
        if os.path.isdir(path) and os.path.islink(path) or not os.path.isdir(path) and not os.path.isfile(path):
            out.add(n)
    return out


def remove(destination: str, is_dir: bool) -> None:
    try:
        if not is_url(destination):
            p = Path(destination)
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        else:
            fs, path = filesystem(destination)
            fs.rm(path, recursive=is_dir)
    except (OSError, FileNotFoundError):
        pass


def exists(location: str) -> bool:
    if not is_url(location):
        return os.path.lexists(location)
    fs, path = filesystem(location)
    return bool(fs.exists(path))


def discard(locations: list[tuple[str, bool]]) -> None:
    """Remove the files and folders at (location, is_dir) pairs: best-effort, each failure
    logged. Object-store files are deleted in batches (one request per 1,000 on S3)."""
    by_fs: dict[int, tuple[Any, list[str]]] = {}
    for location, is_dir in locations:
        try:
            if not is_url(location):
                if is_dir and not os.path.islink(location):
                    shutil.rmtree(location)
                else:
                    os.unlink(location)
                continue
            fs, path = filesystem(location)
            if is_dir:
                fs.rm(path, recursive=True)
            else:
                by_fs.setdefault(id(fs), (fs, []))[1].append(path)
        except FileNotFoundError:
            pass
        except Exception as e:
            logger.warning("lamin-integrations: could not remove %s from storage: %s", location, e)
    for fs, paths in by_fs.values():
        try:
            fs.rm(paths)
        except FileNotFoundError:
            pass
        except Exception as e:
            logger.warning("lamin-integrations: could not remove %d file(s) from storage (%s, ...): %s",
                           len(paths), paths[0], e)
