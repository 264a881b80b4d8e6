"""Reading the commit and remote from `.git` must agree with `git` itself in every layout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lamin_integrations.core.gitinfo import commit_and_remote, git_reference, git_state


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "run.py").write_text("print(1)\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    return repo


def test_loose_and_packed_refs_and_a_detached_head(repo):
    assert commit_and_remote(repo) == (git(repo, "rev-parse", "HEAD"), None)
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert commit_and_remote(repo)[0] == git(repo, "rev-parse", "HEAD")
    (repo / "scripts" / "run.py").write_text("print(2)\n")
    git(repo, "commit", "-qam", "two")
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", first)
    assert commit_and_remote(repo)[0] == first


def test_remote_with_a_token_is_masked_and_gives_a_web_link(repo):
    git(repo, "remote", "add", "origin", "https://ci:ghp_secret123@github.com/lab/pipeline.git")
    git(repo, "remote", "add", "upstream", "git@github.com:other/x.git")
    commit, remote = commit_and_remote(repo)
    assert remote == "https://ci:***@github.com/lab/pipeline.git"
    assert git_reference(repo / "scripts" / "run.py") == (f"https://ci:***@github.com/lab/pipeline/blob/{commit}/scripts/run.py", "url")


def test_dirty_tree_and_no_commits_yet(repo, tmp_path):
    script = repo / "scripts" / "run.py"
    assert git_state(script) == {"commit": git(repo, "rev-parse", "HEAD"), "remote": None, "dirty": False}
    script.write_text("print('edited')\n")
    assert git_state(script)["dirty"] is True
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    (fresh / "a.py").write_text("")
    assert commit_and_remote(fresh) == (None, None)
    assert git_state(fresh / "a.py") is None and git_reference(fresh / "a.py") == (None, None)


def test_a_worktree_whose_git_is_a_file_asks_git(repo, tmp_path):
    git(repo, "remote", "add", "origin", "git@github.com:lab/pipeline.git")
    other = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(other))
    assert (other / ".git").is_file()
    assert commit_and_remote(other) == (git(other, "rev-parse", "HEAD"), "git@github.com:lab/pipeline.git")
    assert git_state(other / "scripts" / "run.py")["dirty"] is False


def test_a_script_never_committed_is_not_the_code_of_the_commit(repo):
    """Untracked files are left out of the dirty check (slow in big trees), but the script itself
    counts: HEAD does not hold it, so its run is dirty and its transform links to no commit."""
    new = repo / "scripts" / "analysis.py"
    new.write_text("print('not committed')\n")
    head = git(repo, "rev-parse", "HEAD")
    assert git_state(new) == {"commit": head, "remote": None, "dirty": True, "not_in_commit": True}
    assert git_reference(new) == (None, None)
    assert git_state(repo / "scripts" / "run.py")["dirty"] is False  # another file untracked: not this one's state
    git(repo, "add", "scripts/analysis.py")
    assert git_state(new)["not_in_commit"] is True and git_reference(new) == (None, None)  # staged is not committed
    git(repo, "commit", "-qm", "two")
    assert git_reference(new) == (f"{git(repo, 'rev-parse', 'HEAD')}:scripts/analysis.py", "git")
