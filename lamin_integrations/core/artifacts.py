"""Registering files, folders and objects: describe the source, dedupe, store, link.

Saving is two-phase, so a failure never leaves a row pointing at missing bytes:
1. one transaction inserts the new rows flagged `_storage_ongoing` (hidden from queries);
2. the bytes are copied or uploaded;
3. one transaction clears the flags. If the copy fails, the rows this call inserted are
   deleted (never another writer's). A row left flagged by a crash is completed by the next
   save of the same content.
Inside `Instance.transaction()` the three steps join the block's transaction; if it rolls
back, the bytes copied for the rows inserted in it are removed as well.

Many artifacts are saved with one lookup query, one bulk insert and hashing in a pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import InvalidKey, NotFoundOnDisk, ValidationError
from . import hashing, schema
from . import storage as st
from .match import existing_match

if TYPE_CHECKING:
    from .models import Artifact, Collection, Run

logger = logging.getLogger("lamin_integrations")


@dataclass
class Source:
    """Where an artifact's bytes come from, and what is known about them before saving."""

    location: str  # absolute local path or URL
    is_dir: bool
    is_local: bool
    in_place: bool  # already under a registered storage root: no copy
    stat: os.stat_result | None = None


def hash_mode(instance: Any) -> str:
    """The registry's hashing mode: BLAKE3 by default, lamindb-compatible when chosen."""
    return instance.hash_mode


ROOTS_TTL_SECONDS = 2.0


def registered_roots(instance: Any) -> list[tuple[int, str]]:
    """Storage roots, longest first; cached briefly (adapters register thousands of files).

    Roots registered by this process are seen at once (the count changes); ones registered
    by another process within the last seconds may be missed, and the file is then copied
    rather than registered in place: slower, never wrong.
    """
    import time

    instance.storage  # noqa: B018  (the default root must be registered to be recognised)
    cached = getattr(instance, "_roots_cache", None)
    if cached is not None and time.monotonic() - cached[0] < ROOTS_TTL_SECONDS and cached[1] == _storage_writes:
        return cached[2]
    with instance.read() as conn:
        rows = conn.execute(sa.select(schema.storage.c.id, schema.storage.c.root)).all()
    roots = sorted(((r[0], r[1]) for r in rows), key=lambda r: -len(r[1]))
    instance._roots_cache = (time.monotonic(), _storage_writes, roots)
    return roots


_storage_writes = 0


def storage_registered() -> None:
    """Called when this process registers a storage root: forget cached roots."""
    global _storage_writes
    _storage_writes += 1


def describe_source(artifact: Artifact, data: Any, key: str | None) -> None:
    """Fill the artifact's fields from a local path or URL, without reading the content yet."""
    instance = artifact._db
    text = os.fspath(data)
    if st.is_url(text):
        fs, fs_path = st.filesystem(text)
        try:
            info = fs.info(fs_path)
        except FileNotFoundError:
            raise NotFoundOnDisk(f"no object at {text}") from None
        except PermissionError as e:
            raise NotFoundOnDisk(f"cannot read {text}: permission denied ({e})") from None
        location = text.rstrip("/")
        is_dir = info.get("type") == "directory"
        source = Source(location, is_dir, is_local=False, in_place=False)
        artifact.__dict__["_cloud_info"] = info
    else:
        path = st.local_path(text)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFoundOnDisk(f"no such file or folder: {path}") from None
        except PermissionError:
            raise NotFoundOnDisk(f"cannot read {path}: permission denied") from None
        if not (S_ISREG(stat.st_mode) or S_ISDIR(stat.st_mode)):
            # A Snakemake pipe(), a socket, a device: opening it would block or take bytes from its reader.
            raise NotFoundOnDisk(f"{path} is not a file or folder (a named pipe, socket or device): it holds no bytes to record")
        if not path.is_dir() and not os.access(path, os.R_OK):
            raise NotFoundOnDisk(f"cannot read {path}: permission denied")
        location = str(path.resolve())
        source = Source(location, path.is_dir(), is_local=True, in_place=False, stat=stat)
        if source.is_dir:
            for _, root in registered_roots(instance):
                if root == location or root.startswith(location.rstrip("/") + "/"):
                    raise ValidationError(f"{location} contains the storage root {root}: it cannot be copied into "
                                          "itself; register the files below it instead")
    real_key = None
    for storage_id, root in registered_roots(instance):
        rel = st.relative_to_root(location, root)
        if rel is not None:
            source.in_place, real_key = True, rel
            artifact.__dict__["storage_id"] = storage_id
            break
    if not source.in_place and not source.is_local:
        # An object outside every registered root: register its bucket and keep it in place.
        from .models import Storage

        bucket = st.root_of_url(location)
        storage = Storage._get_or_create(instance, bucket)
        artifact.__dict__["storage_id"] = storage.id
        source.in_place, real_key = True, st.relative_to_root(location, bucket)
    if real_key is not None:
        if key is not None and key != real_key:
            logger.warning("%s lies in registered storage: registering it in place with its real key %r, not %r",
                           location, real_key, key)
        key = real_key
        artifact.__dict__["_key_is_virtual"] = False
    elif key is not None:
        st.check_key(key)
        _check_suffix(key, text, source.is_dir)
    if key is not None:
        artifact.__dict__["key"] = key
    artifact.__dict__["suffix"] = "" if source.is_dir else st.suffix_of(key or location)
    if source.stat is not None and not source.is_dir:
        artifact.__dict__["size"] = source.stat.st_size
    artifact.__dict__["_source"] = source
    artifact.__dict__["_pending"] = True


