"""Every registry event reaches a plugin found through the `lamin_integrations` entry point.

(tests/test_plugins.py covers failing plugins, the CLI and tracing.)

The test writes a tiny distribution (module + dist-info with entry_points.txt) into a
folder on PYTHONPATH, so `importlib.metadata` finds it exactly as it finds installed ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import python_env

PLUGIN = textwrap.dedent('''
    import json, os
    import click
    from lamin_integrations.core.hookspecs import hookimpl

    def _log(event, **fields):
        with open(os.environ["PLUGIN_LOG"], "a") as f:
            f.write(json.dumps({"event": event, **fields}) + "\\n")

    @hookimpl
    def run_started(run):
        _log("run_started", run=run.uid)

    @hookimpl
    def run_finished(run, status):
        _log("run_finished", run=run.uid, status=status)

    @hookimpl
    def artifact_saved(artifact, run):
        _log("artifact_saved", artifact=artifact.uid, run=run.uid if run else None)

    @hookimpl
    def artifact_recreated(artifact, run):
        _log("artifact_recreated", artifact=artifact.uid, run=run.uid)

    @hookimpl
    def run_inputs_linked(run, artifacts):
        _log("run_inputs_linked", run=run.uid, artifacts=[a.uid for a in artifacts])

    @hookimpl
    def register_commands(cli):
        @cli.command(name="hello-plugin")
        def hello():
            """Say hello from a plugin."""
            click.echo("hello from myplugin")
''')

SCRIPT = textwrap.dedent('''
    import sys
    import lamin_integrations as ln
    from lamin_integrations.core.context import set_current_run
    src = sys.argv[1]
    t = ln.Transform(key="plugged.py", kind="script").save()
    run = ln.Run(t, status="started").save()
    set_current_run(run)
    artifact = ln.Artifact(src, key="out.txt").save()
    run.status = "completed"
    run.save()
    rerun = ln.Run(t, status="started").save()
    set_current_run(rerun)
    ln.Artifact(src, key="out.txt").save()
    consumer = ln.Run(t, status="started").save()
    set_current_run(consumer)
    artifact.cache()
    print(run.uid, rerun.uid, consumer.uid, artifact.uid)
''')


def make_distribution(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source)
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lamin_integrations]\n{name} = {name}\n")


@pytest.fixture
def plugin_env(tmp_path):
    plugins = tmp_path / "site"
    plugins.mkdir()
    make_distribution(plugins, "myplugin", PLUGIN)
    log = tmp_path / "events.jsonl"
    env = python_env(PYTHONPATH=str(plugins), PLUGIN_LOG=str(log),
                     LAMIN_INTEGRATIONS_DB=f"sqlite:///{tmp_path / 'lineage.db'}",
                     LAMIN_INTEGRATIONS_STORAGE=str(tmp_path / "storage"),
                     LAMIN_INTEGRATIONS_HOME=str(tmp_path / "home"))
    return env, log, plugins


def run_script(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    src = tmp_path / "out.txt"
    src.write_text("result")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(src)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_entry_point_plugin_receives_every_event(plugin_env, tmp_path):
    env, log, _ = plugin_env
    run, rerun, consumer, artifact = run_script(env, tmp_path).stdout.split()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"event": "run_started", "run": run} in events
    assert {"event": "run_finished", "run": run, "status": "completed"} in events
    assert {"event": "artifact_saved", "artifact": artifact, "run": run} in events
    assert {"event": "artifact_recreated", "artifact": artifact, "run": rerun} in events
    assert {"event": "run_inputs_linked", "run": consumer, "artifacts": [artifact]} in events
    assert [e["event"] for e in events].count("artifact_saved") == 1
