"""The `lamin-integrations` command: parses arguments, calls the library, prints."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click


def _fail(e: Exception | str) -> None:
    click.echo(f"Error: {e}", err=True)
    sys.exit(1)


# Commands that live with their adapter, imported only when invoked (keeps `--help` fast
# and lets an adapter own its command line): name -> "module:attribute".
LAZY_COMMANDS: dict[str, str] = {
    "nextflow": "lamin_integrations.nextflow.cli:nextflow",
    "lineage": "lamin_integrations.lineage.cli:lineage",
    "report": "lamin_integrations.lineage.cli:report",
    "export": "lamin_integrations.lineage.cli:export",
}


def _lazy_available(name: str) -> bool:
    from importlib.util import find_spec

    module = LAZY_COMMANDS[name].split(":")[0]
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class _Group(click.Group):
    """Turns the project's own errors into one readable line and exit code 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name in LAZY_COMMANDS if self is cli and _lazy_available(name)]
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if self is cli and name in LAZY_COMMANDS and name not in self.commands and _lazy_available(name):
            import importlib

            module, attribute = LAZY_COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import LaminIntegrationsError

        try:
            return super().invoke(ctx)
        except LaminIntegrationsError as e:
            _fail(e)
        except OSError as e:  # an output path in a missing folder, under a file, not writable
            where = f"{e.filename}: " if e.filename else ""
            _fail(f"cannot write or read {where}{e.strerror or e}")


_READING = {"info", "runs", "show", "lineage", "export", "report"}  # commands that only read


@click.group(cls=_Group)
@click.version_option(package_name="lamin-integrations")
@click.option("--db", envvar="LAMIN_INTEGRATIONS_DB", help="Registry URL (SQLAlchemy), e.g. postgresql+psycopg://user@host/db.")
@click.option("--storage", envvar="LAMIN_INTEGRATIONS_STORAGE", help="Storage root (folder or fsspec URL).")
@click.pass_context
def cli(ctx: click.Context, db: str | None, storage: str | None) -> None:
    """Lineage registry for Snakemake, Prefect, Nextflow and Python runs."""
    if db and ctx.invoked_subcommand in _READING:
        from .core.settings import as_url, sqlite_file

        database = sqlite_file(as_url(db))
        if database is not None and not os.path.exists(os.path.expanduser(database)):
            # reading must not create an empty registry at a mistyped path
            _fail(f"no registry at {database}: nothing has been recorded there (is the path right?)")
    if db or storage:
        from .core.instance import connect

        ctx.call_on_close(lambda: None)
        ctx.obj = {"db": db, "storage": storage}
        from .errors import RegistryUnavailable

        try:
            connect(db, storage)
        except RegistryUnavailable:
            if ctx.invoked_subcommand != "info":
                raise
            from .core import instance  # info still says how many events wait in the journal

            instance._current = instance.Instance(*instance.resolve(db, storage))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(as_json: bool) -> None:
    """Where the registry is, its schema revision and how many records it holds."""
    from .core.summary import instance_info
    from .errors import RegistryUnavailable

    try:
        data = instance_info()
    except RegistryUnavailable:
        from .core.journal import pending_count

        click.echo(f"pending journal events: {pending_count()}")  # what waits for the registry to return
        raise
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"database:  {data['db']}")
    click.echo(f"storage:   {data['storage']}")
    click.echo(f"schema:    {data['schema_revision']}")
    for name, n in data["counts"].items():
        click.echo(f"{name + ':':<11}{n}")
    click.echo(f"pending journal events: {data['pending_journal_events']}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Say what would be written without writing anything.")
def sync(dry_run: bool) -> None:
    """Write what was journaled while the registry was unavailable (safe to run again)."""
    from .core.journal import sync as sync_journal

    result = sync_journal(dry_run=dry_run)
    if result.busy:
        click.echo("another sync of this registry's journal is running; try again when it is done")
        return
    verb = "would write" if dry_run else "wrote"
    click.echo(f"{verb} {result.replayed} journaled event(s)" + ("" if dry_run else f" ({result.runs} run(s))")
               + f"; {result.present} already recorded; {result.waiting} waiting (workflows still running)")
    for error in result.errors:
        click.echo(f"not replayed: {error}", err=True)
    if result.errors:
        sys.exit(1)


@cli.group(invoke_without_command=True)
@click.option("--status", help="Only runs with this status (started, completed, errored, ...).")
@click.option("--transform", help="Only runs of the transform with this key.")
@click.option("--reference-type", help="Only runs with this reference type (e.g. snakemake_job).")
@click.option("--limit", type=click.IntRange(min=1, max=10**9), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def runs(ctx: click.Context, status: str | None, transform: str | None, reference_type: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from .core.summary import list_runs

    rows = list_runs(status=status, transform=transform, reference_type=reference_type, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None)
    for col in ("uid", "status", "transform", "name", "started_at", "duration_s", "initiated_by_run"):
        table.add_column(col)
    for row in rows:
        # escape: run names such as "count[sample=a]" are not rich markup
        table.add_row(*(escape(str(row[c])) if row[c] is not None else "" for c in ("uid", "status", "transform", "name", "started_at", "duration_s", "initiated_by_run")))
    Console(width=160).print(table)


@runs.command()
@click.option("--dry-run", is_flag=True, help="List what would be marked aborted without changing anything.")
@click.option("--stale-after", type=click.IntRange(min=0), default=10, show_default=True,
              help="Minutes without a heartbeat after which a run on another host counts as gone.")
def reap(dry_run: bool, stale_after: int) -> None:
    """Mark runs still "started" whose process is gone as aborted."""
    import datetime as dt

    from .core.reap import reap as reap_runs

    found = reap_runs(dry_run=dry_run, stale_after=dt.timedelta(minutes=stale_after))
    verb = "would mark" if dry_run else "marked"
    for run, reason in found:
        click.echo(f"{verb} {run.uid} ({run.transform.key}) aborted: {reason}")
    click.echo(f"{len(found)} run(s) {verb.split()[-1]} aborted" if found else "no stale runs")


@cli.command()
@click.argument("uid")
def show(uid: str) -> None:
    """Describe a run, transform, artifact or other record by uid or uid prefix (or an artifact by file path or key)."""
    from .core.summary import find_record

    click.echo(find_record(uid).describe(return_str=True), nl=False)


@cli.command()
def plugins() -> None:
    """Loaded plugins and the hooks each implements."""
    from .core.plugins import distribution, manager

    pm = manager()
    loaded = pm.list_name_plugin()
    if not loaded:
        click.echo("no plugins loaded")
    for name, plugin in loaded:
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        click.echo(f"{name} ({distribution(name)}): {', '.join(hooks) or 'no hooks'}")


def _register_plugin_commands() -> None:
    try:
        from .core.plugins import fire

        fire("register_commands", cli=cli)
    except Exception as e:  # never let a plugin break the command line
        click.echo(f"warning: plugin commands not loaded: {e}", err=True)


def main() -> None:
    _register_plugin_commands()
    cli(prog_name="lamin-integrations")


if __name__ == "__main__":
    main()