def _check_suffix(key: str, path: str, is_dir: bool) -> None:
    """A key names the same kind of file as its data (lamindb refuses a mismatch too): a
    DataFrame stored as parquet under `counts.csv` could not be read back by its name."""
    from ..errors import InvalidArgument

    wanted, have = st.suffix_of(key).lower(), st.suffix_of(path).lower()
    if is_dir or not wanted or not have or wanted == have:
        return
    if have == ".parquet" and Path(path).parent.name == "dataframes":
        raise InvalidArgument(f"a DataFrame is stored as parquet: its key must end in .parquet, not {wanted!r} ({key})")
    if have == ".h5ad" and Path(path).parent.name == "anndata":
        raise InvalidArgument(f"an AnnData is stored as .h5ad: its key must end in .h5ad, not {wanted!r} ({key})")
    raise InvalidArgument(f"the key's suffix {wanted!r} does not match the file's {have!r} ({key} for {path})")


def compute_stats(artifact: Artifact, mode: str) -> None:
    """Hash (and measure) the source; cheap for unchanged local files thanks to the stat cache."""
    d = artifact.__dict__
    source: Source = d["_source"]
    if source.is_local and source.is_dir:
        digest, hash_type, size, n_files = hashing.hash_dir(source.location, mode)
        d.update(hash=digest, _hash_type=hash_type, size=size, n_files=n_files)
    elif source.is_local:
        digest, hash_type = hashing.hash_file(source.location, mode, source.stat)
        d.update(hash=digest, _hash_type=hash_type, size=source.stat.st_size if source.stat else None)
    else:
        _cloud_stats(artifact, source, mode)
    d["_pending"] = False


def _cloud_stats(artifact: Artifact, source: Source, mode: str) -> None:
    """Use the store's own checksum (ETag / md5Hash) when it has one; else hash the bytes."""
    d = artifact.__dict__
    fs, path = st.filesystem(source.location)
    if source.is_dir:
        files = sorted(fs.find(path, detail=True).items())
        parts = [(name[len(path.rstrip('/')) + 1 :], _object_checksum(info)) for name, info in files]
        if all(c is not None for _, c in parts):
            import blake3

            h = blake3.blake3()
            for rel, (digest, _) in parts:  # type: ignore[misc]
                h.update(rel.encode() + b"\0" + digest.encode() + b"\n")
            d.update(hash=hashing.b64_digest(h.digest(16)), _hash_type="md5-etag-dir",
                     size=sum(int(i.get("size") or 0) for _, i in files), n_files=len(files))
            return
        raise ValidationError(f"{source.location}: the store gives no checksums for this folder's objects")
    info = d.pop("_cloud_info", None) or fs.info(path)
    d["size"] = int(info.get("size") or 0)
    checksum = _object_checksum(info)
    if checksum is not None:
        d.update(hash=checksum[0], _hash_type=checksum[1])
        return
    with fs.open(path, "rb") as f:
        data = f.read()
    d["hash"], d["_hash_type"] = hashing.hash_bytes(data, mode)


