"""Third-party plugins found through a real `lamin_integrations` entry point.

Each test writes a tiny distribution (a module plus `<name>-0.1.dist-info` with METADATA and
entry_points.txt) into a temp folder and puts it on PYTHONPATH of a subprocess, so
`importlib.metadata` finds it exactly as it finds an installed package. Tests that write
records take the `registry` fixture: the subprocess inherits its database through the
environment (`conftest.python_env`), so they run on SQLite and on PostgreSQL, and the test
then checks the database in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import python_env

import lamin_integrations as ln

CLI = str(Path(sys.executable).with_name("lamin-integrations"))

RECORDER = textwrap.dedent('''
    """Appends one JSON line per event to the file named in $PLUGIN_LOG."""
    import json
    import os

    from lamin_integrations.core.hookspecs import hookimpl


    def _log(event, **fields):
        with open(os.environ["PLUGIN_LOG"], "a") as f:
            f.write(json.dumps({"event": event, **fields}) + "\\n")


    @hookimpl
    def run_started(run):
        import lamin_integrations as ln

        # Hooks run after the commit: a fresh read already sees the run.
        _log("run_started", run=run.uid, status=run.status, committed=ln.Run.filter(uid=run.uid).count())


    @hookimpl
    def run_finished(run, status):
        _log("run_finished", run=run.uid, status=status, finished=run.finished_at is not None)


    @hookimpl
    def artifact_saved(artifact, run):
        _log("artifact_saved", artifact=artifact.uid, key=artifact.key, run=run.uid if run else None)


    @hookimpl
    def run_inputs_linked(run, artifacts):
        _log("run_inputs_linked", run=run.uid, artifacts=sorted(a.uid for a in artifacts))


    @hookimpl
    def artifact_recreated(artifact, run):
        _log("artifact_recreated", artifact=artifact.uid, run=run.uid)
''')

RAISER = textwrap.dedent('''
    from lamin_integrations.core.hookspecs import hookimpl


    @hookimpl
    def run_started(run):
        raise RuntimeError("started hook bug")


    @hookimpl
    def run_finished(run, status):
        raise RuntimeError("finished hook bug")


    @hookimpl
    def artifact_saved(artifact, run):
        raise KeyError("artifact hook bug")


    @hookimpl
    def run_inputs_linked(run, artifacts):
        raise ValueError("inputs hook bug")
''')

COMMANDS = textwrap.dedent('''
    import click

    from lamin_integrations.core.hookspecs import hookimpl


    @hookimpl
    def register_commands(cli):
        @cli.command(name="hello-plugin")
        @click.argument("who")
        @click.option("--shout", is_flag=True)
        def hello(who, shout):
            """Greet from a plugin."""
            text = f"hello {who} from cmdplugin"
            click.echo(text.upper() if shout else text)

        @cli.command(name="count-runs")
        def count_runs():
            """How many runs the registry holds."""
            import lamin_integrations as ln

            click.echo(f"runs={ln.Run.filter().count()}")
''')

BROKEN_COMMANDS = textwrap.dedent('''
    from lamin_integrations.core.hookspecs import hookimpl


    @hookimpl
    def register_commands(cli):
        raise RuntimeError("cannot register")
''')

# The lifecycle the brief describes: a transform, a run started then completed, an output
# artifact, and an input artifact linked to a second run.
LIFECYCLE = textwrap.dedent('''
    import json
    import lamin_integrations as ln

    t = ln.Transform(key="plugged.py", kind="script").save()
    run = ln.Run(t, status="started").save()
    output = ln.Artifact(key="out.txt", run=run).save()
    run.status = "completed"
    run.save()
    run.save()  # saving again without a status change announces nothing
    consumer = ln.Run(t, status="started").save()
    consumer.input_artifacts.add(output)
    from pathlib import Path
    from lamin_integrations.core.context import set_current_run
    data = Path("same.txt")
    data.write_text("same bytes")
    first = ln.Artifact(data, key="same.txt", run=run).save()
    set_current_run(consumer)
    ln.Artifact(data, key="same.txt").save()  # the same content again: recreated by consumer
    print(json.dumps({"transform": t.uid, "run": run.uid, "consumer": consumer.uid, "artifact": output.uid,
                      "same": first.uid}))
''')


def make_distribution(folder: Path, name: str, source: str) -> None:
    """A minimal installed distribution declaring `name = name` in our entry-point group."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lamin_integrations]\n{name} = {name}\n")


