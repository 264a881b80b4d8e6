"""A task's work dir: what was staged in (inputs) and what the task wrote (outputs).

Inputs come from the staging commands in `nxf_stage()` of `.command.run`, or from
`.command.stage` when the staging script was too long to inline. Each line is one of
`ln -s SRC NAME` (`ln -sfn` since 26.07), `cp -fRL SRC NAME`, `ln SRC NAME`, `rsync ... SRC NAME`,
or a download helper `nxf_s3_download s3://... NAME`; paths are shell-quoted.
Outputs are the work dir's entries that are neither staged inputs nor Nextflow's own
`.command.*` / `.exitcode` files (this over-approximates: scratch files count too).
"""

from __future__ import annotations

import glob
import os
import shlex
from dataclasses import dataclass, field

_OWN = (".command.", ".exitcode")
_STAGE_COMMANDS = {"ln", "cp", "rsync"}


@dataclass
class WorkDir:
    path: str
    inputs: dict[str, str] = field(default_factory=dict)  # staged name -> source path or URL
    outputs: list[str] = field(default_factory=list)  # absolute paths


def stage_lines(work: str) -> list[str]:
    stage = os.path.join(work, ".command.stage")
    if os.path.exists(stage):
        with open(stage, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    try:
        with open(os.path.join(work, ".command.run"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
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


def staged_inputs(work: str) -> dict[str, str]:
    """Staged name -> source, from the staging commands (see the module docstring)."""
    inputs: dict[str, str] = {}
    for line in stage_lines(work):
        line = line.strip()
        if not line or line.startswith("#") or line in ("true",):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if not words:
            continue
        command, args = words[0], [w for w in words[1:] if not w.startswith("-")]
        staging = command in _STAGE_COMMANDS or (command.startswith("nxf_") and command.endswith("download"))
        if staging and len(args) >= 2:
            source, name = args[-2], args[-1]
            if "://" not in source and not os.path.isabs(source):
                source = os.path.normpath(os.path.join(work, source))
            inputs[name.rstrip("/")] = source
    return inputs


def scan(work: str) -> WorkDir:
    """Inputs and outputs of the task whose work dir is `work` (which must exist)."""
    result = WorkDir(work, staged_inputs(work))
    staged = {name.split("/", 1)[0] for name in result.inputs}
    try:
        entries = sorted(os.listdir(work))
    except FileNotFoundError:
        return result
    for entry in entries:
        if entry.startswith(_OWN) or entry in staged:
            continue
        path = os.path.join(work, entry)
        if os.path.islink(path):  # a link the task made to something else is not new content
            continue
        result.outputs.append(path)
    return result


def find_work_dir(base: str, short: str) -> str | None:
    """`<base>/e1/fc2d06*` for the short hash `e1/fc2d06` (None if absent or ambiguous)."""
    prefix, rest = short.split("/", 1)
    found = glob.glob(os.path.join(glob.escape(base), prefix, glob.escape(rest) + "*"))
    return found[0] if len(found) == 1 else None