def _object_checksum(info: dict[str, Any]) -> tuple[str, str] | None:
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if etag:
        hexpart, _, parts = etag.partition("-")
        try:
            digest = hashing.b64_digest(bytes.fromhex(hexpart))
        except ValueError:
            digest = None
        if digest and len(hexpart) == 32:
            return digest, f"md5-{parts}" if parts else "md5"
    md5 = info.get("md5Hash")  # GCS: base64 of the md5
    if md5:
        import base64

        return hashing.b64_digest(base64.b64decode(md5)), "md5"
    return None


def lookups_for_path(path: Any, instance: Any) -> dict[str, Any] | None:
    """The lookups that find the artifact whose bytes are at `path` (`Artifact.get(path=...)`),
    by undoing `storage_location`; None when no registered storage holds that path."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    location = text.rstrip("/") if st.is_url(text) else str(st.local_path(text).resolve())
    for storage_id, root in registered_roots(instance):
        rel = st.relative_to_root(location, root)
        if rel is None:
            continue
        name = rel.removeprefix(".lamindb/")
        uid = name.split(".", 1)[0]
        if name != rel and "/" not in name and len(uid) == 20:
            return {"storage_id": storage_id, "uid": uid}
        if name != rel and "/" not in name and len(uid) == 16:  # a folder: every version shares the place
            return {"storage_id": storage_id, "uid__startswith": uid, "n_files__isnull": False, "is_latest": True}
        return {"storage_id": storage_id, "key": rel, "_key_is_virtual": False}
    return None


def storage_location(artifact: Artifact, root: str) -> str:
    """Where the artifact's bytes live in its storage."""
    d = artifact.__dict__
    if d.get("_key_is_virtual") is False and d.get("key"):
        return st.join(root, d["key"])
    uid = d["uid"]
    name = uid[:16] if d.get("n_files") is not None else uid
    return st.join(root, f".lamindb/{name}{d.get('suffix') or ''}")


def _roots(instance: Any) -> dict[int, str]:
    return dict(registered_roots(instance))