def env_with(*folders: Path, **extra: str) -> dict[str, str]:
    return python_env(PYTHONPATH=":".join(str(f) for f in folders), **extra)


def run_python(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_entry_point_plugin_receives_lifecycle_events(registry, tmp_path):
    site, log = tmp_path / "site", tmp_path / "events.jsonl"
    make_distribution(site, "myplugin", RECORDER)
    proc = run_python(LIFECYCLE, env_with(site, PLUGIN_LOG=str(log)), tmp_path)
    ids = json.loads(proc.stdout)
    got = events(log)

    started = [e for e in got if e["event"] == "run_started"]
    assert started == [
        {"event": "run_started", "run": ids["run"], "status": "started", "committed": 1},
        {"event": "run_started", "run": ids["consumer"], "status": "started", "committed": 1},
    ]
    finished = [e for e in got if e["event"] == "run_finished"]
    assert finished == [{"event": "run_finished", "run": ids["run"], "status": "completed", "finished": True}]
    saved = [e for e in got if e["event"] == "artifact_saved"]
    assert saved == [{"event": "artifact_saved", "artifact": ids["artifact"], "key": "out.txt", "run": ids["run"]},
                     {"event": "artifact_saved", "artifact": ids["same"], "key": "same.txt", "run": ids["run"]}]
    recreated = [e for e in got if e["event"] == "artifact_recreated"]
    assert recreated == [{"event": "artifact_recreated", "artifact": ids["same"], "run": ids["consumer"]}]
    linked = [e for e in got if e["event"] == "run_inputs_linked"]
    assert linked == [{"event": "run_inputs_linked", "run": ids["consumer"], "artifacts": [ids["artifact"]]}]
    order = [e["event"] for e in got]
    assert order.index("run_started") < order.index("artifact_saved") < order.index("run_finished") \
        < order.index("run_inputs_linked")

    # The events describe what is in the database the test is connected to.
    run = ln.Run.get(ids["run"])
    assert run.status == "completed" and run.finished_at is not None
    assert ln.Artifact.get(ids["artifact"]).run == run
    assert [a.uid for a in ln.Run.get(ids["consumer"]).input_artifacts] == [ids["artifact"]]


def test_a_raising_plugin_never_breaks_a_save(registry, tmp_path):
    site, log = tmp_path / "site", tmp_path / "events.jsonl"
    make_distribution(site, "badplugin", RAISER)
    make_distribution(site, "myplugin", RECORDER)
    proc = run_python(LIFECYCLE, env_with(site, PLUGIN_LOG=str(log)), tmp_path)
    ids = json.loads(proc.stdout)

    for hook, error in [("run_started", "RuntimeError: started hook bug"),
                        ("run_finished", "RuntimeError: finished hook bug"),
                        ("artifact_saved", "KeyError: 'artifact hook bug'"),
                        ("run_inputs_linked", "ValueError: inputs hook bug")]:
        assert f"plugin badplugin failed in {hook}: {error}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    # Every write is in the database.
    run = ln.Run.get(ids["run"])
    assert run.status == "completed"
    assert ln.Transform.get(ids["transform"]).key == "plugged.py"
    assert ln.Artifact.get(ids["artifact"]).key == "out.txt"
    assert [a.uid for a in ln.Run.get(ids["consumer"]).input_artifacts] == [ids["artifact"]]
    # ... and the healthy plugin still heard about all of it.
    assert {e["event"] for e in events(log)} == {"run_started", "run_finished", "artifact_saved", "run_inputs_linked", "artifact_recreated"}


def test_cli_lists_plugins_and_their_hooks(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "myplugin", RECORDER)
    make_distribution(site, "cmdplugin", COMMANDS)
    listed = run_cli("plugins", env=env_with(site))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split(" ", 1)[0]: line for line in listed.stdout.splitlines()}
    assert lines["myplugin"] == "myplugin (myplugin): artifact_recreated, artifact_saved, run_finished, run_inputs_linked, run_started"
    assert lines["cmdplugin"] == "cmdplugin (cmdplugin): register_commands"

    bare = run_cli("plugins", env=env_with(tmp_path / "empty"))
    assert bare.returncode == 0 and "myplugin" not in bare.stdout


