"""`lamin-integrations lineage | report | export`: parse, call the library, print.

Imported only when one of these commands runs (see LAZY_COMMANDS in the top-level cli).
"""

from __future__ import annotations

from pathlib import Path

import click

GRAPH_FORMATS = ("text", "json", "dot", "mermaid", "svg")
EXPORT_FORMATS = ("prov-json", "prov-n", "ro-crate", "openlineage")


def _run_or_artifact(uid: str):  # type: ignore[no-untyped-def]
    from ..core.summary import find_record
    from ..errors import ValidationError

    record = find_record(uid)
    if type(record).__name__ not in ("Run", "Artifact"):
        raise ValidationError(f"{uid} is a {type(record).__name__}; lineage is recorded for runs and artifacts")
    return record


def _run(uid: str):  # type: ignore[no-untyped-def]
    from ..core.summary import find_record
    from ..errors import ValidationError

    record = find_record(uid)
    if type(record).__name__ != "Run":
        raise ValidationError(f"{uid} is a {type(record).__name__}, not a run; give the uid of a (pipeline) run")
    return record


def _write_or_echo(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.command()
@click.argument("uid")
@click.option("--upstream", "direction", flag_value="upstream", default=True, help="Where it came from (default).")
@click.option("--downstream", "direction", flag_value="downstream", help="What came from it.")
@click.option("--both", "direction", flag_value="both", help="Both ways.")
@click.option("--depth", type=click.IntRange(min=0, max=10**6), help="At most this many edges from UID (default: all).")
@click.option("--format", "fmt", type=click.Choice(GRAPH_FORMATS), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of the terminal.")
def lineage(uid: str, direction: str, depth: int | None, fmt: str, output: str | None) -> None:
    """Runs and artifacts upstream or downstream of the run or artifact UID (uid or prefix, or a file path or artifact key)."""
    from . import graph_of

    record = _run_or_artifact(uid)
    graph = graph_of(record, direction, depth)
    _write_or_echo(graph.render(fmt), output)
    if direction == "upstream" and len(graph) == 1 and len(graph_of(record, "downstream", 1)) > 1:
        # a raw input: nothing made it, but runs used it
        click.echo("note: nothing upstream; runs used it: see --downstream", err=True)


@click.command()
@click.argument("run_uid")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True)
@click.option("--attach", is_flag=True, help="Also save the page in the registry as the run's report.")
def report(run_uid: str, output: str, attach: bool) -> None:
    """One self-contained HTML page for a pipeline run: summary, steps, lineage graph, files, failures."""
    from .report import attach_report, write_report

    run = _run(run_uid)
    if attach:
        artifact = attach_report(run, output)
        click.echo(f"wrote {output}; attached to run {run.uid} as artifact {artifact.uid}")
    else:
        write_report(run, output)
        click.echo(f"wrote {output}")


@click.command()
@click.argument("run_uid")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True)
@click.option("-o", "--output", type=click.Path(), required=True,
              help="File to write (ro-crate: a folder, or a .zip file).")
def export(run_uid: str, fmt: str, output: str) -> None:
    """Export a pipeline run and everything below it as W3C PROV, a Provenance Run Crate or OpenLineage events."""
    from .export import export_run

    path = export_run(_run(run_uid), fmt, output)
    click.echo(f"wrote {path}")