def save_artifacts(artifacts: Sequence[Artifact], run: Run | None = None) -> None:
    """Save new artifacts in bulk (existing ones are updated one by one).

    `run` is the run that writes them (default: the current run); adapters recording many
    concurrent jobs pass it, since no single run is current for them.
    """
    from . import plugins
    from .context import get_current_run
    from .models import Run

    for a in artifacts:
        if a.id is not None:
            a._save_metadata()
    new = [a for a in artifacts if a.id is None]
    if not new:
        return
    instance = new[0]._db
    mode = hash_mode(instance)
    pending = [a for a in new if a.__dict__.get("_pending")]
    if len(pending) > 1:
        with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
            list(pool.map(lambda a: compute_stats(a, mode), pending))
    elif pending:
        compute_stats(pending[0], mode)
    run = run or get_current_run()
    for a in new:
        if run is not None and a.__dict__.get("run_id") is None and "run" not in a.__dict__.get("_related", {}) \
                and not a.__dict__.get("_no_lineage"):
            a.__dict__["run_id"] = run.id
            if isinstance(run, Run):  # `artifact.run` is the tracked run itself, as in lamindb (not a stale copy)
                a.__dict__.setdefault("_related", {})["run"] = run
        a._prepare(instance)
    table = schema.artifact
    roots = _roots(instance)
    hashes = sorted({a.__dict__["hash"] for a in new if a.__dict__.get("hash")})
    keys = sorted({a.__dict__["key"] for a in new if a.__dict__.get("key")})

    def write(conn: sa.Connection) -> dict[str, Any]:
        for a, state in zip(new, states, strict=True):
            a.__dict__.clear()
            a.__dict__.update(state)
        if keys and conn.dialect.name == "postgresql":
            # Serialise writers of the same key (SQLite writers are serialised already), so
            # two new versions of one key never start two families or collide on a uid.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"),
                         {"keys": keys})
        found: list[Any] = []
        for chunk in [hashes[i : i + 5000] for i in range(0, len(hashes), 5000)]:
            found += conn.execute(sa.select(table).where(table.c.hash.in_(chunk), table.c.branch_id != -1)).mappings().all()
        latest = {}
        for chunk in [keys[i : i + 5000] for i in range(0, len(keys), 5000)]:
            for row in conn.execute(sa.select(table).where(table.c.key.in_(chunk), table.c.is_latest.is_(True), table.c.branch_id != -1)).mappings():
                latest[(row["storage_id"], row["key"])] = row
        by_hash: dict[str, list[Any]] = {}
        for row in found:
            by_hash.setdefault(row["hash"], []).append(row)
        roots = _creator_roots(conn, found) if any(a.__dict__.get("_own_root") for a in new) else {}
        inserted, existing, to_copy, rows, stems = [], [], [], [], {}
        for a in new:
            d = a.__dict__
            candidates = by_hash.get(d.get("hash") or "", [])
            if d.get("_own_root") is not None:  # not another file that this pipeline run made
                candidates = [r for r in candidates if r["key"] == d.get("key") or roots.get(r["run_id"]) != d["_own_root"]]
            match = existing_match(d, candidates)
            if match is not None:
                if d.get("key") and match["key"] != d["key"] and not d.get("_no_lineage") and not d.get("_own_root"):
                    # lamindb's rule, and its warning: the same content is the same artifact
                    logger.warning("returning the existing artifact %s with the same content (key %r): key %r and the "
                                   "other values given are not used", match["uid"], match["key"], d["key"])
                d.update(dict(match))
                existing.append(a)
                if match["_storage_ongoing"]:
                    to_copy.append(a)
                continue
            previous = latest.get((d["storage_id"], d.get("key"))) if d.get("key") else None
            revises = d.pop("_revises", None)
            stem = revises.uid[:16] if revises is not None else (previous["uid"][:16] if previous is not None else None)
            if stem is not None:
                from .models import _family_uids
                from .uids import next_version_uid

                d["uid"] = next_version_uid(stem, _family_uids(conn, table, stem))
                stems[d["uid"]] = stem
            d["_storage_ongoing"] = not d["_source"].in_place if d.get("_source") else False
            rows.append((a, a._insert_values(conn)))
        if rows:
            # One multi-row INSERT; rows that lose a race to a concurrent writer return no id.
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            stmt = insert(table).on_conflict_do_nothing().returning(table.c.id, table.c.uid)
            ids = dict((uid, id_) for id_, uid in conn.execute(stmt, [values for _, values in rows]).all())
        for a, _ in rows:
            d = a.__dict__
            if d["uid"] not in ids:
                won: Any = conn.execute(sa.select(table).where(table.c.hash == d.get("hash"), table.c.storage_id == d["storage_id"],
                                                          table.c.key == d.get("key") if d.get("key") else table.c.key.is_(None),
                                                          table.c.branch_id != -1)).mappings().first()
                if won is None:
                    raise ValidationError(f"could not register {d.get('key') or d.get('uid')}: a conflicting row exists")
                d.update(dict(won))
                existing.append(a)
                continue
            d["id"] = ids[d["uid"]]
            if d["uid"] in stems:
                from .models import _demote_family

                _demote_family(conn, table, stems[d["uid"]], d["id"])
            inserted.append(a)
            if d["_storage_ongoing"]:
                to_copy.append(a)
        recreated = []
        for a in existing:
            d = a.__dict__
            writer = d.get("_related", {}).get("run") or run  # adapters save for many runs at once
            if writer is None or writer.id is None or d.get("_no_lineage"):
                continue  # logs and environments are shared, not outputs of each run
            if d.get("run_id") is None and d.get("key") == states_by_id[id(a)].get("key"):
                # saved before, outside any run, at this very key: this run made it. (A copy
                # elsewhere of an orphan file, e.g. a pipeline input, is only recreated.)
                conn.execute(sa.update(table).where(table.c.id == d["id"]).values(run_id=writer.id))
                d["run_id"] = writer.id
            elif d["run_id"] != writer.id:
                recreated.append((a, writer))
        from .record import link

        link(conn, schema.run_recreated_artifact, [{"run_id": w.id, "artifact_id": a.id} for a, w in recreated])
        for a in inserted:
            from .models import _link_current_project

            if not a.__dict__.get("_no_lineage"):
                _link_current_project(conn, "artifact", a.id)
        return {"inserted": inserted, "existing": existing, "to_copy": to_copy, "recreated": recreated}

    states = [dict(a.__dict__) for a in new]
    states_by_id = {id(a): state for a, state in zip(new, states, strict=True)}
    result = instance.write(write)
    # Inside a transaction, bytes copied for rows inserted here are removed if it rolls back;
    # not bytes for a row found (another writer's), nor a folder already there (a version's).
    inserted = {id(a) for a in result["inserted"]} if instance._in_transaction else set()
    own = [a for a in result["to_copy"] if id(a) in inserted
           and not (a.__dict__["_source"].is_dir and st.exists(_destination(a, roots)))]
    failures = _copy_all(result["to_copy"], roots)
    failed = {id(a) for a, _ in failures}
    instance._copied_into_storage([(_destination(a, roots), a.__dict__["_source"].is_dir) for a in own if id(a) not in failed])
    if failures:
        mine = [a for a, _ in failures if a in result["inserted"]]
        if mine:
            ids = [a.id for a in mine]
            instance.write(lambda conn: conn.execute(sa.delete(table).where(table.c.id.in_(ids), table.c._storage_ongoing.is_(True))))
            for a in mine:
                a.__dict__["id"] = None
        a, error = failures[0]
        raise NotFoundOnDisk(f"could not store {a.__dict__['_source'].location}: {error}; nothing was registered for it") from error
    done = [a.id for a in result["to_copy"]]
    if done:
        instance.write(lambda conn: conn.execute(sa.update(table).where(table.c.id.in_(done)).values(_storage_ongoing=False)))
    events = []
    for a in new:
        a.__dict__["_storage_ongoing"] = False
        a._snapshot()
    for a in result["inserted"]:
        revised = states_by_id[id(a)].get("_revises")
        if revised is not None and a.is_latest:
            revised.__dict__["is_latest"] = False  # as the registry has it now: `a1.is_latest` after `revises=a1`
        events.append(("artifact_saved", {"artifact": a, "run": run if a.run_id and run is not None and a.run_id == run.id else a.run}))
    for a, writer in result["recreated"]:
        events.append(("artifact_recreated", {"artifact": a, "run": writer}))
    plugins.fire_all(events)


