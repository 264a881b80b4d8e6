"""Where a script's code lives in git: commit, remote, uncommitted changes.

The commit and remote are read from the `.git` folder directly: three `git` subprocesses cost
10-100 ms, which `ln.track()` would add to every script. `git` itself runs only for what
needs it (is the work tree dirty?) and for layouts we do not parse (worktrees, submodules).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def git_root(path: Path) -> Path | None:
    for parent in [path.parent, *path.parent.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5).stdout.strip()


def _read_head(gitdir: Path) -> str | None:
    head = (gitdir / "HEAD").read_text().strip()
    if _SHA.fullmatch(head):
        return head  # detached
    if not head.startswith("ref: "):
        raise ValueError(f"unexpected HEAD {head!r}")
    ref = head[5:].strip()
    loose = gitdir / ref
    if loose.is_file():
        sha = loose.read_text().strip()
    else:
        packed = gitdir / "packed-refs"
        sha = ""
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    sha = line.split(" ", 1)[0]
                    break
        if not sha:
            return None  # a branch without commits yet
    if not _SHA.fullmatch(sha):
        raise ValueError(f"unexpected ref {sha!r}")
    return sha


def _read_origin(gitdir: Path) -> str | None:
    section = None
    for raw in (gitdir / "config").read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section in ('remote "origin"', "remote 'origin'") and "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            if name.lower() == "url":
                return value.strip('"') or None
    return None


def commit_and_remote(root: Path) -> tuple[str | None, str | None]:
    """HEAD's commit (None before the first commit) and the origin URL (a token in it masked)."""
    from .settings import mask_text

    gitdir = root / ".git"
    commit = remote = None
    try:
        if not gitdir.is_dir():
            raise ValueError("not a plain .git folder")
        commit, remote = _read_head(gitdir), _read_origin(gitdir)
    except (OSError, ValueError, UnicodeDecodeError):  # something we do not parse: ask git
        try:
            commit = _git(root, "rev-parse", "HEAD") or None
            remote = _git(root, "config", "--get", "remote.origin.url") or None
        except (OSError, subprocess.SubprocessError):
            return None, None
    return commit, mask_text(remote) if remote else None


def git_reference(path: Path) -> tuple[str | None, str | None]:
    """A link to the script at its commit: a web URL when there is a remote, else `commit:path`."""
    root = git_root(path)
    if root is None:
        return None, None
    commit, remote = commit_and_remote(root)
    if not commit:
        return None, None
    rel = path.relative_to(root).as_posix()
    try:
        if not _in_commit(root, commit, rel):
            return None, None  # no commit holds this file: a link to it would lead nowhere
    except (OSError, subprocess.SubprocessError):
        return None, None
    if remote:
        base = remote.removesuffix(".git")
        if base.startswith("git@"):
            base = "https://" + base[4:].replace(":", "/", 1)
        return f"{base}/blob/{commit}/{rel}", "url"
    return f"{commit}:{rel}", "git"


def git_state(script: Path) -> dict[str, Any] | None:
    """Commit, remote and whether the work tree has uncommitted changes."""
    root = git_root(script)
    if root is None:
        return None
    commit, remote = commit_and_remote(root)
    if not commit:
        return None
    try:
        # untracked files are not listed (a data folder not in .gitignore would make this slow),
        # except the script itself: a script never committed is not the code of any commit
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        committed = _in_commit(root, commit, script.relative_to(root).as_posix())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    state: dict[str, Any] = {"commit": commit, "remote": remote, "dirty": dirty or not committed}
    if not committed:
        state["not_in_commit"] = True
    return state


def _in_commit(root: Path, commit: str, rel: str) -> bool:
    """Does the commit hold this file?"""
    return bool(_git(root, "ls-tree", "--name-only", commit, "--", rel))
