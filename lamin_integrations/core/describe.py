"""`record.describe()`: a readable tree of what a record is and how it connects.

Rendered with rich; the same text is what `lamin-integrations show` prints.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CREDENTIALS = re.compile(r"(://[^/@:\s]*:)[^@/\s]*@")


def safe(text: Any) -> str:
    """Never show a password embedded in a URL."""
    return _CREDENTIALS.sub(r"\1***@", str(text))


def _fmt_time(value: Any) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def _e(value: Any) -> str:
    """A value as literal text in rich markup (a key like `exp/[rep1]/x.txt` is not a style)."""
    from rich.markup import escape

    return escape(str(value)) if value is not None else ""


def _artifact_line(a: Any) -> str:
    size = f"{a.size:,} B" if a.size is not None else "size ?"
    return (f"{_e(safe(a.key or a.description or a.uid))}  [dim]{a.uid} · {size} · {_e(a.hash_type or 'hash')} "
            f"{_e(a.hash or '-')}[/dim]")


def _add_fields(tree: Any, fields: list[tuple[str, Any]]) -> None:
    from rich.markup import escape

    for label, value in fields:
        if value is not None:
            tree.add(f"{label}: {escape(safe(value))}")


def _run_line(run: Any, name: str | None = None) -> str:
    """A run as other records' lines show it: uid, then (dim) what it ran and its status."""
    return f"{run.uid} [dim]{_e(name or run.transform.key)} · {run.status}[/dim]"


def _add_runs(tree: Any, record: Any) -> None:
    """The run that made an artifact or collection, and how many runs read it."""
    run = record.run
    if run is not None:
        tree.add(f"created by run: {_run_line(run)}")
    n_in = record.input_of_runs.count()
    if n_in:
        tree.add(f"input of {n_in} run(s)")


def _add_labels(tree: Any, record: Any) -> None:
    """A run's or artifact's feature values, and the labels (ulabels, records, projects) on it."""
    from rich.markup import escape

    feats = record.features.get_values()
    if feats:
        fnode = tree.add("features")
        for k, v in feats.items():
            fnode.add(escape(f"{k}: {v}"))
    for relation in ("ulabels", "records", "projects"):
        names = [r.name for r in getattr(record, relation)[:20]]
        if names:
            tree.add(escape(f"{relation}: {', '.join(str(n) for n in names)}"))