def _creator_roots(conn: sa.Connection, rows: list[Any]) -> dict[int, int]:
    """The pipeline run (root of the chain) of each creating run of `rows`."""
    ids = sorted({r["run_id"] for r in rows if r["run_id"] is not None})
    t, out = schema.run, dict[int, int]()
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        out.update((i, root or i) for i, root in conn.execute(sa.select(t.c.id, t.c.root_run_id).where(t.c.id.in_(chunk))))
    return out


def _destination(a: Artifact, roots: dict[int, str]) -> str:
    return storage_location(a, roots[a.__dict__["storage_id"]])


def _copy_all(artifacts: list[Artifact], roots: dict[int, str]) -> list[tuple[Artifact, BaseException]]:
    def copy(a: Artifact) -> tuple[Artifact, BaseException] | None:
        source: Source = a.__dict__["_source"]
        dest = _destination(a, roots)
        try:
            st.put(source.location, dest, source.is_dir)
            if source.is_local and not source.is_dir and source.stat is not None:
                after = os.stat(source.location)
                if (after.st_size, after.st_mtime_ns) != (source.stat.st_size, source.stat.st_mtime_ns):
                    # rewritten since it was hashed (a log a retried job appends to): the copy
                    # would not have the recorded hash
                    st.remove(dest, False)
                    raise OSError(f"{source.location} changed while it was being stored")
        except Exception as e:
            return a, e
        return None

    if len(artifacts) <= 1:  # inline: also works during interpreter exit, when pools refuse work
        return [r for r in map(copy, artifacts) if r is not None]
    with ThreadPoolExecutor(max_workers=min(8, len(artifacts))) as pool:
        return [r for r in pool.map(copy, artifacts) if r is not None]


