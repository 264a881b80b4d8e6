"""The examples in shared/seeds run verbatim with `import lamin_integrations as ln`.

Each example runs as a real script in a subprocess (as a user would run it), against a
fresh embedded registry and against PostgreSQL. Afterwards the test reads the registry and
checks what the example should have recorded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import python_env

import lamin_integrations as ln


def run_script(tmp_path: Path, name: str, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_run_seed_examples(registry, tmp_path):
    run_script(tmp_path, "seed_run.py", """
        import lamin_integrations as ln

        ln.Transform(key="Cell Ranger", version="7.2.0", kind="pipeline").save()
        transform = ln.Transform.get(key="Cell Ranger", version="7.2.0")
        run = ln.Run(transform)

        ln.track()
        ln.context.run  # global run object

        run.params = {
            "learning_rate": 0.01,
            "input_dir": "s3://my-bucket/mydataset",
            "downsample": True,
            "preprocess_params": {
                "normalization_type": "cool",
                "subset_highlyvariable": True,
            },
        }
        run.save()

        ln.Feature(name="experiment", dtype="str").save()  # lamindb requires the feature first
        run.features.set_values({
            "experiment": "My experiment 1",
        })

        run.status
        ln.Run.filter(status="completed").to_dataframe()

        ln.Project(name="my label").save()
        ln.Project.filter(name__startswith="my").to_dataframe()

        ln.Record.from_values(["Label1", "Label2", "Label3"], field="name").save()
        ln.Record.search("Label2")
        record = ln.Record.get(name="Label2")
        ln.Record.get(record.uid[:8])
        ln.Record.to_dataframe(include="created_by__name")
        ln.Artifact.to_dataframe(include="features")
        df = ln.Artifact.to_dataframe(features=["cell_type_by_expert", "cell_type_by_model"])
        assert {"cell_type_by_expert", "cell_type_by_model"} <= set(df.columns), df.columns
        ln.Artifact.filter(ln.Q(run=run) | ln.Q(recreating_runs=run)).distinct()
        run.query_output_artifacts()
        ln.finish()
    """)
    transform = ln.Transform.get(key="Cell Ranger", version="7.2.0")
    run = ln.Run.get(transform=transform)
    assert run.params["preprocess_params"]["normalization_type"] == "cool"
    assert run.features.get_values() == {"experiment": "My experiment 1"}
    assert ln.Run.filter(experiment="My experiment 1").one() == run
    tracked = ln.Run.get(transform__key="seed_run.py")
    assert tracked.status == "completed" and tracked.transform.kind == "script"
    assert tracked.finished_at is not None
    assert ln.Project.filter(name="my label").count() == 1
    assert sorted(ln.Record.filter(name__startswith="Label").to_list("name")) == ["Label1", "Label2", "Label3"]
    top = ln.Record.search("Label2").first()
    assert top.name == "Label2"


def test_older_run_seed_examples(registry, tmp_path):
    run_script(tmp_path, "seed_older.py", """
        import lamin_integrations as ln

        ln.Transform(name="Cell Ranger", version="7.2.0", type="pipeline").save()
        transform = ln.Transform.filter(name="Cell Ranger", version="7.2.0").one()
        run = ln.Run(transform)

        ln.track(transform=transform)
        ln.finish()
        ln.track()
        ln.finish()
    """)
    transform = ln.Transform.filter(name="Cell Ranger", version="7.2.0").one()
    assert transform.key == "Cell Ranger" and transform.kind == "pipeline"
    assert ln.Run.filter(transform=transform, status="completed").count() == 1
    assert ln.Run.filter(transform__key="seed_older.py", status="completed").count() == 1


def test_context_seed_examples(registry, tmp_path):
    logs = run_script(tmp_path, "seed_context.py", """
        import lamin_integrations as ln
        ln.track()
        # do things while tracking data lineage
        ln.finish()
        print(ln.context.uid)
    """).stderr
    first = ln.Run.get(transform__key="seed_context.py")
    uid = first.transform.uid
    # "the auto-generated uid that you'll find in the logs"
    assert f"started Run('{first.uid}') of Transform('{uid}', key='seed_context.py')" in logs
    assert f"finished Run('{first.uid}')" in logs
    quiet = subprocess.run([sys.executable, str(tmp_path / "seed_context.py")], capture_output=True, text=True,
                           env=python_env(LAMIN_INTEGRATIONS_QUIET="1"), cwd=tmp_path, timeout=120)
    assert quiet.returncode == 0 and "Run('" not in quiet.stderr, quiet.stderr
    # The user pins the family uid printed in the logs, as the seed suggests.
    proc = run_script(tmp_path, "seed_context_uid.py", f"""
        import lamin_integrations as ln
        ln.track("{uid[:12]}")
        ln.finish()
        print(ln.context.transform.uid)
    """)
    renamed = ln.Transform.get(proc.stdout.strip().splitlines()[-1])
    assert renamed.uid[:12] == uid[:12], "a 12-char uid keeps the version family across renames"
    assert renamed.key == "seed_context_uid.py"
    assert renamed.is_latest and not ln.Transform.get(uid).is_latest



def test_context_uid_version_and_description_set_before_track(registry, tmp_path):
    # the Context seed: uid / version / description are the arguments for context.transform
    code = """
        import lamin_integrations as ln
        ln.context.uid = "Xnv04I53OgtT0000"
        ln.context.version = "1.2"
        ln.context.description = "Cluster the cells"
        ln.track()
        print(ln.context.transform.uid, ln.context.transform.version, ln.context.transform.description)
        ln.finish()
    """
    first = run_script(tmp_path, "cluster.py", code).stdout.split(maxsplit=2)
    assert first == ["Xnv04I53OgtT0000", "1.2", "Cluster the cells\n"]
    transform = ln.Transform.get("Xnv04I53OgtT0000")
    assert (transform.key, transform.version, transform.description) == ("cluster.py", "1.2", "Cluster the cells")
    run_script(tmp_path, "cluster.py", code)  # again, unchanged: the same transform, a second run
    assert ln.Transform.filter(key="cluster.py").count() == 1 and transform.runs.count() == 2
    # a plain ln.track() after a tracked one in the same process keeps to the script's own transform
    proc = run_script(tmp_path, "twice.py", """
        import lamin_integrations as ln
        ln.track()
        ln.finish()
        ln.track()
        ln.finish()
        print(ln.context.transform.key, ln.context.transform.version)
    """)
    assert proc.stdout.split() == ["twice.py", "None"]
    assert ln.Transform.get(key="twice.py").runs.count() == 2