def describe(record: Any, include: Any = None) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    from .models import Artifact, Collection, Run, Transform

    name = type(record).__name__
    if isinstance(record, Run):
        t = record.transform
        tree = Tree(f"[bold]Run[/bold] {record.uid} · [bold]{record.status}[/bold]")
        info = tree.add("identity")
        _add_fields(info, [
            ("name", record.name), ("description", record.description), ("entrypoint", record.entrypoint),
            ("reference", f"{record.reference} ({record.reference_type})" if record.reference else None),
            ("started_at", _fmt_time(record.started_at)), ("finished_at", _fmt_time(record.finished_at)),
            ("cli_args", record.cli_args), ("host", f"{record.host} pid {record.pid}" if record.host else None),
            ("created_by", record.created_by.handle if record.created_by else None),
        ])
        if record.started_at and record.finished_at:
            info.add(f"duration: {(record.finished_at - record.started_at).total_seconds():.3f} s")
        from .summary import run_error

        error = run_error(record)
        if error:
            aux = record._aux if isinstance(record._aux, dict) else {}
            code = f" (exit {aux['exit']})" if isinstance(aux.get("exit"), int) and str(aux["exit"]) not in error else ""
            tree.add(f"[bold red]error[/bold red]: {escape(safe(error[:2000]))}{code}")
        if t is not None:
            tree.add(f"transform: [bold]{escape(t.key)}[/bold] {_e(t.version or '')} [dim]{t.uid} · {_e(t.kind)}[/dim]")
        git = (record._aux or {}).get("git") if isinstance(record._aux, dict) else None
        if isinstance(git, dict) and git.get("commit"):  # with which code: the commit, and whether it was all of it
            state = ("[bold red]uncommitted changes[/bold red]" + (" (the code itself is not in the commit)"
                     if git.get("not_in_commit") else "")) if git.get("dirty") else "clean"
            remote = f" {escape(str(git['remote']))}" if git.get("remote") else ""
            tree.add(f"git: {escape(str(git['commit'])[:12])}{remote} · {state}")
        parent = record.initiated_by_run
        if parent is not None:
            tree.add(f"initiated_by_run: {_run_line(parent)}")
        children = record.initiated_runs.count()
        if children:
            tree.add(f"initiated_runs: {children}")
        if record.params:
            params = tree.add("params")
            for k, v in record.params.items():
                params.add(escape(safe(f"{k}: {json.dumps(v, default=str, ensure_ascii=False)[:200]}")))
        _add_labels(tree, record)
        for label, qs in [("inputs", record.input_artifacts), ("outputs", record.output_artifacts),
                          ("recreated outputs", record.recreated_artifacts)]:
            items = qs[:50].to_list()
            if items:
                node = tree.add(f"{label} ({qs.count()})")
                for a in items:
                    node.add(_artifact_line(a))
        for label, qs in [("input collections", record.input_collections), ("output collections", record.output_collections)]:
            for c in qs[:50]:
                tree.add(f"{label[:-1]}: {escape(c.key or '')} [dim]{c.uid} · {c.artifacts.count()} artifacts[/dim]")
        for label in ("report", "environment"):
            a = getattr(record, label)
            if a is not None:
                tree.add(f"{label}: {_artifact_line(a)}")
    elif isinstance(record, Transform):
        tree = Tree(f"[bold]Transform[/bold] {escape(record.key)} {_e(record.version or '')} [dim]{record.uid}[/dim]")
        _add_fields(tree, [
            ("kind", record.kind), ("description", record.description), ("hash", record.hash),
            ("reference", f"{record.reference} ({record.reference_type})" if record.reference else None),
            ("is_latest", record.is_latest), ("created_at", _fmt_time(record.created_at)),
        ])
        tree.add(f"runs: {record.runs.count()}")
        latest = record.latest_run
        if latest is not None:
            tree.add(f"latest run: {latest.uid} · {latest.status} · {_fmt_time(latest.started_at)}")
        if record.versions.count() > 1:
            tree.add(f"versions: {', '.join(v.uid[-4:] + (' (latest)' if v.is_latest else '') for v in record.versions)}")
    elif isinstance(record, Artifact):
        tree = Tree(f"[bold]Artifact[/bold] {escape(record.key or '')} [dim]{record.uid}[/dim]")
        _add_fields(tree, [
            ("description", record.description), ("kind", record.kind), ("suffix", record.suffix),
            ("size", f"{record.size:,} bytes" if record.size is not None else None),
            ("hash", f"{record.hash} ({record.hash_type})" if record.hash else None),
            ("n_files", record.n_files), ("storage", record.storage.root if record.storage else None),
            ("created_at", _fmt_time(record.created_at)),
        ])
        _add_runs(tree, record)
        source = (record._aux or {}).get("published_from")
        if isinstance(source, dict) and source.get("run"):  # a Nextflow publishDir copy or link
            task = Run.filter(uid=source["run"]).first()
            what = _run_line(task, task.name) if task else _e(source["run"])
            tree.add(f"published from task run: {what} [dim](by {escape(str(source.get('how', '?')))})[/dim]")
        _add_labels(tree, record)
    elif isinstance(record, Collection):
        tree = Tree(f"[bold]Collection[/bold] {escape(record.key or '')} [dim]{record.uid}[/dim]")
        _add_fields(tree, [("description", record.description), ("hash", record.hash), ("version", record.version),
                           ("is_latest", record.is_latest), ("created_at", _fmt_time(record.created_at))])
        _add_runs(tree, record)
        members = record.ordered_artifacts
        node = tree.add(f"artifacts ({members.count()})")
        for a in members[:50]:
            node.add(_artifact_line(a))
    else:
        tree = Tree(f"[bold]{name}[/bold] {getattr(record, 'uid', '')}")
        _add_fields(tree, [(col, record.__dict__.get(col)) for col in record._meta.columns
                           if not col.startswith("_") and col not in ("id", "uid")])
    import io

    console = Console(file=io.StringIO(), record=True, width=120, color_system=None)
    console.print(tree)
    return console.export_text().rstrip() + "\n"