def track_input(record: Artifact | Collection, is_run_input: bool | None = None) -> None:
    """Link an artifact or collection that was read as an input of the current run.

    Not when the reader says it is no input (`is_run_input=False`), nor, unless it says it is,
    when the `track_run_inputs` setting is off; never for the run that created the record.
    """
    from . import plugins
    from .context import get_current_run
    from .models import Collection
    from .settings import settings

    if is_run_input is False or (is_run_input is None and not settings.track_run_inputs):
        return
    run = get_current_run()
    if run is None or run.id is None or record.id is None or record.run_id == run.id:
        return
    if isinstance(record, Collection):
        link_input(run, "collection", record.id)
    elif link_input(run, "artifact", record.id) and plugins.has_impls("run_inputs_linked"):
        plugins.fire("run_inputs_linked", run=run, artifacts=[record])


def link_input(run: Run, kind: str, record_id: int) -> int:
    """Link an artifact or collection as an input of `run` unless the run recreated it (a run
    that saved the same content again is not its reader); the number of links made."""
    from .record import link

    recreated, inputs = getattr(schema, f"run_recreated_{kind}"), getattr(schema, f"run_input_{kind}")
    column = f"{kind}_id"

    def write(conn: sa.Connection) -> int:
        if conn.execute(sa.select(recreated.c.id).where(recreated.c.run_id == run.id, recreated.c[column] == record_id)).first():
            return 0
        return link(conn, inputs, [{"run_id": run.id, column: record_id}])

    return run._db.write(write)


# what `artifact.open()` reads lazily, as lamindb does: suffix -> pyarrow dataset format
_TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv", ".feather": "feather", ".arrow": "ipc",
                  ".ipc": "ipc", ".orc": "orc"}


def open_table(fs: Any, path: str, suffix: str, engine: str) -> Any:
    """A table file opened without loading it, or None for other files.

    pyarrow: a `pyarrow.dataset.Dataset` (object stores through fsspec). polars: a context
    manager giving a LazyFrame, as lamindb's `open(engine="polars")`."""
    kind = _TABLE_FORMATS.get(suffix.lower())
    if kind is None:
        return None
    local = type(fs).__name__ == "LocalFileSystem"
    if engine == "polars":
        try:
            import polars as pl
        except ImportError:
            raise ValidationError("open(engine='polars') needs polars: pip install polars") from None
        scan = {"parquet": pl.scan_parquet, "ipc": pl.scan_ipc, "feather": pl.scan_ipc, "csv": pl.scan_csv,
                "tsv": lambda p, **kw: pl.scan_csv(p, separator="\t", **kw)}.get(kind)
        if scan is None:
            raise ValidationError(f"polars cannot scan {suffix} files; use engine='pyarrow'")
        from contextlib import contextmanager

        @contextmanager
        def lazy() -> Any:
            yield scan(path if local else fs.unstrip_protocol(path))

        return lazy()
    import pyarrow.dataset as ds

    fmt: Any = {"feather": "ipc"}.get(kind, kind)
    if kind == "tsv":
        import pyarrow.csv as pcsv

        fmt = ds.CsvFileFormat(parse_options=pcsv.ParseOptions(delimiter="\t"))
    if local:
        return ds.dataset(path, format=fmt)
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return ds.dataset(path, format=fmt, filesystem=PyFileSystem(FSSpecHandler(fs)))