def test_plugin_commands_run_in_the_cli(registry, tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "cmdplugin", COMMANDS)
    env = env_with(site)
    hello = run_cli("hello-plugin", "world", env=env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello world from cmdplugin\n"
    assert run_cli("hello-plugin", "world", "--shout", env=env).stdout == "HELLO WORLD FROM CMDPLUGIN\n"
    helped = run_cli("--help", env=env)
    assert "hello-plugin" in helped.stdout and "Greet from a plugin." in helped.stdout
    missing = run_cli("hello-plugin", env=env)
    assert missing.returncode == 2 and "WHO" in missing.stderr, "click validates plugin arguments"

    t = ln.Transform(key="t").save()
    ln.Run(t).save()
    ln.Run(t).save()
    counted = run_cli("count-runs", env=env)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == f"runs={ln.Run.filter().count()}", "plugin commands see the registry"

    without = run_cli("hello-plugin", "world", env=env_with(tmp_path / "empty"))
    assert without.returncode != 0, "the command exists only while the plugin is installed"


def test_a_plugin_failing_to_register_commands_leaves_the_cli_working(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "brokencmds", BROKEN_COMMANDS)
    make_distribution(site, "cmdplugin", COMMANDS)
    env = env_with(site)
    proc = run_cli("hello-plugin", "you", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello you from cmdplugin\n"
    assert "plugin brokencmds failed in register_commands: RuntimeError: cannot register" in proc.stderr
    listed = run_cli("plugins", env=env)
    assert listed.returncode == 0 and "brokencmds (brokencmds): register_commands" in listed.stdout


def test_a_plugin_that_fails_to_import_does_not_hide_the_others(tmp_path):
    """A plugin whose import raises is reported, and the plugins discovered after it still load.

    (The broken distribution comes first on PYTHONPATH, so it is the first entry point found.)
    """
    broken, site = tmp_path / "broken", tmp_path / "site"
    make_distribution(broken, "aaa_broken", 'raise ImportError("missing dependency")\n')
    make_distribution(site, "myplugin", RECORDER)
    listed = run_cli("plugins", env=env_with(broken, site))
    assert listed.returncode == 0, listed.stderr
    assert "missing dependency" in listed.stderr, "the broken plugin is reported"
    assert "myplugin (myplugin): artifact_recreated, artifact_saved, run_finished, run_inputs_linked, run_started" in listed.stdout


def test_hook_tracing(registry, tmp_path):
    site, log = tmp_path / "site", tmp_path / "events.jsonl"
    make_distribution(site, "myplugin", RECORDER)
    env = env_with(site, PLUGIN_LOG=str(log), LAMIN_INTEGRATIONS_TRACE_HOOKS="1")
    proc = run_python("import lamin_integrations as ln\n"
                      "ln.Run(ln.Transform(key='t').save(), status='started').save()\n", env, tmp_path)
    assert "hook run_started -> myplugin" in proc.stderr
    quiet = run_python("import lamin_integrations as ln\n"
                       "ln.Run(ln.Transform(key='t').save(), status='started').save()\n",
                       env_with(site, PLUGIN_LOG=str(log)), tmp_path)
    assert "hook run_started" not in quiet.stderr
    assert [e["event"] for e in events(log)] == ["run_started", "run_started"]
