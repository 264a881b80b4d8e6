"""A task's work dir: what was staged in (inputs) and what the task wrote (outputs).

Inputs come from the staging commands in `nxf_stage()` of `.command.run`, or from
`.command.stage` when the staging script was too long to inline. Each line is one of
`ln -s SRC NAME` (`ln -sfn` since 26.07), `cp -fRL SRC NAME`, `ln SRC NAME`, `rsync ... SRC NAME`,
or a download helper `nxf_s3_download s3://... NAME`, which cloud executors queue as
`downloads+=("nxf_s3_download s3://... NAME")` for `nxf_parallel`; paths are shell-quoted.
Outputs are the work dir's entries that are neither staged inputs nor Nextflow's own
`.command.*` / `.exitcode` files (this over-approximates: scratch files count too).

A work dir in object storage (`-w s3://bucket/work` on AWS Batch, `gs://` on Google Batch) is
read through fsspec: the same files, object URLs for paths, no symlinks.
"""

from __future__ import annotations

import glob
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..core.storage import filesystem, is_url

_OWN = (".command.", ".exitcode")
_STAGE_COMMANDS = {"ln", "cp", "rsync"}


@dataclass
class WorkDir:
    path: str
    inputs: dict[str, str] = field(default_factory=dict)  # staged name -> source path or URL
    outputs: list[str] = field(default_factory=list)  # absolute paths


def _read(path: str) -> str | None:
    """A text file's content, local or in object storage; None if it is not there."""
    try:
        if is_url(path):
            fs, where = filesystem(path)
            with fs.open(where, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def is_dir(path: str) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    fs, where = filesystem(path)
    fs.invalidate_cache(where)  # a listing cached while the task was running is out of date
    return bool(fs.isdir(where))


def _names(work: str) -> list[str]:
    """The entries of a work dir, by name."""
    if not is_url(work):
        return sorted(os.listdir(work))
    fs, where = filesystem(work)
    fs.invalidate_cache(where)
    return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(where, detail=False)} - {""})


def stage_lines(work: str) -> list[str]:
    stage = _read(_join(work, ".command.stage"))
    if stage is not None:
        return stage.splitlines()
    text = _read(_join(work, ".command.run"))
    if text is None:
        return []
    start = text.find("nxf_stage() {")
    if start < 0:
        return []
    body = []
    for line in text[start:].splitlines()[1:]:
        if line.strip() == "}":
            break
        body.append(line)
    return body


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else os.path.join(folder, name)


def staged_inputs(work: str) -> dict[str, str]:
    """Staged name -> source, from the staging commands (see the module docstring).

    A line may chain commands: an input staged into a subfolder is
    `mkdir -p fastqc && ln -s /src/a_fastqc.zip fastqc/a_fastqc.zip` (`path('fastqc/*')`).
    """
    inputs: dict[str, str] = {}
    for line in stage_lines(work):
        line = line.strip()
        if not line or line.startswith("#") or line in ("true",):
            continue
        try:
            words = shlex.split(line)
            if len(words) == 1 and words[0].startswith("downloads+=(") and words[0].endswith(")"):
                # cloud executors queue each download for nxf_parallel: downloads+=("nxf_s3_download SRC NAME")
                words = shlex.split(words[0][len("downloads+=("):-1])
        except ValueError:
            continue
        for command in _commands(words):
            found = _staged(command, work)
            if found is not None:
                inputs[found[0]] = found[1]
    return inputs


def _commands(words: list[str]) -> list[list[str]]:
    """A shell line's words split into its commands at `&&`, `;` and `||`."""
    out: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", ";", "||"):
            out.append([])
        elif word.endswith(";") and len(word) > 1:
            out[-1].append(word[:-1])
            out.append([])
        else:
            out[-1].append(word)
    return [c for c in out if c]


def _staged(words: list[str], work: str) -> tuple[str, str] | None:
    """(staged name, source) of one staging command, None for anything else (mkdir, rm)."""
    if words[0] == "nxf_cp_retry":  # with aws.batch.maxTransferAttempts
        words = words[1:]
    if not words:
        return None
    command, args = words[0], [w for w in words[1:] if not w.startswith("-")]
    staging = command in _STAGE_COMMANDS or (command.startswith("nxf_") and command.endswith("download"))
    if not staging or len(args) < 2:
        return None
    source, name = args[-2], args[-1]
    if "://" not in source and not os.path.isabs(source):
        source = os.path.normpath(os.path.join(work, source)) if not is_url(work) else _join(work, source)
    return name.rstrip("/"), source


def scan(work: str) -> WorkDir:
    """Inputs and outputs of the task whose work dir is `work` (which must exist)."""
    result = WorkDir(work, staged_inputs(work))
    staged = {name.split("/", 1)[0] for name in result.inputs}
    try:
        entries = _names(work)
    except FileNotFoundError:
        return result
    for entry in entries:
        if entry.startswith(_OWN) or entry in staged:
            continue
        path = _join(work, entry)
        if not is_url(path) and os.path.islink(path):  # a link the task made to something else is not new content
            continue
        result.outputs.append(path)
    return result


def find_work_dir(base: str, short: str, listings: dict[str, list[str]] | None = None) -> str | None:
    """`<base>/e1/fc2d06*` for the short hash `e1/fc2d06` (None if absent or ambiguous).

    `listings` keeps each `<base>/e1` listing of an object store for the next task: one
    request per two-digit prefix, not one per task.
    """
    prefix, rest = short.split("/", 1)
    if not is_url(base):
        found = glob.glob(os.path.join(glob.escape(base), prefix, glob.escape(rest) + "*"))
        return found[0] if len(found) == 1 else None
    folder = _join(base, prefix)
    names = None if listings is None else listings.get(folder)
    if names is None:
        try:
            names = _names(folder)
        except FileNotFoundError:
            names = []
        if listings is not None:
            listings[folder] = names
    found = [n for n in names if n.startswith(rest)]
    return _join(folder, found[0]) if len(found) == 1 else None


def real(path: str) -> str:
    """The path a file is known by when outputs are matched to staged inputs (URLs as they are)."""
    return path.rstrip("/") if is_url(path) else os.path.realpath(path)


def published_files(outdir: str, skip: tuple[str, ...]) -> list[str]:
    """Every file below `outdir` (local or in object storage) but the top-level folders in `skip`."""
    if not is_url(outdir):
        out = []
        for folder, dirs, names in os.walk(outdir):
            dirs[:] = sorted(d for d in dirs if not (folder == outdir and d in skip))
            # a folder published in publishDir's default mode is a link into the work dir: one artifact
            out += [os.path.join(folder, d) for d in dirs if os.path.islink(os.path.join(folder, d))]
            out += [os.path.join(folder, n) for n in sorted(names)]
        return sorted(out)
    fs, where = filesystem(outdir)
    fs.invalidate_cache(where)
    scheme = outdir.split("://", 1)[0]
    top = where.rstrip("/") + "/"
    files: Any = fs.find(where, detail=False)
    return [f"{scheme}://{p}" for p in sorted(files)
            if p.startswith(top) and p[len(top):].split("/", 1)[0] not in skip]