def prepare_replacement(artifact: Artifact, data: Any, run: Any) -> None:
    """Hash the new content of `artifact.replace(data)` and set the fields it changes; the
    bytes are stored and the row updated together by `save_replacement`."""
    from .context import get_current_run
    from .models import Artifact, Run, _is_anndata, _is_dataframe

    if artifact.id is None:
        raise ValidationError("replace() is for a saved artifact; give new data to Artifact(...) instead")
    d = artifact.__dict__
    if d.get("n_files") is not None:
        raise ValidationError("replace() takes the place of a file; this artifact is a folder: save the new folder as a new version")
    if d.get("_key_is_virtual") is False:
        raise ValidationError(f"artifact {artifact.uid} is registered in place at {artifact.path}: replace() would "
                              "overwrite that file; save the new content as a new version (ln.Artifact(path, key=...))")
    if run is not None and run is not False and not (isinstance(run, Run) and run.id is not None):
        raise ValidationError(f"replace(run=...) takes a saved Run, None or False, got {run!r}")
    rows = len(data) if _is_dataframe(data) else data.n_obs if _is_anndata(data) else None
    if rows is not None:
        from .instance import data_dir

        data = dataframe_to_file(data, data_dir() / "cache" / "dataframes") if _is_dataframe(data) \
            else anndata_to_file(data, data_dir() / "cache" / "anndata")
    elif not isinstance(data, (str, os.PathLike)) or st.is_url(os.fspath(data)):
        raise ValidationError(f"replace() takes a local file, a DataFrame or an AnnData, got {data!r}")
    new = Artifact(data)  # its key is this artifact's, with the new suffix
    source: Source = new.__dict__["_source"]
    if source.is_dir:
        raise ValidationError("replace() takes a file; a folder cannot replace one")
    if source.in_place:
        raise ValidationError(f"{source.location} is in a registered storage: replace() takes a file from outside "
                              "every storage (it is copied into this artifact's place)")
    compute_stats(new, hash_mode(artifact._db))
    if new.__dict__["hash"] == d.get("hash"):
        return  # the same content: nothing to replace
    suffix = new.__dict__.get("suffix") or ""
    if d.get("key") and suffix != (d.get("suffix") or ""):
        old_key = d["key"]
        stem = old_key[: len(old_key) - len(d.get("suffix") or "")] if d.get("suffix") and old_key.endswith(d["suffix"]) else old_key
        logger.warning("replacing the %s file changes the key %r to %r", suffix or "suffix-less", old_key, stem + suffix)
        artifact.key = stem + suffix
    d["_replacement"] = (source, storage_location(artifact, _roots(artifact._db)[d["storage_id"]]))
    for name in ("hash", "_hash_type", "size", "suffix"):
        setattr(artifact, name, new.__dict__.get(name))
    writer = get_current_run() if run is None else (run or None)
    artifact.run = writer if writer is not None and writer.id is not None else None
    artifact.n_observations = rows


def save_replacement(artifact: Artifact) -> None:
    """The row and the bytes of `artifact.replace()` in one transaction: the new bytes go to the
    artifact's place (a temporary copy renamed over the old one) before the commit, and a
    failed copy leaves both as they were. A suffix change moves the bytes to the new name."""
    d = artifact.__dict__
    source, old_location = d["_replacement"]
    instance = artifact._db
    root = _roots(instance)[d["storage_id"]]
    artifact._prepare(instance)
    state = dict(d)
    table = schema.artifact

    def write(conn: sa.Connection) -> list:
        d.clear()
        d.update(state)
        if d.get("key") and d.get("hash"):
            other = conn.execute(sa.select(table.c.uid).where(
                table.c.storage_id == d["storage_id"], table.c.key == d["key"], table.c.hash == d["hash"],
                table.c.id != d["id"], table.c.branch_id != -1)).scalar()
            if other is not None:
                raise ValidationError(f"this content is already registered at key {d['key']!r} as artifact {other}; "
                                      "use that one instead of replacing")
        events: list = []
        artifact._update(conn, events)
        try:
            st.put(source.location, storage_location(artifact, root), False)
        except OSError as e:
            raise NotFoundOnDisk(f"could not store {source.location}: {e}; artifact {artifact.uid} is unchanged") from e
        return events

    instance.write(write)
    d.pop("_replacement", None)
    artifact._snapshot()
    new_location = storage_location(artifact, root)
    if new_location != old_location:
        st.remove(old_location, False)


def check_revises(revises: Any) -> None:
    from .models import Artifact

    if revises is not None and (not isinstance(revises, Artifact) or revises.id is None):
        raise ValidationError("revises expects a saved Artifact")


def anndata_to_file(adata: Any, directory: Path) -> Path:
    import uuid

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.h5ad"
    adata.write_h5ad(path)
    return path


def dataframe_to_file(df: Any, directory: Path) -> Path:
    import uuid

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.parquet"
    try:
        df.to_parquet(path)
    except ImportError as e:
        raise ValidationError(f"saving a DataFrame needs a parquet engine: pip install pyarrow ({e})") from None
    return path


__all__ = ["InvalidKey", "Source", "compute_stats", "describe_source", "save_artifacts", "storage_location", "track_input"]
