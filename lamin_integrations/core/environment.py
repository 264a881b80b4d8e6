"""The run's environment: a requirements.txt of the installed distributions.

Built from `importlib.metadata` (no `pip freeze` subprocess). Scanning every distribution
costs ~100 ms, so the result is cached under a fingerprint of what is installed: the
`*.dist-info` / `*.egg-info` names (which carry the versions) in each sys.path folder. Files
written into a PYTHONPATH or source folder do not change it (a folder's modification time
did, rescanning every distribution on every run); an unchanged environment is one listing
per folder and the same file, which the artifact layer deduplicates into one shared artifact.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _fingerprint() -> str:
    parts = [sys.version, sys.prefix]
    # sys.path[0] is the script's folder (or the working folder): pipelines write outputs
    # there, which would change the fingerprint on every run without changing what is installed.
    entries = sys.path if sys.flags.safe_path else sys.path[1:]
    for entry in entries:
        try:
            with os.scandir(entry or ".") as it:
                names = sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info", ".egg-link")))
        except OSError:
            continue
        parts.append(f"{entry}:{','.join(names)}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def requirements_text() -> str:
    from importlib import metadata

    pins = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pins.add(f"{name}=={dist.version}")
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def requirements_file(cache_dir: Path) -> Path:
    """A requirements.txt for this interpreter's environment, rebuilt only when it changed."""
    return _cached(cache_dir, ".txt", requirements_text)


def entry_points_text() -> str:
    from importlib.metadata import entry_points

    from .plugins import ENTRY_POINT_GROUP

    return "".join(sorted(f"{ep.name} = {ep.value}\n" for ep in entry_points(group=ENTRY_POINT_GROUP)))


def plugin_entry_points(cache_dir: Path) -> list[str]:
    """The installed plugins (`name = module:object`), cached like the requirements.

    Reading entry points imports `importlib.metadata` and scans every distribution (~40 ms);
    `ln.track()` asks on every run whether a plugin wants its events (core/fasttrack.py).
    """
    return _cached(cache_dir, ".plugins", entry_points_text).read_text().splitlines()


def _cached(cache_dir: Path, suffix: str, build: Callable[[], str]) -> Path:
    folder = cache_dir / "environments"
    path = folder / f"{_fingerprint()}{suffix}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(build())
        old = os.stat(tmp)  # old enough for the stat cache to trust it next time
        os.utime(tmp, ns=(old.st_atime_ns - 10**10, old.st_mtime_ns - 10**10))
        # Published once and never replaced: processes starting together each build it, and a
        # replace under one that is copying it into storage would change the bytes it copies.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process published the same content first
        except OSError:  # no hard links on this filesystem
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _forget_old(folder, suffix)
    return path


KEEP_ENVIRONMENTS = 20


def _forget_old(folder: Path, suffix: str) -> None:
    """Keep the newest few cached files: one per environment this machine used recently."""
    try:
        files = sorted((p for p in folder.glob(f"*{suffix}") if ".tmp" not in p.name),
                       key=lambda p: p.stat().st_ctime, reverse=True)
        for old in files[KEEP_ENVIRONMENTS:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
